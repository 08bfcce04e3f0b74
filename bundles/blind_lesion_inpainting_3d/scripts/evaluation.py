"""Held-out evaluation of both stages against the lesion-free truth, tissue-segmentation robustness, the
abnormal-WM map, and an orthogonal-slices figure (input, output, difference)."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .abnormal_wm import abnormal_wm_map
from .blind_data import fill_lesions, load_weights, predict, preprocessor
from .metrics import dice, pearson, psnr
from .tissue import GM, WM, gmm_tissue_classes

logger = logging.getLogger(__name__)

#: the paper's Table values (Manjón et al.), reported beside the measured ones
PAPER = {
    "nonblind_psnr_input": 34.21,
    "nonblind_psnr": 48.13,
    "nonblind_pearson": 0.9997,
    "blind_psnr_ms": 49.57,
    "blind_psnr_normal": 44.97,
    "tissue_dice_lesioned": 0.9718,
    "tissue_dice_inpainted": 0.9834,
}


def _networks(network_def, nonblind_checkpoint, blind_checkpoint, device):
    """Copies of ``network_def`` with each stage's weights, for the checkpoints that exist (logged)."""
    nets = {}
    for stage, path in (("nonblind", nonblind_checkpoint), ("blind", blind_checkpoint)):
        if path and Path(path).exists():
            nets[stage] = load_weights(copy.deepcopy(network_def), path).to(device).eval()
        else:
            logger.warning("no %s checkpoint at %s: that stage is not evaluated", stage, path)
    if not nets:
        raise FileNotFoundError(
            f"neither {nonblind_checkpoint} nor {blind_checkpoint} exists: train the bundle first"
        )
    return nets


def evaluate_subject(nets: dict, data: dict, abnormal_threshold: float, device="cpu") -> tuple[dict, dict]:
    """Scores of one preprocessed subject (MNI grid, standardised) and its volumes for the figure."""
    truth, lesioned = data["image"][0].numpy(), data["image_ms"][0].numpy()
    lesion, brain = data["label_ms"][0].numpy() > 0, data["brain"][0].numpy() > 0
    scores = {"psnr_input": psnr(lesioned, truth), "pearson_input": pearson(lesioned, truth)}
    volumes = {"input": lesioned}
    if "nonblind" in nets:
        filled = fill_lesions(nets["nonblind"], data["image_ms"], data["label_ms"], device)[0].numpy()
        scores.update(nonblind_psnr=psnr(filled, truth), nonblind_pearson=pearson(filled, truth))
        volumes["nonblind"] = filled
    if "blind" in nets:
        inpainted = predict(nets["blind"], data["image_ms"], device)[0].numpy()
        normal = predict(nets["blind"], data["image"], device)[0].numpy()
        reference = gmm_tissue_classes(truth, brain)
        lesioned_classes = gmm_tissue_classes(lesioned, brain)
        inpainted_classes = gmm_tissue_classes(inpainted, brain)
        abnormal = abnormal_wm_map(lesioned, inpainted, abnormal_threshold)
        scores.update(
            blind_psnr_ms=psnr(inpainted, truth),
            blind_pearson_ms=pearson(inpainted, truth),
            blind_psnr_normal=psnr(normal, truth),
            blind_pearson_normal=pearson(normal, truth),
            tissue_dice_lesioned=_tissue_dice(lesioned_classes, reference),
            tissue_dice_inpainted=_tissue_dice(inpainted_classes, reference),
            abnormal_wm_dice=dice(abnormal, lesion),
        )
        volumes["blind"] = inpainted
    return scores, volumes


def _tissue_dice(labels: np.ndarray, reference: np.ndarray) -> float:
    """Mean of the GM and WM Dice coefficients against the reference classification."""
    return float(np.mean([dice(labels == c, reference == c) for c in (GM, WM)]))


