"""Paired object-removal data by copy-paste: (image with object, image without, object mask) triplets.

An object (its pixels and its mask) is cut from a *source* image and pasted at a random location on a
*target* image that does not contain it (Shimosato & Ukita's training data, after Ghiasi et al.'s simple
copy-paste). The untouched target is the ground truth of object removal, the pasted mask the object's true
mask (1 = object = hole).

- :func:`paste_object`: deterministic pasting at a given location, ``"plain"`` (hard mask) or ``"blended"``
  (the object's alpha is its mask maximum'ed with a Gaussian-blurred copy, so a halo of ~2 sigma pixels of the
  source's surroundings bleeds into the target *outside* the annotated mask, as the soft boundaries and
  shadows of real objects do; the mask expansion loss exists for exactly that).
- :class:`RandCopyPasted`: the MONAI random transform (random object component, location, blending, scale);
  an entry carrying ``paste_seed`` is pasted with that seed, so the validation/test pairs are fixed whatever
  the loader order.
- :func:`copy_paste_datalist`: the medical default pairing: lesions / masses (``image_tumour``/``label_tumour``,
  ``image_ms``/``label_ms``) of one subject pasted onto other subjects' healthy ``image`` slices at the same
  axial level, with the target's ``brain`` mask as the region the object must fall in.
- :func:`coco_objects` / :func:`coco_backgrounds`: COCO-format annotations (polygons or RLE) of a category
  (the paper: person) as objects and as object-free backgrounds; needs the optional ``pycocotools``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage, signal
from skimage.transform import rescale

from common.transforms.masks import as_type_of, to_numpy, validate_image

__all__ = [
    "BLEND_MODES",
    "RandCopyPasted",
    "coco_backgrounds",
    "coco_objects",
    "copy_paste_datalist",
    "object_components",
    "paste_locations",
    "paste_object",
]

BLEND_MODES = ("plain", "blended")
#: The blended halo's Gaussian is truncated at this many sigmas (the pasted window's margin).
HALO_TRUNCATE = 3.0


def _halo(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a mask, zero beyond ``HALO_TRUNCATE`` sigmas from it."""
    return ndimage.gaussian_filter(mask, sigma, mode="constant", truncate=HALO_TRUNCATE)


def _check_object(image: np.ndarray, mask: np.ndarray, what: str) -> np.ndarray:
    """Validate a (C, H, W) image and its (1, H, W) or (H, W) mask; return the boolean (H, W) mask."""
    spatial = validate_image(image, f"{what} image", spatial_dims=(2,))
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != spatial:
        raise ValueError(
            f"{what} mask shape {mask.shape} does not match its image's spatial shape {spatial}."
        )
    if not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{what} mask must be binary (0/1), got values {np.unique(mask)[:5]}.")
    if not mask.any():
        raise ValueError(f"{what} mask selects nothing: there is no object to cut.")
    return mask.astype(bool)


