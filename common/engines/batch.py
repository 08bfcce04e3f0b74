"""Batch handling for inpainting engines: moving batch dicts to the device and splitting them into the
network input(s) and the inpainting target.

A batch is a dict holding at least the ground-truth ``image`` and the ``mask`` (1 = hole), plus any extras
(edge maps, grey images, labels...).
"""

from __future__ import annotations

import torch

from ..masking import MaskedInput, inpainting_target

__all__ = ["prepare_inpainting_batch", "InpaintingBatchPreparer"]


def prepare_inpainting_batch(batchdata: dict, device=None, non_blocking: bool = False, **kwargs) -> dict:
    """``prepare_batch`` for :class:`InpaintingGanTrainer`: the batch dict with every tensor on ``device``."""
    if not isinstance(batchdata, dict):
        raise TypeError(
            f"an inpainting batch must be a dict (image, mask, extras), got {type(batchdata).__name__}."
        )
    return {
        k: v.to(device=device, non_blocking=non_blocking, **kwargs) if isinstance(v, torch.Tensor) else v
        for k, v in batchdata.items()
    }


class InpaintingBatchPreparer:
    """``prepare_batch`` for MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator`` on inpainting batches.

    Returns ``(inputs, target, args, kwargs)``: the network input(s) from :class:`common.masking.MaskedInput`
    (first as ``inputs``, the rest as ``args``) and the target ``{"image": ground truth, "mask": mask}``
    (:func:`common.masking.inpainting_target`), which the engine stores as its ``label`` and passes to
    :class:`common.losses.MaskAwareLoss` and, through ``from_engine(["pred", "label"])``, to the RoI metrics of
    :mod:`common.metrics`. So the supervised 3D and gated-conv bundles need no engine of their own.

    Args:
        mode, masked_input_args: the arguments of :class:`common.masking.MaskedInput` (``image_key``,
            ``mask_key``, ``fill_value``, ``extra_keys``).
    """

    def __init__(self, mode: str = "concat", **masked_input_args) -> None:
        self.build = MaskedInput(mode, **masked_input_args)

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        batch = prepare_inpainting_batch(batchdata, device, non_blocking, **kwargs)
        inputs, *args = self.build(batch)
        target = inpainting_target(batch[self.build.image_key], batch[self.build.mask_key])
        return inputs, target, tuple(args), {}
