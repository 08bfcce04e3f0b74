"""Held-out evaluation of both stages against the lesion-free truth (PSNR, Pearson, tissue-segmentation
robustness, abnormal-WM Dice), an orthogonal-slices figure, and the choice of the abnormal-WM threshold on the
validation subjects. ``evaluate.json`` runs :class:`Evaluation` (``run``) and :class:`ThresholdSweep`
(``sweeping``); both score subjects with the same functions (:func:`volume_psnr`, :func:`volume_pearson`,
:func:`dice`, ``abnormal_wm.abnormal_wm_map``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice

from common.engines import exit_on_bad_checkpoint
from common.metrics import PearsonMetric, PSNRMetric

from .abnormal_wm import abnormal_wm_map
from .blind_data import fill_lesions, load_stage, predict
from .data import preprocessor
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


def _batch(volume) -> torch.Tensor:
    """A (X, Y, Z) volume as a float64 (1, 1, X, Y, Z) batch for MONAI-style metrics."""
    return torch.as_tensor(np.asarray(volume, dtype=np.float64))[None, None]


def volume_psnr(pred, truth) -> float:
    """Whole-volume PSNR ``20 log10(max(truth) / RMSE)`` (the paper's; inf when identical)."""
    return float(PSNRMetric(max_val=None)(_batch(pred), _batch(truth)))


def volume_pearson(pred, truth) -> float:
    """Pearson correlation of all voxels."""
    return float(PearsonMetric()(_batch(pred), _batch(truth)))


def dice(a, b) -> float:
    """Dice of two binary maps (1.0 when both are empty), MONAI's ``compute_dice``."""
    return float(compute_dice(_batch(a), _batch(b), include_background=True, ignore_empty=False))


def _tissue_dice(labels: np.ndarray, reference: np.ndarray, prefix: str, suffix: str) -> dict:
    """GM and WM Dice against the reference classification and their mean (the paper's Table 1 rows), as
    ``{prefix}gm_{suffix}``, ``{prefix}wm_{suffix}`` and ``{prefix}{suffix}``."""
    gm, wm = (dice(labels == c, reference == c) for c in (GM, WM))
    return {f"{prefix}gm_{suffix}": gm, f"{prefix}wm_{suffix}": wm, f"{prefix}{suffix}": float(np.mean([gm, wm]))}


def _subject_name(entry: dict, index: int) -> str:
    return Path(str(entry.get("subject", index))).name  # load_decathlon_datalist makes it a path


def evaluate_subject(nets: dict, data: dict, abnormal_threshold: float, device="cpu") -> tuple[dict, dict]:
    """Scores of one preprocessed subject (MNI grid, standardised) and its volumes for the figure."""
    truth, lesioned = data["image"][0].numpy(), data["image_ms"][0].numpy()
    lesion, brain = data["label_ms"][0].numpy() > 0, data["brain"][0].numpy() > 0
    scores = {"psnr_input": volume_psnr(lesioned, truth), "pearson_input": volume_pearson(lesioned, truth)}
    volumes = {"input": lesioned}
    if "nonblind" in nets:
        filled = fill_lesions(nets["nonblind"], data["image_ms"], data["label_ms"], device)[0].numpy()
        scores.update(
            nonblind_psnr=volume_psnr(filled, truth), nonblind_pearson=volume_pearson(filled, truth)
        )
        volumes["nonblind"] = filled
    if "blind" in nets:
        inpainted = predict(nets["blind"], data["image_ms"], device)[0].numpy()
        normal = predict(nets["blind"], data["image"], device)[0].numpy()
        reference = gmm_tissue_classes(truth, brain)
        abnormal = abnormal_wm_map(lesioned, inpainted, abnormal_threshold)
        scores.update(
            blind_psnr_ms=volume_psnr(inpainted, truth),
            blind_pearson_ms=volume_pearson(inpainted, truth),
            blind_psnr_normal=volume_psnr(normal, truth),
            blind_pearson_normal=volume_pearson(normal, truth),
            **_tissue_dice(gmm_tissue_classes(lesioned, brain), reference, "tissue_dice_", "lesioned"),
            **_tissue_dice(gmm_tissue_classes(inpainted, brain), reference, "tissue_dice_", "inpainted"),
            abnormal_wm_dice=dice(abnormal, lesion),
        )
        volumes["blind"] = inpainted
    return scores, volumes


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


def _stages(network_def, nonblind_checkpoint, checkpoint, device) -> dict:
    """Each stage's network: ``checkpoint`` (blind) must load (else one-line exit naming it, never random
    weights); a missing ``nonblind_checkpoint`` is logged and that stage skipped."""
    nets = {}
    with exit_on_bad_checkpoint():
        if nonblind_checkpoint and Path(nonblind_checkpoint).is_file():
            nets["nonblind"] = load_stage(network_def, nonblind_checkpoint, device)
        else:
            logger.warning("no nonblind checkpoint at %s: that stage is not evaluated", nonblind_checkpoint)
        nets["blind"] = load_stage(network_def, checkpoint, device)
    return nets


def _write_json(output_dir: str | os.PathLike, name: str, result: dict) -> None:
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, name).write_text(json.dumps(result, indent=1), encoding="utf-8")


