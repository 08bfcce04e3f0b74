"""Input checks shared by the inpainting transforms, losses, metrics and engines (``common``'s bottom layer).

Mask convention: 1 = hole (to inpaint), 0 = known. Images are batch-first, channel-first (B, C, H, W[, D]).
A mask has 1 channel (broadcast over the image channels) or as many channels as the image.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_binary_mask",
    "check_finite",
    "check_image_pair",
    "check_inpainting_inputs",
    "check_keys",
    "check_same_spatial_shape",
]


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds NaN or infinity, saying which (an Inf is not reported as a NaN)."""
    if not torch.isfinite(x).all():
        found = [w for w, bad in (("NaN", torch.isnan(x).any()), ("Inf", torch.isinf(x).any())) if bad]
        raise ValueError(f"{name} contains {' and '.join(found)} values.")


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


def check_same_spatial_shape(
    image: torch.Tensor, parts: dict[str, torch.Tensor], first_spatial_dim: int = 1
) -> None:
    """Raise ValueError unless every named tensor of ``parts`` has ``image``'s spatial shape (the dims from
    ``first_spatial_dim`` on: 1 for a channel-first sample, 2 for a batch)."""
    expected = tuple(image.shape[first_spatial_dim:])
    for name, part in parts.items():
        if tuple(part.shape[first_spatial_dim:]) != expected:
            raise ValueError(
                f"{name!r} has spatial shape {tuple(part.shape[first_spatial_dim:])}, the image {expected}"
            )


def check_keys(data, keys, what: str = "the sample") -> None:
    """Raise KeyError naming the ``keys`` that ``data`` (a dict: sample, batch, engine output) lacks."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise KeyError(f"{what} lacks {missing}; it has {list(data)}.")
