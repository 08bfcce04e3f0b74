"""Batch handling for inpainting: moving batches to the device and building the networks' inputs.

A batch is a dict holding at least the ground-truth ``image`` and the ``mask`` (1 = hole), plus any extras
(edge maps, grey images, labels...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..losses.utils import pack_mask
from ..transforms.network_input import concat_masked_input, fill_hole

__all__ = ["INPUT_MODES", "MaskedInput", "prepare_inpainting_batch", "InpaintingBatchPreparer"]

INPUT_MODES = ("concat", "masked_image", "separate")


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


class MaskedInput:
    """Build a network's positional inputs from a batch: the image with its hole filled, the mask, extras.

    Modes:
        - ``"concat"``: one tensor ``cat([masked_image, mask, *extras], dim=1)``;
        - ``"masked_image"``: the masked image alone;
        - ``"separate"``: ``(masked_image, mask, *extras)`` as separate arguments (gated/partial-conv
          networks called as ``net(x, mask)``).

    Args:
        mode: one of :data:`INPUT_MODES`.
        image_key, mask_key: batch keys.
        fill_value: intensity put in the hole (0 by default).
        extra_keys: further batch entries appended (e.g. an edge map).
    """

    def __init__(
        self,
        mode: str = "concat",
        image_key: str = "image",
        mask_key: str = "mask",
        fill_value: float = 0.0,
        extra_keys: Sequence[str] = (),
    ) -> None:
        if mode not in INPUT_MODES:
            raise ValueError(f"mode must be one of {INPUT_MODES}, got {mode!r}.")
        self.mode, self.image_key, self.mask_key = mode, image_key, mask_key
        self.fill_value, self.extra_keys = float(fill_value), list(extra_keys)

    def __call__(self, batch: dict) -> tuple[torch.Tensor, ...]:
        missing = [k for k in (self.image_key, self.mask_key, *self.extra_keys) if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing}; it has {list(batch)}.")
        image, mask = batch[self.image_key], batch[self.mask_key]
        extras = [batch[k] for k in self.extra_keys]
        if self.mode == "concat":
            return (concat_masked_input(image, mask, extras, self.fill_value),)
        masked = fill_hole(image, mask, self.fill_value)
        if self.mode == "masked_image":
            return (masked, *extras)
        return (masked, mask, *extras)


class InpaintingBatchPreparer:
    """``prepare_batch`` for MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator`` on inpainting batches.

    Returns ``(inputs, packed_label, args, kwargs)``: the network input(s) from :class:`MaskedInput` (first
    as ``inputs``, the rest as ``args``) and the ground truth with the mask packed as its last channel, which
    :class:`common.losses.MaskAwareLoss` and the RoI metrics of :mod:`common.metrics` unpack again. So the
    supervised 3D and gated-conv bundles need no engine of their own.

    Args:
        mode, image_key, mask_key, fill_value, extra_keys: see :class:`MaskedInput`.
    """

    def __init__(
        self,
        mode: str = "concat",
        image_key: str = "image",
        mask_key: str = "mask",
        fill_value: float = 0.0,
        extra_keys: Sequence[str] = (),
    ) -> None:
        self.build = MaskedInput(mode, image_key, mask_key, fill_value, extra_keys)

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        batch = prepare_inpainting_batch(batchdata, device, non_blocking, **kwargs)
        inputs, *args = self.build(batch)
        return inputs, pack_mask(batch[self.build.image_key], batch[self.build.mask_key]), tuple(args), {}
