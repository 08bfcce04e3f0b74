"""Overlap metrics for residual-based segmentation (|input - inpainted| thresholded against a lesion mask).

Dice, precision and recall use MONAI's confusion-matrix functions (``get_confusion_matrix``,
``compute_confusion_matrix_metric``; Dice = F1 score for binary masks). Each is computed per batch item
("subject": pass whole volumes for per-subject values) and per channel, then averaged over channels.
A value that is 0/0 (e.g. recall with an empty ground truth) is NaN and ignored by the reduction.
"""

from __future__ import annotations

import torch
from monai.metrics.confusion_matrix import compute_confusion_matrix_metric, get_confusion_matrix

from ..checks import check_binary_mask, check_image_pair
from .base import ReducedMetric

__all__ = ["OVERLAP_METRICS", "BinaryOverlapMetric", "BestThresholdDiceMetric"]

#: our names -> MONAI confusion-matrix metric names.
OVERLAP_METRICS = {"dice": "f1 score", "precision": "precision", "recall": "sensitivity"}


def _overlap(name: str, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item (B, 1) overlap metric of binary prediction and ground truth (channel mean, NaN for 0/0)."""
    confusion = get_confusion_matrix(y_pred.float(), y.float(), include_background=True)
    values = compute_confusion_matrix_metric(OVERLAP_METRICS[name], confusion)
    return values.nanmean(dim=1, keepdim=True)


class _OverlapBase(ReducedMetric):
    @staticmethod
    def _check(y_pred: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("overlap metrics need a ground-truth mask `y`.")
        check_image_pair(y_pred, y, names=("y_pred", "y"))
        check_binary_mask(y, "y")
        return y


class BinaryOverlapMetric(_OverlapBase):
    """Dice, precision or recall of a segmentation against a binary ground truth.

    Args:
        metric: ``"dice"``, ``"precision"`` or ``"recall"``.
        threshold: if set, ``y_pred > threshold`` is the predicted mask (e.g. a residual map); if None,
            ``y_pred`` must already be binary.
    """

    def __init__(self, metric: str = "dice", threshold: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if metric not in OVERLAP_METRICS:
            raise ValueError(f"metric must be one of {sorted(OVERLAP_METRICS)}, got {metric!r}.")
        self.metric = metric
        self.threshold = threshold

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:  # type: ignore[override]
        y = self._check(y_pred, y)
        if self.threshold is None:
            check_binary_mask(y_pred, "y_pred (set `threshold` for continuous predictions)")
            binary = y_pred
        else:
            binary = (y_pred > self.threshold).to(y.dtype)
        return _overlap(self.metric, binary, y)


class BestThresholdDiceMetric(_OverlapBase):
    """Best Dice over thresholds, per subject: max_t Dice(y_pred > t, y) for t = start, start+step, ..., stop.

    Defaults: t from 0 to 0.8 in steps of 0.02 (41 thresholds), the residual-segmentation protocol. Each
    batch item is one subject and gets its own best threshold (kept in ``best_thresholds`` after the last
    call).
    """

    def __init__(self, start: float = 0.0, stop: float = 0.8, step: float = 0.02, **kwargs) -> None:
        super().__init__(**kwargs)
        if step <= 0 or stop < start:
            raise ValueError(f"need step > 0 and stop >= start, got start={start}, stop={stop}, step={step}.")
        count = int(round((stop - start) / step)) + 1
        self.thresholds = [start + i * step for i in range(count)]
        self.best_thresholds: torch.Tensor | None = None

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:  # type: ignore[override]
        y = self._check(y_pred, y)
        dice = torch.cat([_overlap("dice", (y_pred > t).to(y.dtype), y) for t in self.thresholds], dim=1)
        best = torch.nan_to_num(dice, nan=-1.0).max(dim=1)
        self.best_thresholds = torch.tensor(self.thresholds, device=dice.device)[best.indices]
        return torch.where(best.values < 0, torch.full_like(best.values, float("nan")), best.values)[:, None]
