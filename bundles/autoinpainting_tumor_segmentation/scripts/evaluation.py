"""Segmentation evaluation of autoinpainting (and of the anomaly-detection baselines) on tumour slices.

Per subject, its tumour slices are stacked into a volume; the residual volume (autoinpainting.residual_volume)
is thresholded at a fixed threshold (Dice, precision, recall) and at the per-subject best threshold from the
range ``[start, stop, step]`` (Dice). Subjects are averaged. Figures show, for the slice with the largest tumour
of each subject: the slice, the candidate circles (top-k in colour), the final mask, the inpainted slice, the
residual and the ground truth.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirst, LoadImage

from common.figures import save_panel_row
from common.metrics import BestThresholdDiceMetric, BinaryOverlapMetric

from .adaptation import adapt_to_scan
from .autoinpainting import is_in_mm, pixel_spacing, residual_volume, searcher_at

logger = logging.getLogger(__name__)

__all__ = ["tumour_slices", "load_tumour_cases", "segment_subjects", "evaluate_segmentation", "save_panel"]

#: datalist keys of a tumour slice, its tumour label and its organ-of-interest mask in the sample data
SAMPLE_DATA_KEYS = {"image": "image_tumour", "label": "label_tumour", "ooi": "brain"}


@functools.lru_cache(maxsize=1)
def _mask_loader() -> Compose:
    """One reader for every mask file: a ``LoadImage`` per file redoes its reader set-up (and prints its
    codec warnings) once per slice."""
    return Compose([LoadImage(image_only=True), EnsureChannelFirst()])


def _read_mask(path: str) -> torch.Tensor:
    return (_mask_loader()(path).as_tensor() > 0).float()


def tumour_slices(
    datalist_file: str, splits: Sequence[str], keys: Mapping[str, str] | None = None
) -> list[dict]:
    """Every slice with a tumour (``tumour_pixels > 0``) of ``splits`` of a decathlon datalist, with its
    ``subject`` (and ``slice_z``) and the files named by ``keys``: {key in the returned entry: key in the
    datalist}, default :data:`SAMPLE_DATA_KEYS` (``image``, ``label``, ``ooi``, what evaluation reads)."""
    keys = dict(SAMPLE_DATA_KEYS if keys is None else keys)
    slices = []
    for split in splits:
        for entry in load_decathlon_datalist(datalist_file, False, split):
            if entry.get("tumour_pixels", 0) > 0:
                where = {k: entry[k] for k in ("subject", "slice_z") if k in entry}
                slices.append({**where, **{name: entry[key] for name, key in keys.items()}})
    return slices


def load_tumour_cases(datalist: Sequence[dict], load: Sequence) -> dict[str, list[dict]]:
    """{subject: [slices sorted by z]} of the :func:`tumour_slices` entries, each ``{"image", "label", "ooi",
    "z", "spacing"}`` (``spacing``: the in-plane pixel size in mm, None without an affine), the image preprocessed
    by the bundle's ``load`` transforms (key ``image``), tumour label and organ-of-interest mask as (1, H, W)
    binary tensors."""
    preprocess = Compose(list(load))
    subjects: dict[str, list[dict]] = defaultdict(list)
    for entry in datalist:
        image = preprocess({"image": entry["image"]})["image"]
        # load_decathlon_datalist turns "sub-007" into a path when a folder of that name exists
        subject = Path(str(entry["subject"])).name
        subjects[subject].append(
            {
                "spacing": pixel_spacing(image),
                "image": image.as_tensor() if hasattr(image, "as_tensor") else image,
                "label": _read_mask(entry["label"]),
                "ooi": _read_mask(entry["ooi"]),
                "z": entry.get("slice_z", len(subjects[subject])),
            }
        )
    if not subjects:
        raise ValueError("the segmentation datalist is empty: no slice with a tumour.")
    return {s: sorted(v, key=lambda c: c["z"]) for s, v in sorted(subjects.items())}


def segment_subjects(
    predict: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, object]] | None,
    subjects: dict[str, list[dict]],
    threshold: float,
    best_threshold_range: Sequence[float] = (0.0, 0.8, 0.02),
    predictor_for: Callable[[str, list[dict]], Callable] | None = None,
) -> dict:
    """Run ``predict(image, ooi) -> (inpainted or reconstruction, details)`` on every slice and score the
    residuals per subject (``predictor_for(subject, cases)`` gives a subject its own ``predict``, e.g. a network
    adapted to that scan). Returns per-subject metrics, their means and the per-slice outputs (for figures)."""
    metrics = {
        name: BinaryOverlapMetric(name, threshold=threshold) for name in ("dice", "precision", "recall")
    }
    best = BestThresholdDiceMetric(*best_threshold_range)
    per_subject, outputs = {}, {}
    for subject, cases in subjects.items():
        predict_slice = predictor_for(subject, cases) if predictor_for is not None else predict
        predictions = [predict_slice(c["image"], c["ooi"]) for c in cases]
        images = torch.stack([c["image"] for c in cases], -1)
        inpainted = torch.stack([p[0].cpu() for p in predictions], -1)
        labels = torch.stack([c["label"] for c in cases], -1)
        residual = residual_volume(images, inpainted)
        values = {name: float(m(residual[None], labels[None]).item()) for name, m in metrics.items()}
        values["dice_best"] = float(best(residual[None], labels[None]).item())
        values["best_threshold"] = float(best.best_thresholds[0])
        values["slices"] = len(cases)
        per_subject[subject] = values
        outputs[subject] = {
            "residual": residual,
            "inpainted": inpainted,
            "details": [p[1] for p in predictions],
        }
    names = ("dice", "precision", "recall", "dice_best")
    mean = {n: float(np.nanmean([v[n] for v in per_subject.values()])) for n in names}
    std = {n: float(np.nanstd([v[n] for v in per_subject.values()])) for n in names}
    return {"mean": mean, "std": std, "subjects": per_subject, "outputs": outputs}


def save_panel(path: Path, case: dict, inpainted, residual, details, title: str, threshold: float) -> None:
    """One PNG row: slice, candidate circles (top-k coloured), final mask, inpainted, residual, truth."""
    image = case["image"][0].numpy()
    panels = [("slice", image, "gray", None)]
    if details is not None and getattr(details, "circles", None) is not None and len(details.circles):
        circles = np.zeros(image.shape + (3,))
        circles[..., :] = image[..., None]
        edges = [c ^ _erode(c) for c in details.circles]
        for edge in edges:
            circles[edge] = (0.3, 0.6, 1.0)
        for k in details.top:
            circles[edges[k]] = (1.0, 0.2, 0.2)
        panels.append((f"{len(edges)} circles, top {len(details.top)}", circles, None, None))
        panels.append(
            (
                "final mask" + (" (unchanged)" if details.unchanged else ""),
                details.mask[0].cpu().numpy(),
                "gray",
                (0, 1),
            )
        )
    panels += [
        ("inpainted" if details is not None else "reconstruction", inpainted[0].numpy(), "gray", (0, 1)),
        ("residual", residual[0].numpy(), "magma", (0, 0.5)),
        (f"residual > {threshold}", (residual[0].numpy() > threshold).astype(float), "gray", (0, 1)),
        ("truth", case["label"][0].numpy(), "gray", (0, 1)),
    ]
    save_panel_row(path, panels, title)


def _erode(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask)


def write_report(
    result: dict, subjects: dict, output_dir: str, model_name: str, threshold: float, extra=None
) -> dict:
    """Write ``segmentation_<model>.json`` and one panel per subject; return the JSON-able summary."""
    out = Path(output_dir)
    summary = {
        "model": model_name,
        "threshold": threshold,
        "mean": result["mean"],
        "std": result["std"],
        "subjects": result["subjects"],
        **(extra or {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"segmentation_{model_name}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for subject, cases in subjects.items():
        k = int(np.argmax([c["label"].sum() for c in cases]))
        produced = result["outputs"][subject]
        save_panel(
            out / "figures" / f"{model_name}_{subject}.png",
            cases[k],
            produced["inpainted"][..., k],
            produced["residual"][..., k],
            produced["details"][k],
            f"{model_name}, {subject}, z={cases[k]['z']}, subject Dice {result['subjects'][subject]['dice']:.3f}",
            threshold,
        )
    logger.info("%s segmentation: %s", model_name, result["mean"])
    return summary


def evaluate_segmentation(
    network,
    datalist: Sequence[dict],
    load: Sequence,
    search: dict,
    threshold: float,
    best_threshold_range: Sequence[float],
    output_dir: str,
    model_name: str,
    device=None,
    adaptation: Mapping | None = None,
) -> dict:
    """Autoinpainting segmentation of every tumour slice of ``datalist``; writes the report and figures.

    ``adaptation`` (``enabled`` plus :func:`scripts.adaptation.adapt_to_scan` arguments): fine-tune a copy of
    the network on each subject's own slices with random holes before its search; the report records the
    seconds spent per subject."""
    network.eval()
    subjects = load_tumour_cases(datalist, load)
    spacings = {round(c["spacing"], 3) for cases in subjects.values() for c in cases if c["spacing"]}
    if is_in_mm(search) and len(spacings) != 1:
        raise ValueError(
            f"the search is in mm, so every slice needs one pixel spacing; found {sorted(spacings) or 'none'} "
            "(resample the slices to one grid first)"
        )
    searcher = searcher_at(search, next(iter(spacings)) if len(spacings) == 1 else None)

    options = dict(adaptation or {})
    adapt = bool(options.pop("enabled", False))
    adaptation_seconds: dict[str, float] = {}

    def predictor_for(subject: str, cases: list[dict]) -> Callable:
        net = network
        if adapt:
            start = time.perf_counter()
            with torch.enable_grad():
                net = adapt_to_scan(network, [c["image"] for c in cases], [c["ooi"] for c in cases],
                                    device=device, **options)
            adaptation_seconds[subject] = time.perf_counter() - start

        def predict(image, ooi):
            result = searcher.inpaint_slice(net, image.to(device), ooi.to(device))
            return result.inpainted, result

        return predict

    with torch.no_grad():
        result = segment_subjects(None, subjects, threshold, best_threshold_range, predictor_for)
    extra = {"search": dict(search), "adaptation": {"enabled": adapt, **options, "seconds": adaptation_seconds}}
    return write_report(result, subjects, output_dir, model_name, threshold, extra)
