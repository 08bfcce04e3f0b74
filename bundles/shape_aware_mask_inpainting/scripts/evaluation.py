"""Evaluation protocol of the shape-aware-masks paper: three fixed, seeded masks per test image, metrics on the
masked region of interest, the CTSDG model against a biharmonic baseline.

Masks (1 = hole), drawn once per test image from a seed made of ``seed``, the image's id and the mask kind, so
every variant is scored on the same holes:

- ``segments``: pseudo-segments of the image placed by OPS (at their own location, no perturbation);
- ``squares``: non-overlapping ``square_side`` squares with the same total area as that image's segment mask,
  placed inside the bounding box of the organ's bounded region;
- ``large_square``: one square covering a uniform 20-60 % of the image.

RoI: the bounding box of the hole, enlarged symmetrically to at least ``min_roi_size`` pixels per side (inside
the image) so SSIM's 11x11 window and LPIPS's VGG have room; PSNR, SSIM and LPIPS are computed on that crop of
the composite output (prediction in the hole, ground truth elsewhere) against the ground truth.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from skimage.restoration import inpaint_biharmonic

from common.engines import exit_on_bad_checkpoint, read_state_dict
from common.metrics import LPIPSMetric, PSNRMetric, SSIMMetric
from common.transforms import PseudoSegmentCache, large_square_mask, multi_square_mask
from common.transforms.pseudo_segments import sample_pseudo_segment_mask

from .transforms import LoadSliced, id_seed

__all__ = [
    "MASK_KINDS",
    "FixedEvaluationMaskd",
    "evaluation_masks",
    "roi_box",
    "roi_scores",
    "biharmonic",
    "network_inpainter",
    "evaluate",
    "load_lpips",
    "run_protocol",
    "save_panel",
]

MASK_KINDS = ("segments", "squares", "large_square")
LOGGER = logging.getLogger(__name__)


def _rng(seed: int, image_id: str, kind: str) -> np.random.RandomState:
    return np.random.RandomState(id_seed(seed, image_id, kind))


def evaluation_masks(
    image: np.ndarray,
    image_id: str,
    seed: int = 0,
    num_segments: Sequence[int] = (1, 3),
    weighting: str = "inverse_size",
    square_side: int = 8,
    area_range: Sequence[float] = (0.2, 0.6),
    cache: PseudoSegmentCache | None = None,
) -> dict[str, np.ndarray]:
    """The three evaluation masks ``(H, W)`` bool of a 2D image (module docstring); deterministic per id."""
    if image.ndim != 2:
        raise ValueError(f"need a 2D image, got shape {image.shape}")
    cache = cache or PseudoSegmentCache()
    shape = image.shape
    segments, _ = sample_pseudo_segment_mask(
        shape,
        cache.segments(image),
        _rng(seed, image_id, "segments"),
        num_segments=num_segments,
        position="ops",
        shape="segment",
        weighting=weighting,
        perturb_px=0,
    )
    area = int(segments.sum())
    side = max(1, min(square_side, math.isqrt(area)))
    count = max(1, round(area / side**2))
    region = cache.region_coordinates(image)
    low, high = region.min(axis=0), region.max(axis=0) + 1
    box = (slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1])))
    box_shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    squares = np.zeros(shape, dtype=bool)
    squares[box] = multi_square_mask(
        box_shape,
        _rng(seed, image_id, "squares"),
        side=side,
        target_fraction=count * side**2 / math.prod(box_shape),
    )
    large = large_square_mask(shape, _rng(seed, image_id, "large_square"), area_range)
    return {"segments": segments, "squares": squares, "large_square": large}


class FixedEvaluationMaskd(MapTransform):
    """Write one of the fixed evaluation masks (``kind``) of the image under ``keys`` as ``mask_key`` ``(1, H, W)``.

    Deterministic per image id (``id_key``), so validation and evaluation score the same holes every time.
    ``mask_options``: keyword arguments of :func:`evaluation_masks` (``eval_mask_options`` in ``train.json``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        id_key: str = "id",
        kind: str = "segments",
        mask_key: str = "mask",
        mask_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        if kind not in MASK_KINDS:
            raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
        self.id_key, self.kind, self.mask_key = id_key, kind, mask_key
        self.options = dict(mask_options or {})
        self.cache = PseudoSegmentCache()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.first_key(d)
        image = np.asarray(d[key], dtype=np.float32)[0]
        holes = evaluation_masks(image, str(d[self.id_key]), cache=self.cache, **self.options)[self.kind]
        d[self.mask_key] = holes[None].astype(np.float32)
        return d


def roi_box(hole: np.ndarray, min_size: int = 32) -> tuple[slice, slice]:
    """Bounding box of the hole ``(H, W)``, enlarged symmetrically to at least ``min_size`` per side."""
    if not hole.any():
        raise ValueError("empty hole: no region of interest")
    box = []
    for axis, size in enumerate(hole.shape):
        idx = np.nonzero(hole.any(axis=1 - axis))[0]
        start, stop = int(idx[0]), int(idx[-1]) + 1
        grow = max(0, min(min_size, size) - (stop - start))
        start = max(0, start - grow // 2)
        stop = min(size, max(stop + grow - grow // 2, start + min(min_size, size)))
        start = min(start, stop - min(min_size, size))
        box.append(slice(start, stop))
    return box[0], box[1]


def roi_scores(
    output: np.ndarray,
    target: np.ndarray,
    hole: np.ndarray,
    lpips: Callable | None = None,
    min_size: int = 32,
) -> dict[str, float]:
    """PSNR (dB, range 1), SSIM and LPIPS (NaN without weights) on the RoI crop of ``(H, W)`` images in [0, 1]."""
    box = roi_box(hole, min_size)
    pred = torch.as_tensor(np.ascontiguousarray(output[box]), dtype=torch.float32)[None, None]
    true = torch.as_tensor(np.ascontiguousarray(target[box]), dtype=torch.float32)[None, None]
    scores = {
        "psnr": float(PSNRMetric(max_val=1.0)(pred, true)[0, 0]),
        "ssim": float(SSIMMetric(data_range=1.0)(pred, true)[0, 0]),
        "lpips": float("nan") if lpips is None else float(lpips(pred, true)[0, 0]),
    }
    return scores


def biharmonic(image: np.ndarray, hole: np.ndarray, edge: np.ndarray | None = None) -> np.ndarray:
    """Classical baseline: ``skimage.restoration.inpaint_biharmonic`` of a 2D image in the hole."""
    return inpaint_biharmonic(np.where(hole, 0.0, image), hole)


def network_inpainter(network: torch.nn.Module, device: str | torch.device = "cpu") -> Callable:
    """``(image, hole, edge) -> output`` (2D arrays) for a :class:`.networks.CTSDGInpainter`."""

    def inpaint(image: np.ndarray, hole: np.ndarray, edge: np.ndarray) -> np.ndarray:
        mask = hole.astype(np.float32)
        x = np.stack([image * (1 - mask), mask, edge])[None]
        with torch.no_grad():
            out = network.eval()(torch.as_tensor(x, dtype=torch.float32, device=device))
        return out[0, 0].cpu().numpy()

    return inpaint


def load_lpips(vgg_weights_path: str | None = None, lin_weights_path: str | None = None) -> Callable | None:
    """:class:`common.metrics.LPIPSMetric` from local weights (paths, or the torch hub cache when None), or None
    with a warning that names the missing file and how to provide it (LPIPS is then reported as n/a)."""
    try:
        return LPIPSMetric(vgg_weights_path, lin_weights_path)
    except FileNotFoundError as error:
        LOGGER.warning("LPIPS not computed (reported as n/a): %s", error)
        return None


def evaluate(
    methods: Mapping[str, Callable],
    items: Sequence[Mapping[str, Any]],
    mask_options: Mapping[str, Any] | None = None,
    min_roi_size: int = 32,
    lpips: Callable | None = None,
) -> tuple[dict, dict]:
    """Score every method on every item's three masks.

    ``items``: dicts with ``id``, ``image`` and ``edge`` (2D arrays, [0, 1]). Returns ``(results, example)``:
    ``results[method][kind][metric]`` means (and ``per_image`` values), ``example[kind]`` the first item's
    image, hole and each method's output (for figures).
    """
    cache = PseudoSegmentCache()
    per_image: dict = {m: {k: [] for k in MASK_KINDS} for m in methods}
    example: dict = {}
    for index, item in enumerate(items):
        masks = evaluation_masks(item["image"], item["id"], cache=cache, **dict(mask_options or {}))
        for kind, hole in masks.items():
            outputs = {}
            for name, method in methods.items():
                out = method(item["image"], hole, item["edge"])
                out = np.where(hole, out, item["image"])
                outputs[name] = out
                scores = roi_scores(out, item["image"], hole, lpips, min_roi_size)
                per_image[name][kind].append(
                    {"id": item["id"], "hole_fraction": float(hole.mean()), **scores}
                )
            if index == 0:
                example[kind] = {"image": item["image"], "hole": hole, "outputs": outputs}
    results = {
        name: {
            kind: {
                **{
                    m: float(np.nanmean([r[m] for r in rows])) if rows else float("nan")
                    for m in ("psnr", "ssim", "lpips")
                },
                "images": len(rows),
                "per_image": rows,
            }
            for kind, rows in kinds.items()
        }
        for name, kinds in per_image.items()
    }
    return results, example


def save_panel(
    path: str | Path, image: np.ndarray, hole: np.ndarray, outputs: Mapping[str, np.ndarray]
) -> None:
    """PNG: one row per method, columns input (hole black), mask, output, |error| (x4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(outputs)
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
    for r, (name, out) in enumerate(outputs.items()):
        panels = [
            (np.where(hole, 0.0, image), "input", "gray", 1),
            (hole.astype(float), "mask", "gray", 1),
            (out, f"output: {name}", "gray", 1),
            (np.abs(out - image), "|error| (0-0.25)", "magma", 0.25),
        ]
        for c, (data, title, cmap, vmax) in enumerate(panels):
            axes[r, c].imshow(data, cmap=cmap, vmin=0, vmax=vmax)
            axes[r, c].set_title(title, fontsize=8)
            axes[r, c].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_items(
    datalist: Sequence[Mapping[str, Any]],
    edge_options: Mapping[str, Any],
    max_images: int | None = None,
    image_size: Sequence[int] = (256, 256),
    percentiles: Sequence[float] = (0.5, 99.5),
):
    """Test images as evaluation items, prepared as in training (:class:`.transforms.LoadSliced`)."""
    load = LoadSliced("image", image_size, percentiles, edge_options)
    entries = list(datalist)[: max_images or None]
    items = []
    for entry in entries:
        d = load({"image": entry["image"]})
        image_id = (
            entry.get("id")
            or f"{entry.get('subject', '')}_{entry.get('slice_z', '')}_{Path(str(entry['image'])).name}"
        )
        items.append(
            {
                "id": image_id,
                "image": np.asarray(d["image"][0], np.float32),
                "edge": np.asarray(d["edge"][0], np.float32),
            }
        )
    return items


def markdown_table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Rows = methods, columns = PSNR / SSIM / LPIPS per evaluation mask (the paper's layout)."""
    header = "| method | " + " | ".join(f"{k} PSNR | {k} SSIM | {k} LPIPS" for k in MASK_KINDS) + " |"
    lines = [header, "|---|" + "---:|" * (3 * len(MASK_KINDS))]
    for name, kinds in results.items():
        cells = []
        for kind in MASK_KINDS:
            r = kinds[kind]
            lpips = "n/a" if math.isnan(r["lpips"]) else f"{r['lpips']:.4f}"
            cells += [f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", lpips]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_protocol(
    network: torch.nn.Module,
    datalist: Sequence[Mapping[str, Any]],
    checkpoint: str,
    output_dir: str,
    device: str | torch.device = "cpu",
    edge_options: Mapping[str, Any] | None = None,
    mask_options: Mapping[str, Any] | None = None,
    min_roi_size: int = 32,
    max_images: int | None = None,
    baseline: bool = True,
    name: str = "CTSDG",
    image_size: Sequence[int] = (256, 256),
    percentiles: Sequence[float] = (0.5, 99.5),
    vgg_weights_path: str | None = None,
    lpips_weights_path: str | None = None,
) -> dict:
    """Evaluate the network (weights from ``checkpoint``; missing or unreadable: one-line exit naming it, never
    untrained weights) and the biharmonic baseline.

    ``vgg_weights_path``, ``lpips_weights_path``: the VGG16 and LPIPS-linear files (None: the torch hub cache);
    LPIPS is n/a without them.

    Writes ``evaluation.json`` (means and per-image scores), ``evaluation.md`` (table) and
    ``panel_<mask>.png`` (input, mask, output, error) into ``output_dir``; returns the results.
    """
    with exit_on_bad_checkpoint():
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"No network weights at {checkpoint}: train the bundle first (docs/README.md)")
        network.load_state_dict(read_state_dict(checkpoint, map_location=device))
    network.to(device)
    items = load_items(datalist, edge_options or {}, max_images, image_size, percentiles)
    methods: dict[str, Callable] = {name: network_inpainter(network, device)}
    if baseline:
        methods["biharmonic"] = biharmonic
    lpips = load_lpips(vgg_weights_path, lpips_weights_path)
    results, example = evaluate(methods, items, mask_options, min_roi_size, lpips)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps({"checkpoint": checkpoint, "results": results}, indent=1), encoding="utf-8"
    )
    (out / "evaluation.md").write_text(markdown_table(results), encoding="utf-8")
    np.savez_compressed(
        out / "examples.npz",
        **{
            f"{kind}__{key}": value
            for kind, ex in example.items()
            for key, value in (
                ("image", ex["image"]),
                ("hole", ex["hole"]),
                *((f"out_{m}", o) for m, o in ex["outputs"].items()),
            )
        },
    )
    for kind, ex in example.items():
        save_panel(out / f"panel_{kind}.png", ex["image"], ex["hole"], ex["outputs"])
    LOGGER.info("evaluation on %d images:\n%s", len(items), markdown_table(results))
    return results
