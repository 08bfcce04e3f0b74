"""Autoinpainting (Astaraki et al.): unsupervised tumour segmentation by inpainting with a network trained on
healthy images only.

Per 2D slice (:meth:`AutoInpainter.inpaint_slice`):

1. circles of ``radius`` (27 px) with centres on a ``step`` (15 px) grid inside the organ of interest (OOI)
   (:func:`common.transforms.sliding_circle_masks`), clipped to the OOI (ours: a disc crossing the OOI's edge
   voids only OOI pixels, so the edge of the body, skull or chest wall is never "inpainted" and scored as a
   tumour; the dilations of step 3 are clipped alike); each is inpainted, **in batches** of ``batch_size``
   circles per forward pass (``batch_size=1`` is the naive one-circle-per-pass loop, same outputs), by
   default computing only the network outputs that reach the hole (:func:`local_composites`, same outputs;
   with the settled candidates of step 3, about 10x the naive loop on 2 CPU threads, ``benchmarks/run_all.py``);
2. score of a circle = sum of |input - inpainted| inside it (all channels); the ``top_k`` (3) best circles
   are united;
3. the union is dilated by squares of width 7, 9, 11, 13, 15 (``dilation_widths``); the union and its
   dilations are inpainted in order, half per pass, until the rule of step 4 has stopped (the
   later ones cannot change its choice);
4. choice rule (ours; the paper says "keep the larger mask while the residual grows"): with ``R_k`` the
   residual sum of candidate ``k`` (union first, then increasing widths), start at the union and move from
   the kept candidate to the next one while ``R_next > (1 + growth_tolerance) * R_kept``; stop at the first
   candidate that does not grow by more than the tolerance (default 5 %, relative);
5. the final residual |input - inpainted| (channel mean) is binarised at ``component_threshold``; if its
   largest 8-connected component is smaller than a disc of ``min_tumour_radius`` (6 px, area pi r^2), the
   slice is returned unchanged (inpainted = input, residual 0, empty mask).

Sizes in millimetres: the paper's numbers are pixels of its 0.976 mm CT slices (:data:`PAPER_PIXEL_MM`); the
configs give them in mm (``radius_mm`` 26.352 = 27 px x 0.976 mm, ...) and :func:`search_in_pixels` turns them
into pixels of the slice at hand (:class:`AutoInpaintingInferer` reads the spacing from the slice's affine), so a
2 mm brain slice is searched with 13.2 px circles, not 27 px ones.

Inpainted images are composites (network output inside the hole, the input elsewhere), so residuals are zero
outside the chosen mask. Volumes (:func:`residual_volume`): the stacked slices of a subject and their
inpaintings are both scaled to [0, 1] with the *input* volume's minimum and maximum (one affine map, so
healthy tissue keeps a zero residual), and the residual is their absolute difference (channel mean), which
:func:`segment_residual` thresholds (fixed threshold; per-subject best threshold with
:class:`common.metrics.BestThresholdDiceMetric`).

:class:`AutoInpaintingInferer` runs the pipeline as a MONAI inferer (in a bundle's evaluator and in MONAI Label),
with the OOI as the last channel of its input; :class:`SplitInfererOutputd` splits its output into the
segmentation, the residual and the inpainted image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import MapTransform
from scipy import ndimage

from common.networks import GatedUNet
from common.transforms import sliding_circle_masks

logger = logging.getLogger(__name__)

__all__ = [
    "AutoInpainter",
    "AutoInpaintingInferer",
    "SliceResult",
    "PAPER_PIXEL_MM",
    "SplitInfererOutputd",
    "pixel_spacing",
    "residual_volume",
    "is_in_mm",
    "local_composites",
    "local_predictions",
    "local_scores",
    "search_in_pixels",
    "searcher_at",
    "segment_residual",
    "supports_local_pass",
]

#: pixel spacing (mm) of the paper's CT slices (NSCLC, 0.976 x 0.976 mm at 512 x 512), where its 27 px radius,
#: 15 px step, 6 px minimum tumour radius and 7-15 px dilation squares were set
PAPER_PIXEL_MM = 0.976


def search_in_pixels(
    spacing_mm: float,
    radius_mm: float = 27 * PAPER_PIXEL_MM,
    step_mm: float = 15 * PAPER_PIXEL_MM,
    min_tumour_radius_mm: float = 6 * PAPER_PIXEL_MM,
    dilation_widths_mm: Sequence[float] = tuple(w * PAPER_PIXEL_MM for w in (7, 9, 11, 13, 15)),
    crop_size_mm: float | None = None,
    **others,
) -> dict:
    """:class:`AutoInpainter` arguments in pixels of ``spacing_mm`` from a search given in millimetres.

    Radii stay fractional; the step is rounded (at least 1 px); each dilation width becomes the nearest odd
    number of pixels (at least 1), repeats dropped, so at 0.976 mm the paper's pixels come back exactly.
    ``others`` (top_k, growth_tolerance, component_threshold, batch_size, fill_value, rescore_top, local) pass
    unchanged."""
    if spacing_mm <= 0:
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm} mm")
    widths: list[int] = []
    for width in dilation_widths_mm:
        odd = max(1, 2 * int(round((width / spacing_mm - 1) / 2)) + 1)
        if odd not in widths:
            widths.append(odd)
    crop = None if crop_size_mm is None else int(round(crop_size_mm / spacing_mm))
    return {
        "radius": radius_mm / spacing_mm,
        "step": max(1, int(round(step_mm / spacing_mm))),
        "min_tumour_radius": min_tumour_radius_mm / spacing_mm,
        "dilation_widths": widths,
        "crop_size": crop,
        **others,
    }


def is_in_mm(search: Mapping) -> bool:
    """Whether a search's sizes are given in millimetres (``radius_mm``, ...) rather than pixels."""
    return any(str(k).endswith("_mm") for k in search)


