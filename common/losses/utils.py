"""Input checks and tensor helpers shared by the inpainting losses, metrics and engines.

Mask convention: 1 = hole (to inpaint), 0 = known. Images are batch-first, channel-first (B, C, H, W[, D]).
A mask has 1 channel (broadcast over the image channels) or as many channels as the image.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_finite",
    "check_binary_mask",
    "check_image_pair",
    "check_inpainting_inputs",
    "composite",
    "pack_mask",
    "unpack_mask",
]


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds NaN or infinity."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")


def check_binary_mask(mask: torch.Tensor, name: str = "mask") -> None:
    """Raise ValueError unless every value of ``mask`` is exactly 0 or 1."""
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError(f"{name} must be binary (1 = hole, 0 = known), got values outside {{0, 1}}.")


def check_image_pair(
    output: torch.Tensor,
    target: torch.Tensor,
    spatial_dims: tuple[int, ...] = (2, 3),
    names=("output", "target"),
) -> None:
    """Raise ValueError unless ``output`` and ``target`` are finite tensors of one shape (B, C, *spatial)."""
    for name, x in zip(names, (output, target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if output.shape != target.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}."
        )
    if output.ndim - 2 not in spatial_dims:
        raise ValueError(
            f"expected (B, C, *spatial) with {' or '.join(map(str, spatial_dims))} spatial dims, "
            f"got shape {tuple(output.shape)}."
        )
    check_finite(names[0], output)
    check_finite(names[1], target)


def check_inpainting_inputs(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, spatial_dims: tuple[int, ...] = (2, 3)
) -> None:
    """Check an (output, target, mask) triple: same image shapes, finite values, a binary broadcastable mask."""
    check_image_pair(output, target, spatial_dims)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}.")
    if (
        mask.ndim != output.ndim
        or mask.shape[0] != output.shape[0]
        or mask.shape[2:] != output.shape[2:]
        or mask.shape[1] not in (1, output.shape[1])
    ):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not fit image shape {tuple(output.shape)}: expected "
            f"(B, 1 or C, *spatial)."
        )
    check_binary_mask(mask)


def composite(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Output inside the hole, ground truth elsewhere (gradients flow into ``output`` only in the hole)."""
    return mask * output + (1 - mask) * target


def pack_mask(target: torch.Tensor, mask: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Append a 1-channel ``mask`` to ``target`` along ``channel_dim`` (1 for batches, 0 for single images).

    The packed form carries the mask through APIs that pass only ``(y_pred, y)``: MONAI's
    ``SupervisedTrainer`` loss call and ``IgniteMetricHandler``. :func:`unpack_mask` reverses it.
    """
    if mask.ndim != target.ndim or mask.shape[channel_dim] != 1:
        raise ValueError(
            f"pack_mask needs a 1-channel mask of the target's dimensionality, got mask {tuple(mask.shape)} "
            f"for target {tuple(target.shape)}."
        )
    return torch.cat([target, mask.to(target.dtype)], dim=channel_dim)


def unpack_mask(packed: torch.Tensor, channel_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a packed tensor from :func:`pack_mask` into (target, mask); the mask is the last channel."""
    if packed.shape[channel_dim] < 2:
        raise ValueError(
            f"a packed target needs >= 2 channels (image channels + 1 mask channel), got shape {tuple(packed.shape)}."
        )
    target, mask = packed.split([packed.shape[channel_dim] - 1, 1], dim=channel_dim)
    return target, mask
