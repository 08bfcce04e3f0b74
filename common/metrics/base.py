"""Shared base of this package's metrics: MONAI's cumulative metric with MONAI's NaN-aware reduction."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["ReducedMetric"]


class ReducedMetric(CumulativeIterationMetric):
    """A ``CumulativeIterationMetric`` whose ``aggregate()`` applies ``do_metric_reduction`` like MONAI's
    ``RegressionMetric`` (``reduction`` modes as in MONAI; NaNs ignored; ``get_not_nans`` also returns counts).

    Subclasses implement ``_compute_tensor`` returning one (B, 1) value per image.
    """

    def __init__(
        self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def aggregate(self, reduction: MetricReduction | str | None = None):
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(
                f"{type(self).__name__}: nothing to aggregate, call the metric on some data first."
            )
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
