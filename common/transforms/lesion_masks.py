"""Lesion masks from label images for non-blind lesion filling (2D and 3D).

The hole is where the label image holds a lesion (any non-zero label, or the given ``label_values``),
optionally dilated by a ball of ``dilation`` voxels to cover the lesion's partial-volume rim. The masked image
sets hole voxels to ``fill_value``, by default -1 as in the 3D lesion-filling paper (below every normalised
intensity). Mask convention: 1 = hole, 0 = known.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from scipy import ndimage
from skimage.morphology import ball, disk

from common.transforms.masks import MaskTransformd

__all__ = ["LesionMaskd", "lesion_mask"]


def lesion_mask(
    label: np.ndarray, label_values: Sequence[int] | None = None, dilation: int = 0
) -> np.ndarray:
    """Boolean hole map of a spatial (2D/3D) label array: its lesion voxels, dilated by a ball of ``dilation``."""
    label = np.asarray(label)
    if label.ndim not in (2, 3):
        raise ValueError(f"label must be a 2D or 3D spatial array, got shape {label.shape}")
    if dilation < 0:
        raise ValueError(f"dilation must be >= 0 voxels, got {dilation}")
    holes = label != 0 if label_values is None else np.isin(label, list(label_values))
    if dilation > 0 and holes.any():
        footprint = disk(dilation) if label.ndim == 2 else ball(dilation)
        holes = ndimage.binary_dilation(holes, structure=footprint)
    return holes


class LesionMaskd(MaskTransformd):
    """Mask the lesions of the label image under ``label_key`` (shape ``(1, *spatial)``, same spatial size as the images).

    Raises ValueError when the label holds no lesion unless ``allow_empty`` (then the mask is all zeros, for
    lesion-free subjects that are still to be passed through). Deterministic, so not a random transform.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        label_values: Sequence[int] | None = None,
        dilation: int = 0,
        fill_value: float = -1.0,
        allow_empty: bool = False,
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, mask_key, masked_key, fill_value, allow_missing_keys)
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0 voxels, got {dilation}")
        self.label_key = label_key
        self.label_values = None if label_values is None else [int(v) for v in label_values]
        self.dilation = int(dilation)
        self.allow_empty = allow_empty

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        label = self.single_channel_map(d, self.label_key, "label")
        holes = lesion_mask(label[0], self.label_values, self.dilation)
        if not holes.any() and not self.allow_empty:
            raise ValueError(
                f"label under {self.label_key!r} holds no lesion (values {self.label_values or 'non-zero'}); "
                "pass allow_empty=True to let lesion-free images through with an empty mask"
            )
        return self.write_outputs(d, holes, allow_empty=self.allow_empty)
