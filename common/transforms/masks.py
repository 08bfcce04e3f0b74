"""Geometric inpainting masks as MONAI dictionary transforms.

Convention used everywhere in medinpaint: a mask is float32 with values {0, 1}, shape ``(1, *spatial)``,
and **1 = hole (to inpaint), 0 = known**. Every transform writes the mask under ``mask_key`` and the image
with its holes set to ``fill_value`` under ``masked_key``. Images are channel-first, ``(C, H, W)`` or
``(C, H, W, D)``, numpy arrays or torch tensors; a MetaTensor image gives MetaTensor outputs carrying a copy
of its metadata (affine included).

Each generator is an array-level function taking a spatial shape and a ``numpy.random.RandomState`` and
returning a boolean hole map, so that benchmarks and other code can call it directly; the ``*d`` classes are
thin dictionary wrappers that draw from ``self.R`` (MONAI ``RandomizableTransform``), hence honour
``set_random_state``.

MONAI has no inpainting-mask generators (its ``RandCoarseDropout`` only fills cuboids in the image and does
not return the mask), so they are written here.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage
from scipy.linalg import lapack
from skimage import io as skio

__all__ = [
    "FreeFormMaskd",
    "IrregularMaskd",
    "LargeSquareMaskd",
    "MaskBankd",
    "MaskTransformd",
    "MultiSquareMaskd",
    "RandomMaskd",
    "SlidingCircleMasksd",
    "SquareMaskd",
    "free_form_mask",
    "irregular_mask",
    "large_square_mask",
    "load_mask_bank",
    "multi_square_mask",
    "sliding_circle_masks",
    "smooth_blob_mask",
    "apply_mask",
    "as_type_of",
    "square_mask",
    "to_numpy",
    "validate_image",
    "write_mask_bank",
]

IRREGULAR_SHAPES = ("circle", "ellipse", "line")
MASK_BANK_SUFFIXES = (".png", ".npy")


# ----------------------------------------------------------------------------------------------------------
# validation and output helpers shared by every mask transform (also used by pseudo_segments / lesion_masks)
# ----------------------------------------------------------------------------------------------------------


def validate_image(image: Any, name: str = "image", spatial_dims: Sequence[int] = (2, 3)) -> tuple[int, ...]:
    """Check a channel-first image (numpy or torch) and return its spatial shape.

    Raises TypeError for non-array input and ValueError for a wrong number of dimensions, a spatial size
    below 2 voxels, or NaN values.
    """
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(image).__name__}")
    if image.ndim - 1 not in spatial_dims:
        layouts = {2: "2D (C, H, W)", 3: "3D (C, H, W, D)"}
        expected = " or ".join(layouts[d] for d in spatial_dims)
        raise ValueError(f"{name} must be a channel-first {expected} image, got shape {tuple(image.shape)}")
    spatial = tuple(int(s) for s in image.shape[1:])
    if image.shape[0] < 1 or min(spatial) < 2:
        raise ValueError(
            f"{name} of shape {tuple(image.shape)} is too small: need >= 1 channel and >= 2 voxels per spatial dim"
        )
    if np.isnan(to_numpy(image)).any():
        raise ValueError(f"{name} contains NaN values")
    return spatial


def to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A numpy view (CPU tensors) or copy (device tensors) of an array.

    Mask arithmetic runs in numpy: on small CPU images torch's intra-op threads cost milliseconds per call when
    the cores are shared with data-loader workers.
    """
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def as_type_of(array: np.ndarray, like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Return ``array`` as the container type of ``like`` (MetaTensor outputs get a copy of its metadata and of
    its transform trace, so ``Invertd`` can still undo e.g. a ``Resized`` that ran before the mask)."""
    if not isinstance(like, torch.Tensor):
        return array
    tensor = torch.from_numpy(array).to(like.device)
    if isinstance(like, MetaTensor):
        return MetaTensor(
            tensor,
            meta=copy.deepcopy(dict(like.meta)),
            applied_operations=copy.deepcopy(like.applied_operations),
        )
    return tensor


def apply_mask(
    image: np.ndarray | torch.Tensor, holes: np.ndarray, fill_value: float
) -> np.ndarray | torch.Tensor:
    """Return ``image`` with the voxels where ``holes`` (broadcastable boolean array) is True set to ``fill_value``."""
    values = to_numpy(image)
    return as_type_of(np.where(holes, np.asarray(fill_value, dtype=values.dtype), values), image)


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """Validate a (min, max) pair lying in [low, high] and return it as floats."""
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be a (min, max) pair with {low} <= min <= max <= {high}, got {value}")
    return float(value[0]), float(value[1])


class MaskTransformd(MapTransform):
    """Base for mask transforms: validates the images under ``keys`` and writes the mask / masked images.

    ``masked_key`` is one output key per image key (a plain string only with a single image key), or None to
    skip writing masked images.
    """

    spatial_dims: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        fill_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        if masked_key is None:
            self.masked_keys: tuple[str | None, ...] = (None,) * len(self.keys)
        else:
            masked = (masked_key,) if isinstance(masked_key, str) else tuple(masked_key)
            if len(masked) != len(self.keys):
                raise ValueError(
                    f"need one masked key per image key: keys={self.keys}, masked_key={masked_key!r}"
                )
            self.masked_keys = masked
        self.fill_value = float(fill_value)

    def spatial_shape(self, data: Mapping[Hashable, Any]) -> tuple[int, ...]:
        """Spatial shape shared by every image under ``keys`` (ValueError if they differ)."""
        shapes = {
            validate_image(data[key], f"data[{key!r}]", self.spatial_dims) for key in self.key_iterator(data)
        }
        if not shapes:
            raise ValueError(f"none of the image keys {self.keys} is in the data")
        if len(shapes) > 1:
            raise ValueError(f"images under keys {self.keys} have different spatial shapes: {sorted(shapes)}")
        return shapes.pop()

    def single_channel_map(self, data: Mapping[Hashable, Any], key: str, what: str) -> np.ndarray:
        """``data[key]`` (a label or organ mask) as a numpy array of shape ``(1, *spatial)`` matching the images
        (ValueError naming ``what`` otherwise)."""
        spatial = self.spatial_shape(data)
        array = data[key]
        if validate_image(array, f"data[{key!r}]") != spatial or array.shape[0] != 1:
            raise ValueError(
                f"{what} must have shape {(1, *spatial)} like the images, got {tuple(array.shape)}"
            )
        return to_numpy(array)

    def first_image(self, data: Mapping[Hashable, Any]) -> np.ndarray | torch.Tensor:
        """The first image found under ``keys``; its type and metadata shape the outputs."""
        return data[next(iter(self.key_iterator(data)))]

    def write_outputs(
        self, data: dict, holes: np.ndarray, batched: bool = False, allow_empty: bool = False
    ) -> dict:
        """Store ``holes`` (bool, ``spatial`` or ``(N, *spatial)`` when ``batched``) as a float mask and the masked images.

        An all-zero mask is an error unless ``allow_empty``: a generator must never silently hide nothing.
        """
        if not allow_empty and not holes.any():
            raise ValueError("the generated mask has no hole; refusing to return an all-zero mask")
        holes = holes[:, None] if batched else holes[None]
        data[self.mask_key] = as_type_of(holes.astype(np.float32), self.first_image(data))
        for key, masked_key in self.key_iterator(data, self.masked_keys):
            if masked_key is not None:
                image = data[key][None] if batched else data[key]
                data[masked_key] = apply_mask(image, holes, self.fill_value)
        return data


class RandomMaskd(RandomizableTransform, MaskTransformd):
    """Base for random mask transforms: subclasses implement ``generate(spatial_shape, data)`` drawing from ``self.R``.

    ``region_key`` (optional) names a 0/1 map, e.g. the brain mask: holes are kept only inside it, so training
    holes fall on tissue rather than on background. A draw that leaves nothing inside is redrawn (up to
    ``region_tries`` times, then ValueError naming the key: the region is empty or too small for the shapes).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        fill_value: float = 0.0,
        allow_missing_keys: bool = False,
        region_key: str | None = None,
        region_tries: int = 20,
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MaskTransformd.__init__(self, keys, mask_key, masked_key, fill_value, allow_missing_keys)
        self.region_key, self.region_tries = region_key, int(region_tries)

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        spatial = self.spatial_shape(d)
        if self.region_key is None:
            return self.write_outputs(d, self.generate(spatial, d))
        region = self.single_channel_map(d, self.region_key, f"region {self.region_key!r}")[0] > 0
        for _ in range(self.region_tries):
            holes = self.generate(spatial, d) & region
            if holes.any():
                return self.write_outputs(d, holes)
        raise ValueError(
            f"no hole inside region {self.region_key!r} after {self.region_tries} draws "
            f"({int(region.sum())} voxels in the region): is it empty or smaller than the shapes?"
        )


# ----------------------------------------------------------------------------------------------------------
# squares
# ----------------------------------------------------------------------------------------------------------


def square_mask(spatial_shape: Sequence[int], side: int, rng: np.random.RandomState) -> np.ndarray:
    """One square (cube in 3D) of ``side`` voxels at a uniformly random position fully inside the image."""
    if side < 1 or side > min(spatial_shape):
        raise ValueError(
            f"square side {side} must be between 1 and the smallest image side {min(spatial_shape)}"
        )
    corner = [rng.randint(0, size - side + 1) for size in spatial_shape]
    holes = np.zeros(spatial_shape, dtype=bool)
    holes[tuple(slice(c, c + side) for c in corner)] = True
    return holes


def large_square_mask(
    spatial_shape: Sequence[int], rng: np.random.RandomState, area_range: Sequence[float] = (0.2, 0.6)
) -> np.ndarray:
    """One square whose area (volume in 3D) is a uniform fraction of the image in ``area_range``, randomly placed."""
    low, high = _check_range("area_range", area_range, 0.0, 1.0)
    total, ndim = math.prod(spatial_shape), len(spatial_shape)
    if round((high * total) ** (1 / ndim)) > min(spatial_shape):
        raise ValueError(
            f"a square of {high:.0%} of a {tuple(spatial_shape)} image does not fit inside it; lower area_range"
        )
    side = max(1, round((rng.uniform(low, high) * total) ** (1 / ndim)))
    return square_mask(spatial_shape, side, rng)


def multi_square_mask(
    spatial_shape: Sequence[int],
    rng: np.random.RandomState,
    side: int = 16,
    target_fraction: float = 0.0625,
    max_tries: int = 10000,
) -> np.ndarray:
    """Non-overlapping squares of ``side`` voxels whose total area is ``target_fraction`` of the image.

    The count is ``round(target_fraction * image_size / side**ndim)`` so the hole area matches the target up to
    one square; positions are drawn by rejection of overlapping placements.
    """
    count = round(target_fraction * math.prod(spatial_shape) / side ** len(spatial_shape))
    if count < 1:
        raise ValueError(f"target_fraction={target_fraction} is smaller than one {side}-voxel square")
    if side > min(spatial_shape):
        raise ValueError(f"square side {side} exceeds the smallest image side {min(spatial_shape)}")
    holes = np.zeros(spatial_shape, dtype=bool)
    placed = 0
    for _ in range(max_tries):
        region = tuple(slice(c, c + side) for c in (rng.randint(0, s - side + 1) for s in spatial_shape))
        if not holes[region].any():
            holes[region] = True
            placed += 1
            if placed == count:
                return holes
    raise ValueError(f"could not place {count} non-overlapping {side}-voxel squares; lower target_fraction")


class SquareMaskd(RandomMaskd):
    """One fixed-size square (cube in 3D) at a random position; ipA-MedGAN: 64x64 on 256x256 (6.25 %)."""

    def __init__(self, keys: KeysCollection, side: int = 64, **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        self.side = int(side)

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        return square_mask(spatial_shape, self.side, self.R)


class LargeSquareMaskd(RandomMaskd):
    """One large square covering a uniform 20-60 % of the image (``area_range``) at a random position."""

    def __init__(self, keys: KeysCollection, area_range: Sequence[float] = (0.2, 0.6), **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        self.area_range = _check_range("area_range", area_range, 0.0, 1.0)

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        return large_square_mask(spatial_shape, self.R, self.area_range)


class MultiSquareMaskd(RandomMaskd):
    """Several small non-overlapping squares whose total area is ``target_fraction`` of the image.

    Defaults (16 squares of 16x16 on 256x256) match the area of ipA-MedGAN's single 64x64 square.
    """

    def __init__(
        self, keys: KeysCollection, side: int = 16, target_fraction: float = 0.0625, **kwargs: Any
    ) -> None:
        super().__init__(keys, **kwargs)
        self.side, self.target_fraction = int(side), float(target_fraction)

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        return multi_square_mask(spatial_shape, self.R, self.side, self.target_fraction)


# ----------------------------------------------------------------------------------------------------------
# irregular shapes (n-D primitives drawn on their bounding box only)
# ----------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _voxel_axes(spatial_shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Float voxel coordinates ``0..s-1`` of each axis, read-only and cached per shape: boxes slice them instead of
    building ``np.arange`` grids for every shape (same values)."""
    axes = tuple(np.arange(size, dtype=float) for size in spatial_shape)
    for axis in axes:
        axis.flags.writeable = False
    return axes


def _patch_grid(
    spatial_shape: Sequence[int], low: Sequence[float], high: Sequence[float], origin: Sequence[float]
) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
    """Clip the box [low, high] to the image; return its slices and, per axis, the 1-D offsets of its voxel
    coordinates from ``origin`` (None if the box is empty). Plain-python bounds and views of cached axes: masks
    are drawn in the training loop."""
    region, offsets = [], []
    for a, b, x, size, values in zip(low, high, origin, spatial_shape, _voxel_axes(tuple(spatial_shape))):
        start, stop = max(math.floor(a), 0), min(math.ceil(b) + 1, size)
        if start >= stop:
            return None
        region.append(slice(start, stop))
        offsets.append(values[start:stop] - x)
    return tuple(region), offsets


def _outer_sum(terms: Sequence[np.ndarray]) -> np.ndarray:
    """``t0[i] + t1[j] (+ t2[k])`` over the box, summed in this order, from one 1-D term per axis."""
    total = terms[0]
    for term in terms[1:]:
        total = total[..., None] + term
    return total


def _ellipsoid(
    spatial_shape: Sequence[int],
    centre: Sequence[float],
    semi_axes: Sequence[float],
    rotation: np.ndarray | None = None,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Voxels inside an ellipsoid with principal axes ``rotation[:, j]`` (the image axes when None) of half-lengths
    ``semi_axes[j]``: ``sum_j ((sum_i R_ij offset_i) / a_j)^2 <= 1``, summed in this order.

    Without a rotation term j is ``(offset_j / a_j)^2`` on axis j alone (``1 * o_j + 0 * o_k`` is ``o_j`` exactly),
    so only the final sum and comparison run on the whole box."""
    reach = max(semi_axes)
    grid = _patch_grid(spatial_shape, [x - reach for x in centre], [x + reach for x in centre], centre)
    if grid is None:
        return None
    region, offsets = grid
    if rotation is None:
        for offset, semi_axis in zip(offsets, semi_axes):
            offset /= semi_axis
            offset *= offset
        return region, _outer_sum(offsets) <= 1.0
    rotation = rotation.tolist()  # python floats: less overhead, same values
    inside = None
    for j, semi_axis in enumerate(semi_axes):
        along = _outer_sum([row[j] * offset for row, offset in zip(rotation, offsets)])
        along /= semi_axis
        along *= along
        if inside is None:
            inside = along
        else:
            inside += along
    return region, inside <= 1.0


def _capsule(
    spatial_shape: Sequence[int], start: Sequence[float], end: Sequence[float], radius: float
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Voxels within ``radius`` of the segment [start, end]: a thick line with round caps.

    The projection on the segment is clipped to [0, 1] with ``np.maximum``/``np.minimum`` (``np.clip``'s values
    without its wrapper; a zero's sign may differ, which the squared gaps erase)."""
    grid = _patch_grid(
        spatial_shape,
        [min(a, b) - radius for a, b in zip(start, end)],
        [max(a, b) + radius for a, b in zip(start, end)],
        start,
    )
    if grid is None:
        return None
    region, offsets = grid
    direction = [b - a for a, b in zip(start, end)]
    vector = np.array(direction)
    length2 = float(vector @ vector)  # numpy's dot as before: a python sum may round differently
    along = 0.0  # a zero-length segment: the gaps are the offsets
    if length2 > 0:
        along = _outer_sum([d * offset for d, offset in zip(direction, offsets)])
        along /= length2
        np.maximum(along, 0.0, out=along)
        np.minimum(along, 1.0, out=along)
    ndim = len(offsets)
    dist2 = None
    for axis, (d, offset) in enumerate(zip(direction, offsets)):
        gap = offset.reshape((-1,) + (1,) * (ndim - 1 - axis)) - along * d
        gap *= gap
        dist2 = gap if dist2 is None else dist2 + gap
    return region, dist2 <= radius**2


def _uniform(rng: np.random.RandomState, low: float, high: float) -> float:
    """``rng.uniform(low, high)``: the same draw and the same value (RandomState's legacy formula, frozen by NEP 19,
    is ``low + (high - low) * random_sample()``) at an eighth of its call cost; ``n`` calls give the values of
    ``rng.uniform(low, high, n)``."""
    return low + (high - low) * rng.random_sample()


def _random_rotation(ndim: int, rng: np.random.RandomState) -> np.ndarray:
    """Uniformly random orthogonal matrix (QR of a Gaussian matrix with the sign fix).

    LAPACK's dgeqrf/dorgqr called directly: the Householder QR that ``np.linalg.qr`` runs, at a quarter of its
    call overhead."""
    factors, tau, _, _ = lapack.dgeqrf(rng.standard_normal((ndim, ndim)))
    q, _, _ = lapack.dorgqr(factors, tau)
    return q * np.sign(factors.diagonal())


def _random_irregular_shape(
    spatial_shape: tuple[int, ...],
    rng: np.random.RandomState,
    kind: str,
    scale: float,
    radius_range: tuple[float, float],
    line_length_range: tuple[float, float],
    line_width_range: tuple[float, float],
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """One random circle/ellipse/thick line (sphere/ellipsoid/capsule in 3D); sizes are fractions of the smallest
    side times ``scale``. Geometry in python floats: the values numpy-array arithmetic gave, with less overhead."""
    ndim, unit = len(spatial_shape), min(spatial_shape) * scale
    centre = [_uniform(rng, 0, 1) * (s - 1) for s in spatial_shape]
    if kind == "circle":
        radius = _uniform(rng, *radius_range) * unit
        return _ellipsoid(spatial_shape, centre, [radius] * ndim)
    if kind == "ellipse":
        semi_axes = [_uniform(rng, *radius_range) * unit for _ in range(ndim)]
        return _ellipsoid(spatial_shape, centre, semi_axes, _random_rotation(ndim, rng))
    direction = rng.standard_normal(ndim)
    norm = math.sqrt(direction.dot(direction))  # np.linalg.norm's formula, without its overhead
    length = _uniform(rng, *line_length_range) * unit
    radius = _uniform(rng, *line_width_range) * unit / 2
    half = [d / (norm + 1e-12) * length / 2 for d in direction.tolist()]
    start = [x - h for x, h in zip(centre, half)]
    return _capsule(spatial_shape, start, [x + h for x, h in zip(centre, half)], radius)


def _validate_irregular_shapes(
    shapes: Sequence[str],
    radius_range: Sequence[float],
    line_length_range: Sequence[float],
    line_width_range: Sequence[float],
) -> tuple[tuple[str, ...], dict[str, tuple[float, float]]]:
    """Check the shape kinds and size ranges of :func:`irregular_mask`; return them normalised."""
    if not shapes or any(kind not in IRREGULAR_SHAPES for kind in shapes):
        raise ValueError(f"shapes must be a non-empty subset of {IRREGULAR_SHAPES}, got {shapes}")
    sizes = {
        "radius_range": _check_range("radius_range", radius_range, 0.0, 1.0),
        "line_length_range": _check_range("line_length_range", line_length_range, 0.0, 2.0),
        "line_width_range": _check_range("line_width_range", line_width_range, 0.0, 1.0),
    }
    if min(sizes["radius_range"][0], sizes["line_length_range"][0], sizes["line_width_range"][0]) <= 0:
        raise ValueError(f"shape size ranges must be positive, got {sizes}")
    return tuple(shapes), sizes


def irregular_mask(
    spatial_shape: Sequence[int],
    rng: np.random.RandomState,
    coverage_range: Sequence[float] = (0.25, 0.30),
    shapes: Sequence[str] = IRREGULAR_SHAPES,
    radius_range: Sequence[float] = (0.03, 0.10),
    line_length_range: Sequence[float] = (0.15, 0.45),
    line_width_range: Sequence[float] = (0.02, 0.05),
    max_shrinks: int = 8,
    max_shapes: int = 100000,
) -> np.ndarray:
    """Union of random circles, ellipses and thick lines (spheres/ellipsoids/capsules in 3D) with controlled coverage.

    A target coverage is drawn uniformly in ``coverage_range`` and shapes are added until it is reached; a shape
    that would push the coverage above ``coverage_range[1]`` is redrawn at half the size (up to ``max_shrinks``
    times), so every mask's hole fraction lies in ``coverage_range`` (up to one voxel-sized shape) and so does any
    batch average. Shape sizes are fractions of the smallest image side.
    """
    low, high = _check_range("coverage_range", coverage_range, 0.0, 1.0)
    shapes, sizes = _validate_irregular_shapes(shapes, radius_range, line_length_range, line_width_range)
    total = math.prod(spatial_shape)
    if high * total < 1:
        raise ValueError(
            f"coverage_range {coverage_range} allows less than one hole voxel in a {tuple(spatial_shape)} image"
        )
    target, limit = rng.uniform(low, high) * total, high * total
    shape = tuple(int(s) for s in spatial_shape)
    holes = np.zeros(shape, dtype=bool)
    covered = 0
    for _ in range(max_shapes):
        if covered >= target:
            return holes
        kind = shapes[rng.randint(len(shapes))]
        for shrink in range(max_shrinks + 1):
            drawn = _random_irregular_shape(shape, rng, kind, 0.5**shrink, **sizes)
            if drawn is None:
                break
            region, inside = drawn
            view = holes[region]
            new = np.greater(inside, view, out=inside)  # inside & ~view in one pass, in place
            added = int(np.count_nonzero(new))
            if covered + added <= limit:
                view |= new
                covered += added
                break
        else:  # even the smallest shape overshoots: the coverage is within one tiny shape of the target
            if covered > 0:
                return holes
    raise RuntimeError(
        f"irregular_mask did not reach {target / total:.1%} coverage after {max_shapes} shapes"
    )


def free_form_mask(
    spatial_shape: Sequence[int],
    rng: np.random.RandomState,
    max_strokes: int = 3,
    vertex_range: Sequence[int] = (4, 12),
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
    width_range: Sequence[float] = (12, 40),
) -> np.ndarray:
    """Free-form brush strokes, the on-the-fly stand-in for NVIDIA's irregular-mask set (DeepFill v2 recipe).

    1..``max_strokes`` strokes, each a polyline of ``vertex_range`` vertices with alternating turn angles around
    ``mean_angle``, segment lengths ~ N(r, r/2) clipped to [0, 2r] with r = image diagonal / 8, brush width in
    ``width_range`` pixels (the recipe's defaults are for 256x256), round joints; then random flips. 2D only.
    """
    if len(spatial_shape) != 2:
        raise ValueError(f"free_form_mask is 2D only, got spatial shape {tuple(spatial_shape)}")
    height, width = spatial_shape
    bounds = np.array([height - 1, width - 1], dtype=float)
    average_radius = math.hypot(height, width) / 8
    holes = np.zeros(spatial_shape, dtype=bool)
    for _ in range(rng.randint(1, max_strokes + 1)):
        num_vertices = rng.randint(vertex_range[0], vertex_range[1])
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        radius = rng.uniform(*width_range) / 2
        point = np.array([rng.randint(0, height), rng.randint(0, width)], dtype=float)
        for i in range(num_vertices):
            angle = rng.uniform(angle_min, angle_max)
            angle = 2 * math.pi - angle if i % 2 == 0 else angle
            length = np.clip(rng.normal(average_radius, average_radius // 2), 0, 2 * average_radius)
            following = np.clip(point + length * np.array([math.sin(angle), math.cos(angle)]), 0, bounds)
            drawn = _capsule(spatial_shape, point, following, radius)
            if drawn is not None:
                holes[drawn[0]] |= drawn[1]
            point = following
    if rng.rand() > 0.5:
        holes = holes[:, ::-1]
    if rng.rand() > 0.5:
        holes = holes[::-1, :]
    return np.ascontiguousarray(holes)


def smooth_blob_mask(
    spatial_shape: Sequence[int],
    rng: np.random.RandomState,
    size: int,
    centre: Sequence[int],
    region: np.ndarray | None = None,
    roughness: float = 0.35,
) -> np.ndarray:
    """A tumour-like hole of ``size`` voxels (within 2 %): a sphere around ``centre`` whose radius is modulated
    by smooth random noise (low-pass Gaussian field of relative amplitude ``roughness``), grown or shrunk to the
    size, kept inside ``region`` (e.g. the brain) and connected to its centre. 2-D or 3-D; seeded by ``rng``.

    The real-data benchmark's 5-300 cm^3 tumour holes; ValueError when ``region`` holds fewer than ``size``
    voxels connected to the centre."""
    shape = tuple(int(s) for s in spatial_shape)
    centre = np.asarray(centre, float)
    if region is None:
        region = np.ones(shape, bool)
    region = np.asarray(region, bool)
    if region.shape != shape or not region[tuple(centre.astype(int))]:
        raise ValueError(f"the centre {tuple(centre.astype(int))} must lie inside the region of shape {shape}")
    radius = (size * (3 / (4 * np.pi) if len(shape) == 3 else 1 / np.pi)) ** (1 / len(shape))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(radius / 2, 1.0))
    noise /= np.abs(noise).max() + 1e-12
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.ogrid[tuple(slice(0, s) for s in shape)], centre)))
    field = distance / radius - roughness * noise  # the blob is {field <= t}; t sets its size
    labels, _ = ndimage.label(region)
    candidates = region & (labels == labels[tuple(centre.astype(int))])
    values = np.sort(field[candidates])
    if values.size < size:
        raise ValueError(f"the region around the centre holds {values.size} voxels, fewer than the blob's {size}")
    blob = candidates & (field <= values[size - 1])
    blob_labels, _ = ndimage.label(blob)
    return blob & (blob_labels == blob_labels[tuple(np.argwhere(blob)[np.argmin(field[blob])])])


class IrregularMaskd(RandomMaskd):
    """Tumour-like holes: unions of circles/ellipses/thick lines (spheres/ellipsoids/capsules in 3D).

    Each mask covers a fraction drawn in ``coverage_range`` (default 25-30 %, the autoinpainting paper's batch
    average); see :func:`irregular_mask` for the size parameters (fractions of the smallest image side).
    """

    def __init__(
        self,
        keys: KeysCollection,
        coverage_range: Sequence[float] = (0.25, 0.30),
        shapes: Sequence[str] = IRREGULAR_SHAPES,
        radius_range: Sequence[float] = (0.03, 0.10),
        line_length_range: Sequence[float] = (0.15, 0.45),
        line_width_range: Sequence[float] = (0.02, 0.05),
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, **kwargs)
        shapes, sizes = _validate_irregular_shapes(shapes, radius_range, line_length_range, line_width_range)
        self.options = {
            "coverage_range": _check_range("coverage_range", coverage_range, 0.0, 1.0),
            "shapes": shapes,
            **sizes,
        }

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        return irregular_mask(spatial_shape, self.R, **self.options)


class FreeFormMaskd(RandomMaskd):
    """NVIDIA-style irregular baseline: DeepFill v2 free-form strokes (see :func:`free_form_mask`), 2D only."""

    spatial_dims = (2,)

    def __init__(
        self,
        keys: KeysCollection,
        max_strokes: int = 3,
        vertex_range: Sequence[int] = (4, 12),
        mean_angle: float = 2 * math.pi / 5,
        angle_range: float = 2 * math.pi / 15,
        width_range: Sequence[float] = (12, 40),
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, **kwargs)
        if max_strokes < 1 or not 1 <= vertex_range[0] < vertex_range[1]:
            raise ValueError(
                f"need max_strokes >= 1 and 1 <= vertex_range[0] < vertex_range[1], got {vertex_range}"
            )
        self.options = {
            "max_strokes": int(max_strokes),
            "vertex_range": tuple(vertex_range),
            "mean_angle": float(mean_angle),
            "angle_range": float(angle_range),
            "width_range": _check_range("width_range", width_range, 0.5, math.inf),
        }

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        return free_form_mask(spatial_shape, self.R, **self.options)


# ----------------------------------------------------------------------------------------------------------
# fixed mask bank on disk
# ----------------------------------------------------------------------------------------------------------


def write_mask_bank(
    directory: str | Path,
    count: int = 100,
    area_range: Sequence[float] = (0.0136, 0.0546),
    spatial_size: Sequence[int] = (256, 256),
    seed: int = 0,
) -> list[Path]:
    """Write ``count`` irregular 2D masks with hole fractions in ``area_range`` as ``mask_0000.png``... (0/255 uint8).

    Defaults are ipA-MedGAN's 100 training masks (1.36-5.46 % area); its 50 validation masks use
    ``count=50, area_range=(0.0166, 0.0456)`` and another seed. Returns the written paths.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if len(spatial_size) != 2:
        raise ValueError(f"mask banks are 2D PNG files, got spatial_size {tuple(spatial_size)}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for index in range(count):
        holes = irregular_mask(tuple(spatial_size), rng, coverage_range=area_range)
        path = folder / f"mask_{index:04d}.png"
        skio.imsave(path, (holes * 255).astype(np.uint8), check_contrast=False)
        paths.append(path)
    return paths


def load_mask_bank(directory: str | Path) -> np.ndarray:
    """Load every ``*.png`` / ``*.npy`` mask of a folder (sorted by name) as a boolean ``(K, H, W)`` array.

    Files must be binary (0/1 or 0/255), 2D, all of one shape and each with at least one hole.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask bank folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_BANK_SUFFIXES)
    if not files:
        raise ValueError(f"mask bank folder {folder} holds no {'/'.join(MASK_BANK_SUFFIXES)} masks")
    masks = []
    for path in files:
        values = np.load(path) if path.suffix.lower() == ".npy" else skio.imread(path)
        if values.ndim != 2 or not np.isin(values, (0, 1, 255)).all() or not values.any():
            raise ValueError(f"{path} is not a non-empty binary 2D mask (values 0/1 or 0/255)")
        masks.append(values > 0)
    if len({m.shape for m in masks}) > 1:
        raise ValueError(f"masks in {folder} have different shapes: {sorted({m.shape for m in masks})}")
    return np.stack(masks)


class MaskBankd(RandomMaskd):
    """Draw one mask uniformly from a fixed bank on disk (see :func:`write_mask_bank` / :func:`load_mask_bank`).

    The bank is loaded once at construction; its masks must have the image's spatial size.
    """

    spatial_dims = (2,)

    def __init__(self, keys: KeysCollection, directory: str, **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        self.directory = str(directory)
        self.bank = load_mask_bank(directory)

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        if self.bank.shape[1:] != spatial_shape:
            raise ValueError(
                f"mask bank {self.directory} holds {self.bank.shape[1:]} masks but the image is {spatial_shape}; "
                "write a bank of the image size"
            )
        return self.bank[self.R.randint(len(self.bank))].copy()


# ----------------------------------------------------------------------------------------------------------
# sliding circles (autoinpainting)
# ----------------------------------------------------------------------------------------------------------


def sliding_circle_masks(
    region: np.ndarray, radius: float = 27, step: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """All circles (spheres in 3D) of ``radius`` centred on the grid ``0, step, 2*step, ...`` inside ``region``.

    Returns ``(holes, centres)``: a boolean ``(N, *spatial)`` stack (circles clipped at the image border) and the
    ``(N, ndim)`` integer centres. ValueError when no grid point lies in the region.
    """
    region = np.asarray(region)
    if region.ndim not in (2, 3):
        raise ValueError(f"organ-of-interest mask must be 2D or 3D (spatial only), got shape {region.shape}")
    if radius <= 0 or step < 1:
        raise ValueError(f"need radius > 0 and step >= 1, got radius={radius}, step={step}")
    grid = np.stack(np.meshgrid(*(np.arange(0, s, step) for s in region.shape), indexing="ij"), -1)
    centres = grid.reshape(-1, region.ndim)
    centres = centres[region[tuple(centres.T)] != 0]
    if len(centres) == 0:
        raise ValueError(
            f"no grid point (step {step}) lies inside the organ-of-interest mask: it is empty or too small"
        )
    coords = np.ogrid[tuple(slice(0, s) for s in region.shape)]
    squares = [(c[None] - centres[(slice(None), i) + (None,) * region.ndim]) ** 2 for i, c in enumerate(coords)]
    # integer squared distances: d <= r^2 iff d <= floor(r^2) iff last axis <= floor(r^2) - the others, so the
    # comparison broadcasts straight into the boolean stack (no (N, *spatial) integer array)
    budget = int(math.floor(radius**2)) - sum(squares[:-1])
    return squares[-1] <= budget, centres


class SlidingCircleMasksd(MaskTransformd):
    """Autoinpainting's sliding-circle masks: a batch ``(N, 1, *spatial)`` of circles of ``radius`` 27 px on a
    grid of ``step`` 15 px with centres inside the organ-of-interest mask under ``ooi_key`` (``(1, *spatial)``).

    Masked images are written as ``(N, C, *spatial)``. Deterministic, so not a random transform.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ooi_key: str = "ooi",
        radius: float = 27,
        step: int = 15,
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        fill_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, mask_key, masked_key, fill_value, allow_missing_keys)
        self.ooi_key, self.radius, self.step = ooi_key, float(radius), int(step)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        ooi = self.single_channel_map(d, self.ooi_key, "organ-of-interest mask")
        holes, _ = sliding_circle_masks(ooi[0], self.radius, self.step)
        return self.write_outputs(d, holes, batched=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m common.transforms.masks OUT_DIR [--count 100 --area 0.0136 0.0546 ...]``."""
    parser = argparse.ArgumentParser(
        description="Write a fixed bank of irregular 2D masks as PNG files (1 = hole)."
    )
    parser.add_argument("directory")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--area", type=float, nargs=2, default=(0.0136, 0.0546), metavar=("MIN", "MAX"))
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_mask_bank(args.directory, args.count, args.area, args.size, args.seed)
    print(f"wrote {len(paths)} masks to {args.directory}")


if __name__ == "__main__":
    main()
