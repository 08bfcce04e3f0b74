"""EdgeConnect-style inpainters and the segmentation + inpainting object-removal pipeline (2D).

- :class:`EdgeConnectGenerator`: Nazeri et al.'s (2019) encoder (7x7, two stride-2 4x4 convs), dilated residual
  blocks and decoder, in plain torch: MONAI has no EdgeConnect generator.
- :class:`EdgeConnectInpainter`: the three inpainters of Shimosato & Ukita's object removal: an edge inpainter,
  a segmentation-map inpainter and an image inpainter fed with the inpainted edges, the inpainted
  segmentation map, the mask and the masked image.
- :class:`ObjectRemovalPipeline`: segmenter (any differentiable MONAI network) -> segments -> the segment
  chosen by a hint mask -> inpainters. Its ``pred`` is the object-removed image; in training the mask is
  differentiable (straight-through), so inpainting losses reach the segmenter.
- :func:`batch_canny_edges`: Canny edge maps of a batch (``common.transforms.canny_edges``, skimage).

The discriminators are the shared ``common.networks.SpectralNormPatchDiscriminator`` (EdgeConnect's layout).

Mask convention: 1 = hole (the object to remove), 0 = known.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from common.transforms.edges import canny_edges

__all__ = [
    "EdgeConnectGenerator",
    "EdgeConnectInpainter",
    "ObjectRemovalPipeline",
    "batch_canny_edges",
    "propose_segments",
    "select_segments",
]

OUTPUT_ACTIVATIONS = ("sigmoid", "unit_tanh", "none")
MASK_SOURCES = ("segmenter", "hint")


def batch_canny_edges(
    image: torch.Tensor,
    sigma: float = 2.0,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
) -> torch.Tensor:
    """Canny edge maps (B, 1, H, W) in {0, 1} of a (B, C, H, W) batch (channel-mean grey images).

    :func:`common.transforms.canny_edges` (skimage's Canny; EdgeConnect's sigma 2) per image; thresholds
    default to skimage's fractions of the dtype range, so intensities are expected in [0, 1]. Not
    differentiable: the edges are of the input image, a constant.
    """
    if image.ndim != 4:
        raise ValueError(f"batch_canny_edges expects a (B, C, H, W) batch, got shape {tuple(image.shape)}.")
    grey = image.detach().float().cpu().numpy()
    edges = np.stack([canny_edges(g, sigma, low_threshold, high_threshold) for g in grey])
    return torch.from_numpy(edges[:, None]).to(image.device)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
          spectral: bool = False, transpose: bool = False) -> nn.Module:  # fmt: skip
    cls = nn.ConvTranspose2d if transpose else nn.Conv2d
    conv = cls(
        in_channels,
        out_channels,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=not spectral,
    )
    return spectral_norm(conv) if spectral else conv


class _ResidualBlock(nn.Module):
    """EdgeConnect's residual block: reflection pad, 3x3 dilated conv, IN, ReLU, 3x3 conv, IN, plus the input."""

    def __init__(self, channels: int, dilation: int, spectral: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _conv(channels, channels, 3, dilation=dilation, spectral=spectral),
            nn.InstanceNorm2d(channels, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _conv(channels, channels, 3, spectral=spectral),
            nn.InstanceNorm2d(channels, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EdgeConnectGenerator(nn.Module):
    """EdgeConnect's generator: encoder (x4 downsampling), ``residual_blocks`` dilated blocks, decoder.

    Args:
        in_channels, out_channels: channel counts.
        channels: width of the first layer (EdgeConnect: 64; it doubles twice).
        residual_blocks: number of residual blocks (EdgeConnect: 8).
        dilation: dilation of the residual blocks (EdgeConnect: 2).
        spectral: spectral norm on every convolution (EdgeConnect's edge generator: yes; image generator: no).
        output: ``"sigmoid"`` (edge maps), ``"unit_tanh"`` ((tanh + 1) / 2: images in [0, 1], as EdgeConnect),
            or ``"none"`` (logits, e.g. of a segmentation map).

    Spatial sizes must be multiples of 4.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, residual_blocks: int = 8,
                 dilation: int = 2, spectral: bool = False, output: str = "unit_tanh") -> None:  # fmt: skip
        super().__init__()
        if output not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output must be one of {OUTPUT_ACTIVATIONS}, got {output!r}.")
        self.in_channels, self.output = in_channels, output
        c = channels

        def norm_relu(n):
            return [nn.InstanceNorm2d(n, track_running_stats=False), nn.ReLU(True)]

        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), _conv(in_channels, c, 7, spectral=spectral), *norm_relu(c),
            _conv(c, 2 * c, 4, stride=2, padding=1, spectral=spectral), *norm_relu(2 * c),
            _conv(2 * c, 4 * c, 4, stride=2, padding=1, spectral=spectral), *norm_relu(4 * c),
        )  # fmt: skip
        self.middle = nn.Sequential(
            *[_ResidualBlock(4 * c, dilation, spectral) for _ in range(residual_blocks)]
        )
        self.decoder = nn.Sequential(
            _conv(4 * c, 2 * c, 4, stride=2, padding=1, spectral=spectral, transpose=True), *norm_relu(2 * c),
            _conv(2 * c, c, 4, stride=2, padding=1, spectral=spectral, transpose=True), *norm_relu(c),
            nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) input, got shape {tuple(x.shape)}.")
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be a multiple of 4.")
        x = self.decoder(self.middle(self.encoder(x)))
        if self.output == "sigmoid":
            return torch.sigmoid(x)
        if self.output == "unit_tanh":
            return (torch.tanh(x) + 1) / 2
        return x


def _check_batch(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.ndim != 4 or mask.ndim != 4:
        raise ValueError(
            f"image and mask must be (B, C, H, W), got {tuple(image.shape)} and {tuple(mask.shape)}."
        )
    if mask.shape[1] != 1 or mask.shape[0] != image.shape[0] or mask.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"mask must be (B, 1, H, W) matching the image {tuple(image.shape)}, got {tuple(mask.shape)}."
        )


class EdgeConnectInpainter(nn.Module):
    """Edge, segmentation-map and image inpainters (Shimosato & Ukita, after EdgeConnect).

    ``forward(image, mask, edge, segmap, edge_condition=None, segmap_condition=None)`` with the image
    (B, C, H, W) in [0, 1], the mask (B, 1, H, W) (1 = hole; may be soft), the image's Canny edges (B, 1, H, W)
    and segmentation map (B, K, H, W) class probabilities. Each inpainter sees its input with the hole zeroed
    and the mask:

    - edge inpainter: (grey image, edges, mask) -> edges in the hole (sigmoid);
    - segmentation-map inpainter: (image, segmentation map, mask) -> class logits;
    - image inpainter: (image, completed edges, completed segmentation map, mask) -> image ((tanh + 1) / 2).

    The image inpainter gets the inpainted edges/map composited with the known ones, or, for independent
    pretraining (EdgeConnect's stage 2), ``edge_condition`` / ``segmap_condition`` (e.g. the ground truth's).

    Returns a dict: ``edge`` and ``segmap`` (composited), ``segmap_logits``, ``image_raw`` (the image
    inpainter's output) and ``pred`` (composite of ``image_raw`` in the hole and the input elsewhere).
    """

    def __init__(self, image_channels: int = 1, num_classes: int = 4, channels: int = 64, residual_blocks: int = 8,
                 edge_spectral: bool = True) -> None:  # fmt: skip
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (a segmentation map), got {num_classes}.")
        self.image_channels, self.num_classes = image_channels, num_classes
        self.edge_net = EdgeConnectGenerator(
            3, 1, channels, residual_blocks, spectral=edge_spectral, output="sigmoid"
        )
        self.segmap_net = EdgeConnectGenerator(image_channels + num_classes + 1, num_classes, channels,
                                               residual_blocks, output="none")  # fmt: skip
        self.image_net = EdgeConnectGenerator(image_channels + num_classes + 2, image_channels, channels,
                                              residual_blocks, output="unit_tanh")  # fmt: skip

    def forward(self, image: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor, segmap: torch.Tensor,
                edge_condition: torch.Tensor | None = None,
                segmap_condition: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        _check_batch(image, mask)
        if image.shape[1] != self.image_channels:
            raise ValueError(
                f"image has {image.shape[1]} channels, the inpainter expects {self.image_channels}."
            )
        if edge.shape != mask.shape:
            raise ValueError(f"edge must be (B, 1, H, W) like the mask, got {tuple(edge.shape)}.")
        if segmap.shape[1] != self.num_classes or segmap.shape[2:] != image.shape[2:]:
            raise ValueError(
                f"segmap must be (B, {self.num_classes}, H, W) matching the image, got {tuple(segmap.shape)}."
            )
        keep = 1 - mask
        grey = image.mean(dim=1, keepdim=True)
        edge_out = self.edge_net(torch.cat([grey * keep, edge * keep, mask], dim=1))
        edge_comp = edge_out * mask + edge * keep
        logits = self.segmap_net(torch.cat([image * keep, segmap * keep, mask], dim=1))
        segmap_comp = torch.softmax(logits, dim=1) * mask + segmap * keep
        edge_in = edge_comp if edge_condition is None else edge_condition
        segmap_in = segmap_comp if segmap_condition is None else segmap_condition
        image_raw = self.image_net(torch.cat([image * keep, edge_in, segmap_in, mask], dim=1))
        return {
            "edge": edge_comp,
            "segmap": segmap_comp,
            "segmap_logits": logits,
            "image_raw": image_raw,
            "pred": image_raw * mask + image * keep,
        }


def propose_segments(probability: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Object segments of a (B, 1, H, W) probability map: the 8-connected components of ``p > threshold``,
    as a (B, H, W) int label array (0 = none; 1, 2, ... ordered by decreasing size)."""
    binary = (probability.detach()[:, 0] > threshold).cpu().numpy()
    out = np.zeros(binary.shape, np.int32)
    for b, item in enumerate(binary):
        labels, n = ndimage.label(item, structure=np.ones((3, 3)))
        if n:
            sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            rank = np.empty(n + 1, np.int32)
            rank[0] = 0
            rank[1 + np.argsort(-sizes, kind="stable")] = np.arange(1, n + 1)
            out[b] = rank[labels]
    return out


def select_segments(
    segments: np.ndarray, hint: torch.Tensor | None = None, index: int | None = None
) -> np.ndarray:
    """Per image, the boolean mask of one segment of :func:`propose_segments`' labels.

    ``hint`` (B, 1, H, W): the segment with the largest overlap with it (a rough mask, the true mask in
    training, or a single clicked pixel); ``index``: the ``index``-th largest segment (0-based). An image where
    no segment qualifies gets an all-false mask (the caller decides the fallback).
    """
    if (hint is None) == (index is None):
        raise ValueError("give exactly one of hint (a mask or clicked point) and index.")
    selected = np.zeros(segments.shape, bool)
    if index is not None:
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}.")
        return segments == index + 1
    hint_np = hint.detach()[:, 0].cpu().numpy() > 0.5
    for b in range(segments.shape[0]):
        overlap = np.bincount(segments[b][hint_np[b]], minlength=segments[b].max() + 1)
        overlap[0] = 0
        if overlap.max() > 0:
            selected[b] = segments[b] == int(np.argmax(overlap))
    return selected


class ObjectRemovalPipeline(nn.Module):
    """Segmenter + EdgeConnect inpainters: remove the object that a hint mask points at.

    ``forward(x)`` takes x = (B, C + 1, H, W): the image (C channels, intensities in [0, 1]) and a hint mask
    (1 channel: a rough mask of the object, or a single clicked pixel of it; > 0.5 = on) and returns the
    object-removed image (B, C, H, W). Steps: the segmenter's ``1 + num_classes`` output channels give the
    object probability (sigmoid of channel 0) and the segmentation map (softmax of the rest); segments are the
    connected components of ``p > threshold``; the one overlapping the hint most is the optimised mask (where
    none overlaps, the hint itself, with a warning count in ``fallbacks``); Canny edges of the image; the
    inpainters fill the mask.

    In training (``self.training``) the mask is hard in value but differentiable (straight-through:
    ``hard + p - p.detach()``), so inpainting losses reach the segmenter. ``forward(x, details=True)`` returns
    the dict of :class:`EdgeConnectInpainter` plus ``mask`` (used), ``prob`` (object probability),
    ``seg_logits`` and ``selected`` (the hard mask).

    Args:
        segmenter: any network (B, C, H, W) -> (B, 1 + num_classes, H, W), e.g. MONAI ``BasicUNet``.
        inpainter: an :class:`EdgeConnectInpainter`.
        threshold: probability threshold of the segments.
        canny_sigma: Gaussian sigma of the Canny edges.
        expand: grow (> 0, dilation) or shrink (< 0, erosion) the chosen mask by this many pixels with a
            4-connected (cross) footprint (0 = as is); Table I's eroded/dilated masks. An image whose mask an
            erosion would empty keeps its mask unchanged, counted in ``fallbacks``.
        mask_source: ``"segmenter"`` (the segment chosen by the hint, the paper's pipeline) or ``"hint"`` (the
            hint itself is the mask: the inpainter alone fed a given mask, e.g. the true one, as in Table I).
    """

    def __init__(self, segmenter: nn.Module, inpainter: EdgeConnectInpainter, threshold: float = 0.5,
                 canny_sigma: float = 2.0, expand: int = 0, mask_source: str = "segmenter") -> None:  # fmt: skip
        super().__init__()
        if mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}.")
        self.segmenter, self.inpainter = segmenter, inpainter
        self.threshold, self.canny_sigma, self.expand = float(threshold), float(canny_sigma), int(expand)
        self.mask_source = mask_source
        self.fallbacks = 0

    def segment(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(object probability (B, 1, H, W), segmentation map (B, K, H, W), raw logits) of an image batch."""
        logits = self.segmenter(image)
        expected = 1 + self.inpainter.num_classes
        if logits.shape[1] != expected:
            raise ValueError(
                f"the segmenter returns {logits.shape[1]} channels; expected 1 + num_classes = {expected}."
            )
        return torch.sigmoid(logits[:, :1]), torch.softmax(logits[:, 1:], dim=1), logits

    def choose_mask(self, prob: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        """The hard (B, 1, H, W) mask: the segment overlapping ``hint`` most (else the hint; with
        ``mask_source="hint"`` always the hint), then dilated or eroded by ``expand`` pixels."""
        hint_np = hint.detach()[:, 0].cpu().numpy() > 0.5
        if self.mask_source == "hint":
            selected = hint_np
        else:
            selected = select_segments(propose_segments(prob, self.threshold), hint=hint)
            empty = ~selected.reshape(len(selected), -1).any(axis=1)
            self.fallbacks += int(empty.sum())
            selected[empty] = hint_np[empty]
        selected = np.stack([self._morph(s) for s in selected])
        return torch.from_numpy(selected[:, None]).to(prob.device, prob.dtype)

    def _morph(self, mask: np.ndarray) -> np.ndarray:
        """Dilate (``expand`` > 0) or erode (< 0) one (H, W) mask; an erosion to nothing keeps the mask."""
        if self.expand == 0:
            return mask
        footprint = ndimage.generate_binary_structure(2, 1)
        if self.expand > 0:
            return ndimage.binary_dilation(mask, footprint, self.expand)
        eroded = ndimage.binary_erosion(mask, footprint, -self.expand)
        if eroded.any():
            return eroded
        self.fallbacks += 1
        return mask

    def forward(self, x: torch.Tensor, details: bool = False):
        channels = self.inpainter.image_channels
        if x.ndim != 4 or x.shape[1] != channels + 1:
            raise ValueError(
                f"expected x = (B, {channels} image channels + 1 hint mask, H, W), got shape {tuple(x.shape)}."
            )
        image, hint = x[:, :channels], x[:, channels:]
        if not torch.isfinite(x).all():
            raise ValueError("the input holds NaN or infinite values.")
        if ((hint > 0.5).flatten(1).sum(1) == 0).any():
            raise ValueError("the hint mask selects nothing: mark (part of) the object to remove.")
        prob, segmap, logits = self.segment(image)
        hard = self.choose_mask(prob, hint)
        mask = hard + (prob - prob.detach()) if self.training else hard
        edge = batch_canny_edges(image, sigma=self.canny_sigma)
        out = self.inpainter(image, mask, edge, segmap)
        if not details:
            return out["pred"]
        return {**out, "mask": mask, "prob": prob, "seg_logits": logits, "selected": hard}
