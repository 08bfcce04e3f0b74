"""Masked inputs, composites and the inpainting target: how an image and its hole mask (1 = hole) combine.

One definition each, for batches (training, evaluation) and for samples (inference preprocessing: MONAI
Label's bundle app passes the network ``data["image"]`` alone, so everything the network needs must be that
one channel-first tensor).

The mask always travels under its own name. Where an API passes only ``(y_pred, y)`` (MONAI's
``SupervisedTrainer`` loss call, ``IgniteMetricHandler``), ``y`` is the inpainting target
``{"image": ground truth, "mask": hole mask}`` of :func:`inpainting_target`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from common.checks import check_binary_mask, check_keys, check_same_spatial_shape

__all__ = [
    "INPUT_MODES",
    "CompositeOutputd",
    "MaskedInput",
    "MaskedInputd",
    "composite",
    "concat_masked_input",
    "fill_hole",
    "inpainting_target",
    "split_inpainting_target",
]

INPUT_MODES = ("concat", "masked_image", "separate")


def fill_hole(image: torch.Tensor, mask: torch.Tensor, fill_value: float = 0.0) -> torch.Tensor:
    """The image with its hole (mask 1) set to ``fill_value``; the mask must be binary."""
    check_binary_mask(mask)
    return image * (1 - mask) + fill_value * mask


def concat_masked_input(
    image: torch.Tensor,
    mask: torch.Tensor,
    extras: Sequence[torch.Tensor] = (),
    fill_value: float = 0.0,
    dim: int = 1,
) -> torch.Tensor:
    """``cat([fill_hole(image, mask), mask, *extras], dim)``: the "concat" input of the inpainting networks, one
    definition for batches (:class:`MaskedInput`) and samples (:class:`MaskedInputd`)."""
    return torch.cat([fill_hole(image, mask, fill_value), mask.to(image.dtype), *extras], dim=dim)


def composite(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Output inside the hole, ground truth elsewhere (gradients flow into ``output`` only in the hole)."""
    return mask * output + (1 - mask) * target


def inpainting_target(image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ground truth with its hole mask, by name: ``{"image": image, "mask": mask}``."""
    return {"image": image, "mask": mask}


def split_inpainting_target(target) -> tuple:
    """``(image, mask)`` of an :func:`inpainting_target`, or ``(images, masks)`` lists of a decollated list
    of them (what ``IgniteMetricHandler`` passes after MONAI's decollation)."""
    if isinstance(target, Mapping):
        check_keys(target, ("image", "mask"), "the inpainting target")
        return target["image"], target["mask"]
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, Mapping) for t in target):
        images, masks = zip(*(split_inpainting_target(t) for t in target))
        return list(images), list(masks)
    raise TypeError(
        f"an inpainting target is a dict {{'image', 'mask'}} or a list of them, got {type(target).__name__}."
    )


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
        check_keys(batch, (self.image_key, self.mask_key, *self.extra_keys), "the batch")
        image, mask = batch[self.image_key], batch[self.mask_key]
        extras = [batch[k] for k in self.extra_keys]
        if self.mode == "concat":
            return (concat_masked_input(image, mask, extras, self.fill_value),)
        masked = fill_hole(image, mask, self.fill_value)
        if self.mode == "masked_image":
            return (masked, *extras)
        return (masked, mask, *extras)


class MaskedInputd(MapTransform):
    """Write ``cat([image * (1 - mask) + fill_value * mask, mask, *extras])`` (channel dim) under ``output_key``.

    Built by :func:`concat_masked_input` like :class:`MaskedInput` in ``"concat"`` mode, so a network trained
    on batches built by ``InpaintingBatchPreparer(mode="concat")`` gets the same input at inference. ``keys``
    is the image (one key); the sources are left as they are unless ``output_key`` is one of them (the usual
    ``"image"`` replaces the image: copy it first where postprocessing needs it).

    Args:
        keys: the image key (channel first, values in the network's range).
        mask_key: the binary mask (1 = hole) of the image's spatial shape.
        extra_keys: further channel-first entries appended (e.g. an edge map).
        output_key: where the network input goes.
        fill_value: intensity put in the hole.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        mask_key: str = "mask",
        extra_keys: Sequence[str] = (),
        output_key: str = "image",
        fill_value: float = 0.0,
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"MaskedInputd builds one network input from one image key, got {self.keys}")
        self.mask_key, self.extra_keys = mask_key, list(extra_keys)
        self.output_key, self.fill_value = output_key, float(fill_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.keys[0]
        check_keys(d, (key, self.mask_key, *self.extra_keys))
        image = torch.as_tensor(d[key])
        mask = torch.as_tensor(d[self.mask_key]).to(image.dtype)
        extras = [torch.as_tensor(d[k]).to(image.dtype) for k in self.extra_keys]
        check_same_spatial_shape(image, dict(zip([self.mask_key, *self.extra_keys], [mask, *extras])))
        d[self.output_key] = concat_masked_input(image, mask, extras, self.fill_value, dim=0)
        return d


class CompositeOutputd(MapTransform):
    """Postprocessing: replace the prediction ``keys`` by its :func:`composite` with the ground truth, both
    taken from the :func:`inpainting_target` under ``target_key`` (the evaluator's ``label``)."""

    def __init__(self, keys: KeysCollection = "pred", target_key: str = "label") -> None:
        super().__init__(keys)
        self.target_key = target_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, mask = split_inpainting_target(d[self.target_key])
        for key in self.key_iterator(d):
            d[key] = composite(d[key], image, mask)
        return d
