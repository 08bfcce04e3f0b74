"""MultiResUNet (Ibtehaz & Rahman, Neural Networks 2020) and the MedGAN-style cascade of them (ipA-MedGAN).

MONAI has no MultiResUNet, so it is built here from MONAI's ``Convolution`` blocks (conv + batch norm +
activation), following the authors' reference implementation:

- **MultiRes block** with ``U`` filters and ``alpha = 1.67``: ``W = alpha * U``; three cascaded 3x3
  convolutions with ``int(0.167 W)``, ``int(0.333 W)``, ``int(0.5 W)`` filters (approximating a 3x3, 5x5 and
  7x7 receptive field), their outputs concatenated and batch-normalised, plus a 1x1 convolution shortcut; sum,
  ReLU, batch norm.
- **ResPath** of length ``n``: ``n`` units of a 3x3 convolution with a 1x1 convolution shortcut (sum, ReLU,
  batch norm), on the encoder features before they are concatenated into the decoder. Lengths decrease with
  depth (4, 3, 2, 1 for the four skip connections), because deeper features need less processing to match
  the decoder's.
- Encoder: MultiRes blocks with ``U = base_filters * 2**level`` and 2x2 max pooling; decoder: 2x2 transposed
  convolutions, concatenation with the ResPath output, MultiRes block; a 1x1 output convolution.

:class:`Cascade` chains networks, each refining the previous one's output, as MedGAN's CasNet chains
U-blocks; :class:`CascadedMultiResUNet` is the cascade of ``num_stages`` MultiResUNets (the generator of
ipA-MedGAN: two stages) and ``scripts.networks.unet_cascade`` the CasNet of MONAI U-Nets (the MedGAN baseline).
The networks are TorchScript compatible and work in 2D (default) or 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act, Norm, Pool
from torch import nn

__all__ = [
    "MultiResBlock",
    "ResPath",
    "MultiResUNet",
    "Cascade",
    "CascadedMultiResUNet",
    "multires_block_channels",
]

OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", None)


def multires_block_channels(filters: int, alpha: float = 1.67) -> tuple[int, int, int]:
    """Filters of the three cascaded 3x3 convolutions of a MultiRes block with ``filters`` (U) and ``alpha``."""
    width = alpha * filters
    channels = (int(width * 0.167), int(width * 0.333), int(width * 0.5))
    if min(channels) < 1:
        raise ValueError(
            f"a MultiRes block with {filters} filters and alpha={alpha} has a convolution without channels "
            f"{channels}; use at least 4 filters."
        )
    return channels


def _conv_bn(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, relu: bool
) -> Convolution:
    """Convolution + batch norm (+ ReLU): the reference implementation's ``conv2d_bn``."""
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        act=Act.RELU if relu else None,
        norm=Norm.BATCH,
        bias=False,
        adn_ordering="NA",
    )


