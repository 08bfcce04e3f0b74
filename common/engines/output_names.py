"""Output file names that keep inputs of the same name apart."""

from __future__ import annotations

from pathlib import Path

from monai.data.folder_layout import default_name_formatter

__all__ = ["RelativeOutputName"]


class RelativeOutputName:
    """``output_name_formatter`` for MONAI ``SaveImage(d)`` (with ``data_root_dir=data_root_dir``): an input
    under ``data_root_dir`` keeps its sub-folders in the output folder, so slices with the same file name from
    different subjects (``sub-008/slices/z050.nii.gz``, ``sub-009/slices/z050.nii.gz``) do not overwrite each
    other; any other input is written under its bare name, as MONAI's default does."""

    def __init__(self, data_root_dir: str | Path) -> None:
        self.root = Path(data_root_dir).resolve()

    def __call__(self, metadict: dict, saver) -> dict:
        kwargs = default_name_formatter(metadict, saver)
        source = Path(kwargs["subject"]).resolve()
        kwargs["subject"] = str(source) if source.is_relative_to(self.root) else source.name
        return kwargs
