"""Shape-aware inpainting masks built from pseudo-segments of the image (2D).

Pseudo-segments are skimage's Felzenszwalb over-segmentation (scale 2, sigma 0.5, min_size 9) of the image
rescaled to 0-255, whose adjacent segments with mean intensities closer than ``tau`` = 10 are merged
(the semantics of skimage's ``cut_threshold`` on a mean-intensity region adjacency graph: every edge
lighter than ``tau`` is contracted). They are computed once per image and cached by a hash of the image bytes,
in memory (LRU) and optionally on disk as ``<hash>.npy`` label maps, so that the per-step sampler only crops
and pastes a few segments.

Per call the sampler draws ``m`` segments (``num_segments`` range) with probabilities proportional to the
inverse of their pixel count (or uniform), perturbs each by a random dilation/erosion of a few pixels (which
keeps its centre), turns it into a shape (the segment itself, a square of the same area, or an irregular mask
from a bank) and places it by a position mode: ``random`` (anywhere, shape kept inside the image), ``ibr``
(centre drawn inside the organ's bounded region) or ``ops`` (at the centre of the segment's bounding box, i.e.
the segment's own location). Mask convention: 1 = hole, 0 = known.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.filters import threshold_otsu
from skimage.morphology import disk
from skimage.segmentation import felzenszwalb

from common.transforms.masks import RandomMaskd, load_mask_bank, to_numpy, validate_image

__all__ = [
    "POSITION_MODES",
    "SHAPE_MODES",
    "WEIGHTINGS",
    "PseudoSegmentCache",
    "PseudoSegmentMaskd",
    "PseudoSegments",
    "compute_pseudo_segments",
    "merge_adjacent_segments",
    "organ_bounded_region",
    "sample_pseudo_segment_mask",
]

POSITION_MODES = ("random", "ibr", "ops")
SHAPE_MODES = ("segment", "square", "irregular")
WEIGHTINGS = ("inverse_size", "uniform")
SOURCES = ("same", "other")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def as_single_channel_2d(image: Any, name: str = "image") -> np.ndarray:
    """Validate a channel-first single-channel 2D image ``(1, H, W)`` and return it as a float ``(H, W)`` array."""
    validate_image(image, name, spatial_dims=(2,))
    if image.shape[0] != 1:
        raise ValueError(f"{name} must have one channel for pseudo-segments, got shape {tuple(image.shape)}")
    array = to_numpy(image)
    return np.asarray(array[0], dtype=np.float32)


def _rescale_to_255(image: np.ndarray) -> np.ndarray:
    """Min-max rescale to 0-255 (float); a constant image has no segments to find, so it is an error."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        raise ValueError(f"image is constant (all {low}); pseudo-segments need intensity variation")
    return (image.astype(np.float64) - low) * (255.0 / (high - low))


def merge_adjacent_segments(labels: np.ndarray, intensity: np.ndarray, tau: float) -> np.ndarray:
    """Merge 8-adjacent segments whose mean intensities differ by less than ``tau``; labels ``0..N-1`` out.

    Same semantics as skimage's ``cut_threshold`` on a mean-intensity region adjacency graph (every edge lighter
    than ``tau`` is contracted, transitively). Written here because ``rag_mean_color`` treats a single-channel
    image as RGB (its distances are sqrt(3) times the intensity difference) and is ~40x slower.
    """
    count = int(labels.max()) + 1
    means = np.bincount(labels.ravel(), intensity.ravel(), count) / np.bincount(
        labels.ravel(), minlength=count
    )
    neighbours = [
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1, :], labels[1:, :]),
        (labels[:-1, :-1], labels[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1]),
    ]
    first = np.concatenate([a.ravel() for a, _ in neighbours])
    second = np.concatenate([b.ravel() for _, b in neighbours])
    close = (first != second) & (np.abs(means[first] - means[second]) < tau)
    edges = coo_matrix((np.ones(close.sum()), (first[close], second[close])), shape=(count, count))
    merged = connected_components(edges, directed=False)[1][labels]
    return np.unique(merged, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def compute_pseudo_segments(
    image: np.ndarray, scale: float = 2.0, sigma: float = 0.5, min_size: int = 9, tau: float = 10.0
) -> np.ndarray:
    """Pseudo-segment label map ``(H, W)`` int32 with labels ``0..N-1`` for a 2D image (any intensity range).

    Felzenszwalb on the image rescaled to 0-255, then :func:`merge_adjacent_segments` with ``tau``.
    """
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"pseudo-segments need a 2D image of at least 2x2 pixels, got shape {image.shape}")
    if np.isnan(image).any():
        raise ValueError("image contains NaN values")
    scaled = _rescale_to_255(image)
    segments = felzenszwalb(scaled, scale=scale, sigma=sigma, min_size=min_size)
    return merge_adjacent_segments(segments, scaled, tau)