class MultiResBlock(nn.Module):
    """Three cascaded 3x3 convolutions concatenated, plus a 1x1 residual shortcut (see the module docstring).

    Output channels: ``sum(multires_block_channels(filters, alpha))``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, filters: int, alpha: float = 1.67) -> None:
        super().__init__()
        c1, c2, c3 = multires_block_channels(filters, alpha)
        self.out_channels = c1 + c2 + c3
        self.conv3 = _conv_bn(spatial_dims, in_channels, c1, 3, relu=True)
        self.conv5 = _conv_bn(spatial_dims, c1, c2, 3, relu=True)
        self.conv7 = _conv_bn(spatial_dims, c2, c3, 3, relu=True)
        self.shortcut = _conv_bn(spatial_dims, in_channels, self.out_channels, 1, relu=False)
        norm = Norm[Norm.BATCH, spatial_dims]
        self.concat_norm = norm(self.out_channels)
        self.out_norm = norm(self.out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3(x)
        b = self.conv5(a)
        c = self.conv7(b)
        out = self.concat_norm(torch.cat([a, b, c], dim=1)) + self.shortcut(x)
        return self.out_norm(self.relu(out))


class _ResPathUnit(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = _conv_bn(spatial_dims, in_channels, filters, 3, relu=True)
        self.shortcut = _conv_bn(spatial_dims, in_channels, filters, 1, relu=False)
        self.relu = nn.ReLU()
        self.norm = Norm[Norm.BATCH, spatial_dims](filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.relu(self.conv(x) + self.shortcut(x)))


class ResPath(nn.Sequential):
    """``length`` units of a 3x3 convolution with a 1x1 convolution shortcut, mapping to ``filters`` channels."""

    def __init__(self, spatial_dims: int, in_channels: int, filters: int, length: int) -> None:
        if length < 1:
            raise ValueError(f"a ResPath needs length >= 1, got {length}.")
        super().__init__(
            *[_ResPathUnit(spatial_dims, in_channels if i == 0 else filters, filters) for i in range(length)]
        )


class _EncoderStage(nn.Module):
    """MultiRes block; returns (skip features through the ResPath, pooled features for the next level)."""

    def __init__(
        self, spatial_dims: int, in_channels: int, filters: int, alpha: float, path_length: int
    ) -> None:
        super().__init__()
        self.block = MultiResBlock(spatial_dims, in_channels, filters, alpha)
        self.out_channels = self.block.out_channels
        self.res_path = ResPath(spatial_dims, self.out_channels, filters, path_length)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.block(x)
        return self.res_path(features), self.pool(features)


class _DecoderStage(nn.Module):
    """2x transposed-convolution upsampling, concatenation with the skip features, MultiRes block."""

    def __init__(
        self, spatial_dims: int, in_channels: int, skip_channels: int, filters: int, alpha: float
    ) -> None:
        super().__init__()
        self.up = Convolution(
            spatial_dims,
            in_channels,
            filters,
            strides=2,
            kernel_size=2,
            padding=0,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
        )
        self.block = MultiResBlock(spatial_dims, filters + skip_channels, filters, alpha)
        self.out_channels = self.block.out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class MultiResUNet(nn.Module):
    """MultiResUNet with ``len(filters)`` levels (paper: 32, 64, 128, 256, 512 and ResPath lengths 4, 3, 2, 1).

    Spatial sizes must be divisible by ``2 ** (len(filters) - 1)``.

    Args:
        spatial_dims: 2 (default) or 3.
        in_channels, out_channels: input and output channels.
        filters: ``U`` of each level's MultiRes block, coarsest last.
        alpha: MultiRes width factor (1.67 in the paper).
        res_path_lengths: one per skip connection (``len(filters) - 1``); None = ``len(filters) - 1, ..., 1``.
        out_activation: ``"sigmoid"`` (images in [0, 1]), ``"tanh"`` ([-1, 1]) or None (linear).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        filters: Sequence[int] = (32, 64, 128, 256, 512),
        alpha: float = 1.67,
        res_path_lengths: Sequence[int] | None = None,
        out_activation: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        filters = [int(f) for f in filters]
        if len(filters) < 2:
            raise ValueError(f"MultiResUNet needs at least 2 levels of filters, got {filters}.")
        levels = len(filters) - 1
        lengths = (
            list(range(levels, 0, -1)) if res_path_lengths is None else [int(n) for n in res_path_lengths]
        )
        if len(lengths) != levels:
            raise ValueError(f"need one ResPath length per skip connection ({levels}), got {lengths}.")
        if out_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"out_activation must be one of {OUTPUT_ACTIVATIONS}, got {out_activation!r}.")
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.divisor = 2**levels
        encoders, skip_channels, channels = [], [], in_channels
        for filters_i, length in zip(filters[:-1], lengths):
            stage = _EncoderStage(spatial_dims, channels, filters_i, alpha, length)
            encoders.append(stage)
            skip_channels.append(filters_i)
            channels = stage.out_channels
        self.encoders = nn.ModuleList(encoders)
        self.bottleneck = MultiResBlock(spatial_dims, channels, filters[-1], alpha)
        channels = self.bottleneck.out_channels
        decoders = []
        for filters_i, skip in zip(reversed(filters[:-1]), reversed(skip_channels)):
            stage = _DecoderStage(spatial_dims, channels, skip, filters_i, alpha)
            decoders.append(stage)
            channels = stage.out_channels
        self.decoders = nn.ModuleList(decoders)
        self.head = Convolution(spatial_dims, channels, out_channels, kernel_size=1, conv_only=True)
        activations = {"sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), None: nn.Identity()}
        self.activation = activations[out_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (B, {self.in_channels}, *spatial) tensor with {self.spatial_dims} spatial dims, "
                f"got shape {list(x.shape)}."
            )
        for size in x.shape[2:]:
            if size % self.divisor != 0:
                raise ValueError(f"spatial size {list(x.shape[2:])} must be divisible by {self.divisor}.")
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            skip, x = encoder(x)
            skips.append(skip)
        x = self.bottleneck(x)
        n = len(skips)
        for i, decoder in enumerate(self.decoders):
            x = decoder(x, skips[n - 1 - i])
        return self.activation(self.head(x))


class Cascade(nn.Module):
    """Networks in series (MedGAN's CasNet): stage 1 maps the input to an image, every later stage maps the
    previous stage's output to a refined image. Returns the last stage's output."""

    def __init__(self, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(stages) < 1:
            raise ValueError("a cascade needs at least one stage.")
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class CascadedMultiResUNet(Cascade):
    """``num_stages`` MultiResUNets in series (ipA-MedGAN's generator: 2), see :class:`Cascade`.

    Args:
        num_stages: number of chained MultiResUNets (>= 1; 1 is the single-network baseline).
        spatial_dims, in_channels, out_channels, filters, alpha, res_path_lengths, out_activation: of every
            stage (later stages take ``out_channels`` inputs).
    """

    def __init__(
        self,
        num_stages: int = 2,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        filters: Sequence[int] = (32, 64, 128, 256, 512),
        alpha: float = 1.67,
        res_path_lengths: Sequence[int] | None = None,
        out_activation: str | None = "sigmoid",
    ) -> None:
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}.")
        super().__init__(
            [
                MultiResUNet(
                    spatial_dims,
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    filters,
                    alpha,
                    res_path_lengths,
                    out_activation,
                )
                for i in range(num_stages)
            ]
        )
