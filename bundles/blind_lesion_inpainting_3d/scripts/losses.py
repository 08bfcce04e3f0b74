"""Deep supervision of the space-to-depth U-Net's two outputs, built on MONAI's ``DeepSupervisionLoss``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss
from monai.networks.utils import pixelunshuffle
from torch import nn

__all__ = ["InpaintingDeepSupervisionLoss", "space_to_depth_target"]


def space_to_depth_target(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Rearrange ``target`` (B, C, *S) into the space-to-depth form of ``output`` (B, C*f^d, *S/f).

    The block size f is inferred from the shapes; the rearrangement is MONAI's ``pixelunshuffle`` (the
    one the space-to-depth 3D U-Net uses), so channel ``c * f^d + (i * f + j) [* f + k]`` holds
    ``target[c, f*y + i, f*x + j, ...]`` as in ``torch.nn.functional.pixel_unshuffle``.
    """
    spatial = target.ndim - 2
    ratios = [t / o for t, o in zip(target.shape[2:], output.shape[2:])]
    f = int(ratios[0])
    if any(r != f for r in ratios) or f < 1 or output.shape[1] != target.shape[1] * f**spatial:
        raise ValueError(
            f"cannot map target {tuple(target.shape)} to space-to-depth output {tuple(output.shape)}: needs an "
            f"integer block size f with output channels = C * f^{spatial}."
        )
    return pixelunshuffle(target, spatial, f)


class InpaintingDeepSupervisionLoss(DeepSupervisionLoss):
    """``sum_l w_l * loss(output_l, resize(target))`` over the outputs of a deeply supervised network.

    MONAI's ``DeepSupervisionLoss`` resizes the target with nearest-neighbour interpolation (right for
    labels); intensity targets are resized here with ``interp_mode`` ("area" by default, an average) or
    passed through ``target_transform(target, output)``, e.g. :func:`space_to_depth_target` for outputs
    in space-to-depth form.

    Args:
        loss: the per-output loss, default ``torch.nn.MSELoss()``.
        weight_mode / weights: as in MONAI (default ``"same"``: weight 1 for every output).
        interp_mode: ``F.interpolate`` mode used when shapes differ and no ``target_transform`` is given.
        target_transform: callable ``(target, output) -> target for that output``.
        weight_channel: the target's last channel is a per-voxel weight (e.g. from
            ``common.transforms.AppendDifferenceWeightd``), resized/rearranged with the target; each output's loss
            is then ``sum(w * loss) / sum(w)`` with ``loss`` evaluated per element (it needs a ``reduction``
            attribute: MSE, L1, smooth L1).
    """

    def __init__(
        self,
        loss: nn.Module | None = None,
        weight_mode: str = "same",
        weights: Sequence[float] | None = None,
        interp_mode: str = "area",
        target_transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        weight_channel: bool = False,
    ) -> None:
        loss = nn.MSELoss() if loss is None else loss
        if weight_channel:
            if not hasattr(loss, "reduction"):
                raise ValueError(f"weight_channel needs an element-wise loss with a `reduction`, got {type(loss).__name__}")
            loss = copy.deepcopy(loss)
            loss.reduction = "none"
        super().__init__(loss, weight_mode, None if weights is None else list(weights))
        self.interp_mode = interp_mode
        self.target_transform = target_transform
        self.weight_channel = weight_channel

    def _resize(self, target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if self.target_transform is not None:
            return self.target_transform(target, output)
        if output.shape[2:] != target.shape[2:]:
            return F.interpolate(target, size=output.shape[2:], mode=self.interp_mode)
        return target

    def get_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.weight_channel:
            # split off the weight and give it the target's channels so it is resized/rearranged the same way
            target, weight = target[:, :-1], target[:, -1:]
            weight = self._resize(weight.expand_as(target).contiguous(), input)
        target = self._resize(target, input)
        if input.shape != target.shape:
            raise ValueError(f"output {tuple(input.shape)} and resized target {tuple(target.shape)} differ.")
        if weight is None:
            return self.loss(input, target)
        return (self.loss(input, target) * weight).sum() / weight.sum()

    def forward(self, input: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(input, torch.Tensor):
            input = [input]
        if not input:
            raise ValueError("deep supervision needs at least one output.")
        return super().forward(list(input), target)