def organ_bounded_region(image: np.ndarray, opening_radius: int = 2) -> np.ndarray:
    """Organ's bounded region (IBR) of a 2D image: Otsu foreground, opened, largest component, holes filled."""
    if image.ndim != 2 or np.isnan(image).any():
        raise ValueError(f"need a 2D image without NaNs, got shape {image.shape}")
    if float(image.max()) <= float(image.min()):
        raise ValueError("image is constant; it has no organ region")
    foreground = image > threshold_otsu(image)
    if opening_radius > 0:
        foreground = ndimage.binary_opening(foreground, structure=disk(opening_radius))
    components, count = ndimage.label(foreground)
    if count == 0:
        raise ValueError("no foreground left after thresholding and opening; the organ region is empty")
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(components == largest)


@dataclass(frozen=True)
class PseudoSegments:
    """A pseudo-segment label map with what the sampler needs: sizes, bounding boxes, sampling CDFs."""

    labels: np.ndarray
    sizes: np.ndarray = field(init=False, repr=False)
    boxes: list[tuple[slice, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or self.labels.min() != 0:
            raise ValueError("labels must be a 2D map with labels 0..N-1")
        object.__setattr__(self, "sizes", np.bincount(self.labels.ravel()))
        object.__setattr__(self, "boxes", ndimage.find_objects(self.labels + 1))
        if np.any(self.sizes == 0):
            raise ValueError("labels must be consecutive 0..N-1")

    @property
    def count(self) -> int:
        return len(self.sizes)

    @cached_property
    def _cdfs(self) -> dict[str, np.ndarray]:
        inverse = 1.0 / self.sizes
        return {
            "inverse_size": np.cumsum(inverse / inverse.sum()),
            "uniform": np.arange(1, self.count + 1) / self.count,
        }

    def probabilities(self, weighting: str = "inverse_size") -> np.ndarray:
        """Sampling probability of each segment: inverse pixel count normalised, or uniform."""
        return np.diff(self._cdfs[_check_choice("weighting", weighting, WEIGHTINGS)], prepend=0.0)

    def sample(self, rng: np.random.RandomState, count: int, weighting: str = "inverse_size") -> np.ndarray:
        """Draw ``count`` segment indices (with replacement) with the given weighting."""
        cdf = self._cdfs[_check_choice("weighting", weighting, WEIGHTINGS)]
        return np.minimum(np.searchsorted(cdf, rng.random_sample(count), side="right"), self.count - 1)

    def crop(self, index: int) -> np.ndarray:
        """Boolean crop of segment ``index`` on its bounding box."""
        return self.labels[self.boxes[index]] == index

    def box_centre(self, index: int) -> np.ndarray:
        """Centre of segment ``index``'s bounding box (pixel coordinates, may be half-integer)."""
        return np.array([(s.start + s.stop - 1) / 2 for s in self.boxes[index]])


class PseudoSegmentCache:
    """Pseudo-segments and organ regions per image, keyed by a hash of the image bytes and the parameters.

    In-memory LRU of ``max_items`` entries; with ``directory`` the label maps are also stored there as
    ``<hash>.npy`` (written atomically) and reused across processes and runs.
    """

    def __init__(
        self,
        max_items: int = 1024,
        directory: str | Path | None = None,
        scale: float = 2.0,
        sigma: float = 0.5,
        min_size: int = 9,
        tau: float = 10.0,
        opening_radius: int = 2,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_params = {"scale": scale, "sigma": sigma, "min_size": min_size, "tau": tau}
        self.opening_radius = opening_radius
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self.computed = 0  # number of segmentations actually run (cache misses)

    def _key(self, kind: str, image: np.ndarray, params: Mapping[str, Any]) -> str:
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=20)
        digest.update(f"{kind}{image.shape}{image.dtype}{sorted(params.items())}".encode())
        return digest.hexdigest()

    def _lookup(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        value = compute()
        self._memory[key] = value
        if len(self._memory) > self.max_items:
            self._memory.popitem(last=False)
        return value

    def segments(self, image: np.ndarray) -> PseudoSegments:
        """Pseudo-segments of a 2D image (computed once, then from memory or disk)."""
        key = self._key("segments", image, self.segment_params)
        return self._lookup(key, lambda: PseudoSegments(self._labels_from_disk_or_compute(key, image)))

    def _labels_from_disk_or_compute(self, key: str, image: np.ndarray) -> np.ndarray:
        path = None if self.directory is None else self.directory / f"{key}.npy"
        if path is not None and path.exists():
            return np.load(path)
        labels = compute_pseudo_segments(image, **self.segment_params)
        self.computed += 1
        if path is not None:
            partial = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
            np.save(partial, labels)
            os.replace(partial, path)
        return labels

    def region_coordinates(self, image: np.ndarray) -> np.ndarray:
        """``(K, 2)`` pixel coordinates of the organ's bounded region of a 2D image (memory cache only)."""
        key = self._key("ibr", image, {"opening_radius": self.opening_radius})
        return self._lookup(key, lambda: np.argwhere(organ_bounded_region(image, self.opening_radius)))


def _perturb(crop: np.ndarray, rng: np.random.RandomState, max_px: int) -> np.ndarray:
    """Pad by ``max_px`` and dilate or erode by a random 0..``max_px`` disk (centre unchanged); never empties."""
    if max_px <= 0:
        return crop
    radius, operation = rng.randint(0, max_px + 1), rng.randint(3)
    padded = np.pad(crop, max_px)
    if radius == 0 or operation == 0:
        return padded
    morph = ndimage.binary_dilation if operation == 1 else ndimage.binary_erosion
    changed = morph(padded, structure=disk(radius))
    return changed if changed.any() else padded


def _paste(holes: np.ndarray, shape: np.ndarray, top_left: Sequence[int]) -> None:
    """OR ``shape`` into ``holes`` with its corner at ``top_left`` (clipped at the image border)."""
    target, source = [], []
    for corner, size, limit in zip(top_left, shape.shape, holes.shape, strict=True):
        start, stop = max(corner, 0), min(corner + size, limit)
        if start >= stop:
            return
        target.append(slice(start, stop))
        source.append(slice(start - corner, stop - corner))
    holes[tuple(target)] |= shape[tuple(source)]


def _bank_shapes(bank: np.ndarray) -> list[np.ndarray]:
    """Crop each bank mask to its bounding box so it can be placed like a segment."""
    return [mask[ndimage.find_objects(mask.astype(np.int32))[0]] for mask in bank]


def sample_pseudo_segment_mask(
    spatial_shape: Sequence[int],
    segments: PseudoSegments,
    rng: np.random.RandomState,
    num_segments: Sequence[int] = (1, 3),
    position: str = "ops",
    shape: str = "segment",
    weighting: str = "inverse_size",
    perturb_px: int = 2,
    region_coordinates: np.ndarray | None = None,
    bank_shapes: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Sample a shape-aware hole map ``spatial_shape`` (bool) and the placements ``[(segment index, centre), ...]``.

    ``region_coordinates`` (IBR pixels) is needed for ``position="ibr"``, ``bank_shapes`` (cropped bank masks)
    for ``shape="irregular"``. With ``position="random"`` the shape is placed fully inside the image when it fits.
    """
    _check_choice("position", position, POSITION_MODES)
    _check_choice("shape", shape, SHAPE_MODES)
    if position == "ibr" and (region_coordinates is None or len(region_coordinates) == 0):
        raise ValueError("position='ibr' needs the (non-empty) organ region coordinates")
    if shape == "irregular" and not bank_shapes:
        raise ValueError("shape='irregular' needs a non-empty mask bank")
    holes = np.zeros(spatial_shape, dtype=bool)
    placements = []
    for index in segments.sample(rng, rng.randint(num_segments[0], num_segments[1] + 1), weighting):
        piece = _perturb(segments.crop(index), rng, perturb_px)
        if shape == "square":
            side = max(1, round(float(np.sqrt(piece.sum()))))
            piece = np.ones((side, side), dtype=bool)
        elif shape == "irregular":
            piece = bank_shapes[rng.randint(len(bank_shapes))]
        half = (np.asarray(piece.shape) - 1) / 2
        if position == "random":
            free = np.asarray(spatial_shape) - piece.shape
            corner = np.array([rng.randint(min(f, 0), max(f, 0) + 1) for f in free])
            centre = corner + half
        else:
            centre = (
                segments.box_centre(index)
                if position == "ops"
                else region_coordinates[rng.randint(len(region_coordinates))].astype(float)
            )
            corner = np.round(centre - half).astype(int)
        _paste(holes, piece, corner)
        placements.append((int(index), centre))
    return holes, placements


class PseudoSegmentMaskd(RandomMaskd):
    """Shape-aware masks from cached pseudo-segments (see the module docstring); 2D single-channel images.

    Args:
        keys: image key(s); the first one is segmented (and gives the IBR).
        num_segments: inclusive (min, max) range of ``m``, the segments drawn per call.
        position: ``"random"``, ``"ibr"`` or ``"ops"``.
        shape: ``"segment"``, ``"square"`` (same area and centre) or ``"irregular"`` (mask bank in ``bank_dir``).
        weighting: ``"inverse_size"`` (small segments more often) or ``"uniform"``.
        perturb_px: maximum dilation/erosion radius of the random perturbation (0 disables it).
        source: ``"same"`` image or ``"other"``: segments of the image under ``source_key`` or of one of
            ``source_images`` (``(1, H, W)`` arrays, one drawn per call).
        scale, sigma, min_size, tau: Felzenszwalb parameters and merge threshold (0-255 scale).
        opening_radius: disk radius of the IBR morphological opening.
        cache_size, cache_dir: in-memory LRU size and optional on-disk cache folder.
    """

    spatial_dims = (2,)

    def __init__(
        self,
        keys: KeysCollection,
        num_segments: Sequence[int] = (1, 3),
        position: str = "ops",
        shape: str = "segment",
        weighting: str = "inverse_size",
        perturb_px: int = 2,
        source: str = "same",
        source_key: str | None = None,
        source_images: Sequence[np.ndarray] | None = None,
        bank_dir: str | None = None,
        scale: float = 2.0,
        sigma: float = 0.5,
        min_size: int = 9,
        tau: float = 10.0,
        opening_radius: int = 2,
        cache_size: int = 1024,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, **kwargs)
        if len(num_segments) != 2 or not 1 <= num_segments[0] <= num_segments[1]:
            raise ValueError(
                f"num_segments must be a (min, max) pair with 1 <= min <= max, got {num_segments}"
            )
        if perturb_px < 0:
            raise ValueError(f"perturb_px must be >= 0, got {perturb_px}")
        self.options = {
            "num_segments": (int(num_segments[0]), int(num_segments[1])),
            "position": _check_choice("position", position, POSITION_MODES),
            "shape": _check_choice("shape", shape, SHAPE_MODES),
            "weighting": _check_choice("weighting", weighting, WEIGHTINGS),
            "perturb_px": int(perturb_px),
        }
        self.source = _check_choice("source", source, SOURCES)
        if source == "other" and (source_key is None) == (not source_images):
            raise ValueError("source='other' needs exactly one of source_key or a non-empty source_images")
        self.source_key = source_key
        self.source_images = [as_single_channel_2d(img, "source image") for img in source_images or ()]
        if shape == "irregular" and bank_dir is None:
            raise ValueError("shape='irregular' needs bank_dir, a folder written by common.transforms.masks")
        self.bank_shapes = None if bank_dir is None else _bank_shapes(load_mask_bank(bank_dir))
        self.cache = PseudoSegmentCache(cache_size, cache_dir, scale, sigma, min_size, tau, opening_radius)

    def _source_image(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> np.ndarray:
        if self.source == "same":
            return image
        if self.source_key is not None:
            return as_single_channel_2d(data[self.source_key], f"data[{self.source_key!r}]")
        return self.source_images[self.R.randint(len(self.source_images))]

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        image = as_single_channel_2d(self.first_image(data))
        source = self._source_image(image, data)
        if self.options["position"] == "ops" and source.shape != image.shape:
            raise ValueError(
                f"position='ops' places segments where they lie in the source image, so its shape {source.shape} "
                f"must match the image's {image.shape}"
            )
        segments = self.cache.segments(source)
        region = self.cache.region_coordinates(image) if self.options["position"] == "ibr" else None
        holes, _ = sample_pseudo_segment_mask(
            spatial_shape,
            segments,
            self.R,
            region_coordinates=region,
            bank_shapes=self.bank_shapes,
            **self.options,
        )
        return holes
