"""Intensity scaling to [0, 1] that can be undone, and a fill written back into the user's image.

MONAI's ``ScaleIntensityRangePercentilesd`` is not invertible, so :class:`PercentileScaled` stores each image's
(low, high) percentiles under ``<key>_range``; :class:`RestoreIntensityd` maps a prediction back to scanner
units with them, and :class:`CompositeToInputd` does that, resizes the fill to the input's grid and composites
it into the original image (the "fill my own hole" routes, issue #17: known pixels stay the input's, bit for bit).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from common.masking import composite

__all__ = ["CompositeToInputd", "PercentileScaled", "RestoreIntensityd"]


def _intensity_range(value: Any) -> tuple[float, float]:
    low, high = (float(v) for v in np.asarray(torch.as_tensor(value).detach().cpu()).reshape(-1))
    return low, high


class PercentileScaled(MapTransform):
    """Map ``[p_lower, p_upper]`` percentiles of each image linearly to [0, 1], clipped; store the pair under
    ``<key>_range``. Raises on non-finite values or a constant image.

    With ``mask_key`` (1 = hole) the percentiles are taken over the known pixels only: what lies in the hole
    (a tumour, zeros) must not change the scaling of the fill.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.0,
        upper: float = 99.5,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}.")
        self.lower, self.upper, self.mask_key = float(lower), float(upper), mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            if not np.isfinite(values).all():
                raise ValueError(f"{key} holds NaN or infinite values.")
            where = "between"
            if self.mask_key is not None:
                known = np.asarray(torch.as_tensor(d[self.mask_key]).detach().cpu())[0] == 0
                values, where = values[:, known], "over the known pixels between"
            low, high = (float(v) for v in np.percentile(values, (self.lower, self.upper)))
            if high <= low:
                raise ValueError(f"{key} is constant {where} the {self.lower}/{self.upper} percentiles ({low}).")
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
        low, high = _intensity_range(d[self.range_key])
        for key in self.key_iterator(d):
            d[key] = d[key] * (high - low) + low
        return d


class CompositeToInputd(MapTransform):
    """Postprocessing of a fill: the network's [0, 1] prediction under ``keys`` back in the input image.

    The prediction is clipped to [0, 1] (the range the network was trained on), mapped to the input's units with
    the (low, high) pair of :class:`PercentileScaled` under ``range_key``, resized (bilinear) to the original
    image's grid when the network ran at another size, and composited (:func:`common.masking.composite`) into
    the original image under ``original_key`` with the hole under ``mask_key`` (1 = hole, on the original's
    grid): every known pixel is the original's value exactly, the hole lies within [low, high]. The result
    carries the original's metadata and shape (a one-slice DICOM read as (C, H, W, 1) stays so), so ``SaveImaged``
    writes it in the input's geometry and under its name.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        original_key: str = "original",
        mask_key: str = "original_mask",
        range_key: str = "image_range",
    ) -> None:
        super().__init__(keys)
        self.original_key, self.mask_key, self.range_key = original_key, mask_key, range_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        original = d[self.original_key]
        stored = torch.as_tensor(original).detach().cpu().float()
        hole = (torch.as_tensor(d[self.mask_key]).detach().cpu() != 0).to(stored.dtype)
        reference = stored
        while reference.dim() > hole.dim() and reference.shape[-1] == 1:  # a one-slice DICOM reads (C, H, W, 1)
            reference = reference[..., 0]
        if tuple(hole.shape[1:]) != tuple(reference.shape[1:]):
            raise ValueError(
                f"the hole under {self.mask_key!r} has shape {tuple(hole.shape)}, the original image "
                f"{tuple(reference.shape)}: both must be on the input's grid."
            )
        low, high = _intensity_range(d[self.range_key])
        for key in self.key_iterator(d):
            pred = torch.as_tensor(d[key]).detach().cpu().float().clamp(0.0, 1.0) * (high - low) + low
            if tuple(pred.shape[1:]) != tuple(reference.shape[1:]):
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[reference.dim() - 1]
                pred = F.interpolate(pred[None], size=tuple(reference.shape[1:]), mode=mode, align_corners=False)[0]
            if pred.shape[0] != reference.shape[0]:
                raise ValueError(
                    f"{key!r} has {pred.shape[0]} channel(s), the original image {reference.shape[0]}."
                )
            out = composite(pred, reference, hole).reshape(stored.shape)
            if isinstance(original, MetaTensor):
                meta = dict(original.meta)
                # a grey image is written without channel dim, whatever the reader said (ITK marks DICOM's NaN)
                meta.update(
                    spatial_shape=tuple(out.shape[1:]), original_channel_dim="no_channel" if len(out) == 1 else 0
                )
                out = MetaTensor(out, meta=meta)
            d[key] = out
        return d
