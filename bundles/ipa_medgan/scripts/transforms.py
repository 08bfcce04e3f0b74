"""Intensity scaling to [0, 1] that can be undone on the prediction, and the 2D DICOM shape fix.

MONAI's ``ScaleIntensityRangePercentilesd`` is not invertible, so :class:`PercentileScaled` stores each image's
(low, high) percentiles under ``<key>_range`` and :class:`RestoreIntensityd` maps a prediction back to scanner
units with them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["PercentileScaled", "RestoreIntensityd"]


class PercentileScaled(MapTransform):
    """Map ``[p_lower, p_upper]`` percentiles of each image linearly to [0, 1], clipped; store the pair under
    ``<key>_range``. Raises on non-finite values or a constant image."""

    def __init__(
        self, keys: KeysCollection, lower: float = 0.0, upper: float = 99.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}.")
        self.lower, self.upper = float(lower), float(upper)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            if not np.isfinite(values).all():
                raise ValueError(f"{key} holds NaN or infinite values.")
            low, high = (float(v) for v in np.percentile(values, (self.lower, self.upper)))
            if high <= low:
                raise ValueError(
                    f"{key} is constant between the {self.lower}/{self.upper} percentiles ({low})."
                )
            d[key] = ((image - low) / (high - low)).clip(0, 1)
            d[f"{key}_range"] = np.array([low, high], dtype=np.float32)
        return d


class RestoreIntensityd(MapTransform):
    """Inverse of :class:`PercentileScaled` for ``keys`` using the pair stored under ``range_key``."""

    def __init__(self, keys: KeysCollection, range_key: str = "image_range") -> None:
        super().__init__(keys)
        self.range_key = range_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        low, high = (float(v) for v in np.asarray(torch.as_tensor(d[self.range_key]).cpu()).reshape(-1))
        for key in self.key_iterator(d):
            d[key] = d[key] * (high - low) + low
        return d
