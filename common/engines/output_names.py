"""Output file names that keep inputs of the same name apart."""

from __future__ import annotations

import os
from pathlib import Path

from monai.data.folder_layout import default_name_formatter

__all__ = ["RelativeOutputName"]


class RelativeOutputName:
    """``output_name_formatter`` for MONAI ``SaveImage(d)`` (with ``data_root_dir=data_root_dir``): an input
    under ``data_root_dir`` keeps its sub-folders in the output folder, so slices with the same file name from
    different subjects (``sub-008/slices/z050.nii.gz``, ``sub-009/slices/z050.nii.gz``) do not overwrite each
    other; any other input is written under its bare name, as MONAI's default does, and two such inputs of
    the same name from different folders stop with an error instead of one overwriting the other.

    Outputs never leave the saver's ``output_dir``: the sub-folders are found by comparing paths as written
    and, failing that, with symlinks resolved (a ``dataset_dir`` or ``$MEDINPAINT_DATA`` that is a symlink),
    and the name handed to MONAI is rebuilt under the saver's own ``data_root_dir``, so MONAI's
    ``os.path.relpath`` gives exactly those sub-folders, never a ``../`` path into the data folder.
    ``data_root_dir`` defaults to the saver's."""

    def __init__(self, data_root_dir: str | Path | None = None) -> None:
        self.root = None if data_root_dir is None else Path(data_root_dir)
        self._bare_names: dict[tuple[str, str], str] = {}  # (output_dir, bare name) -> its input

    @staticmethod
    def relative_path(source: str | Path, root: str | Path) -> Path | None:
        """``source``'s path below ``root`` (as written, else with symlinks resolved); None when outside."""
        source, root = Path(source), Path(root)
        for candidate, base in (
            (Path(os.path.abspath(source)), Path(os.path.abspath(root))),
            (source.resolve(), root.resolve()),
        ):
            if candidate.is_relative_to(base) and candidate != base:
                return candidate.relative_to(base)
        return None

    def __call__(self, metadict: dict, saver) -> dict:
        kwargs = default_name_formatter(metadict, saver)
        saver_root = getattr(getattr(saver, "folder_layout", None), "data_root_dir", "")
        root = self.root if self.root is not None else saver_root
        relative = self.relative_path(kwargs["subject"], root) if root else None
        if relative is None:
            source, kwargs["subject"] = kwargs["subject"], Path(kwargs["subject"]).name
            output_dir = str(getattr(getattr(saver, "folder_layout", None), "output_dir", ""))
            key = (output_dir, kwargs["subject"])
            first = self._bare_names.setdefault(key, os.path.abspath(source))
            if first != os.path.abspath(source):
                raise ValueError(
                    f"{source} and {first} would both be written as {kwargs['subject']} in {output_dir}: "
                    f"they lie outside the data folder {root or '(none)'}, so their sub-folders cannot be "
                    "kept; put them under one folder and pass it as --dataset_dir"
                )
        elif not saver_root:
            raise ValueError(
                "RelativeOutputName keeps sub-folders only through SaveImage(d)'s data_root_dir, which is "
                f"not set: pass data_root_dir={str(root)!r} to the saver"
            )
        else:
            kwargs["subject"] = os.path.join(os.path.abspath(saver_root), *relative.parts)
        return kwargs