class Evaluation:
    """Both stages on held-out subjects (``datalist`` entries with image, image_ms, label_ms, brain), written to
    ``output_dir`` as ``evaluation.json``, ``evaluation.md`` (measured vs paper) and ``orthogonal_slices.png``.

    Args:
        network_def: the architecture of both stages (copied; the checkpoints are loaded into the copies).
        checkpoint / nonblind_checkpoint: blind (stage 2) and non-blind (stage 1) weights; a missing one skips
            its stage.
        preprocessing_options: ``MNIPreprocessd`` flags, as in training.
        abnormal_threshold: |lesioned - inpainted| above it (units of the mean head intensity) inside WM marks
            abnormal WM; choose it on the validation subjects with :class:`ThresholdSweep`, never on these.
    """

    def __init__(
        self,
        network_def: torch.nn.Module,
        checkpoint: str,
        nonblind_checkpoint: str,
        datalist: Sequence[dict],
        output_dir: str,
        preprocessing_options: dict,
        abnormal_threshold: float,
        device: str | torch.device = "cpu",
    ) -> None:
        if not datalist:
            raise ValueError("empty evaluation datalist")
        self.network_def, self.checkpoint, self.nonblind_checkpoint = (
            network_def,
            checkpoint,
            nonblind_checkpoint,
        )
        self.datalist, self.output_dir, self.device = list(datalist), output_dir, device
        self.preprocessing_options, self.abnormal_threshold = preprocessing_options, abnormal_threshold

    def run(self) -> dict:
        nets = _stages(self.network_def, self.nonblind_checkpoint, self.checkpoint, self.device)
        keys = ["image_ms", "image", "label_ms", "brain"]
        prepare = preprocessor(keys, ["label_ms", "brain"], self.preprocessing_options, unknown_keys=["label_ms"])
        per_subject = []
        for index, entry in enumerate(self.datalist):
            data = prepare({k: entry[k] for k in keys})
            scores, volumes = evaluate_subject(nets, data, self.abnormal_threshold, self.device)
            per_subject.append({"subject": _subject_name(entry, index), **scores})
            if index == 0:
                Path(self.output_dir).mkdir(parents=True, exist_ok=True)
                lesion = data["label_ms"][0].numpy() > 0
                centre = (
                    tuple(int(c) for c in np.round(np.argwhere(lesion).mean(axis=0)))
                    if lesion.any()
                    else None
                )
                save_orthogonal_slices(volumes, Path(self.output_dir) / "orthogonal_slices.png", centre)
        names = [k for k in per_subject[0] if k != "subject"]
        summary = {k: float(np.mean([s[k] for s in per_subject])) for k in names}
        result = {
            "summary": summary,
            "subjects": per_subject,
            "paper": PAPER,
            "abnormal_threshold": self.abnormal_threshold,
        }
        _write_json(self.output_dir, "evaluation.json", result)
        markdown = markdown_table(summary, len(per_subject))
        Path(self.output_dir, "evaluation.md").write_text(markdown, encoding="utf-8")
        logger.info("evaluation summary: %s", summary)
        return result


class ThresholdSweep:
    """Choose the abnormal-WM threshold on the validation subjects (``datalist``: image_ms, image, label_ms).

    For each candidate ``start, start + step, ..., stop`` the mean Dice of the abnormal-WM map (blind
    ``checkpoint``, WM = the MNI WM prior as at inference) against ``label_ms``; the best (the smallest on ties) is
    written with all candidates to ``output_dir/threshold_sweep.json``. ``oracle_mean_dice`` applies the same
    rule to the lesion-free truth ``image`` in place of the network's output (not used for the choice): what a
    perfect inpainting would reach with this map.
    """

    def __init__(
        self,
        network_def: torch.nn.Module,
        checkpoint: str,
        datalist: Sequence[dict],
        output_dir: str,
        preprocessing_options: dict,
        start: float = 0.05,
        stop: float = 1.0,
        step: float = 0.05,
        device: str | torch.device = "cpu",
    ) -> None:
        if not datalist:
            raise ValueError("the threshold sweep needs at least one subject")
        if not 0 < start <= stop or step <= 0:
            raise ValueError(
                f"need 0 < start <= stop and step > 0, got start={start}, stop={stop}, step={step}"
            )
        count = int(round((stop - start) / step)) + 1
        self.thresholds = [round(start + i * step, 6) for i in range(count)]
        self.network_def, self.checkpoint, self.datalist = network_def, checkpoint, list(datalist)
        self.output_dir, self.preprocessing_options, self.device = output_dir, preprocessing_options, device

    def run(self) -> dict:
        with exit_on_bad_checkpoint():
            network = load_stage(self.network_def, self.checkpoint, self.device)
        keys = ["image_ms", "image", "label_ms"]
        prepare = preprocessor(keys, ["label_ms"], self.preprocessing_options, unknown_keys=["label_ms"])
        per_subject = []
        for index, entry in enumerate(self.datalist):
            data = prepare({k: entry[k] for k in keys})
            lesioned, lesion = data["image_ms"][0].numpy(), data["label_ms"][0].numpy() > 0
            scores = {}
            for name, inpainted in (
                ("dice", predict(network, data["image_ms"], self.device)[0].numpy()),
                ("oracle_dice", data["image"][0].numpy()),
            ):
                scores[name] = [
                    dice(abnormal_wm_map(lesioned, inpainted, t), lesion) for t in self.thresholds
                ]
            per_subject.append({"subject": _subject_name(entry, index), **scores})
        mean, oracle = (
            [float(np.mean([s[name][i] for s in per_subject])) for i in range(len(self.thresholds))]
            for name in ("dice", "oracle_dice")
        )
        best = int(np.argmax(mean))
        result = {
            "chosen_threshold": self.thresholds[best],
            "chosen_mean_dice": mean[best],
            "thresholds": self.thresholds,
            "mean_dice": mean,
            "oracle_mean_dice": oracle,
            "subjects": per_subject,
        }
        _write_json(self.output_dir, "threshold_sweep.json", result)
        logger.info("abnormal-WM threshold %.3f (validation Dice %.4f)", self.thresholds[best], mean[best])
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
