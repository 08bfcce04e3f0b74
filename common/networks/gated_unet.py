"""Gated-convolution and partial-convolution inpainting U-Nets (autoinpainting: GconvLap, GConv, PConv).

Astaraki et al.'s inpainting network is Liu et al.'s partial-convolution U-Net (2018) with every convolution
replaced by a gated convolution (Yu et al., DeepFill v2): ``feature = act(BN(conv_f(x))) * sigmoid(conv_g(x))``.
GconvLap and GConv are the *same* network, trained with and without the Laplacian-pyramid loss term; PConv is
the partial-convolution baseline. MONAI has neither gated nor partial convolutions, hence this module.

Layout (``depth`` 8 by default):

- encoder: ``depth`` blocks of stride 2 (kernel sizes 7, 5, 5, 3, ... as in Liu et al.), optional BN, ReLU;
- decoder: ``depth`` blocks, each nearest-neighbour upsampling to the skip's size, concatenation with the skip
  (encoder features; at full resolution the masked image and the mask), a stride-1 3x3 gated/partial conv,
  optional BN, LeakyReLU(0.2). Partial convolutions also concatenate the skip's mask (per channel);
- output: an ordinary 3x3 convolution + sigmoid on the last decoder features, the masked image and the mask.

Input: one tensor ``cat([masked_image, mask], dim=1)`` with the mask (1 = hole) as the *last* channel, so
1-N image channels (CT, PET, PET+CT) work and MONAI's ``verify_net_in_out`` can feed a single tensor.
Any spatial size works (upsampling goes to the skip's size). Output: the inpainted image in [0, 1] (raw network
output, not the composite).

``freeze_encoder_bn=True`` (phase 2 of training) keeps the encoder's BatchNorm layers in eval mode (running
statistics not updated, as Liu et al.'s fine-tuning phase) with their affine parameters frozen, whatever
``train()`` is called with; the decoder's BN stays active.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GatedConv2d", "PartialConv2d", "GatedUNet", "CONV_TYPES"]

CONV_TYPES = ("gated", "partial")


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {name!r}.")


class GatedConv2d(nn.Module):
    """Gated convolution block: ``act(BN(conv_f(x))) * sigmoid(conv_g(x))``.

    ``forward(x, mask)`` returns ``(features, mask)`` with the mask passed through unchanged (a gated
    convolution learns its own soft mask), so gated and partial blocks share one interface.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.feature = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm)
        self.gating = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = _activation(activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.act(self.norm(self.feature(x))) * torch.sigmoid(self.gating(x)), mask


class PartialConv2d(nn.Module):
    """Partial convolution block (Liu et al. 2018): ``W^T (X * M) * sum(1) / sum(M) + b`` where the window
    holds known pixels, 0 elsewhere; the updated mask is 1 where the window saw any known pixel. Then BN
    and activation.

    ``mask`` is the *valid* mask (1 = known) with 1 channel (shared by all input channels) or ``in_channels``
    channels; ``sum(1)`` is the window size ``in_channels * k * k``. Returns ``(features, updated_mask)`` with a
    1-channel updated mask.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.in_channels, self.kernel_size, self.stride = in_channels, kernel_size, stride
        self.padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, self.padding, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if not batch_norm else None
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = _activation(activation)
        self.register_buffer("window", torch.ones(1, 1, kernel_size, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.detach()
        per_pixel = mask.sum(1, keepdim=True) * (self.in_channels if mask.shape[1] == 1 else 1)
        known = F.conv2d(per_pixel, self.window, stride=self.stride, padding=self.padding)
        updated = (known > 0).to(x.dtype)
        ratio = self.in_channels * self.kernel_size**2 / known.clamp(min=1e-8) * updated
        out = self.conv(x * mask) * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return self.act(self.norm(out * updated)), updated


class GatedUNet(nn.Module):
    """Inpainting U-Net of gated (``conv="gated"``: GconvLap/GConv) or partial (``conv="partial"``: PConv)
    convolutions; see the module docstring.

    Args:
        in_channels: image channels (the network input has ``in_channels + 1`` channels, the mask last).
        out_channels: output image channels (usually ``in_channels``).
        channels: encoder widths, one per level (default Liu et al.'s 64-128-256-512x5, 8 levels).
        kernel_sizes: encoder kernel sizes, one per level (default 7, 5, 5, 3, 3, 3, 3, 3).
        conv: ``"gated"`` or ``"partial"``.
        batch_norm: BatchNorm after each encoder/decoder convolution.
        freeze_encoder_bn: phase-2 fine-tuning (see module docstring).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512, 512, 512, 512, 512),
        kernel_sizes: Sequence[int] = (7, 5, 5, 3, 3, 3, 3, 3),
        conv: str = "gated",
        batch_norm: bool = True,
        freeze_encoder_bn: bool = False,
    ) -> None:
        super().__init__()
        if conv not in CONV_TYPES:
            raise ValueError(f"conv must be one of {CONV_TYPES}, got {conv!r}.")
        if len(channels) == 0 or len(channels) != len(kernel_sizes):
            raise ValueError(
                f"channels and kernel_sizes need one entry per level, got {len(channels)} and {len(kernel_sizes)}."
            )
        if in_channels < 1 or out_channels < 1 or min(channels) < 1 or min(kernel_sizes) < 1:
            raise ValueError("in_channels, out_channels, channels and kernel_sizes must be positive.")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.partial = conv == "partial"
        block = PartialConv2d if self.partial else GatedConv2d
        first = in_channels if self.partial else in_channels + 1  # partial convs take the mask separately
        widths = [first, *channels]
        self.encoder = nn.ModuleList(
            block(widths[i], widths[i + 1], kernel_sizes[i], 2, batch_norm, "relu")
            for i in range(len(channels))
        )
        # decoder block i (deepest first) fuses the upsampled features with the skip of level depth-1-i
        self.decoder = nn.ModuleList()
        current = channels[-1]
        for level in range(len(channels) - 1, -1, -1):
            skip = widths[level]
            out = widths[level] if level > 0 else channels[0]
            self.decoder.append(block(current + skip, out, 3, 1, batch_norm, "leaky_relu"))
            current = out
        self.output = nn.Conv2d(current + in_channels + 1, out_channels, 3, padding=1)
        self.freeze_encoder_bn = bool(freeze_encoder_bn)
        self.set_encoder_bn_frozen(self.freeze_encoder_bn)

    def set_encoder_bn_frozen(self, frozen: bool = True) -> None:
        """Freeze (phase 2) or release the encoder's BatchNorm layers: eval mode and no gradient."""
        self.freeze_encoder_bn = bool(frozen)
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> GatedUNet:
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels + 1:
            raise ValueError(
                f"expected (B, {self.in_channels + 1}, H, W): {self.in_channels} masked image channel(s) and the "
                f"mask (1 = hole) last, got {list(x.shape)}."
            )
        hole = x[:, -1:]
        masked = x[:, :-1] * (1 - hole)
        valid = 1 - hole
        h = masked if self.partial else torch.cat([masked, hole], 1)
        m = valid
        features = [h]
        masks = [m]
        for block in self.encoder:
            h, m = block(h, m)
            features.append(h)
            masks.append(m)
        level = len(features) - 2
        for block in self.decoder:
            skip = features[level]
            size = [skip.shape[2], skip.shape[3]]
            h = F.interpolate(h, size=size, mode="nearest")
            if self.partial:
                m = F.interpolate(m, size=size, mode="nearest")
                skip_mask = masks[level]
                m = torch.cat(
                    [m.expand(-1, h.shape[1], -1, -1), skip_mask.expand(-1, skip.shape[1], -1, -1)], 1
                )
            h, m = block(torch.cat([h, skip], 1), m)
            level -= 1
        return torch.sigmoid(self.output(torch.cat([h, masked, hole], 1)))
