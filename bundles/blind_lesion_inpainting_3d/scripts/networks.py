"""Space-to-depth 3D U-Net with deep supervision, for whole-volume (blind) lesion inpainting (Manjón et al.).

The full-resolution volume (e.g. 182x218x182 on the MNI 1 mm grid) is decimated with one-voxel shifts along
each axis into ``2**3 = 8`` channels of half size (91x109x91): MONAI's ``pixelunshuffle`` does exactly this,
losslessly (channel ``4*i + 2*j + k`` holds ``x[i::2, j::2, k::2]``; ``pixelshuffle`` inverts it). A U-Net with
one 3x3x3 conv + BN + ReLU per level works at that half resolution, so a whole brain fits in memory. It has two
outputs, both trained with MSE (deep supervision):

* ``low``: 8 channels at half resolution, compared with the space-to-depth rearrangement of the target
  (:func:`.losses.space_to_depth_target`);
* ``full``: the reconstruction block -- the 8 low-resolution channels upsampled trilinearly to full resolution
  together with their exact depth-to-space rearrangement (``pixelshuffle``), a 3x3x3 conv with 8 filters, ReLU,
  BN -- and a final 1x1x1 conv to one channel.

The depth-to-space channel in the reconstruction block is this implementation's reading of the paper: trilinear
upsampling alone blurs away which of the 8 sub-voxel phases a voxel belongs to, the rearranged estimate keeps it.

Odd sizes: the half-resolution grid (91x109x91) is zero-padded at the high end of each axis up to a multiple of
``2**(levels - 1)`` (96x112x96 for 4 levels), so every max-pooling halves exactly and every upsampling doubles
back to the skip connection's size; the padding is cropped away from both outputs. The full-resolution input
must have even sizes (the MNI grid does) so that space-to-depth is lossless.

Residual mode (``residual=True``, not in the paper): both outputs are the input plus a learned correction, and the
full-resolution head starts at zero, so an untrained network is the identity. The paper's network regenerates every
voxel; a small network trained for CPU minutes then stays far from the identity outside the lesions (whole-volume
PSNR ~19 dB on IXI), and the blind abnormal-WM map ``|input - inpainted|`` is dominated by that error. With the
residual the map is the correction itself, zero where the network sees nothing to change.

CPU inference (``fast_eval``, on by default): in eval mode without autograd the same function is computed with
BatchNorm folded into the convs (and the reconstruction block's BN into the 1x1 head), in-place ReLUs, and the
full-resolution block in ``channels_last_3d`` (oneDNN's direct 3x3x3 conv on 9 channels is ~4x faster in that
layout than in NCDHW); outputs agree with the plain forward to ~1e-6 (float reassociation only).

Why not MONAI's ``UNet``/``BasicUNet``: they use two convs (or residual units) per level, strided convs, and
no space-to-depth or depth-wise deep-supervision head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.utils import pixelshuffle, pixelunshuffle
from torch import nn

__all__ = ["SpaceToDepthUNet3D", "count_parameters", "depth_to_space", "space_to_depth"]

SPATIAL_DIMS = 3
PHASES = 8  # sub-volumes of the decimation by 2 along each of the 3 axes


def space_to_depth(volume: torch.Tensor) -> torch.Tensor:
    """(B, C, X, Y, Z) with even sizes -> (B, 8C, X/2, Y/2, Z/2), lossless (MONAI ``pixelunshuffle``)."""
    if volume.ndim != 5:
        raise ValueError(f"expected a batched 3D volume (B, C, X, Y, Z), got shape {volume.shape}")
    if volume.shape[2] % 2 or volume.shape[3] % 2 or volume.shape[4] % 2:
        raise ValueError(
            f"space-to-depth needs even spatial sizes, got {volume.shape[2:]}; resample to the "
            "182x218x182 MNI grid or pad/crop to even sizes"
        )
    return pixelunshuffle(volume, 3, 2)


def depth_to_space(volume: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`space_to_depth`: (B, 8C, X, Y, Z) -> (B, C, 2X, 2Y, 2Z) (MONAI ``pixelshuffle``)."""
    return pixelshuffle(volume, 3, 2)


def _conv_bn_relu(in_channels: int, out_channels: int) -> Convolution:
    return Convolution(
        SPATIAL_DIMS, in_channels, out_channels, kernel_size=3, act="RELU", norm="BATCH", adn_ordering="NDA"
    )


