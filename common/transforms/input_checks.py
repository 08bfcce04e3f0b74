"""Inference input checks: a clear error naming the file, never a silent wrong answer (issue #16).

``CheckFilesd`` runs before ``LoadImaged`` (missing or truncated files); ``CheckInputd`` after
``EnsureChannelFirstd`` (dimensionality, channels, NaN/Inf, constant image, empty/full masks, mask geometry).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ResampleToMatch

__all__ = ["CheckFilesd", "CheckInputd", "describe_nonfinite", "file_name"]

logger = logging.getLogger(__name__)


def file_name(image: Any, key: Hashable) -> str:
    """The file an image was read from (its MetaTensor ``filename_or_obj``), else the key, for messages."""
    if isinstance(image, MetaTensor):
        name = image.meta.get("filename_or_obj")
        if name:
            return str(name)
    return repr(key)


def describe_nonfinite(x: Any) -> str | None:
    """'NaN', 'Inf' or 'NaN and Inf' for what ``x`` holds, None when every value is finite."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        return None
    nan, inf = bool(torch.isnan(x).any()), bool(torch.isinf(x).any())
    return " and ".join(w for w, present in (("NaN", nan), ("Inf", inf)) if present) or None


def _check_readable(path: str) -> None:
    """Raise FileNotFoundError / ValueError naming ``path`` when it is missing or a truncated (gzip) NIfTI."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"input file not found: {path}")
    if os.path.isdir(path):
        return  # a DICOM series: left to the reader
    lower = path.lower()
    if not lower.endswith((".gz", ".nii")):
        return
    with open(path, "rb") as f:
        raw = f.read()
    if lower.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: truncated or corrupt gzip file ({e})") from None
    if lower.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw))
        except Exception as e:  # noqa: BLE001 - any header failure is a corrupt file
            raise ValueError(f"{path}: not a readable NIfTI file ({e})") from None
        expected = (
            int(header["vox_offset"])
            + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
        )
        if len(raw) < expected:
            raise ValueError(
                f"{path}: truncated NIfTI file ({len(raw)} bytes of data, the header needs {expected})"
            )


class CheckFilesd(MapTransform):
    """Before ``LoadImaged``: each path under ``keys`` exists and, for NIfTI/gzip, is complete, so a bad file
    gives one line naming it instead of the reader's long traceback."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], (str, os.PathLike)):
                _check_readable(os.fspath(d[key]))
        return d