def searcher_at(search: Mapping, spacing_mm: float | None) -> AutoInpainter:
    """The :class:`AutoInpainter` of ``search`` for slices of ``spacing_mm`` pixels: a search in mm is turned
    into pixels (:func:`search_in_pixels`, needs the spacing), a search in pixels is used as given."""
    if not is_in_mm(search):
        return AutoInpainter(**search)
    if spacing_mm is None:
        raise ValueError("the search is in mm but the slice's pixel spacing is unknown (no affine, no spacing_mm)")
    return AutoInpainter(**search_in_pixels(spacing_mm, **search))


def pixel_spacing(image, index: int = 0) -> float | None:
    """In-plane pixel spacing (mm, the mean of the first two axes) of a MetaTensor (item ``index`` of a
    batch); None for a plain tensor. Raises when the two axes differ by more than 1 % (resample first)."""
    if not isinstance(image, MetaTensor):
        return None
    affine = torch.as_tensor(image.affine, dtype=torch.float64)
    affine = affine[index] if affine.dim() == 3 else affine
    sizes = torch.linalg.norm(affine[:3, :2], dim=0)
    if abs(float(sizes[0] - sizes[1])) > 0.01 * float(sizes.max()):
        raise ValueError(
            f"anisotropic pixels ({sizes[0]:.3f} x {sizes[1]:.3f} mm): the circles need square pixels; "
            "resample the slice (the bundle's model_grid does)"
        )
    return float(sizes.mean())


@dataclass
class SliceResult:
    """What :meth:`AutoInpainter.inpaint_slice` found on one slice (tensors on the network's device).

    ``inpainted`` (C, H, W) composite; ``residual`` (1, H, W) channel-mean |input - inpainted|; ``mask``
    (1, H, W) the chosen hole (empty when unchanged); ``circles`` (N, H, W) bool candidate circles,
    ``centres`` (N, 2), ``scores`` (N,); ``top`` indices of the kept circles; ``candidate_residuals`` R_k of
    the union and its dilations, up to the pass that settled the choice
    (:meth:`AutoInpainter.settled_candidates`); ``chosen`` index into them (-1 when no circle fits in the OOI);
    ``unchanged`` whether the slice was returned unchanged.
    """

    inpainted: torch.Tensor
    residual: torch.Tensor
    mask: torch.Tensor
    circles: np.ndarray
    centres: np.ndarray
    scores: np.ndarray
    top: np.ndarray
    candidate_residuals: np.ndarray
    chosen: int
    unchanged: bool


def _check_image(image: torch.Tensor, name: str, dims: int) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}.")
    if image.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(image.shape)}.")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or inf values.")


