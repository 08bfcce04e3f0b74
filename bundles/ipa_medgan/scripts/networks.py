"""ipA-MedGAN's discriminators from MONAI networks, and receptive-field checks.

- Patch discriminator: ``monai.networks.nets.PatchDiscriminator`` with ``num_layers_d=3``, 4x4 kernels,
  padding 1 is pix2pix's 70x70 PatchGAN: strides (2, 2, 2, 1, 1) give a receptive field of
  1 + 3 * (1 + 2 + 4 + 8 + 8) = 70 pixels per output unit. It returns its 4 intermediate feature maps before
  the logits, which the discriminator-feature perceptual loss uses.
- Global discriminator: MONAI's ``PatchDiscriminator`` cannot be configured so that *every* output unit sees a
  256x256 image with 6 convolutions (its last two layers have stride 1; with 7x7 kernels the receptive field is
  283 pixels, but units near the border still see only ~55 % of the image). So it is
  ``monai.networks.nets.Discriminator``: 6 convolutions of stride 2 (256 -> 4) followed by a fully connected
  layer to one logit, which by construction depends on every input pixel.
- MedGAN baseline generator (:func:`unet_cascade`): MedGAN's CasNet, MONAI ``UNet`` blocks in series through the
  same :class:`scripts.multiresunet.Cascade` as ipA-MedGAN's MultiResUNets.

How the receptive fields were checked: :func:`receptive_field` computes the analytic size from kernel sizes and
strides, and :func:`measured_receptive_field` backpropagates from one output unit of a copy of the network with
positive weights in eval mode and measures the bounding box of the non-zero input gradient (tests/
test_ipa_medgan.py: 70x70 for the patch discriminator, the whole 256x256 image for the global one).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from monai.networks.nets import Discriminator, PatchDiscriminator, UNet
from torch import nn

from .multiresunet import Cascade

__all__ = [
    "patch_discriminator",
    "global_discriminator",
    "baseline_channels",
    "unet_cascade",
    "receptive_field",
    "measured_receptive_field",
]


def patch_discriminator(
    in_channels: int = 2, channels: int = 64, spatial_dims: int = 2
) -> PatchDiscriminator:
    """pix2pix's 70x70 PatchGAN (5 convolutions, 4x4 kernels, strides 2, 2, 2, 1, 1), conditional input."""
    return PatchDiscriminator(
        spatial_dims=spatial_dims,
        channels=channels,
        in_channels=in_channels,
        out_channels=1,
        num_layers_d=3,
        kernel_size=4,
        padding=1,
    )


def global_discriminator(
    in_channels: int = 2,
    image_size: int = 256,
    channels: Sequence[int] = (64, 128, 256, 512, 512, 512),
    kernel_size: int = 5,
) -> Discriminator:
    """Whole-image discriminator: ``len(channels)`` (6) stride-2 convolutions, then one logit from a linear layer.

    ``image_size`` fixes the linear layer's input (image_size / 2**6 squared times the last channel count).
    """
    if image_size % 2 ** len(channels):
        raise ValueError(
            f"image_size {image_size} must be divisible by 2**{len(channels)} (one per convolution)."
        )
    return Discriminator(
        in_shape=(in_channels, image_size, image_size),
        channels=tuple(channels),
        strides=(2,) * len(channels),
        kernel_size=kernel_size,
        num_res_units=0,
        act=("LEAKYRELU", {"negative_slope": 0.2}),
        norm="BATCH",
        dropout=None,
        last_act=None,
    )


def baseline_channels(filters: Sequence[int], factor: int = 2) -> list[int]:
    """Channels of the pix2pix U-Net and context-encoder baselines: ``factor`` x the MultiResUNet ``filters``, so
    that one ``filters`` setting (train.json or quick.json) sizes every generator of Table I."""
    return [factor * f for f in filters]


def unet_cascade(
    num_stages: int,
    channels: Sequence[int],
    strides: Sequence[int],
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 1,
    num_res_units: int = 0,
    norm: str = "BATCH",
) -> Cascade:
    """MedGAN's CasNet: ``num_stages`` MONAI ``UNet`` blocks in series, each followed by a sigmoid so that every
    stage outputs an image in [0, 1] for the next to refine (as each MultiResUNet of ipA-MedGAN's cascade)."""
    return Cascade(
        [
            nn.Sequential(
                UNet(
                    spatial_dims=spatial_dims,
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    channels=channels,
                    strides=strides,
                    num_res_units=num_res_units,
                    norm=norm,
                ),
                nn.Sigmoid(),
            )
            for i in range(num_stages)
        ]
    )


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int]) -> int:
    """Analytic receptive field of stacked convolutions: 1 + sum_l (k_l - 1) * prod_{m<l} s_m."""
    if len(kernel_sizes) != len(strides):
        raise ValueError(f"{len(kernel_sizes)} kernel sizes for {len(strides)} strides.")
    size, jump = 1, 1
    for kernel, stride in zip(kernel_sizes, strides):
        size += (kernel - 1) * jump
        jump *= stride
    return size


def _positive_copy(network: nn.Module) -> nn.Module:
    """Eval-mode copy with every weight positive, so no gradient cancels inside the receptive field."""
    probe = copy.deepcopy(network).eval()
    with torch.no_grad():
        for name, parameter in probe.named_parameters():
            parameter.copy_(
                parameter.abs() + 1e-3 if name.endswith("weight") else torch.zeros_like(parameter)
            )
    return probe


def measured_receptive_field(network: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Extent (per spatial dim) of the input pixels that influence the central output unit's logit.

    ``input_shape`` is ``(C, *spatial)``; for a list output (MONAI ``PatchDiscriminator``) the last item (the
    logits) is used.
    """
    probe = _positive_copy(network)
    x = torch.rand(1, *input_shape, requires_grad=True)
    out = probe(x)
    logits = out[-1] if isinstance(out, (list, tuple)) else out
    centre = (0, 0, *[s // 2 for s in logits.shape[2:]])
    logits[centre].backward()
    support = x.grad[0].abs().sum(0) > 0
    extents = []
    for dim in range(support.ndim):
        other = tuple(d for d in range(support.ndim) if d != dim)
        hit = support.any(dim=other) if other else support
        idx = torch.nonzero(hit).flatten()
        extents.append(int(idx.max() - idx.min() + 1))
    return tuple(extents)