class CheckInputd(MapTransform):
    """After ``EnsureChannelFirstd``: check the image(s) under ``keys`` and the masks under ``mask_keys``.

    Errors (ValueError, naming the file): not ``spatial_dims``-D, not ``channels`` channels, NaN or Inf, a
    constant image (unless ``allow_constant``), a mask that is empty (unless ``allow_empty_mask``) or covers the
    whole image (unless ``allow_full_mask``: an organ-of-interest mask may), a mask on another grid (affine or shape) than the image, unless ``resample_mask_to_image``:
    then the mask is resampled onto the image grid (nearest neighbour). ``empty_mask_advice`` is appended to the
    empty-mask message (where the bundle has an ``allow_empty_mask`` config id, say so).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int = 2,
        channels: int | None = 1,
        mask_keys: Sequence[str] | str = (),
        allow_constant: bool = False,
        allow_empty_mask: bool = False,
        allow_full_mask: bool = False,
        resample_mask_to_image: bool = False,
        empty_mask_advice: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims, self.channels = int(spatial_dims), channels
        self.mask_keys = [mask_keys] if isinstance(mask_keys, str) else list(mask_keys)
        self.allow_constant, self.allow_empty_mask = bool(allow_constant), bool(allow_empty_mask)
        self.resample_mask_to_image = bool(resample_mask_to_image)
        self.allow_full_mask = bool(allow_full_mask)
        self.empty_mask_advice = str(empty_mask_advice or "")

    def _check_image(self, image: Any, key: Hashable) -> None:
        name = file_name(image, key)
        what = {2: "a 2-D slice (C, H, W)", 3: "a 3-D volume (C, X, Y, Z)"}.get(self.spatial_dims)
        if self.channels is not None and image.shape[0] != self.channels:
            raise ValueError(
                f"{name}: this bundle expects {self.channels} channel(s), got {image.shape[0]} "
                f"(shape {tuple(image.shape)}, channel first)"
            )
        if image.ndim - 1 != self.spatial_dims:
            raise ValueError(
                f"{name}: this bundle expects {what} (channel first), got shape {tuple(image.shape)}"
            )
        bad = describe_nonfinite(image)
        if bad:
            raise ValueError(f"{name}: the image contains {bad} values")
        values = torch.as_tensor(image)
        if not self.allow_constant and values.numel() and bool((values == values.flatten()[0]).all()):
            raise ValueError(
                f"{name}: the image is constant (every value {float(values.flatten()[0]):g}): nothing to inpaint"
            )

    def _check_mask(self, mask: Any, image: Any, key: Hashable) -> Any:
        name, image_name = file_name(mask, key), file_name(image, "image")
        if mask.ndim != image.ndim or mask.shape[0] != 1:
            raise ValueError(
                f"{name}: the mask must be one channel of the image's {image.ndim - 1}-D grid, got shape "
                f"{tuple(mask.shape)} for image shape {tuple(image.shape)}"
            )
        if describe_nonfinite(mask):
            raise ValueError(f"{name}: the mask contains {describe_nonfinite(mask)} values")
        differ = _geometry_difference(mask, image)
        if differ:
            if not self.resample_mask_to_image:
                raise ValueError(
                    f"{name}: the mask's geometry differs from the image {image_name} ({differ}); resample it, "
                    "or set resample_mask_to_image true to resample it onto the image grid (nearest neighbour)"
                )
            mask = ResampleToMatch(mode="nearest")(mask, image)
        hole = torch.as_tensor(mask) != 0
        if not hole.any() and not self.allow_empty_mask:
            raise ValueError(
                f"{name}: the mask is empty (no non-zero voxel): nothing to inpaint{self.empty_mask_advice}"
            )
        if hole.all() and not self.allow_full_mask:
            raise ValueError(f"{name}: the mask covers the whole image (all ones): nothing to inpaint from")
        return mask

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        image = None
        for key in self.key_iterator(d):
            self._check_image(d[key], key)
            image = d[key] if image is None else image
        if image is not None:
            for key in self.mask_keys:
                if key in d and not isinstance(d[key], str) and d[key] is not None:
                    d[key] = self._check_mask(d[key], image, key)
        return d


def _geometry_difference(mask: Any, image: Any) -> str | None:
    """How the mask's grid differs from the image's (shape, spacing, origin/direction), None if it does not."""
    parts = []
    if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
        parts.append(f"shape {tuple(mask.shape[1:])} vs {tuple(image.shape[1:])}")
    if isinstance(mask, MetaTensor) and isinstance(image, MetaTensor):
        a, b = np.asarray(mask.affine, np.float64), np.asarray(image.affine, np.float64)
        if a.shape == b.shape and not np.allclose(a, b, atol=1e-3):
            n = a.shape[0] - 1
            sa, sb = np.linalg.norm(a[:n, :n], axis=0), np.linalg.norm(b[:n, :n], axis=0)
            if not np.allclose(sa, sb, atol=1e-3):
                parts.append(f"spacing {np.round(sa, 4).tolist()} vs {np.round(sb, 4).tolist()}")
            if not np.allclose(a[:n, n], b[:n, n], atol=1e-3):
                parts.append(f"origin {np.round(a[:n, n], 3).tolist()} vs {np.round(b[:n, n], 3).tolist()}")
            if len(parts) == 0 or (
                np.allclose(sa, sb, atol=1e-3) and np.allclose(a[:n, n], b[:n, n], atol=1e-3)
            ):
                parts.append("direction differs")
    return "; ".join(parts) or None
