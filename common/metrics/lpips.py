"""LPIPS metric (when its weights are available locally), following the pretrained-weights policy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.utils import MetricReduction

from ..checks import check_image_pair
from ..networks.vgg import LPIPSNetwork
from .base import ReducedMetric

__all__ = ["LPIPSMetric"]


class LPIPSMetric(ReducedMetric):
    """Learned perceptual image patch similarity (lower = more similar), whole 2D image only.

    Needs ``vgg16-397923af.pth`` and ``lpips_vgg_v0.1.pth`` locally (see :class:`common.networks.LPIPSNetwork`
    and docs/losses_metrics.md); missing files raise FileNotFoundError naming them. Grey and multi-channel
    images are scored per channel (each replicated to RGB) and averaged.

    Args:
        vgg_weights_path, lin_weights_path: explicit file paths (None: the torch hub cache).
        input_range: intensity range of the images, e.g. (0, 1).
    """

    def __init__(
        self,
        vgg_weights_path: str | None = None,
        lin_weights_path: str | None = None,
        input_range: Sequence[float] = (0.0, 1.0),
        pretrained: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.network = LPIPSNetwork(vgg_weights_path, lin_weights_path, pretrained, input_range)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("LPIPSMetric needs a ground truth `y`.")
        check_image_pair(y_pred, y, spatial_dims=(2,), names=("y_pred", "y"))
        self.network.to(y_pred.device)
        with torch.no_grad():
            return self.network(y_pred.float(), y.float())[:, None]
