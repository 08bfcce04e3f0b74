"""The spectral-norm patch discriminator of CTSDG (Guo et al., ICCV 2021) and EdgeConnect (Nazeri et al., 2019).

Both papers use the same 70x70 PatchGAN: 4x4 convolutions with spectral normalisation and no bias, strides
2, 2, 2, 1 and a last 1-channel stride-1 layer, LeakyReLU 0.2, weights N(0, 0.02). CTSDG trains on its patch
logits; EdgeConnect also matches the features of every layer, hence ``return_features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.utils import normal_init
from torch import nn

__all__ = ["SpectralNormPatchDiscriminator"]


class SpectralNormPatchDiscriminator(nn.Sequential):
    """PatchGAN with spectral normalisation on every convolution; returns patch **logits** (the CTSDG release
    applies a sigmoid then BCE, which equals BCE-with-logits here, see
    :class:`common.losses.GeneratorAdversarialLoss`).

    Args:
        in_channels: input channels (image: C; edge: edge map + grey image = 2).
        channels: widths of the strided layers (CTSDG and EdgeConnect: 64, 128, 256, 512).
        strides: strides of those layers (2, 2, 2, 1); the last 1-channel layer has stride 1.
        return_features: return ``[activation of each layer..., logits]`` (MONAI ``PatchDiscriminator``'s
            layout, what ``common.losses.FeatureMatchingLoss`` reads) instead of the logits alone.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (2, 2, 2, 1),
        return_features: bool = False,
    ) -> None:
        if len(channels) != len(strides):
            raise ValueError(f"channels {channels} and strides {strides} must have the same length")
        layers: list[nn.Module] = []
        widths = [in_channels, *channels]
        for i, stride in enumerate(strides):
            conv = nn.Conv2d(widths[i], widths[i + 1], 4, stride=stride, padding=1, bias=False)
            layers += [_spectral_norm(conv), nn.LeakyReLU(0.2)]
        layers.append(_spectral_norm(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1, bias=False)))
        super().__init__(*layers)
        self.return_features = bool(return_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.return_features:
            return super().forward(x)
        features = []
        for layer in self:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        return [*features, x]


def _spectral_norm(conv: nn.Conv2d) -> nn.Module:
    """Initialise as the CTSDG release does (weights N(0, 0.02)), then wrap in spectral normalisation."""
    normal_init(conv)
    return nn.utils.spectral_norm(conv)
