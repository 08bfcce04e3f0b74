"""Pixel-space inpainting losses: hole/valid L1, total variation and Laplacian-pyramid L1.

All take ``(output, target, mask)`` with mask 1 = hole, so they can be mixed in :class:`WeightedSumLoss`;
the target is treated as a constant (detached).
MONAI has no masked L1 normalised as in Liu et al., no hole-restricted TV and no Laplacian-pyramid loss,
hence these implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_image_pair, check_inpainting_inputs
from ..masking import composite

__all__ = ["MaskedL1Loss", "HoleL1Loss", "ValidL1Loss", "TotalVariationLoss", "LaplacianPyramidLoss"]

_SOURCES = ("output", "composite")


def _check_source(on: str) -> str:
    if on not in _SOURCES:
        raise ValueError(f"`on` must be one of {_SOURCES}, got {on!r}.")
    return on


class MaskedL1Loss(nn.Module):
    """L1 over the hole (``region='hole'``) or the known pixels (``region='valid'``), 2D or 3D.

    Normalised as in Liu et al. (2018): the masked absolute error is summed and divided by the number of
    elements of the image (C*H*W[*D], not the number of masked pixels), then averaged over the batch. This
    is ``mean(|m * (output - target)|)`` with ``m = mask`` or ``1 - mask`` broadcast over channels.
    """

    def __init__(self, region: str = "hole") -> None:
        super().__init__()
        if region not in ("hole", "valid"):
            raise ValueError(f"region must be 'hole' or 'valid', got {region!r}.")
        self.region = region

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inpainting_inputs(output, target, mask)
        target = target.detach()
        weight = mask if self.region == "hole" else 1 - mask
        return torch.mean(torch.abs(weight * (output - target)))


class HoleL1Loss(MaskedL1Loss):
    """:class:`MaskedL1Loss` on the hole."""

    def __init__(self) -> None:
        super().__init__("hole")


class ValidL1Loss(MaskedL1Loss):
    """:class:`MaskedL1Loss` on the known pixels."""

    def __init__(self) -> None:
        super().__init__("valid")


class TotalVariationLoss(nn.Module):
    """Anisotropic L1 total variation, 2D or 3D.

    ``region='hole_dilation'`` (default, Liu et al. 2018): on the composite image, only differences between
    neighbours that both lie in P, the 1-pixel (3x3[x3]) dilation of the hole. ``region='image'``: plain TV
    over every neighbour pair. Either way the sum of absolute differences along each axis is divided by the
    number of image elements B*C*H*W[*D] (Liu's 1/N_{I_comp}), and the axes are summed.

    Args:
        region: ``"hole_dilation"`` or ``"image"``.
        on: image to regularise, ``"composite"`` (default) or ``"output"``.
    """

    def __init__(self, region: str = "hole_dilation", on: str = "composite") -> None:
        super().__init__()
        if region not in ("hole_dilation", "image"):
            raise ValueError(f"region must be 'hole_dilation' or 'image', got {region!r}.")
        self.region = region
        self.on = _check_source(on)

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inpainting_inputs(output, target, mask)
        image = composite(output, target.detach(), mask) if self.on == "composite" else output
        spatial = image.ndim - 2
        if self.region == "hole_dilation":
            pool = F.max_pool2d if spatial == 2 else F.max_pool3d
            region = pool(mask.to(image.dtype), kernel_size=3, stride=1, padding=1)
        total = image.new_zeros(())
        for axis in range(2, image.ndim):
            n = image.shape[axis]
            diff = torch.abs(image.narrow(axis, 1, n - 1) - image.narrow(axis, 0, n - 1))
            if self.region == "hole_dilation":
                diff = diff * region.narrow(axis, 1, n - 1) * region.narrow(axis, 0, n - 1)
            total = total + diff.sum()
        return total / image.numel()


class LaplacianPyramidLoss(nn.Module):
    """Laplacian-pyramid L1 (Bojanowski et al. 2018): sum_j 2^(2j) * mean|L^j(x) - L^j(y)|, 2D.

    The pyramid has ``levels`` levels: j = 0 .. levels-2 are band-pass images
    ``L^j = G_j - blur(G_j)`` with ``G_0 = x`` and ``G_{j+1} = avgpool2(blur(G_j))``; the last level is the
    low-pass residual ``G_{levels-1}``. ``blur`` is the 5x5 binomial kernel [1,4,6,4,1]^2/256 with reflect
    padding. j = 0 is the finest level, so the default weights (1, 4, 16) stress coarse structure.
    Each level's L1 is the mean over its elements.

    Args:
        levels: number of pyramid levels (default 3).
        level_weights: override the 2^(2j) weights (one per level).
        on: ``"output"`` (default) or ``"composite"``.
    """

    def __init__(
        self, levels: int = 3, level_weights: Sequence[float] | None = None, on: str = "output"
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}.")
        weights = [2.0 ** (2 * j) for j in range(levels)] if level_weights is None else list(level_weights)
        if len(weights) != levels:
            raise ValueError(f"level_weights needs {levels} values, got {len(weights)}.")
        self.levels = levels
        self.level_weights = weights
        self.on = _check_source(on)
        binomial = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        self.register_buffer(
            "kernel", (torch.outer(binomial, binomial) / 256.0)[None, None], persistent=False
        )

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(padded, self.kernel.to(x.dtype).expand(channels, 1, 5, 5), groups=channels)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``levels`` pyramid levels of ``x`` (finest first, low-pass residual last)."""
        out = []
        current = x
        for _ in range(self.levels - 1):
            if min(current.shape[2:]) < 3:
                raise ValueError(
                    f"image too small for a {self.levels}-level pyramid: shape {tuple(x.shape)}."
                )
            blurred = self._blur(current)
            out.append(current - blurred)
            current = F.avg_pool2d(blurred, 2)
        out.append(current)
        return out

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None:
            check_inpainting_inputs(output, target, mask, spatial_dims=(2,))
        else:
            check_image_pair(output, target, spatial_dims=(2,))
        target = target.detach()
        if self.on == "composite":
            if mask is None:
                raise ValueError("LaplacianPyramidLoss(on='composite') needs the mask.")
            output = composite(output, target, mask)
        loss = output.new_zeros(())
        for weight, a, b in zip(self.level_weights, self.pyramid(output), self.pyramid(target)):
            loss = loss + weight * torch.mean(torch.abs(a - b))
        return loss
