"""Reading 2D slices the way real data arrives."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["DropTrailingSingletond"]


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
