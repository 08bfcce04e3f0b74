"""Input handling of the 2D inpainting bundle: datalists, slice loading, 2D checks, mask checks (intensity
scaling to [0, 1] and back is ``common.transforms.PercentileScaled`` / ``CompositeToInputd``)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import load_decathlon_datalist
from monai.transforms import EnsureChannelFirstd, LoadImaged, MapTransform, Resized, SqueezeDim, Transform

from common.transforms import CannyEdged, PercentileScaled, load_mask_bank, write_mask_bank

__all__ = [
    "CheckInpaintingInputd",
    "Ensure2Dd",
    "LoadSliced",
    "SeededPerIdd",
    "id_seed",
    "ensure_mask_bank",
    "lesion_slice_datalist",
    "load_unit_images",
    "slice_datalist",
]


def slice_datalist(datalist_file: str, split: str, limit: int | None = None) -> list[dict[str, str]]:
    """``{"image", "id"}`` records of a 2D datalist split (``datalist_2d.json``), the first ``limit`` of them.

    ``id`` (``<subject>_z<slice>``) seeds each image's fixed evaluation masks, so it must not change.
    """
    entries = load_decathlon_datalist(datalist_file, False, split)[:limit]
    return [{"image": e["image"], "id": f"{os.path.basename(e['subject'])}_z{e['slice_z']}"} for e in entries]


def lesion_slice_datalist(datalist_file: str, split: str = "test") -> list[dict[str, str]]:
    """``{"image", "mask", "brain"}`` records of the sample cohort's 2D slices with MS-like lesions, the lesion as
    the hole and the brain mask to skull-strip the slice as the weights were trained (inference's default data)."""
    entries = load_decathlon_datalist(datalist_file, False, split)
    return [
        {"image": e["image_ms"], "mask": e["label_ms"], "brain": e["brain"]} for e in entries if e["ms_pixels"] > 0
    ]


class Ensure2Dd(MapTransform):
    """Make channel-first images 2D: drop trailing singleton spatial dims (a one-slice DICOM reads as
    ``(C, H, W, 1)``); anything still 3D is an error (this is a 2D model: slice volumes first)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            while image.ndim > 3 and image.shape[-1] == 1:
                image = SqueezeDim(dim=-1)(image)  # also drops the dimension from the affine
            if image.ndim != 3:
                raise ValueError(
                    f"{key!r} has shape {tuple(d[key].shape)} (channel first): this 2D model needs one slice "
                    "(C, H, W); slice 3D volumes first (see docs/README.md, 'Your own data')"
                )
            d[key] = image
        return d


class LoadSliced(MapTransform):
    """Read the 2D slice whose path is under ``keys`` as training sees it: channel first, 2D, scaled to [0, 1]
    between ``percentiles``, resized to ``image_size`` (None: as stored) and, with ``edge_options``
    (:class:`common.transforms.CannyEdged` arguments), with its Canny edge map as ``edge`` and grey image as
    ``gray``. Training, validation, evaluation and the segment sources all read slices through it.

    Deliberately not a ``Compose``: inside a ``Compose`` it takes no random seed, so the mask transforms after
    it draw the same masks as when these steps were listed one by one.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        image_size: Sequence[int] | None = None,
        percentiles: Sequence[float] = (0.5, 99.5),
        edge_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        self.steps = [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            Ensure2Dd(keys),
            PercentileScaled(keys, lower=percentiles[0], upper=percentiles[1]),
        ]
        if image_size is not None:
            self.steps.append(Resized(keys, spatial_size=list(image_size), mode="area"))
        if edge_options is not None:
            self.steps.append(CannyEdged(keys, edge_key="edge", gray_key="gray", **dict(edge_options)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for step in self.steps:
            d = step(d)
        return d


def id_seed(*parts: Any) -> int:
    """A 32-bit seed from ``parts`` (a run seed, an image id, ...): the same image always draws the same masks."""
    return zlib.crc32(":".join(str(p) for p in parts).encode())


class SeededPerIdd(Transform):
    """Run a random transform (e.g. :class:`common.transforms.PseudoSegmentMaskd`) with its random state seeded
    from ``seed`` and the record's ``id_key``, so it draws the same result for an image every time.

    Used for validation holes drawn from the training mask family (``configs/ixi.json``): the same holes every
    epoch, and, being deterministic (not ``Randomizable``), cached once by a ``CacheDataset``.
    """

    def __init__(self, transform: Any, id_key: str = "id", seed: int = 0) -> None:
        if not hasattr(transform, "set_random_state"):
            raise TypeError(f"{type(transform).__name__} has no set_random_state: nothing to seed")
        self.transform, self.id_key, self.seed = transform, id_key, int(seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if self.id_key not in data:
            raise KeyError(f"each record needs an {self.id_key!r} to seed its draw")
        self.transform.set_random_state(seed=id_seed(self.seed, data[self.id_key]))
        return self.transform(data)


class CheckInpaintingInputd(MapTransform):
    """Check an (image, mask) pair for inference and binarise the mask (non-zero = hole).

    Errors: the mask's spatial shape differs from the image's, it has more than one channel, the image has
    NaNs, the mask is empty (nothing to inpaint) or covers the whole image (nothing to inpaint from).
    """

    def __init__(self, keys: KeysCollection = "image", mask_key: str = "mask") -> None:
        super().__init__(keys)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.mask_key not in d:
            raise KeyError(f"each datalist entry needs a {self.mask_key!r} (1 = hole) next to the image")
        mask = d[self.mask_key]
        for key in self.key_iterator(d):
            image = d[key]
            if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"mask shape {tuple(mask.shape[1:])} does not match the image's {tuple(image.shape[1:])}"
                )
        if mask.shape[0] != 1:
            raise ValueError(f"the mask must have one channel, got {mask.shape[0]}")
        hole = mask != 0
        if not hole.any():
            raise ValueError("the mask is empty: no pixel to inpaint (1 / non-zero = hole)")
        if hole.all():
            raise ValueError("the mask covers the whole image: there is nothing to inpaint from")
        d[self.mask_key] = (
            hole.to(torch.float32) if isinstance(hole, torch.Tensor) else hole.astype(np.float32)
        )
        return d


def ensure_mask_bank(
    directory: str,
    count: int = 200,
    seed: int = 0,
    area_range: Sequence[float] = (0.01, 0.1),
    spatial_size: Sequence[int] = (256, 256),
):
    """The irregular-shape bank for ``shape="irregular"``: written once (``count`` masks of the training
    ``spatial_size``, so their areas are ``area_range`` of the training image) then reused."""
    path = Path(directory)
    if not path.is_dir() or not any(path.iterdir()):
        write_mask_bank(path, count=count, area_range=area_range, spatial_size=spatial_size, seed=seed)
    bank = load_mask_bank(path)  # fail here, not in a data-loader worker
    if tuple(bank.shape[1:]) != tuple(spatial_size):
        raise ValueError(
            f"mask bank {path} holds {tuple(bank.shape[1:])} masks but training images are {tuple(spatial_size)}: "
            "give another output_dir (the bank is written there) or remove the folder to rewrite it"
        )
    return str(path)


def load_unit_images(
    datalist: Sequence[Mapping[str, Any]],
    count: int = 16,
    key: str = "image",
    spatial_size: Sequence[int] | None = None,
    percentiles: Sequence[float] = (0.5, 99.5),
) -> list:
    """The first ``count`` images of a datalist, 2D, scaled to [0, 1] between ``percentiles`` and resized to
    ``spatial_size`` (None: as stored), as training prepares its images: the "other image" segment sources."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    load = LoadSliced(key, spatial_size, percentiles)
    return [np.asarray(load(dict(entry))[key], dtype=np.float32) for entry in list(datalist)[:count]]
