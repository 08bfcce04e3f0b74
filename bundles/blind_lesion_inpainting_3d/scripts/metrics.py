"""Whole-volume PSNR and Pearson correlation (as reported by the paper) and Dice, with MONAI metric wrappers.

``common.metrics`` has no PSNR/Pearson yet; MONAI's ``PSNRMetric`` needs one fixed ``max_val`` for all cases,
while the paper's PSNR uses each reference volume's own maximum.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred, dtype=np.float64)
    target = np.asarray(
        target.detach().cpu() if isinstance(target, torch.Tensor) else target, dtype=np.float64
    )
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and reference {target.shape} differ in shape")
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("prediction or reference contains NaN/inf")
    return pred, target


def psnr(pred, target) -> float:
    """``20 log10(max(target) / RMSE)`` over the whole volume (inf when identical)."""
    pred, target = _pair(pred, target)
    mse = float(np.mean((pred - target) ** 2))
    return float("inf") if mse == 0 else float(20 * np.log10(target.max() / np.sqrt(mse)))


def pearson(pred, target) -> float:
    """Pearson correlation of all voxels."""
    pred, target = _pair(pred, target)
    return float(np.corrcoef(pred.ravel(), target.ravel())[0, 1])


def dice(a, b) -> float:
    """Dice of two binary maps (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {a.shape} and {b.shape} differ")
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


class _PerVolumeMetric(CumulativeIterationMetric):
    """A per-volume score of (B, C, ...) batches, averaged over the volumes seen (``aggregate``)."""

    score = staticmethod(psnr)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a reference volume is needed")
        return torch.tensor([[self.score(p, t)] for p, t in zip(y_pred, y)], dtype=torch.float64)

    def aggregate(self) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise ValueError("no volume was scored")
        return data.mean()


class VolumePSNR(_PerVolumeMetric):
    """Mean whole-volume PSNR (see :func:`psnr`)."""

    score = staticmethod(psnr)


class VolumePearson(_PerVolumeMetric):
    """Mean whole-volume Pearson correlation (see :func:`pearson`)."""

    score = staticmethod(pearson)
