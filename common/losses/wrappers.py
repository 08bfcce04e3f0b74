"""Adapters that let ``(output, target, mask)`` losses run inside MONAI's and this project's engines."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..masking import split_inpainting_target

__all__ = ["MaskAwareLoss", "OutputLoss", "select_output"]


def select_output(pred, key: int | str | None = None) -> torch.Tensor:
    """Pick one output of a generator that returns a tensor, a tuple/list or a dict (``key=None``: the
    tensor itself, the first item or the ``"image"`` entry)."""
    if isinstance(pred, torch.Tensor):
        if key not in (None, 0):
            raise ValueError(f"the network returns a single tensor; cannot select output {key!r}.")
        return pred
    if isinstance(pred, dict):
        key = "image" if key is None else key
        if key not in pred:
            raise KeyError(f"output {key!r} not among the network outputs {list(pred)}.")
        return pred[key]
    if isinstance(pred, (list, tuple)):
        index = 0 if key is None else key
        if not isinstance(index, int) or not -len(pred) <= index < len(pred):
            raise ValueError(f"output index {key!r} invalid for a network returning {len(pred)} outputs.")
        return pred[index]
    raise TypeError(f"unsupported network output type {type(pred).__name__}.")


class MaskAwareLoss(nn.Module):
    """Loss for ``monai.engines.SupervisedTrainer``: ``loss(pred, target)`` -> ``loss(pred, image, mask)``.

    ``SupervisedTrainer`` calls ``loss_function(pred, label)``; with
    :class:`common.engines.InpaintingBatchPreparer` the label is the inpainting target
    ``{"image": ground truth, "mask": mask}`` (:func:`common.masking.inpainting_target`).

    Args:
        loss: an ``(output, target, mask)`` loss (e.g. :class:`WeightedSumLoss`), or an ``(output, target)``
            one with ``pass_mask=False`` (e.g. ``torch.nn.MSELoss()``).
        pass_mask: whether ``loss`` takes the mask.
    """

    def __init__(self, loss: Callable, pass_mask: bool = True) -> None:
        super().__init__()
        self.loss = loss
        self.pass_mask = pass_mask

    def forward(self, pred, target: dict[str, torch.Tensor]) -> torch.Tensor:
        image, mask = split_inpainting_target(target)
        return self.loss(pred, image, mask) if self.pass_mask else self.loss(pred, image)


class OutputLoss(nn.Module):
    """Generator-loss term for :class:`common.engines.InpaintingGanTrainer`: ``loss(pred, batch)`` ->
    ``inner(output, batch[target_key], batch[mask_key])``.

    Args:
        loss: an ``(output, target, mask)`` loss, or ``(output, target)`` with ``mask_key=None``.
        output_key: which generator output to use (index or dict key, see :func:`select_output`).
        target_key: batch key of the ground truth for that output (e.g. ``"edge"`` for an edge branch).
        mask_key: batch key of the mask, None for mask-free losses.
    """

    def __init__(
        self,
        loss: Callable,
        output_key: int | str | None = None,
        target_key: str = "image",
        mask_key: str | None = "mask",
    ) -> None:
        super().__init__()
        self.loss = loss
        self.output_key = output_key
        self.target_key = target_key
        self.mask_key = mask_key

    def forward(self, pred, batch: dict):
        output = select_output(pred, self.output_key)
        if self.mask_key is None:
            return self.loss(output, batch[self.target_key])
        return self.loss(output, batch[self.target_key], batch[self.mask_key])
