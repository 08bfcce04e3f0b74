"""Abnormal-white-matter map from blind inpainting, and the native-space composite of a non-blind fill.

The network's raw output is the inpainted T1; the map is postprocessing: voxels where the input and the inpainted
volume differ by more than ``threshold`` (standardised units: the mean head intensity is 1) inside white matter,
taken as the MNI152 2009a WM prior (nilearn's probability map on the 182x218x182 grid) above 0.5: after the affine
registration to MNI this is the prior warped onto the subject. The 3-class Gaussian mixture of the inpainted volume
(``scripts.tissue``) was tried first and rejected on the validation subjects: its WM class missed most lesion voxels
even with the lesion-free truth as the "inpainting" (oracle Dice <= 0.30 against ~0.8 with the prior). Evaluation and
inference use this one function, so the threshold chosen on the validation subjects is the one applied.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

from common.transforms.preprocessing import head_mask, resample_to_mni

logger = logging.getLogger(__name__)

#: WM prior probability above which a voxel counts as white matter
WM_PRIOR_LEVEL = 0.5


@lru_cache(maxsize=1)
def mni_white_matter() -> np.ndarray:
    """nilearn's MNI152 2009a WM probability map on the 182x218x182 MNI grid, above :data:`WM_PRIOR_LEVEL`."""
    from nilearn import datasets

    wm = datasets.load_mni152_wm_template(resolution=1)
    return resample_to_mni(np.asarray(wm.get_fdata(), np.float32), np.asarray(wm.affine)) > WM_PRIOR_LEVEL


def _volume(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x[0] if x.ndim == 4 else x


def abnormal_wm_map(lesioned, inpainted, threshold: float, wm: np.ndarray | None = None) -> np.ndarray:
    """Boolean map ``|lesioned - inpainted| > threshold`` inside ``wm`` (a WM mask; by default
    :func:`mni_white_matter`, so both volumes must then be on the MNI grid)."""
    lesioned, inpainted = _volume(lesioned), _volume(inpainted)
    if lesioned.shape != inpainted.shape:
        raise ValueError(f"input {lesioned.shape} and inpainted {inpainted.shape} volumes differ in shape")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    wm = mni_white_matter() if wm is None else np.asarray(wm, dtype=bool)
    if wm.shape != lesioned.shape:
        raise ValueError(f"WM mask {wm.shape} and volumes {lesioned.shape} differ in shape")
    return (np.abs(lesioned - inpainted) > threshold) & np.asarray(wm, dtype=bool)


def _plain(x) -> torch.Tensor:
    """A plain tensor (no MetaTensor) of ``x``."""
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


class AbnormalWMd(MapTransform):
    """Write under ``map_key`` the 0/1 abnormal-WM map (float32, the inpainted volume's metadata) of the
    inpainted volume under ``keys`` against the network input under ``image_key`` (both on the MNI grid)."""

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        map_key: str = "pred",
        threshold: float = 0.15,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.image_key, self.map_key, self.threshold = image_key, map_key, float(threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            abnormal = abnormal_wm_map(d[self.image_key], d[key], self.threshold)
            meta = dict(d[key].meta) if isinstance(d[key], MetaTensor) else {}
            d[self.map_key] = MetaTensor(torch.from_numpy(abnormal[None].astype(np.float32)), meta=meta)
        return d


class NativeComposited(MapTransform):
    """Non-blind fill in the subject's space: the native-space prediction under ``keys`` inside the native
    lesion mask ``mask_key``, the unmodified input image (``info_key``'s ``native``) everywhere else.

    The fill is checked against the input's own range: ``floor`` / ``ceiling`` are the ``percentiles`` of the
    known (non-lesion, non-zero) voxels inside the head (``common.transforms.preprocessing.head_mask``).
    Fill voxels outside [floor, ceiling] or not finite (an untrained or out-of-domain network: the shipped demo
    weights leave parts of a hole near the -1 marker on real scans) are replaced, with a warning giving their
    share, by the median of the known head voxels in a ``shell``-voxel shell around their lesion component
    (clipped to [floor, ceiling]), so the written fill is never the marker, never negative, never below the
    brain's intensity floor."""

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str,
        info_key: str = "mni",
        percentiles: tuple[float, float] = (0.5, 99.5),
        shell: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key, self.info_key = mask_key, info_key
        self.percentiles, self.shell = (float(percentiles[0]), float(percentiles[1])), int(shell)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        native = d[self.info_key]["native"]
        holes = _plain(d[self.mask_key]) > 0
        for key in self.key_iterator(d):
            if d[key].shape != native.shape or holes.shape != native.shape:
                raise ValueError(
                    f"prediction {tuple(d[key].shape)}, lesion mask {tuple(holes.shape)} and input "
                    f"{tuple(native.shape)} must share the input's grid (map the prediction back first)"
                )
            fill = in_range_fill(
                _plain(d[key]).float().numpy()[0],
                _plain(native).float().numpy()[0],
                holes.numpy()[0],
                self.percentiles,
                self.shell,
                name=str(key),
            )
            filled = torch.where(holes, torch.from_numpy(fill)[None], _plain(native).float())
            d[key] = MetaTensor(filled, meta=dict(d[key].meta))
        return d


def in_range_fill(
    fill: np.ndarray,
    image: np.ndarray,
    holes: np.ndarray,
    percentiles: tuple[float, float] = (0.5, 99.5),
    shell: int = 2,
    name: str = "pred",
) -> np.ndarray:
    """``fill`` (same grid as ``image``) with its hole voxels that are out of the known head voxels' percentile
    range, or not finite, replaced by the median of the known head voxels in a ``shell``-voxel shell around their
    hole component (see :class:`NativeComposited`); voxels outside ``holes`` are returned unchanged."""
    fill = np.array(fill, dtype=np.float32)
    if not holes.any():
        return fill
    known = head_mask(np.where(holes, 0, image)) & ~holes & (image != 0)  # 0: background of a stripped brain
    if not known.any():
        known = ~holes
    floor, ceiling = (float(v) for v in np.percentile(image[known], percentiles))
    with np.errstate(invalid="ignore"):
        bad = holes & ~((fill >= floor) & (fill <= ceiling))
    if bad.any():
        components, count = ndimage.label(holes)
        fallback = float(np.median(image[known]))
        for index in np.unique(components[bad]):
            component = components == index
            ring = ndimage.binary_dilation(component, iterations=shell) & known
            value = float(np.median(image[ring])) if ring.any() else fallback
            fill[bad & component] = min(max(value, floor), ceiling)
        logger.warning(
            "%s: the network's fill is outside the input's intensity range [%.4g, %.4g] (0.5/99.5 percentiles "
            "of the known head voxels) or not finite in %.1f %% of the lesion voxels; those voxels are filled "
            "with the median of the known voxels around their lesion instead (retrain or fine-tune the "
            "non-blind network on data like yours)",
            name,
            floor,
            ceiling,
            100.0 * bad.sum() / holes.sum(),
        )
    return fill