class AutoInpainter:
    """The autoinpainting search on 2D slices; every number of the paper is an argument.

    Args:
        radius, step: sliding circles (px).
        top_k: circles kept and united.
        dilation_widths: widths (odd, px) of the square structuring elements dilating the union.
        growth_tolerance: relative residual growth needed to keep the next larger mask (see module docstring).
        min_tumour_radius: slices whose largest residual component is smaller than a disc of this radius are
            returned unchanged (0 disables the check).
        component_threshold: residual level (on the [0, 1] image scale) binarised for that check.
        batch_size: circles inpainted per forward pass (1 = naive loop).
        fill_value: intensity put in the holes of the network input.
        crop_size: if set, circles are scored on crops of this size around them (speed option, not the
            paper's; see :meth:`circle_scores`); the six final inpaintings always use the whole slice. Not
            exact: the network's 8 levels see the whole slice, so crop scores rank circles differently
            (shipped weights, benchmark slice: correlation with whole-slice scores 0.31 at 75 px, 0.88 at
            192 px).
        rescore_top: with ``crop_size``, the ``rescore_top`` best circles of the crop scores are inpainted again
            on the whole slice and the ``top_k`` are picked among them by those whole-slice scores (speed
            option: the answer is the naive search's whenever its ``top_k`` circles are in the crop scores'
            shortlist). None (default): the crop scores rank all circles.
        local: with a gated :class:`~common.networks.GatedUNet` in eval mode, inpaint by
            :func:`local_composites`, which computes only the network outputs that reach each hole: the
            whole-slice answer (up to float rounding), about 10x faster (``benchmarks/run_all.py``); False runs the
            whole slice through the network for every hole (the naive search).
    """

    def __init__(
        self,
        radius: float = 27,
        step: int = 15,
        top_k: int = 3,
        dilation_widths: Sequence[int] = (7, 9, 11, 13, 15),
        growth_tolerance: float = 0.05,
        min_tumour_radius: float = 6,
        component_threshold: float = 0.1,
        batch_size: int = 32,
        fill_value: float = 0.0,
        crop_size: int | None = None,
        rescore_top: int | None = None,
        local: bool = True,
    ) -> None:
        if radius <= 0 or step < 1 or top_k < 1 or batch_size < 1:
            raise ValueError(
                f"need radius > 0, step >= 1, top_k >= 1, batch_size >= 1; got {radius}, {step}, {top_k}, {batch_size}."
            )
        if any(int(w) != w or w < 1 or w % 2 == 0 for w in dilation_widths):
            raise ValueError(f"dilation widths must be odd positive integers, got {list(dilation_widths)}.")
        if growth_tolerance < 0 or min_tumour_radius < 0:
            raise ValueError("growth_tolerance and min_tumour_radius must be >= 0.")
        self.radius, self.step, self.top_k = float(radius), int(step), int(top_k)
        self.dilation_widths = [int(w) for w in dilation_widths]
        self.growth_tolerance = float(growth_tolerance)
        self.min_tumour_radius = float(min_tumour_radius)
        self.component_threshold = float(component_threshold)
        self.batch_size = int(batch_size)
        self.fill_value = float(fill_value)
        if crop_size is not None and crop_size <= 2 * radius:
            raise ValueError(f"crop_size must exceed the circle's diameter {2 * radius}, got {crop_size}.")
        self.crop_size = None if crop_size is None else int(crop_size)
        if rescore_top is not None and rescore_top < top_k:
            raise ValueError(f"rescore_top must be at least top_k ({top_k}), got {rescore_top}.")
        self.rescore_top = None if rescore_top is None else int(rescore_top)
        self.local = bool(local)

    def _runs_locally(self, network, image: torch.Tensor) -> bool:
        """Whether ``image`` (one (C, H, W) slice) is inpainted by the local pass (``local`` and a gated U-Net)."""
        return self.local and image.dim() == 3 and supports_local_pass(network)

    @torch.no_grad()
    def _local_batches(self, function, network, image: torch.Tensor, holes: torch.Tensor, baseline=None) -> list:
        """``function`` (:func:`local_composites` or :func:`local_scores`) on ``batch_size`` holes at a time,
        the slice's hole-free encoder features (``baseline``, :func:`encoder_baseline`) computed once for all."""
        baseline = encoder_baseline(network, image) if baseline is None else baseline
        step = self.batch_size
        return [function(network, image, holes[i : i + step], baseline) for i in range(0, holes.shape[0], step)]

    @torch.no_grad()
    def inpaint(self, network, image: torch.Tensor, holes: torch.Tensor, baseline=None) -> torch.Tensor:
        """Composites of ``image`` ((C, H, W), or one image per hole (N, C, H, W)) inpainted in each of
        ``holes`` (N, 1, H, W), ``batch_size`` holes per forward pass of ``network`` (input: masked image and
        mask concatenated); with ``local`` and a gated U-Net, by :func:`local_composites` (same numbers; the
        slice's :func:`encoder_baseline` may be passed in)."""
        if self._runs_locally(network, image):
            return torch.cat(self._local_batches(local_composites, network, image, holes, baseline))
        outputs = []
        for start in range(0, holes.shape[0], self.batch_size):
            mask = holes[start : start + self.batch_size].to(image.dtype)
            known = image[None] if image.dim() == 3 else image[start : start + self.batch_size]
            masked = known * (1 - mask) + self.fill_value * mask
            pred = network(torch.cat([masked, mask], 1))
            outputs.append(pred * mask + known * (1 - mask))
        return torch.cat(outputs)

    def slice_scores(self, network, image: torch.Tensor, holes: torch.Tensor, baseline=None) -> np.ndarray:
        """Sum of |input - inpainted| (all channels) of ``image`` inpainted on the whole slice in each of
        ``holes``; with the local pass read off each hole's box (:func:`local_scores`)."""
        if self._runs_locally(network, image):
            return np.concatenate(self._local_batches(local_scores, network, image, holes, baseline))
        return (self.inpaint(network, image, holes) - image[None]).abs().sum(dim=(1, 2, 3)).cpu().numpy()

    def circle_scores(
        self, network, image: torch.Tensor, holes: torch.Tensor, centres: np.ndarray, baseline=None
    ) -> np.ndarray:
        """Score of each circle: :meth:`slice_scores`. With ``crop_size``, each circle is inpainted in a
        ``crop_size`` square around its centre (shifted to stay inside the image) instead of the whole slice:
        faster, but the network sees less context than in training."""
        if self.crop_size is None:
            return self.slice_scores(network, image, holes, baseline)
        spatial = np.array(image.shape[1:])
        size = np.minimum(self.crop_size, spatial)
        starts = np.clip(centres - size // 2, 0, spatial - size)
        windows = [(slice(None), slice(y, y + size[0]), slice(x, x + size[1])) for y, x in starts]
        crops = torch.stack([image[w] for w in windows])
        crop_holes = torch.stack([hole[w] for hole, w in zip(holes, windows)])
        return (self.inpaint(network, crops, crop_holes) - crops).abs().sum(dim=(1, 2, 3)).cpu().numpy()

    def dilate(self, mask: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) mask -> (1 + len(widths), 1, H, W): the mask and its square dilations (a square's max
        taken as a row max then a column max: the same values, far fewer comparisons), computed on the
        mask's bounding box grown by the widest square's reach (nothing outside it can change)."""
        out = mask.expand(1 + len(self.dilation_widths), -1, -1, -1).clone()
        hit = [(mask[0, 0] != 0).any(dim=1 - axis).nonzero() for axis in range(2)]
        if len(hit[0]) == 0:
            return out
        reach = max(self.dilation_widths) // 2
        y0, x0 = (max(0, int(h[0]) - reach) for h in hit)
        y1, x1 = (min(size, int(h[-1]) + 1 + reach) for h, size in zip(hit, mask.shape[2:]))
        window = mask[:, :, y0:y1, x0:x1]
        for i, w in enumerate(self.dilation_widths, start=1):
            out[i : i + 1, :, y0:y1, x0:x1] = F.max_pool2d(
                F.max_pool2d(window, (w, 1), 1, (w // 2, 0)), (1, w), 1, (0, w // 2)
            )
        return out

    def choose(self, residual_sums: Sequence[float]) -> int:
        """Index of the kept candidate (see the module docstring's rule)."""
        kept = 0
        for k in range(1, len(residual_sums)):
            if residual_sums[k] > (1 + self.growth_tolerance) * residual_sums[kept]:
                kept = k
            else:
                break
        return kept

    def settled_candidates(self, network, image: torch.Tensor, candidates: torch.Tensor, baseline=None):
        """Inpainted candidates and their residual sums R_k, in order, half of them per pass and only until the
        choice rule has stopped (a candidate after the kept one did not grow): later R_k cannot change
        :meth:`choose`, so they are not inpainted (the union chosen: three inpaintings, not six)."""
        images, sums, chunk = [], [], max(1, math.ceil(len(candidates) / 2))
        while len(sums) < len(candidates):
            batch = self.inpaint(network, image, candidates[len(sums) : len(sums) + chunk], baseline)
            images.append(batch)
            sums.extend((batch - image[None]).abs().sum(dim=(1, 2, 3)).cpu().tolist())
            if self.choose(sums) + 1 < len(sums):
                break
        return torch.cat(images), np.array(sums)

    def is_too_small(self, residual: torch.Tensor) -> bool:
        """Whether the largest 8-connected component of ``residual > component_threshold`` is smaller than a
        disc of ``min_tumour_radius``."""
        if self.min_tumour_radius == 0:
            return False
        labels, count = ndimage.label(
            (residual[0] > self.component_threshold).cpu().numpy(), structure=np.ones((3, 3))
        )
        largest = np.bincount(labels.ravel())[1:].max() if count else 0
        return largest < math.pi * self.min_tumour_radius**2

    def inpaint_slice(self, network, image: torch.Tensor, ooi: torch.Tensor) -> SliceResult:
        """Run the search on one slice: ``image`` (C, H, W) on the network's scale, ``ooi`` (H, W) or (1, H, W)
        organ-of-interest mask. A slice whose OOI holds no grid point is returned unchanged."""
        _check_image(image, "image", 3)
        ooi = ooi[0] if ooi.dim() == 3 else ooi
        if tuple(ooi.shape) != tuple(image.shape[1:]):
            raise ValueError(
                f"OOI shape {tuple(ooi.shape)} differs from the image's {tuple(image.shape[1:])}."
            )
        region = ooi.detach().cpu().numpy() > 0
        empty = np.zeros((0, *region.shape), bool)
        if not region[:: self.step, :: self.step].any():
            return self._unchanged(image, empty, np.zeros((0, 2), int), np.zeros(0), -1)
        circles, centres = sliding_circle_masks(region, self.radius, self.step)
        circles &= region[None]  # holes stay in the organ: skull, chest wall and background are never voided
        holes = torch.as_tensor(circles[:, None], device=image.device)
        baseline = encoder_baseline(network, image) if self._runs_locally(network, image) else None
        scores = self.circle_scores(network, image, holes, centres, baseline)
        if self.crop_size is not None and self.rescore_top is not None:
            # shortlist by the crop scores, then rank the shortlist by whole-slice scores (as the naive search)
            shortlist = np.sort(np.argsort(-scores, kind="stable")[: self.rescore_top])
            scores = scores.copy()
            scores[shortlist] = self.slice_scores(network, image, holes[shortlist], baseline)
            top = shortlist[np.argsort(-scores[shortlist], kind="stable")[: self.top_k]]
        else:
            top = np.argsort(-scores, kind="stable")[: self.top_k]
        union = holes[top].amax(0, keepdim=True).to(image.dtype)
        inside = torch.as_tensor(region, device=image.device, dtype=image.dtype)
        candidates = self.dilate(union) * inside
        candidate_images, sums = self.settled_candidates(network, image, candidates, baseline)
        chosen = self.choose(sums)
        residual = (candidate_images[chosen] - image).abs().mean(0, keepdim=True)
        if self.is_too_small(residual):
            return self._unchanged(image, circles, centres, scores, chosen, top, sums)
        return SliceResult(
            candidate_images[chosen],
            residual,
            candidates[chosen],
            circles,
            centres,
            scores,
            top,
            sums,
            chosen,
            False,
        )

    def _unchanged(self, image, circles, centres, scores, chosen, top=None, sums=None) -> SliceResult:
        zeros = torch.zeros_like(image[:1])
        return SliceResult(
            image.clone(),
            zeros,
            zeros.clone(),
            circles,
            centres,
            scores,
            np.zeros(0, int) if top is None else top,
            np.zeros(0) if sums is None else sums,
            chosen,
            True,
        )


# ------------------------------------------------------------------------------------------- exact local pass
def supports_local_pass(network) -> bool:
    """Whether :func:`local_composites` can run ``network``: a gated :class:`~common.networks.GatedUNet` in
    eval mode (local convolutions, BatchNorm a fixed per-channel map)."""
    return isinstance(network, GatedUNet) and not network.partial and not network.training


def _fit(start: np.ndarray, end: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """One length for the intervals ``[start, end)`` of ``[0, size)``: the longest, each interval's window
    shifted to cover it and stay inside (so every hole's window has one shape and a batch stacks)."""
    length = int(max(1, (end - start).max()))
    return np.minimum(start, size - length), length


def _windows(maps: torch.Tensor, ys, xs, size: tuple[int, int], values=None, vys=None, vxs=None) -> torch.Tensor:
    """``(N, C, *size)`` channels-last: item ``n``'s window at ``(ys[n], xs[n])`` of ``maps`` (N items, or 1
    shared), with ``values[n]`` (recomputed features whose windows start at ``(vys[n], vxs[n])``) in place of
    the map where they overlap. One row gather from the maps as (pixels, channels) tables: no per-hole loop,
    never a whole map per hole."""
    n, (h, w), (items, c, height, width) = len(ys), size, maps.shape
    rows, cols = np.asarray(ys)[:, None] + np.arange(h), np.asarray(xs)[:, None] + np.arange(w)
    first = np.zeros(n, np.int64) if items == 1 else np.arange(n) * (height * width)
    flat = first[:, None, None] + rows[:, :, None] * width + cols[:, None, :]
    tables = [maps.permute(0, 2, 3, 1).reshape(items * height * width, c)]
    if values is not None:
        vh, vw = values.shape[2:]
        r, q = rows - np.asarray(vys)[:, None], cols - np.asarray(vxs)[:, None]
        inside = ((r >= 0) & (r < vh))[:, :, None] & ((q >= 0) & (q < vw))[:, None, :]
        pasted = items * height * width + np.arange(n)[:, None, None] * (vh * vw) + r[:, :, None] * vw + q[:, None, :]
        flat = np.where(inside, pasted, flat)
        tables.append(values.permute(0, 2, 3, 1).reshape(n * vh * vw, c))
    table = tables[0] if len(tables) == 1 else torch.cat(tables)
    gathered = table.index_select(0, torch.as_tensor(flat.reshape(-1), device=maps.device))
    return gathered.view(n, h, w, c).permute(0, 3, 1, 2)


def _folded(block) -> tuple[torch.Tensor, torch.Tensor]:
    """A :class:`~common.networks.GatedConv2d` block's feature and gating convolutions as one (twice as wide,
    channels-last weights), its eval BatchNorm (a per-channel affine map) folded into the feature half."""
    feature, gating, norm = block.feature, block.gating, block.norm
    weight = feature.weight
    bias = torch.zeros_like(gating.bias) if feature.bias is None else feature.bias
    if isinstance(norm, torch.nn.BatchNorm2d):
        scale = torch.rsqrt(norm.running_var + norm.eps)
        scale = scale if norm.weight is None else scale * norm.weight
        shift = -norm.running_mean * scale + (0 if norm.bias is None else norm.bias)
        weight, bias = weight * scale[:, None, None, None], bias * scale + shift
    weight = torch.cat([weight, gating.weight]).contiguous(memory_format=torch.channels_last)
    return weight, torch.cat([bias, gating.bias])


def _gated(block, x: torch.Tensor, folded) -> torch.Tensor:
    """A gated block on an input already zero-padded, with its :func:`_folded` convolution. The feature half is
    copied out compact and activated in place, the sigmoid runs in place on the whole conv output (contiguous,
    several times faster than on a channel half): no other whole-size buffer (fresh pages are slow to fault in)."""
    both = F.conv2d(x.contiguous(memory_format=torch.channels_last), *folded, block.feature.stride)
    half = block.feature.out_channels
    out = both[:, :half].contiguous(memory_format=torch.channels_last)
    if isinstance(block.act, torch.nn.LeakyReLU):
        out = F.leaky_relu_(out, block.act.negative_slope)
    elif isinstance(block.act, torch.nn.ReLU):
        out = out.relu_()
    else:
        out = block.act(out)
    return out.mul_(both.sigmoid_()[:, half:])


def _joined(*maps: torch.Tensor) -> torch.Tensor:
    """``maps`` (N, C_i, h, w) concatenated along channels into one channels-last tensor (``torch.cat`` returns
    NCHW when a part has one channel, and the convolution would copy it again)."""
    first = maps[0]
    out = torch.empty(
        (first.shape[0], sum(m.shape[1] for m in maps), *first.shape[2:]),
        dtype=first.dtype,
        device=first.device,
        memory_format=torch.channels_last,
    )
    start = 0
    for m in maps:
        out[:, start : start + m.shape[1]] = m
        start += m.shape[1]
    return out


def _nearest_source(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each position of ``F.interpolate(mode="nearest")`` from ``size_in`` to ``size_out``,
    read off torch itself so the local pass upsamples as the network does."""
    ramp = torch.arange(size_in, dtype=torch.float64).view(1, 1, size_in, 1)
    return F.interpolate(ramp, size=(size_out, 1), mode="nearest").view(-1).long().numpy()


def _upsampled(d, d_starts, sources, starts, lengths, sizes, pad) -> torch.Tensor:
    """Windows ``[start - pad, start + length + pad)`` of the nearest upsampling to ``sizes`` of features
    ``d`` held on windows at ``d_starts``; zero outside the map (the convolution's padding). One row gather
    from ``d`` as a (pixels, channels) table (far faster than advanced indexing); channels-last result."""
    n, c, h, w = d.shape
    table = torch.cat([d.permute(0, 2, 3, 1).reshape(n * h * w, c), d.new_zeros(1, c)])  # last row: zero
    index = []
    for axis in range(2):
        q = (np.asarray(starts[axis]) - pad)[:, None] + np.arange(lengths[axis] + 2 * pad)
        inside = (q >= 0) & (q < sizes[axis])
        source = sources[axis][np.clip(q, 0, sizes[axis] - 1)] - np.asarray(d_starts[axis])[:, None]
        index.append(np.where(inside, source, -1))
    rows, cols = index
    flat = np.arange(n)[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]
    flat = np.where((rows >= 0)[:, :, None] & (cols >= 0)[:, None, :], flat, n * h * w)
    gathered = table.index_select(0, torch.as_tensor(flat.reshape(-1), device=d.device))
    return gathered.view(n, rows.shape[1], cols.shape[1], c).permute(0, 3, 1, 2)


@torch.no_grad()
def encoder_baseline(network, image: torch.Tensor) -> list[torch.Tensor]:
    """Encoder features (1, C_l, H_l, W_l), levels 1..depth, of ``image`` (C, H, W) with no hole."""
    h = torch.cat([image[None], torch.zeros_like(image[None, :1])], 1)
    features = []
    for block in network.encoder:
        h, _ = block(h, None)
        features.append(h)
    return features


@torch.no_grad()
def local_predictions(network, image: torch.Tensor, holes: torch.Tensor, baseline=None):
    """The network's output over each hole's bounding box, computing only what reaches it (see
    :func:`local_composites`): ``(pred, inside, known, ys, xs)``, the output, the hole and the image on
    ``(N, C, ly, lx)`` windows whose corners are ``(ys[n], xs[n])``.

    Why it is exact: a composite differs from the image only inside its hole, so only the output over the
    hole's bounding box matters. An encoder feature differs from the unmasked slice's (``baseline``,
    :func:`encoder_baseline`, computed once) only where its convolution window reaches the hole, so each level
    recomputes that window alone and reads the baseline elsewhere; the decoder and the output convolution run
    only on the windows the hole's box depends on (nearest upsampling indices read off torch). Deep levels, a
    few pixels wide, are covered whole; zero padding at the map edges is reproduced, so border circles are
    exact. Eval BatchNorm is folded into the convolutions and maps are channels-last (float rounding only).
    No fill value: the network zeroes its input's holes itself, so with binary holes it changes nothing.
    """
    n = holes.shape[0]
    baseline = encoder_baseline(network, image) if baseline is None else baseline
    sizes = [tuple(image.shape[1:])] + [tuple(f.shape[2:]) for f in baseline]
    depth, pad_out = len(network.encoder), network.output.padding[0]
    pad = max([pad_out] + [b.feature.padding[0] for b in (*network.encoder, *network.decoder)])
    padded_holes = holes.new_zeros((n, 1, sizes[0][0] + 2 * pad, sizes[0][1] + 2 * pad))
    padded_holes[:, :, pad : pad + sizes[0][0], pad : pad + sizes[0][1]] = holes
    padded_image = F.pad(image[None], (pad,) * 4)
    padded_base = [F.pad(f, (pad,) * 4).contiguous(memory_format=torch.channels_last) for f in baseline]

    def level0(ys, xs, size):  # windows (padded coordinates) of the network's first-level input
        m = _windows(padded_holes, ys, xs, size).to(image.dtype)
        return _joined(_windows(padded_image, ys, xs, size) * (1 - m), m)

    box = []  # per axis: the hole's bounding interval (an empty hole: the first pixel, its output unused)
    flat = holes[:, 0].view(torch.uint8) if holes.dtype == torch.bool else holes[:, 0]  # uint8 max: fast
    for axis in range(2):
        hit = (flat.amax(dim=2 - axis) > 0).cpu().numpy()
        first = np.where(hit.any(1), hit.argmax(1), 0)
        box.append((first, np.where(hit.any(1), hit.shape[1] - hit[:, ::-1].argmax(1), 1)))
    # encoder: level l recomputed on the window its convolutions carry the hole's influence to, kept as
    # (values, corner in padded coordinates); the baseline holds everything else
    features, affected = [None], box
    for level, block in enumerate(network.encoder, start=1):
        k, s, p = block.feature.kernel_size[0], block.feature.stride[0], block.feature.padding[0]
        fitted = [
            _fit(np.maximum(0, -((k - 1 - a0 - p) // s)), np.minimum(size, (a1 - 1 + p) // s + 1), size)
            for (a0, a1), size in zip(affected, sizes[level])
        ]
        (ys, ly), (xs, lx) = fitted
        corner, size = (s * ys + pad - p, s * xs + pad - p), (s * (ly - 1) + k, s * (lx - 1) + k)
        if level == 1:
            inputs = level0(*corner, size)
        else:
            inputs = _windows(padded_base[level - 2], *corner, size, *features[-1])
        features.append((_gated(block, inputs, _folded(block)), ys + pad, xs + pad))
        affected = [(ys, ys + ly), (xs, xs + lx)]
    # the decoder windows the output over the hole's box needs, from full resolution down
    need = [(np.maximum(0, lo - pad_out), np.minimum(end, hi + pad_out)) for (lo, hi), end in zip(box, sizes[0])]
    windows, sources = [], []
    for level in range(depth):
        fitted = [_fit(lo, hi, size) for (lo, hi), size in zip(need, sizes[level])]
        windows.append(([f[0] for f in fitted], [f[1] for f in fitted]))
        p = network.decoder[depth - 1 - level].feature.padding[0]
        sources.append([_nearest_source(sizes[level + 1][a], sizes[level][a]) for a in range(2)])
        need = []
        for a, (start, length) in enumerate(fitted):
            lo, hi = np.maximum(0, start - p), np.minimum(sizes[level][a], start + length + p)
            need.append((sources[-1][a][lo], sources[-1][a][hi - 1] + 1))
    windows.append(([np.zeros(n, int)] * 2, list(sizes[depth])))
    # decoder, deepest first, each level on its window only
    h = _windows(padded_base[depth - 1], np.full(n, pad), np.full(n, pad), sizes[depth], *features[depth])
    for level in range(depth - 1, -1, -1):
        block = network.decoder[depth - 1 - level]
        p = block.feature.padding[0]
        (ys, xs), (ly, lx) = windows[level]
        up = _upsampled(h, windows[level + 1][0], sources[level], (ys, xs), (ly, lx), sizes[level], p)
        corner, size = (ys + pad - p, xs + pad - p), (ly + 2 * p, lx + 2 * p)
        if level == 0:
            skip = level0(*corner, size)
        else:
            skip = _windows(padded_base[level - 1], *corner, size, *features[level])
        h = _gated(block, _joined(up, skip), _folded(block))
    # output convolution over the hole's box
    (ys, ly), (xs, lx) = (_fit(b0, b1, size) for (b0, b1), size in zip(box, sizes[0]))
    identity = [np.arange(size) for size in sizes[0]]
    up = _upsampled(h, windows[0][0], identity, (ys, xs), (ly, lx), sizes[0], pad_out)
    rest = level0(ys + pad - pad_out, xs + pad - pad_out, (ly + 2 * pad_out, lx + 2 * pad_out))
    weight = network.output.weight.contiguous(memory_format=torch.channels_last)
    pred = torch.sigmoid(F.conv2d(_joined(up, rest), weight, network.output.bias))
    inside = _windows(padded_holes, ys + pad, xs + pad, (ly, lx)).to(image.dtype)
    return pred, inside, _windows(padded_image, ys + pad, xs + pad, (ly, lx)), ys, xs


@torch.no_grad()
def local_composites(network, image: torch.Tensor, holes: torch.Tensor, baseline=None) -> torch.Tensor:
    """Composites of ``image`` (C, H, W) inpainted by a gated U-Net (:func:`supports_local_pass`) in each of
    ``holes`` (N, 1, H, W, binary), in one pass that computes only what reaches the holes
    (:func:`local_predictions`): the whole-slice pass's numbers up to float rounding, several times faster."""
    pred, inside, known, ys, xs = local_predictions(network, image, holes, baseline)
    patches = pred * inside + known * (1 - inside)
    ly, lx = patches.shape[2:]
    composite = image[None].repeat(holes.shape[0], 1, 1, 1)
    for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
        composite[i, :, y : y + ly, x : x + lx] = patches[i]
    return composite


@torch.no_grad()
def local_scores(network, image: torch.Tensor, holes: torch.Tensor, baseline=None) -> np.ndarray:
    """``|composite - image|`` summed over each composite of :func:`local_composites`, read off the hole's box
    alone (the composite equals the image elsewhere), without building whole-slice composites."""
    pred, inside, known, _, _ = local_predictions(network, image, holes, baseline)
    return ((pred - known) * inside).abs().sum(dim=(1, 2, 3)).cpu().numpy()


def residual_volume(images: torch.Tensor, inpainted: torch.Tensor) -> torch.Tensor:
    """Residual of a subject: both stacks (any shape, channel first) scaled to [0, 1] by the input's min/max
    (one map for both), absolute difference averaged over channels -> (1, ...)."""
    _check_image(images, "images", images.dim())
    if images.shape != inpainted.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and inpainted {tuple(inpainted.shape)} differ in shape."
        )
    low, high = images.min(), images.max()
    scale = (high - low).clamp(min=1e-12)
    return (((inpainted - low) / scale).clamp(0, 1) - (images - low) / scale).abs().mean(0, keepdim=True)


def segment_residual(residual: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary segmentation ``residual > threshold`` (float 0/1)."""
    return (residual > threshold).to(torch.float32)


class AutoInpaintingInferer(Inferer):
    """MONAI inferer running :class:`AutoInpainter` slice by slice on a batch ``(B, C + 1, H, W)``: the image's
    ``C`` channels followed by the organ-of-interest (OOI) mask (0/1) as the last channel, which is split off
    before the search. Carrying the OOI inside ``inputs`` is what lets MONAI Label, which calls
    ``inferer(data["image"][None], network)`` with nothing else, run the same search as the bundle's evaluator.

    Each slice is its own "volume" (:func:`residual_volume`). With the search in millimetres (``radius_mm``,
    ``step_mm``, ... as :func:`search_in_pixels` takes them) the pixel sizes come from each slice's affine
    (``spacing_mm`` for plain tensors); with pixel arguments (``radius``, ``step``, ...) they are used as given.
    Returns ``(B, 2 + C, H, W)``: channel 0 the
    segmentation ``residual > threshold``, channel 1 the residual, then the inpainted image; the metadata of
    ``inputs`` (affine, file name) are kept so ``SaveImaged`` writes in the input's geometry.

    Args:
        threshold: fixed segmentation threshold on the [0, 1] residual.
        **kwargs: :class:`AutoInpainter` arguments.
    """

    def __init__(self, threshold: float = 0.1, spacing_mm: float | None = None, **kwargs) -> None:
        super().__init__()
        self.threshold, self.spacing_mm, self.search_options = float(threshold), spacing_mm, dict(kwargs)
        self._searches: dict[float | None, AutoInpainter] = {}

    def searcher(self, inputs: torch.Tensor, index: int) -> AutoInpainter:
        """The search for item ``index`` of ``inputs`` (:func:`searcher_at` its spacing), one per spacing."""
        spacing = (pixel_spacing(inputs, index) or self.spacing_mm) if is_in_mm(self.search_options) else None
        key = None if spacing is None else round(spacing, 4)
        if key not in self._searches:
            self._searches[key] = searcher_at(self.search_options, spacing)
        return self._searches[key]

    def __call__(self, inputs: torch.Tensor, network) -> torch.Tensor:
        _check_image(inputs, "inputs", 4)
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        if plain.shape[1] < 2 or not ((plain[:, -1] == 0) | (plain[:, -1] == 1)).all():
            raise ValueError(
                "the autoinpainting inferer needs the image channels followed by the organ-of-interest mask "
                f"(values 0/1) as the last channel, got inputs of shape {tuple(inputs.shape)} whose last channel "
                "is not a 0/1 mask (e.g. concatenate the 'ooi' key of the bundle's OrganOfInterestd last)."
            )
        outputs = []
        names = inputs.meta.get("filename_or_obj") if isinstance(inputs, MetaTensor) else None
        for index, (image, region) in enumerate(zip(plain[:, :-1], plain[:, -1])):
            if bool((image == image.flatten()[0]).all()) or not region.any():
                # a constant slice (or empty organ) has no anatomy to inpaint: any residual would be a false tumour
                name = names[index] if isinstance(names, (list, tuple)) else (names or f"batch item {index}")
                why = "the image is constant" if region.any() else "the organ-of-interest mask is empty"
                logger.warning("skipped slice %s: %s, so its segmentation is empty", name, why)
                empty = torch.zeros_like(image[:1])
                outputs.append(torch.cat([empty, empty, image]))
                continue
            result = self.searcher(inputs, index).inpaint_slice(network, image, region)
            residual = residual_volume(image, result.inpainted)
            outputs.append(
                torch.cat([segment_residual(residual, self.threshold), residual, result.inpainted])
            )
        stacked = torch.stack(outputs)
        if isinstance(inputs, MetaTensor):
            stacked = MetaTensor(stacked)
            stacked.copy_meta_from(inputs)
        return stacked


class SplitInfererOutputd(MapTransform):
    """Split :class:`AutoInpaintingInferer`'s ``(2 + C, H, W)`` output under ``keys`` into the segmentation
    (channel 0, left under the key), ``residual_key`` (channel 1) and ``inpainted_key`` (the ``C`` image
    channels), so each is saved as its own image. The two one-channel maps are marked channel-less
    (``original_channel_dim`` NaN) so ``SaveImaged`` writes them as plain (H, W) images."""

    def __init__(
        self,
        keys: KeysCollection = "pred",
        residual_key: str = "residual",
        inpainted_key: str = "inpainted",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.residual_key, self.inpainted_key = residual_key, inpainted_key

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            output = d[key]
            d[key], d[self.residual_key], d[self.inpainted_key] = output[0:1], output[1:2], output[2:]
            for name in (key, self.residual_key):
                d[name].meta["original_channel_dim"] = float("nan")
        return d