def object_components(mask: np.ndarray, min_pixels: int = 1) -> list[np.ndarray]:
    """The 8-connected components of a binary (H, W) mask with at least ``min_pixels`` pixels, largest first."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3)))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    order = np.argsort(-sizes, kind="stable")
    return [labels == i + 1 for i in order if sizes[i] >= min_pixels]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def paste_locations(
    object_mask: np.ndarray,
    target_shape: Sequence[int],
    region: np.ndarray | None = None,
    min_inside: float = 1.0,
) -> np.ndarray:
    """Boolean map over (top, left) of the object's bounding box in the target: where it may be pasted.

    The bounding box always fits inside the target; with ``region`` (a (H, W) mask of the target, e.g. its
    brain), at least ``min_inside`` of the object's pixels must also fall inside the region.
    """
    object_mask = np.asarray(object_mask, bool)
    r0, r1, c0, c1 = _bbox(object_mask)
    crop = object_mask[r0:r1, c0:c1]
    height, width = int(target_shape[0]), int(target_shape[1])
    if crop.shape[0] > height or crop.shape[1] > width:
        raise ValueError(
            f"the object ({crop.shape[0]}x{crop.shape[1]} bounding box) is larger than the target image "
            f"({height}x{width}); crop or rescale it."
        )
    if region is None:
        return np.ones((height - crop.shape[0] + 1, width - crop.shape[1] + 1), bool)
    region = np.asarray(region)
    if region.ndim == 3 and region.shape[0] == 1:
        region = region[0]
    if region.shape != (height, width):
        raise ValueError(
            f"region shape {region.shape} does not match the target's spatial shape {(height, width)}."
        )
    if not 0.0 < min_inside <= 1.0:
        raise ValueError(f"min_inside must be in (0, 1], got {min_inside}.")
    overlap = signal.correlate((region > 0).astype(np.float64), crop.astype(np.float64), mode="valid")
    return overlap >= min_inside * crop.sum() - 0.5


def paste_object(
    target: np.ndarray | torch.Tensor,
    source: np.ndarray | torch.Tensor,
    object_mask: np.ndarray | torch.Tensor,
    location: Sequence[int],
    blend: str = "plain",
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the object ``object_mask`` of ``source`` onto ``target`` with its bounding box's top-left at ``location``.

    Args:
        target: (C, H, W) image without the object.
        source: (C, h, w) image holding the object (same channel count as ``target``).
        object_mask: (1, h, w) or (h, w) binary mask of the object in ``source``.
        location: (top, left) of the object's bounding box in the target.
        blend: ``"plain"`` (hard mask) or ``"blended"`` (Gaussian halo of ``sigma`` pixels outside the mask).
        sigma: the halo's Gaussian sigma in pixels (``"blended"`` only).

    Returns:
        ``(image, mask)``: the target with the object, float32 (C, H, W), and the object's mask in the target,
        float32 (1, H, W).
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}.")
    target, source = to_numpy(target), to_numpy(source)
    validate_image(target, "target image", spatial_dims=(2,))
    mask = _check_object(source, to_numpy(object_mask), "source")
    if source.shape[0] != target.shape[0]:
        raise ValueError(
            f"source has {source.shape[0]} channels but target has {target.shape[0]}: they must match."
        )
    r0, r1, c0, c1 = _bbox(mask)
    top, left = (int(v) for v in location)
    fits = paste_locations(mask, target.shape[1:])
    if not (0 <= top < fits.shape[0] and 0 <= left < fits.shape[1]):
        raise ValueError(
            f"location {(top, left)} puts the object's {r1 - r0}x{c1 - c0} box outside the "
            f"{target.shape[1]}x{target.shape[2]} target; valid tops 0..{fits.shape[0] - 1}, lefts 0..{fits.shape[1] - 1}."
        )
    # window of the source around the object (with a halo margin when blending), clipped to both images
    margin = int(np.ceil(HALO_TRUNCATE * sigma)) if blend == "blended" else 0
    dy, dx = top - r0, left - c0  # source -> target offset
    y0, y1 = max(r0 - margin, -dy, 0), min(r1 + margin, target.shape[1] - dy, source.shape[1])
    x0, x1 = max(c0 - margin, -dx, 0), min(c1 + margin, target.shape[2] - dx, source.shape[2])
    window = mask[y0:y1, x0:x1].astype(np.float64)
    alpha = np.maximum(window, _halo(window, sigma)) if blend == "blended" else window
    image = target.astype(np.float32, copy=True)
    out = image[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    out[:] = (1 - alpha) * out + alpha * source[:, y0:y1, x0:x1]
    pasted = np.zeros((1, *target.shape[1:]), np.float32)
    pasted[0, y0 + dy : y1 + dy, x0 + dx : x1 + dx] = window
    return image, pasted


class RandCopyPasted(RandomizableTransform, MapTransform):
    """Build an object-removal triplet from a dict holding a target image and a source image with its object mask.

    Draws (from ``self.R``, or from ``RandomState(d[seed_key])`` when the entry carries a seed) one connected
    component of the source mask with at least ``min_object_pixels`` pixels (``component="random"``; ``"all"``
    pastes the whole mask), a scale factor in ``scale_range`` (or, with ``area_ratio_range``, the share of the
    target the object must cover, uniformly in that range, from which the scale follows), the blending (``blend="random"`` picks plain or
    blended with equal probability) and a location where the object fits (inside ``region_key``'s mask when
    given, see :func:`paste_locations`).

    Writes ``image_key`` (target with the object), ``clean_key`` (the target, unchanged: the removal ground
    truth) and ``mask_key`` (the object's mask, (1, H, W) float32). Inputs are channel-first 2D images of equal
    channel count (load them with ``EnsureChannelFirstd``).

    ``area_ratio_range=(lo, hi)`` (default None: ``scale_range`` applies) rescales the object by
    ``sqrt(r * H * W / object pixels)`` with r uniform in (lo, hi], so that it covers about r of the target's
    H x W pixels (nearest-neighbour rescaling: within a pixel ring of r; an elongated object is scaled at most
    until its bounding box fills the target, so it may stay below r). Objects much smaller than the image
    (the sample data's lesions cover < 1 % of a 256x256 slice) then populate every mask-ratio bin of an
    evaluation (the object-removal paper's 0-10 ... 30-40 %); upscaling a small object also magnifies its
    texture (bilinear), so it is an evaluation device, not a realistic training object.

    ``fit_tries``: draws of object and scale until one fits the target's region (default 1: an object that
    does not fit is an error); more draws make a rejection sampler, so objects too large for a small target
    are replaced by ones that fit (the share of large objects then falls a little on small targets).
    """

    def __init__(
        self,
        target_key: str = "target",
        source_key: str = "source",
        source_mask_key: str = "source_mask",
        region_key: str | None = None,
        image_key: str = "image",
        clean_key: str = "clean",
        mask_key: str = "mask",
        blend: str = "plain",
        sigma: float = 2.0,
        component: str = "random",
        min_object_pixels: int = 16,
        scale_range: Sequence[float] = (1.0, 1.0),
        min_inside: float = 1.0,
        seed_key: str = "paste_seed",
        area_ratio_range: Sequence[float] | None = None,
        fit_tries: int = 1,
    ) -> None:
        MapTransform.__init__(self, [target_key, source_key, source_mask_key])
        RandomizableTransform.__init__(self, prob=1.0)
        if blend not in (*BLEND_MODES, "random"):
            raise ValueError(f"blend must be one of {(*BLEND_MODES, 'random')}, got {blend!r}.")
        if component not in ("random", "all"):
            raise ValueError(f"component must be 'random' or 'all', got {component!r}.")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}.")
        if area_ratio_range is not None and (
            len(area_ratio_range) != 2 or not 0 <= area_ratio_range[0] <= area_ratio_range[1] <= 1
            or area_ratio_range[1] == 0
        ):  # fmt: skip
            raise ValueError(
                f"area_ratio_range must be (low, high) with 0 <= low <= high <= 1, high > 0, got {area_ratio_range}."
            )
        self.target_key, self.source_key, self.source_mask_key = target_key, source_key, source_mask_key
        self.region_key, self.image_key, self.clean_key, self.mask_key = (
            region_key,
            image_key,
            clean_key,
            mask_key,
        )
        self.blend, self.sigma, self.component = blend, float(sigma), component
        self.min_object_pixels, self.scale_range = (
            int(min_object_pixels),
            tuple(float(s) for s in scale_range),
        )
        if fit_tries < 1:
            raise ValueError(f"fit_tries must be >= 1, got {fit_tries}.")
        self.min_inside, self.seed_key, self.fit_tries = float(min_inside), seed_key, int(fit_tries)
        self.area_ratio_range = (
            None if area_ratio_range is None else tuple(float(r) for r in area_ratio_range)
        )

    def _cut(
        self, rng: np.random.RandomState, source: np.ndarray, mask: np.ndarray, target_shape: Sequence[int]
    ):
        """The source image and the chosen (optionally rescaled) object mask; a rescaled object comes with the
        source cropped around it (plus the blended halo's margin), so large scales stay cheap."""
        if self.component == "random":
            components = object_components(mask, self.min_object_pixels)
            if not components:
                raise ValueError(
                    f"the source mask has no object of at least {self.min_object_pixels} pixels to paste."
                )
            mask = components[rng.randint(len(components))]
        r0, r1, c0, c1 = _bbox(mask)
        if self.area_ratio_range is None:
            scale = rng.uniform(*self.scale_range)
        else:
            low, high = self.area_ratio_range
            ratio = high - rng.uniform(0.0, high - low)  # uniform in (low, high]: never a zero area
            # the rescaled box must fit the target (2 px slack for nearest-neighbour rounding)
            fit = min((target_shape[0] - 2) / (r1 - r0), (target_shape[1] - 2) / (c1 - c0))
            scale = min(float(np.sqrt(ratio * np.prod(target_shape) / mask.sum())), fit)
        if scale != 1.0:
            margin = int(np.ceil(HALO_TRUNCATE * self.sigma / scale)) + 1
            r0, c0 = max(r0 - margin, 0), max(c0 - margin, 0)
            source, mask = (
                source[:, r0 : r1 + margin, c0 : c1 + margin],
                mask[r0 : r1 + margin, c0 : c1 + margin],
            )
            source = np.stack(
                [rescale(c, scale, order=1, preserve_range=True, anti_aliasing=False) for c in source]
            )
            mask = (
                rescale(mask.astype(np.float32), scale, order=0, preserve_range=True, anti_aliasing=False)
                > 0.5
            )
            if not mask.any():
                raise ValueError(f"scaling the object by {scale:.3f} left no pixel of it.")
        return source, mask

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        missing = [k for k in self.keys if k not in d]
        if missing:
            raise KeyError(f"RandCopyPasted needs keys {list(self.keys)}; missing {missing}.")
        seed = d.get(self.seed_key)
        rng = self.R if seed is None else np.random.RandomState(int(seed))
        target, source = to_numpy(d[self.target_key]), to_numpy(d[self.source_key])
        mask = _check_object(source, to_numpy(d[self.source_mask_key]), "source")
        region = to_numpy(d[self.region_key]) if self.region_key else None
        source_image = source.astype(np.float32)
        for _ in range(self.fit_tries):
            source, object_mask = self._cut(rng, source_image, mask, target.shape[1:])
            candidates = np.argwhere(paste_locations(object_mask, target.shape[1:], region, self.min_inside))
            if len(candidates):
                break
        else:
            raise ValueError(
                f"the object cannot be pasted with {self.min_inside:.0%} of it inside the target's "
                f"'{self.region_key}' region in {self.fit_tries} draw(s); lower min_inside, raise fit_tries "
                "or pair it with a larger target."
            )
        mask = object_mask
        top, left = candidates[rng.randint(len(candidates))]
        blend = self.blend if self.blend != "random" else BLEND_MODES[rng.randint(2)]
        image, pasted = paste_object(target, source, mask, (top, left), blend, self.sigma)
        like = d[self.target_key]
        d[self.image_key] = as_type_of(image, like)
        d[self.clean_key] = as_type_of(target.astype(np.float32, copy=True), like)
        d[self.mask_key] = as_type_of(pasted, like)
        return d


DEFAULT_MEDICAL_OBJECTS = (
    ("image_tumour", "label_tumour", "tumour_pixels"),
    ("image_ms", "label_ms", "ms_pixels"),
)


def copy_paste_datalist(
    entries: Sequence[Mapping[str, Any]],
    seed: int | None = None,
    objects: Sequence[Sequence[str]] = DEFAULT_MEDICAL_OBJECTS,
    target_key: str = "image",
    region_key: str | None = "brain",
    match_key: str | None = "slice_z",
    subject_key: str = "subject",
    min_object_pixels: int = 16,
    pairs_per_target: int = 1,
) -> list[dict[str, Any]]:
    """Pair every target slice with objects of *other* subjects (medical default of the copy-paste data).

    For each entry (a healthy ``target_key`` slice) and each of ``pairs_per_target`` draws, a source entry of
    another subject at the same ``match_key`` (axial level; None: any) whose object label has at least
    ``min_object_pixels`` pixels (``objects``: (image key, label key, pixel-count key) triples, e.g. the sample
    data's tumour and MS lesions) is chosen. Returns dicts with ``target``, ``source``, ``source_mask``,
    ``region`` (when ``region_key``), ``object`` (the source image key), ``subject`` (the target's) and, when
    ``seed`` is given, a per-pair ``paste_seed``: the pairs and their pasting are then fixed (validation/test);
    with ``seed=None`` the pairing uses seed 0 and the pasting stays random (training).
    """
    rng = np.random.RandomState(0 if seed is None else seed)
    pools: dict[Any, list[tuple[Mapping[str, Any], Sequence[str]]]] = {}
    for entry in entries:
        for keys in objects:
            if entry.get(keys[2], 0) >= min_object_pixels:
                pools.setdefault(entry.get(match_key) if match_key else None, []).append((entry, keys))
    out = []
    for entry in entries:
        pool = [
            (e, k)
            for e, k in pools.get(entry.get(match_key) if match_key else None, [])
            if e.get(subject_key) != entry.get(subject_key)
        ]
        if not pool:
            continue
        for _ in range(pairs_per_target):
            source, (image_key, label_key, _) = pool[rng.randint(len(pool))]
            pair = {
                "target": entry[target_key],
                "source": source[image_key],
                "source_mask": source[label_key],
                "object": image_key,
                "subject": entry.get(subject_key),
                "source_subject": source.get(subject_key),
            }
            if region_key:
                pair["region"] = entry[region_key]
            if seed is not None:
                pair["paste_seed"] = int(rng.randint(2**31 - 1))
            out.append(pair)
    if not out:
        raise ValueError(
            f"no copy-paste pair: no entry of another subject has an object ({[k[1] for k in objects]}) of at "
            f"least {min_object_pixels} pixels at the same '{match_key}'."
        )
    return out


def _pycocotools():
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:
        raise ImportError(
            "reading COCO annotations needs the optional package pycocotools: pip install pycocotools"
        ) from error
    return coco_mask


def _coco_index(annotation_file: str | Path, category: str):
    if not Path(annotation_file).is_file():
        raise FileNotFoundError(f"COCO annotation file {str(annotation_file)!r} does not exist.")
    data = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    ids = [c["id"] for c in data.get("categories", []) if c.get("name") == category]
    if not ids:
        names = sorted(c.get("name") for c in data.get("categories", []))
        raise ValueError(f"category {category!r} not in {annotation_file}; it has {names}.")
    return data, ids[0]


def coco_objects(
    annotation_file: str | Path,
    image_dir: str | Path,
    category: str = "person",
    min_area: float = 0.0,
    include_crowd: bool = False,
) -> list[dict[str, Any]]:
    """Every annotated instance of ``category`` as a copy-paste source: ``{"source": image path,
    "source_mask": (1, H, W) uint8 mask}`` decoded from its polygons or RLE with pycocotools."""
    coco_mask = _pycocotools()
    data, category_id = _coco_index(annotation_file, category)
    images = {im["id"]: im for im in data["images"]}
    out = []
    for ann in data.get("annotations", []):
        if ann["category_id"] != category_id or ann.get("area", 0) < min_area:
            continue
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        if ann["image_id"] not in images:
            raise ValueError(
                f"annotation {ann.get('id')} of {annotation_file} names unknown image_id {ann['image_id']}."
            )
        image = images[ann["image_id"]]
        height, width = image["height"], image["width"]
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):  # polygons
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:  # compressed RLE
            rle = segmentation
        mask = np.asarray(coco_mask.decode(rle), np.uint8)
        if mask.any():
            out.append({"source": _coco_image(image_dir, image["file_name"]), "source_mask": mask[None]})
    return out


def _coco_image(image_dir: str | Path, file_name: str) -> str:
    """Path of a listed image, checked now rather than when a loader meets it mid-training."""
    path = Path(image_dir) / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"image {file_name!r} listed in the COCO annotations is not in {str(image_dir)!r}."
        )
    return str(path)


def coco_backgrounds(
    annotation_file: str | Path, image_dir: str | Path, category: str = "person"
) -> list[str]:
    """Paths of the images with no annotation of ``category``: the targets the objects are pasted onto."""
    data, category_id = _coco_index(annotation_file, category)
    with_category = {a["image_id"] for a in data.get("annotations", []) if a["category_id"] == category_id}
    return [_coco_image(image_dir, im["file_name"]) for im in data["images"] if im["id"] not in with_category]
