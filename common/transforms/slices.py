"""Reading 2D slices the way real data arrives, and putting them on the grid a model was trained on."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import DivisiblePad, MapTransform, Orientation, Spacing, SpatialPad

__all__ = ["DropTrailingSingletond", "RestrictToRegiond", "ToModelGridd"]


class DropTrailingSingletond(MapTransform):
    """Turn a one-slice volume ``(C, H, W, 1)`` (a 2D DICOM or NIfTI slice read as 3D by ITK) into ``(C, H, W)``.

    The 4x4 affine is kept, so outputs are written back at the slice's 3D position, and the metadata
    ``spatial_shape`` is updated, which ``SaveImage`` uses to find the channel dimension. Other shapes pass
    unchanged, unless ``require_2d``: then anything but a 2D channel-first image raises (a 2D model given a
    volume must be told to slice it, not silently take its first plane).
    """

    def __init__(
        self, keys: KeysCollection, require_2d: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.require_2d = require_2d

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.ndim == 4 and image.shape[-1] == 1:
                image = image[..., 0]
                if isinstance(image, MetaTensor):
                    image.meta["spatial_shape"] = np.asarray(image.shape[1:])
            if self.require_2d and image.ndim != 3:
                raise ValueError(
                    f"{key}: expected a 2D channel-first image (C, H, W) or a one-slice (C, H, W, 1), got shape "
                    f"{tuple(image.shape)}; slice volumes before a 2D model."
                )
            d[key] = image
        return d


class ToModelGridd(MapTransform):
    """Reorient and resample images (``keys``) and hole masks (``mask_keys``) onto the grid a model was trained on.

    A 2-D model trained on 2 mm RAS slices sees 2 mm RAS slices, whatever the user's scan: the axes are reordered
    and flipped to ``axcodes`` (MONAI ``Orientation``), the pixels resampled to ``spacing`` (``Spacing``,
    bilinear), then zero-padded to at least ``min_size`` and to a multiple of ``divisible`` (for networks with
    a fixed input or pooling depth). A mask is dilated by half the downsampling factor first (max filter), resampled
    bilinearly and every pixel it reaches is hole, so the hole on the model grid covers the user's hole entirely
    (a one-pixel hole included); a label map (``label_keys``, e.g. the organ of interest) is
    resampled nearest-neighbour. MONAI keeps the affine of every step, so
    ``ResampleToMatchd(keys="pred", key_dst=<the original image>)`` maps the output back exactly (see
    ``CompositeToInputd``). ``spacing=None`` keeps the input's spacing (orientation and padding only).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_keys: KeysCollection = (),
        label_keys: KeysCollection = (),
        spacing: Sequence[float] | None = (2.0, 2.0),
        axcodes: str = "RA",
        min_size: Sequence[int] | int | None = None,
        divisible: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        self.mask_keys = (mask_keys,) if isinstance(mask_keys, str) else tuple(mask_keys)
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        image_keys = (keys,) if isinstance(keys, str) else tuple(keys)
        super().__init__(image_keys + self.mask_keys + self.label_keys, allow_missing_keys)
        if spacing is not None and (len(spacing) != len(axcodes) or min(spacing) <= 0):
            raise ValueError(f"spacing {spacing} must give one positive value per axis of {axcodes!r}")
        self.orientation = Orientation(axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S")))
        self.spacing = None if spacing is None else Spacing(pixdim=tuple(float(s) for s in spacing), mode="bilinear")
        self.pad = SpatialPad(min_size, mode="constant") if min_size is not None else None
        self.divisible = DivisiblePad(divisible, mode="constant") if divisible > 1 else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if not isinstance(image, MetaTensor):
                raise ValueError(f"{key}: the model grid needs the image's affine (a MetaTensor from LoadImaged)")
            image = self.orientation(image)
            if key in self.mask_keys and self.spacing is not None:
                image = _dilate_for_downsampling(image.float(), self.spacing.pixdim)
            if self.spacing is not None:
                image = self.spacing(image.float(), mode="nearest" if key in self.label_keys else "bilinear")
            if key in self.mask_keys:
                image = MetaTensor((image > 1e-3).to(torch.float32), meta=image.meta)
            for pad in (self.pad, self.divisible):
                image = pad(image) if pad is not None else image
            d[key] = image
        return d


class RestrictToRegiond(MapTransform):
    """Set the pixels of ``keys`` outside ``region_key`` (e.g. the brain mask) to ``outside_value``, as the model
    saw them in training (skull-stripped slices); without a region in the data (``allow_missing_region``), or
    with ``enabled`` False (a config switch), the image passes unchanged. The region must be on the image's grid."""

    def __init__(
        self,
        keys: KeysCollection,
        region_key: str = "brain",
        outside_value: float = 0.0,
        allow_missing_region: bool = True,
        enabled: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.region_key, self.outside_value = region_key, float(outside_value)
        self.allow_missing_region, self.enabled = allow_missing_region, bool(enabled)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if not self.enabled:
            return d
        if d.get(self.region_key) is None:
            if self.allow_missing_region:
                return d
            raise KeyError(f"no {self.region_key!r} mask in the data to restrict the image to")
        region = torch.as_tensor(d[self.region_key]) != 0
        region = region.as_tensor() if isinstance(region, MetaTensor) else region  # the image keeps its own meta
        for key in self.key_iterator(d):
            if tuple(region.shape[1:]) != tuple(d[key].shape[1:]):
                raise ValueError(
                    f"the {self.region_key!r} mask has shape {tuple(region.shape)}, {key!r} {tuple(d[key].shape)}: "
                    "it must be on the image's grid"
                )
            if not region.any():
                raise ValueError(f"the {self.region_key!r} mask is empty")
            d[key] = torch.where(region, d[key], torch.as_tensor(self.outside_value, dtype=d[key].dtype))
        return d


def _dilate_for_downsampling(mask: MetaTensor, target: Sequence[float]) -> MetaTensor:
    """``mask`` (C, *spatial) max-filtered over ``ceil(factor / 2)`` pixels per axis, ``factor`` = target spacing /
    the mask's spacing (only where > 1): every hole pixel is then within reach of a sample point of the coarser
    grid, which bilinear resampling alone can step over."""
    dims = mask.ndim - 1
    current = np.linalg.norm(np.asarray(mask.affine, np.float64)[:dims, :dims], axis=0)
    reach = [math.ceil(t / c / 2) if t > c * (1 + 1e-6) else 0 for t, c in zip(target, current)]
    if not any(reach):
        return mask
    pool = {2: F.max_pool2d, 3: F.max_pool3d}[dims]
    kernel = tuple(2 * r + 1 for r in reach)
    dilated = pool(mask.as_tensor()[None], kernel, stride=1, padding=tuple(reach))[0]
    return MetaTensor(dilated, meta=mask.meta, applied_operations=mask.applied_operations)
