"""ipA-MedGAN's fixed mask banks, written into the data cache on first use, and a deterministic bank transform.

Experiment (b) trains on a bank of 100 irregular masks covering 1.36-5.46 % of the image and validates on a
different bank of 50 masks covering 1.66-4.56 %. For validation/test of experiment (a) a bank of 50 64x64
squares at seeded random positions plays the same role, so that every model (and the biharmonic baseline)
is scored on identical holes. Training squares are drawn on the fly (``common.transforms.SquareMaskd``).

Banks are PNG folders written by :func:`common.transforms.write_mask_bank` (same format for the squares),
created atomically (:func:`common.data.cache.build_cached_folder`), so concurrent first uses (e.g. several
torchrun ranks) never see a half-written bank.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from skimage import io as skio

from common.data.cache import build_cached_folder
from common.data.sample import default_root
from common.transforms import MaskTransformd, load_mask_bank, square_mask, write_mask_bank

__all__ = ["BANKS", "mask_bank", "write_square_bank", "FixedBankMaskd", "with_mask_index"]

#: name -> (kind, count, area range or square side fraction, seed). Seeds differ so banks never coincide.
BANKS: dict[str, dict[str, Any]] = {
    "train_arbitrary": {"kind": "irregular", "count": 100, "area_range": (0.0136, 0.0546), "seed": 1},
    "val_arbitrary": {"kind": "irregular", "count": 50, "area_range": (0.0166, 0.0456), "seed": 2},
    "val_square": {"kind": "square", "count": 50, "side_fraction": 0.25, "seed": 3},
}


def write_square_bank(
    directory: str | Path, count: int, side: int, spatial_size: Sequence[int], seed: int
) -> list[Path]:
    """``count`` squares of ``side`` pixels at seeded random positions, as ``mask_0000.png``... (0/255)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for index in range(count):
        path = folder / f"mask_{index:04d}.png"
        holes = square_mask(tuple(spatial_size), side, rng)
        skio.imsave(path, (holes * 255).astype(np.uint8), check_contrast=False)
        paths.append(path)
    return paths


def mask_bank(name: str, image_size: int = 256, root: str | Path | None = None) -> str:
    """Folder of bank ``name`` (see :data:`BANKS`) for ``image_size`` x ``image_size`` images, written on first use.

    The folder is ``<root>/ipa_medgan_masks/<name>_<size>_seed<seed>`` with ``root`` defaulting to the sample-data
    cache (``$MEDINPAINT_DATA`` or ``~/.cache/medinpaint``).
    """
    if name not in BANKS:
        raise ValueError(f"unknown mask bank {name!r}; known: {sorted(BANKS)}.")
    spec = BANKS[name]
    base = Path(root).expanduser() if root is not None else default_root()
    size = (image_size, image_size)

    def write(staging: Path) -> None:
        if spec["kind"] == "irregular":
            write_mask_bank(staging, spec["count"], spec["area_range"], size, spec["seed"])
        else:
            write_square_bank(staging, spec["count"], round(spec["side_fraction"] * image_size), size, spec["seed"])

    def is_complete(folder: Path) -> bool:
        return folder.is_dir() and len(list(folder.glob("mask_*.png"))) == spec["count"]

    target = base / "ipa_medgan_masks" / f"{name}_{image_size}_seed{spec['seed']}"
    return str(build_cached_folder(target, is_complete, write))


def with_mask_index(datalist: Sequence[Mapping], key: str = "mask_index") -> list[dict]:
    """Copies of the entries with ``key`` = their position: entry i is scored with bank mask i mod bank size."""
    return [{**entry, key: index} for index, entry in enumerate(datalist)]


class FixedBankMaskd(MaskTransformd):
    """Deterministic bank mask: the entry's ``index_key`` picks mask ``index mod len(bank)``; entries without it
    are left unmasked (e.g. a user's image that already lacks the region to inpaint).

    ``directory`` may be a callable returning the bank folder (``inference.json``: ``mask_bank`` with
    ``"_mode_": "callable"``): it is called, and the bank written, only when an entry has ``index_key``, so
    inference on a user's own images writes nothing into the data cache.
    Writes ``mask_key`` and ``masked_key`` like every ``common.transforms`` mask transform.
    """

    spatial_dims = (2,)

    def __init__(
        self, keys: KeysCollection, directory: str | Callable[[], str], index_key: str = "mask_index", **kwargs: Any
    ) -> None:
        super().__init__(keys, **kwargs)
        self.index_key = index_key
        self._directory, self._bank = directory, None
        if not callable(directory):
            self._bank = load_mask_bank(directory)

    @property
    def directory(self) -> str:
        if callable(self._directory):
            self._directory = str(self._directory())
        return str(self._directory)

    @property
    def bank(self) -> np.ndarray:
        if self._bank is None:
            self._bank = load_mask_bank(self.directory)
        return self._bank

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        shape = self.spatial_shape(d)
        if self.index_key not in d:
            return self.write_outputs(d, np.zeros(shape, dtype=bool), allow_empty=True)
        if self.bank.shape[1:] != shape:
            raise ValueError(
                f"mask bank {self.directory} holds {self.bank.shape[1:]} masks but the image is {shape}."
            )
        return self.write_outputs(d, self.bank[int(d[self.index_key]) % len(self.bank)].copy())
