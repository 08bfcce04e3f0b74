"""CTSDG: conditional texture and structure dual generation (Guo, Yang and Huang, ICCV 2021), for 2D images.

Architecture as in the authors' release (github.com/xiefan-guo/ctsdg), written anew with configurable widths:

- two partial-convolution encoders (:class:`~common.networks.gated_unet.PartialConv2d`, partial conv + BN +
  activation, which takes the *valid* mask, 1 = known): a *texture*
  encoder on the masked image and a *structure* encoder on the masked Canny edge map with the masked grey image;
- two decoders that cross over: the texture decoder starts from the structure encoder's deepest features and
  takes the texture encoder's skips (texture generated conditioned on structure), the structure decoder the
  other way round;
- projection heads turning the decoders' full-resolution features into the intermediate image ``I''`` (texture)
  and edge map ``C''`` (structure);
- bi-directional gated feature fusion (:class:`BiGFF`) exchanging texture and structure features;
- contextual feature aggregation (:class:`ContextualFeatureAggregation`: region affinity learning, i.e. patch
  attention, then multi-scale dilated convolutions) at half resolution, then the output image ``I'``;
- an edge head (the release's ``EdgeDetector``, which it keeps in the discriminator) giving the output's edge
  map ``C'`` for the edge discriminator.

Differences from the release, for this project's conventions: images are given and returned in [0, 1] (the
network works internally in [-1, 1] with tanh outputs, as the release does); masks are 1 = hole; grey images
are single-channel (``image_channels`` sets C); the edge head lives in the generator.

:class:`CTSDGInpainter` is the bundle's ``network_def``: one tensor in (masked image, mask, edge map as
channels), the composited image out, so MONAI's evaluators, ``verify_net_in_out`` and TorchScript can use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.utils import normal_init
from torch import nn

from common.networks.gated_unet import PartialConv2d

__all__ = [
    "BiGFF",
    "CTSDG",
    "CTSDGInpainter",
    "ContextualFeatureAggregation",
    "EdgeHead",
    "MultiScaleFeatureAggregation",
    "RegionAffinityLearning",
]

CTSDG_CHANNELS = (64, 128, 256, 512, 512, 512, 512)
CTSDG_KERNELS = (7, 5, 5, 3, 3, 3, 3)


class _Bottleneck(nn.Module):
    """Residual block conv-BN-ReLU-conv-BN + identity, ReLU (the release's projection resolver)."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
            nn.Conv2d(mid_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class _Projection(nn.Sequential):
    """Decoder features -> an image (tanh) or an edge map (sigmoid): the release's Feature2Texture/Structure."""

    def __init__(self, channels: int, out_channels: int, activation: nn.Module) -> None:
        super().__init__(
            _Bottleneck(channels, max(channels // 4, 1)), nn.Conv2d(channels, out_channels, 1), activation
        )


class BiGFF(nn.Module):
    """Bi-directional gated feature fusion: each stream adds the other's features through a learnt gate.

    t' = t + γ_t · (G_t ⊙ s),  s' = s + γ_s · (G_s ⊙ t'),  G = sigmoid(conv3x3([t, s])); γ start at 0 (as
    released, so fusion is learnt from identity). Returns ``[t', s']`` along channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.structure_gate = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.Sigmoid())
        self.texture_gate = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.Sigmoid())
        self.structure_gamma = nn.Parameter(torch.zeros(1))
        self.texture_gamma = nn.Parameter(torch.zeros(1))

    def forward(self, texture: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        energy = torch.cat([texture, structure], dim=1)
        texture = texture + self.texture_gamma * (self.structure_gate(energy) * structure)
        structure = structure + self.structure_gamma * (self.texture_gate(energy) * texture)
        return torch.cat([texture, structure], dim=1)


class RegionAffinityLearning(nn.Module):
    """Patch attention (CTSDG's RAL): every location is rebuilt from all ``2r x 2r`` patches of the feature map,
    weighted by the softmax (scale ``softmax_scale``) of the cosine similarity of 3x3 patches at 1/r resolution.

    Batched with grouped convolutions instead of the release's per-sample loop. Needs H and W divisible by
    ``rate`` (even ``rate``).
    """

    def __init__(self, rate: int = 2, softmax_scale: float = 10.0) -> None:
        super().__init__()
        if rate < 2 or rate % 2:
            raise ValueError(f"rate must be an even integer >= 2, got {rate}")
        self.rate, self.softmax_scale = int(rate), float(softmax_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        r = self.rate
        if height % r or width % r:
            raise ValueError(f"feature size {height}x{width} must be divisible by the attention rate {r}")
        h, w = height // r, width // r
        small = F.interpolate(x, size=[h, w], mode="bilinear", align_corners=True)
        queries = F.unfold(small, 3, padding=1).transpose(1, 2)  # (B, L, C*9), L = h*w
        queries = queries / torch.linalg.vector_norm(queries, dim=2, keepdim=True).clamp(min=1e-4)
        queries = queries.reshape(b * h * w, c, 3, 3)
        scores = F.conv2d(small.reshape(1, b * c, h, w), queries, padding=1, groups=b)  # (1, B*L, h, w)
        attention = F.softmax(scores.reshape(b, h * w, h, w) * self.softmax_scale, dim=1).clamp(min=1e-8)
        values = F.unfold(x, 2 * r, stride=r, padding=r // 2).transpose(1, 2)  # (B, L, C*(2r)^2)
        values = values.reshape(b * h * w, c, 2 * r, 2 * r)
        out = F.conv_transpose2d(
            attention.reshape(1, b * h * w, h, w), values, stride=r, padding=r // 2, groups=b
        )
        return out.reshape(b, c, height, width) / 4.0


class MultiScaleFeatureAggregation(nn.Module):
    """Dilated 3x3 convolutions (rates 1, 2, 4, 8) mixed by a learnt per-pixel softmax weight (CTSDG's MSFA)."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.ReLU())
            for d in dilations
        )
        self.weights = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, len(dilations), 1),
            nn.ReLU(),
            nn.Softmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.weights(x)
        out = torch.zeros_like(x)
        for i, branch in enumerate(self.branches):
            out = out + weights[:, i : i + 1] * branch(x)
        return out


class ContextualFeatureAggregation(nn.Module):
    """CTSDG's CFA: region affinity learning then multi-scale feature aggregation."""

    def __init__(self, channels: int, rate: int = 2, softmax_scale: float = 10.0) -> None:
        super().__init__()
        self.ral = RegionAffinityLearning(rate, softmax_scale)
        self.msfa = MultiScaleFeatureAggregation(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.msfa(self.ral(x))


class EdgeHead(nn.Module):
    """Image -> edge probability map (the release's ``EdgeDetector``): conv-BN-ReLU, a residual block, 1x1, sigmoid."""

    def __init__(self, in_channels: int = 1, mid_channels: int = 16) -> None:
        super().__init__()
        self.projection = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1), nn.BatchNorm2d(mid_channels), nn.ReLU()
        )
        self.residual = nn.Sequential(
            nn.Conv2d(mid_channels, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels),
        )
        self.out = nn.Sequential(nn.Conv2d(mid_channels, 1, 1), nn.Sigmoid())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.projection(image)
        return self.out(torch.relu(self.residual(features) + features))


class _Encoder(nn.Module):
    """Stride-2 partial-conv levels (no BatchNorm on the first, ReLU); returns every level's features and valid
    masks (1 = known), the input included."""

    def __init__(self, in_channels: int, channels: Sequence[int], kernels: Sequence[int]) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.layers = nn.ModuleList(
            PartialConv2d(widths[i], widths[i + 1], kernels[i], 2, i > 0, "relu")
            for i in range(len(channels))
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        features, valids = [x], [valid.expand_as(x)]
        for layer in self.layers:
            x, valid = layer(x, valid)
            features.append(x)
            valids.append(valid)
        return features, valids


class _Decoder(nn.Module):
    """Decoder levels from the deepest up: upsample x2, concatenate encoder skip k-1, partial conv (LeakyReLU).

    The masks are expanded to one per feature channel and concatenated too (the release's multi-channel
    masks), so the upsampled features and the skip count equally in the renormalisation.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.layers = nn.ModuleList(
            PartialConv2d(channels[k - 1] + widths[k - 1], channels[max(k - 2, 0)], 3, 1, True, "leaky_relu")
            for k in range(len(channels), 0, -1)
        )

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor, skips: list[torch.Tensor], skip_valids: list[torch.Tensor]
    ) -> torch.Tensor:
        depth = len(skips)
        for i, layer in enumerate(self.layers):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear")
            valid = F.interpolate(valid, scale_factor=2.0, mode="nearest")
            skip, skip_valid = skips[depth - 1 - i], skip_valids[depth - 1 - i]
            valids = [valid.expand(-1, x.shape[1], -1, -1), skip_valid.expand(-1, skip.shape[1], -1, -1)]
            x, valid = layer(torch.cat([x, skip], 1), torch.cat(valids, 1))
        return x


class CTSDG(nn.Module):
    """CTSDG generator. ``forward(masked_image, mask, edge) -> (I', C', I'', C'')``, all in [0, 1].

    Args:
        image_channels: channels C of the image (1 for grey MRI).
        channels: encoder widths, one per stride-2 partial-conv level (CTSDG: 64, 128, 256, 512, 512, 512, 512);
            inputs must be divisible by ``2 ** len(channels)`` (128 for the default 256x256 images).
        kernels: encoder kernel sizes (CTSDG: 7, 5, 5, 3, 3, 3, 3).
        attention_rate, softmax_scale: CFA region affinity learning (CTSDG: 2, 10).
        edge_head_channels: width of the output edge head.

    Inputs: ``masked_image`` (B, C, H, W) in [0, 1] (hole content is ignored), ``mask`` (B, 1, H, W), 1 = hole,
    ``edge`` (B, 1, H, W) Canny edges of the image (masked here, so the full map may be passed). The structure
    encoder also sees the masked grey image (channel mean). Outputs: ``I'`` the inpainted image (B, C, H, W),
    ``C'`` its edge map, ``I''`` / ``C''`` the intermediate texture/structure projections; edge maps are
    probabilities (B, 1, H, W).
    """

    def __init__(
        self,
        image_channels: int = 1,
        channels: Sequence[int] = CTSDG_CHANNELS,
        kernels: Sequence[int] = CTSDG_KERNELS,
        attention_rate: int = 2,
        softmax_scale: float = 10.0,
        edge_head_channels: int = 16,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels) or len(channels) < 2:
            raise ValueError(
                f"need matching channels and kernels of length >= 2, got {channels} and {kernels}"
            )
        self.image_channels = int(image_channels)
        self.levels = len(channels)
        width = int(channels[0])
        self.texture_encoder = _Encoder(image_channels, channels, kernels)
        self.structure_encoder = _Encoder(2, channels, kernels)
        self.texture_decoder = _Decoder(image_channels, channels)
        self.structure_decoder = _Decoder(2, channels)
        self.texture_projection = _Projection(width, image_channels, nn.Tanh())
        self.structure_projection = _Projection(width, 1, nn.Sigmoid())
        self.bigff = BiGFF(width)
        self.fusion_down = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)
        )
        self.cfa = ContextualFeatureAggregation(width, attention_rate, softmax_scale)
        self.fusion = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.out_layer = nn.Sequential(nn.Conv2d(3 * width, image_channels, 1), nn.Tanh())
        self.edge_head = EdgeHead(image_channels, edge_head_channels)
        self.apply(normal_init)  # the release's init: conv N(0, 0.02), BatchNorm N(1, 0.02), zero biases

    def _check(self, image: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != self.image_channels:
            raise ValueError(
                f"expected a (B, {self.image_channels}, H, W) image, got shape {list(image.shape)}"
            )
        for name, t in (("mask", mask), ("edge", edge)):
            if (
                t.dim() != 4
                or t.shape[1] != 1
                or t.shape[2:] != image.shape[2:]
                or t.shape[0] != image.shape[0]
            ):
                raise ValueError(
                    f"{name} must be (B, 1, H, W) matching the image {list(image.shape)}, got {list(t.shape)}"
                )
        factor = 2**self.levels
        if image.shape[2] % factor or image.shape[3] % factor:
            raise ValueError(
                f"image size {image.shape[2]}x{image.shape[3]} must be divisible by {factor} "
                f"(2 ** {self.levels} encoder levels); pad it (e.g. DivisiblePadd k={factor})"
            )

    def forward(
        self, masked_image: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check(masked_image, mask, edge)
        hole = (mask > 0.5).to(masked_image.dtype)
        known = 1.0 - hole
        image = (masked_image * 2.0 - 1.0) * known  # [-1, 1], hole at 0 as in the release
        grey = image.mean(dim=1, keepdim=True)
        structure_in = torch.cat([edge * known, grey], 1)

        texture_feats, texture_valids = self.texture_encoder(image, known)
        structure_feats, structure_valids = self.structure_encoder(structure_in, known)
        # the dual generation: texture decoded from the deepest structure features, and vice versa
        texture = self.texture_decoder(
            structure_feats[-1], structure_valids[-1], texture_feats[:-1], texture_valids[:-1]
        )
        structure = self.structure_decoder(
            texture_feats[-1], texture_valids[-1], structure_feats[:-1], structure_valids[:-1]
        )
        intermediate_image = (self.texture_projection(texture) + 1.0) / 2.0
        intermediate_edge = self.structure_projection(structure)

        fused = self.bigff(texture, structure)
        low = self.fusion_down(fused)
        low = self.fusion(torch.cat([low, self.cfa(low)], 1))
        low = F.interpolate(low, scale_factor=2.0, mode="bilinear")
        output = (self.out_layer(torch.cat([low, fused], 1)) + 1.0) / 2.0
        return output, self.edge_head(output), intermediate_image, intermediate_edge


class CTSDGInpainter(nn.Module):
    """Single-tensor front end of :class:`CTSDG` for evaluators, inference and TorchScript.

    ``forward(x)`` with ``x = cat([masked_image (C), mask (1), edge (1)], dim=1)`` (the order of
    ``common.engines.InpaintingBatchPreparer(mode="concat", extra_keys=["edge"])``) returns the inpainted image
    ``I'`` in the hole and the input elsewhere (``composite=True``) or ``I'`` everywhere.
    The trainer uses :attr:`generator` directly (all four outputs).
    """

    def __init__(self, composite: bool = True, **generator_args) -> None:
        super().__init__()
        self.generator = CTSDG(**generator_args)
        self.composite = composite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.generator.image_channels
        if x.dim() != 4 or x.shape[1] != c + 2:
            raise ValueError(
                f"expected (B, {c + 2}, H, W): masked image ({c}), mask (1), edge map (1); got {list(x.shape)}"
            )
        image, mask, edge = x[:, :c], x[:, c : c + 1], x[:, c + 1 : c + 2]
        output = self.generator(image, mask, edge)[0]
        if not self.composite:
            return output
        hole = (mask > 0.5).to(output.dtype)
        return image * (1.0 - hole) + output * hole