class SpaceToDepthUNet3D(nn.Module):
    """3D U-Net on the space-to-depth volume, with a full-resolution reconstruction block.

    Args:
        in_channels: image channels (1: a T1 whose lesions are set to -1 for non-blind filling, or the raw T1 for
            blind inpainting; the paper encodes the mask by the fill value).
        out_channels: output image channels.
        filters: filters at the first level (paper: 40), doubled at each level down and halved back up.
        levels: resolution levels of the U-Net (3 max-poolings for 4 levels).
        recon_filters: filters of the reconstruction block's conv (paper: 8).
        deep_supervision: in training mode return ``[full, low]`` (full-resolution output first, as MONAI's
            ``DeepSupervisionLoss`` expects); in eval mode, or when False, return only the full-resolution output.
        residual: output the input plus a learned correction (full-resolution head initialised to zero, so the
            untrained network is the identity); needs ``in_channels == out_channels``. Off in the paper.
        fast_eval: in eval mode without autograd, run :meth:`inference_forward` (the same outputs up to float
            rounding, about 2x faster on CPU at the shipped width); False always runs the plain layer-by-layer forward.
        cpu_bf16: run that fast forward on CPU under bf16 autocast (output in the input's dtype). Opt-in: worth it
            only on CPUs with native bf16 (AVX512-BF16/AMX; elsewhere it is emulated and slower), and it changes the
            output by bf16 rounding (PSNR -0.002 dB at the shipped width, docs/performance.md).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        filters: int = 40,
        levels: int = 4,
        recon_filters: int = 8,
        deep_supervision: bool = True,
        residual: bool = False,
        fast_eval: bool = True,
        cpu_bf16: bool = False,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, filters, recon_filters) < 1 or levels < 1:
            raise ValueError(
                f"channels, filters and levels must be positive, got in_channels={in_channels}, "
                f"out_channels={out_channels}, filters={filters}, levels={levels}, recon_filters={recon_filters}"
            )
        if residual and in_channels != out_channels:
            raise ValueError(f"residual needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.levels = levels
        self.deep_supervision = deep_supervision
        self.residual = residual
        self.fast_eval = fast_eval
        self.cpu_bf16 = cpu_bf16
        #: the half-resolution grid is padded to a multiple of this so that every pooling halves exactly
        self.multiple = 2 ** (levels - 1)
        widths = [filters * 2**i for i in range(levels)]
        self.encoders = nn.ModuleList(
            _conv_bn_relu(c_in, c_out) for c_in, c_out in zip([in_channels * PHASES, *widths[:-1]], widths)
        )
        # decoder level i: upsampled features of level i+1 concatenated with the skip of level i
        self.decoders = nn.ModuleList(
            _conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in range(levels - 1)
        )
        self.low_head = nn.Conv3d(widths[0], out_channels * PHASES, kernel_size=1)
        self.reconstruction = Convolution(
            SPATIAL_DIMS,
            out_channels * (PHASES + 1),
            recon_filters,
            kernel_size=3,
            act="RELU",
            norm="BATCH",
            adn_ordering="AN",  # conv, ReLU, BN as in the paper
        )
        self.full_head = nn.Conv3d(recon_filters, out_channels, kernel_size=1)
        if residual:
            nn.init.zeros_(self.full_head.weight)
            nn.init.zeros_(self.full_head.bias)

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        for i in reversed(range(self.levels - 1)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.decoders[i](torch.cat([x, skips[i]], dim=1))
        return x

    def forward(self, image: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if image.ndim != 5 or image.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, X, Y, Z), got shape {image.shape}")
        if self.fast_eval and not self.training and not torch.is_grad_enabled():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_bf16 and image.device.type == "cpu"):
                return self.inference_forward(image).to(image.dtype)
        low_in = space_to_depth(image)
        half = low_in.shape[2:]
        padding = [0, -half[2] % self.multiple, 0, -half[1] % self.multiple, 0, -half[0] % self.multiple]
        features = self._unet(F.pad(low_in, padding))
        low = self.low_head(features)[:, :, : half[0], : half[1], : half[2]]
        upsampled = F.interpolate(low, scale_factor=2.0, mode="trilinear", align_corners=False)
        full = self.full_head(self.reconstruction(torch.cat([upsampled, depth_to_space(low)], dim=1)))
        if self.residual:  # the correction was built above; the outputs are the input plus it
            low, full = low + low_in, full + image
        if self.deep_supervision and self.training:
            return [full, low]
        return full

    @torch.no_grad()
    def inference_forward(self, image: torch.Tensor) -> torch.Tensor:
        """The eval-mode full-resolution output, computed faster (see the module docstring): BN folded, ReLUs in
        place, the reconstruction block in ``channels_last_3d`` with its BN folded into the 1x1 head."""
        low_in = space_to_depth(image)
        half = low_in.shape[2:]
        padding = [0, -half[2] % self.multiple, 0, -half[1] % self.multiple, 0, -half[0] % self.multiple]
        x, skips = F.pad(low_in, padding), []
        for i, encoder in enumerate(self.encoders):
            x = F.relu_(F.conv3d(x if i == 0 else F.max_pool3d(x, 2), *_folded(encoder), padding=1))
            skips.append(x)
        for i in reversed(range(self.levels - 1)):
            x = F.relu_(_upsample_concat_conv(x, skips[i], *_folded(self.decoders[i])))
        low = self.low_head(x)[:, :, : half[0], : half[1], : half[2]]  # the correction when residual
        # the reconstruction block's input written straight into one channels_last_3d buffer
        upsampled = F.interpolate(
            low.contiguous(memory_format=torch.channels_last_3d), scale_factor=2.0, mode="trilinear", align_corners=False
        )
        stacked = torch.empty(
            (image.shape[0], upsampled.shape[1] + self.out_channels, *upsampled.shape[2:]),
            dtype=upsampled.dtype,
            device=upsampled.device,
            memory_format=torch.channels_last_3d,
        )
        stacked[:, : upsampled.shape[1]] = upsampled
        stacked[:, upsampled.shape[1] :] = depth_to_space(low)
        del upsampled
        features = F.relu_(self.reconstruction.conv(stacked))
        del stacked
        bn = self.reconstruction.adn.N  # after the ReLU: folded into the (linear) 1x1 head
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        head = self.full_head.weight.flatten(1)  # (out, recon_filters)
        weight, bias = head * scale, self.full_head.bias + head @ (bn.bias - bn.running_mean * scale)
        channels_last = features.permute(0, 2, 3, 4, 1)  # a view: features are channels_last_3d
        full = torch.addmm(bias, channels_last.reshape(-1, channels_last.shape[-1]), weight.t())
        full = full.view(*channels_last.shape[:-1], -1).permute(0, 4, 1, 2, 3).contiguous()
        return full + image if self.residual else full

    def extra_repr(self) -> str:
        return f"levels={self.levels}, deep_supervision={self.deep_supervision}, residual={self.residual}"


def _folded(block: Convolution) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv -> BatchNorm (eval) block as one conv."""
    conv, bn = block.conv, block.adn.N
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * scale.view(-1, *[1] * (conv.weight.ndim - 1)), (bias - bn.running_mean) * scale + bn.bias


