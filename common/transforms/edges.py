"""Canny edge maps as a MONAI dictionary transform (the structure input and target of CTSDG-style inpainters).

MONAI has no Canny detector; skimage's ``feature.canny`` is used as is (CTSDG computes its edge maps with it,
``sigma=2`` on the grey image).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from skimage.feature import canny

from common.transforms.masks import as_type_of, to_numpy, validate_image

__all__ = ["CannyEdged", "canny_edges"]


def canny_edges(
    image: np.ndarray,
    sigma: float = 2.0,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    use_quantiles: bool = False,
) -> np.ndarray:
    """Binary Canny edge map ``(H, W)`` (float32 0/1) of a channel-first 2D image ``(C, H, W)``.

    Multi-channel images are reduced to their channel mean (grey) first. Thresholds as in
    ``skimage.feature.canny`` (None: 10 % and 20 % of the input dtype's maximum, i.e. 0.1 / 0.2 for float
    images, on the gradient magnitude), so the edge density depends on the intensity scale: give images in
    [0, 1], as CTSDG does.
    """
    validate_image(image, "image", spatial_dims=(2,))
    grey = to_numpy(image).astype(np.float64).mean(axis=0)
    edges = canny(
        grey,
        sigma=sigma,
        low_threshold=low_threshold,
        high_threshold=high_threshold,
        use_quantiles=use_quantiles,
    )
    return edges.astype(np.float32)


class CannyEdged(MapTransform):
    """Write the Canny edge map of ``keys`` (first key) as a ``(1, H, W)`` 0/1 image under ``edge_key``.

    Args:
        keys: the image key (channel-first 2D); the first key is used.
        edge_key: output key of the edge map (same container type and metadata as the image).
        gray_key: if given, also write the grey image (channel mean, ``(1, H, W)``) there; CTSDG's edge
            discriminator is conditioned on it.
        sigma: Gaussian smoothing of the detector (CTSDG: 2).
        low_threshold, high_threshold, use_quantiles: as in ``skimage.feature.canny``.
        allow_missing_keys: as in MONAI.
    """

    def __init__(
        self,
        keys: KeysCollection,
        edge_key: str = "edge",
        gray_key: str | None = None,
        sigma: float = 2.0,
        low_threshold: float | None = None,
        high_threshold: float | None = None,
        use_quantiles: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.edge_key, self.gray_key = edge_key, gray_key
        self.options = {
            "sigma": float(sigma),
            "low_threshold": low_threshold,
            "high_threshold": high_threshold,
            "use_quantiles": bool(use_quantiles),
        }

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = next(iter(self.key_iterator(d)), None)
        if key is None:
            return d
        image = d[key]
        d[self.edge_key] = as_type_of(canny_edges(image, **self.options)[None], image)
        if self.gray_key is not None:
            grey = to_numpy(image).astype(np.float32).mean(axis=0, keepdims=True)
            d[self.gray_key] = as_type_of(grey, image)
        return d
