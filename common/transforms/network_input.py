"""Network input of one inpainting sample, built in preprocessing (MONAI Label's bundle app passes the
network ``data["image"]`` alone, so everything the network needs must be that one channel-first tensor)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from common.losses.utils import check_binary_mask

__all__ = ["MaskedInputd", "concat_masked_input", "fill_hole"]


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
    definition for batches (training, :class:`common.engines.MaskedInput`) and samples (:class:`MaskedInputd`)."""
    return torch.cat([fill_hole(image, mask, fill_value), mask.to(image.dtype), *extras], dim=dim)


class MaskedInputd(MapTransform):
    """Write ``cat([image * (1 - mask) + fill_value * mask, mask, *extras])`` (channel dim) under ``output_key``.

    Built by :func:`concat_masked_input` like :class:`common.engines.MaskedInput` in ``"concat"`` mode, so a
    network trained on batches built by ``InpaintingBatchPreparer(mode="concat")`` gets the same input at
    inference. ``keys`` is the image (one key); the sources are left as they are unless ``output_key``
    is one of them (the usual ``"image"`` replaces the image: copy it first where postprocessing needs it).

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
        missing = [k for k in (key, self.mask_key, *self.extra_keys) if k not in d]
        if missing:
            raise KeyError(f"the sample lacks {missing}; it has {list(d)}")
        image = torch.as_tensor(d[key])
        mask = torch.as_tensor(d[self.mask_key]).to(image.dtype)
        extras = [torch.as_tensor(d[k]).to(image.dtype) for k in self.extra_keys]
        for name, part in zip([self.mask_key, *self.extra_keys], [mask, *extras]):
            if part.shape[1:] != image.shape[1:]:
                raise ValueError(
                    f"{name!r} has spatial shape {tuple(part.shape[1:])}, the image {tuple(image.shape[1:])}"
                )
        d[self.output_key] = concat_masked_input(image, mask, extras, self.fill_value, dim=0)
        return d