#: per output phase p (even/odd fine index), the 2 coarse taps (offsets p-1, p) of a 3-tap kernel applied to a
#: nearest-upsampled signal: fine 2j+p+o reads coarse j + floor((p + o) / 2)
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def _upsample_concat_conv(
    coarse: torch.Tensor, skip: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """``conv3d(cat([nearest_upsample_x2(coarse), skip]), weight, bias, padding=1)`` without the upsampled tensor.

    The 3x3x3 conv of a nearest-upsampled volume is, for each of the 8 output phases, a 2x2x2 conv of the coarse
    volume with summed taps: one conv with 8x the output channels at the coarse size, 64/216 of the FLOPs, no
    upsampled copy and no concatenation; its phases are added into the skip branch's conv output. The same
    numbers up to float reassociation; zero padding matches (fine index -1 or 2n is coarse -1 or n)."""
    channels = coarse.shape[1]
    taps = _PHASE_TAPS.to(weight)
    # (phase x, phase y, phase z, out, in, 2, 2, 2)
    kernels = torch.einsum("pau,qbv,rcw,oiuvw->pqroiabc", taps, taps, taps, weight[:, :channels])
    phases = F.conv3d(F.pad(coarse, [1] * 6), kernels.reshape(-1, channels, 2, 2, 2))
    out = F.conv3d(skip, weight[:, channels:], bias, padding=1)
    n = coarse.shape[2:]
    phases = phases.view(coarse.shape[0], 2, 2, 2, weight.shape[0], *phases.shape[2:])
    for p in range(2):
        for q in range(2):
            for r in range(2):
                out[:, :, p::2, q::2, r::2] += phases[:, p, q, r, :, p : p + n[0], q : q + n[1], r : r + n[2]]
    return out


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