def save_orthogonal_slices(volumes: dict, path: str | os.PathLike, centre=None) -> None:
    """PNG with one row per view (axial, coronal, sagittal) and columns input / outputs / |output - input|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = volumes["input"]
    outputs = [k for k in ("nonblind", "blind") if k in volumes]
    columns = [("input", source)] + [(k, volumes[k]) for k in outputs]
    columns += [(f"|{k} - input|", np.abs(volumes[k] - source)) for k in outputs]
    centre = centre or tuple(s // 2 for s in source.shape)
    views = [
        lambda v: v[:, :, centre[2]].T,
        lambda v: v[:, centre[1], :].T,
        lambda v: v[centre[0], :, :].T,
    ]
    figure, axes = plt.subplots(3, len(columns), figsize=(2.6 * len(columns), 8), squeeze=False)
    vmax = float(np.percentile(source, 99.5))
    for col, (title, volume) in enumerate(columns):
        is_difference = title.startswith("|")
        for row, view in enumerate(views):
            ax = axes[row, col]
            ax.imshow(
                view(volume),
                cmap="hot" if is_difference else "gray",
                origin="lower",
                vmin=0,
                vmax=vmax / 2 if is_difference else vmax,
            )
            ax.set_axis_off()
        axes[0, col].set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def report(
    network_def: torch.nn.Module,
    datalist: list[dict],
    nonblind_checkpoint: str,
    blind_checkpoint: str,
    output_dir: str,
    preprocessing: dict,
    abnormal_threshold: float,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate every subject of ``datalist`` (keys image, image_ms, label_ms, brain) and write
    ``evaluation.json``, ``evaluation.md`` (measured vs paper) and ``orthogonal_slices.png`` to ``output_dir``.

    ``abnormal_threshold``: |lesioned - inpainted| above it (in units of the mean head intensity) inside WM marks
    abnormal WM (``scripts.abnormal_wm``); choose it on the validation subjects with
    :func:`sweep_abnormal_threshold`, never on these.
    """
    if not datalist:
        raise ValueError("empty evaluation datalist")
    nets = _networks(network_def, nonblind_checkpoint, blind_checkpoint, device)
    keys = ["image_ms", "image", "label_ms", "brain"]
    prepare = preprocessor(keys, ["label_ms", "brain"], preprocessing)
    per_subject = []
    for index, entry in enumerate(datalist):
        data = prepare({k: entry[k] for k in keys})
        scores, volumes = evaluate_subject(nets, data, abnormal_threshold, device)
        per_subject.append({"subject": Path(str(entry.get("subject", index))).name, **scores})
        if index == 0:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            lesion = data["label_ms"][0].numpy() > 0
            centre = (
                tuple(int(c) for c in np.round(np.argwhere(lesion).mean(axis=0))) if lesion.any() else None
            )
            save_orthogonal_slices(volumes, Path(output_dir) / "orthogonal_slices.png", centre)
    names = [k for k in per_subject[0] if k != "subject"]
    summary = {k: float(np.mean([s[k] for s in per_subject])) for k in names}
    result = {
        "summary": summary,
        "subjects": per_subject,
        "paper": PAPER,
        "abnormal_threshold": abnormal_threshold,
    }
    Path(output_dir, "evaluation.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    Path(output_dir, "evaluation.md").write_text(markdown_table(summary, len(per_subject)), encoding="utf-8")
    logger.info("evaluation summary: %s", summary)
    return result


def sweep_abnormal_threshold(
    network_def: torch.nn.Module,
    datalist: list[dict],
    blind_checkpoint: str,
    output_dir: str,
    preprocessing: dict,
    thresholds: list[float],
    device: str | torch.device = "cpu",
) -> dict:
    """Mean Dice of the abnormal-WM map against ``label_ms`` for each candidate threshold on ``datalist`` (the
    validation subjects), the threshold with the highest mean (the smallest on ties), written to
    ``output_dir/threshold_sweep.json``. WM is the MNI WM prior, as at inference.

    For reference (not used for the choice), ``oracle_mean_dice`` applies the same rule to the lesion-free truth
    ``image`` in place of the network's output: what a perfect inpainting would reach with this map."""
    if not datalist or not thresholds:
        raise ValueError("the threshold sweep needs at least one subject and one candidate threshold")
    network = load_weights(copy.deepcopy(network_def), blind_checkpoint).to(device).eval()
    keys = ["image_ms", "image", "label_ms"]
    prepare = preprocessor(keys, ["label_ms"], preprocessing)
    thresholds = sorted(float(t) for t in thresholds)
    per_subject = []
    for index, entry in enumerate(datalist):
        data = prepare({k: entry[k] for k in keys})
        lesioned, lesion = data["image_ms"][0].numpy(), data["label_ms"][0].numpy() > 0
        scores = {}
        for name, inpainted in (
            ("dice", predict(network, data["image_ms"], device)[0].numpy()),
            ("oracle_dice", data["image"][0].numpy()),
        ):
            scores[name] = [dice(abnormal_wm_map(lesioned, inpainted, t), lesion) for t in thresholds]
        per_subject.append({"subject": Path(str(entry.get("subject", index))).name, **scores})
    mean, oracle = (
        [float(np.mean([s[name][i] for s in per_subject])) for i in range(len(thresholds))]
        for name in ("dice", "oracle_dice")
    )
    best = int(np.argmax(mean))
    result = {
        "chosen_threshold": thresholds[best],
        "chosen_mean_dice": mean[best],
        "thresholds": thresholds,
        "mean_dice": mean,
        "oracle_mean_dice": oracle,
        "subjects": per_subject,
    }
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, "threshold_sweep.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    logger.info("abnormal-WM threshold %.3f (validation Dice %.4f)", thresholds[best], mean[best])
    return result


def markdown_table(summary: dict, n_subjects: int) -> str:
    rows = [
        ("non-blind PSNR, input (lesioned) vs truth", "nonblind_psnr_input", "psnr_input"),
        ("non-blind PSNR, output vs truth", "nonblind_psnr", "nonblind_psnr"),
        ("non-blind Pearson, output vs truth", "nonblind_pearson", "nonblind_pearson"),
        ("blind PSNR, MS cases", "blind_psnr_ms", "blind_psnr_ms"),
        ("blind PSNR, normal cases", "blind_psnr_normal", "blind_psnr_normal"),
        ("GM/WM Dice, lesioned vs lesion-free", "tissue_dice_lesioned", "tissue_dice_lesioned"),
        ("GM/WM Dice, blind-inpainted vs lesion-free", "tissue_dice_inpainted", "tissue_dice_inpainted"),
        ("abnormal-WM map Dice vs lesion mask", None, "abnormal_wm_dice"),
    ]
    lines = [f"| metric | paper | measured (n={n_subjects}) |", "|---|---|---|"]
    for label, paper_key, key in rows:
        paper = PAPER.get(paper_key, "-") if paper_key else "-"
        measured = f"{summary[key]:.4f}" if key in summary else "not evaluated"
        lines.append(f"| {label} | {paper} | {measured} |")
    return "\n".join(lines) + "\n"
