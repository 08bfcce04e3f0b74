"""Evaluation of object removal: metrics binned by mask ratio, the dilation/erosion sweep, the PNG panel and
the chosen-mask diagnostics.

The paper reports its metrics per mask-ratio bin (0-10, 10-20, 20-30, 30-40 % of the image). The binning is
``.binning.MaskRatioBinnedMetric``; it cannot be a MONAI metric handler in this evaluator:
``IgniteMetricHandler`` hands its metric the evaluator's decollated per-image lists (the binned metric needs
a batch of images and masks) and records one number, while the binned metric
yields one per bin. :class:`BinnedMetricsWriter` is therefore a plain ignite handler: it feeds the binned
metrics every iteration and, when the evaluator completes, writes ``<name>.json`` and ``<name>.md``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.metrics import CumulativeIterationMetric

from common.engines import read_state_dict
from common.masking import split_inpainting_target
from common.metrics import LPIPSMetric, PSNRMetric

from .binning import MaskRatioBinnedMetric
from .data import evenly_spaced

__all__ = [
    "BinnedMetricsWriter",
    "comparison_table",
    "expand_sweep",
    "markdown_table",
    "mask_diagnostics",
    "optional_lpips",
    "write_panel",
]

logger = logging.getLogger(__name__)


def optional_lpips(**kwargs) -> LPIPSMetric | None:
    """``LPIPSMetric(**kwargs)`` when its VGG/LPIPS weights exist locally, else None (logged): the issue asks
    for LPIPS only where local weights exist."""
    try:
        return LPIPSMetric(**kwargs)
    except FileNotFoundError as error:
        logger.warning("LPIPS left out: %s", error)
        return None


def _mean(values: torch.Tensor) -> float:
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else float("nan")


class BinnedMetricsWriter:
    """Ignite handler: per-image metrics binned by the true mask's ratio, written as JSON and markdown.

    Args:
        metrics: name -> per-image metric taking ``(y_pred, y, mask=mask)``
            (e.g. ``common.metrics.PSNRMetric()``); a None value is listed as skipped (e.g. LPIPS without
            weights).
        output_dir: folder of ``<name>.json`` / ``<name>.md``.
        name: file stem.
        bin_edges: mask-ratio bin edges (the paper's 0-10 ... 30-40 %).
        pred_key, label_key: engine output keys; the label is the inpainting target ``{"image": object-free
            image, "mask": true mask}`` (``PipelineBatchPreparer``).
    """

    def __init__(
        self,
        metrics: Mapping[str, CumulativeIterationMetric | None],
        output_dir: str,
        name: str = "binned_metrics",
        bin_edges: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4),
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        self.binned = {k: MaskRatioBinnedMetric(m, bin_edges) for k, m in metrics.items() if m is not None}
        if not self.binned:
            raise ValueError("BinnedMetricsWriter needs at least one metric.")
        self.skipped = [k for k, m in metrics.items() if m is None]
        self.output_dir, self.name = Path(output_dir), name
        self.bin_edges = list(next(iter(self.binned.values())).bin_edges)
        self.output_transform = from_engine([pred_key, label_key])
        self.results: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        for metric in self.binned.values():
            metric.reset()

    def update(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        y_pred = torch.stack([torch.as_tensor(p).detach().float().cpu() for p in preds])
        images, masks = split_inpainting_target(labels)
        y = torch.stack([torch.as_tensor(t).detach().float().cpu() for t in images])
        mask = torch.stack([torch.as_tensor(m).detach().float().cpu() for m in masks])
        for metric in self.binned.values():
            metric(y_pred, y, mask=mask)

    def compute(self) -> dict:
        """``{"bins", "count", "mean": {metric: {bin: mean}}, "all": {metric: mean over every image},
        "images": [{"mask_ratio", metric...}], "skipped"}``."""
        ratios = next(iter(self.binned.values())).get_buffer()[1].flatten()
        labels = next(iter(self.binned.values())).bin_labels
        edges = self.bin_edges
        count = [int(((ratios > lo) & (ratios <= hi)).sum()) for lo, hi in zip(edges, edges[1:])]
        values = {k: m.get_buffer()[0].flatten() for k, m in self.binned.items()}
        images = [
            {"mask_ratio": float(r), **{k: float(v[i]) for k, v in values.items()}}
            for i, r in enumerate(ratios)
        ]
        return {
            "bins": labels,
            "count": dict(zip(labels, count)),
            "mean": {k: m.as_dict() for k, m in self.binned.items()},
            "all": {k: _mean(v) for k, v in values.items()},
            "images": images,
            "skipped": self.skipped,
        }

    def write(self, engine: Engine | None = None) -> dict:
        self.results = self.compute()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / f"{self.name}.json").write_text(
            json.dumps(self.results, indent=2), encoding="utf-8"
        )
        (self.output_dir / f"{self.name}.md").write_text(
            markdown_table(self.results) + "\n", encoding="utf-8"
        )
        logger.info("binned metrics (%s):\n%s", self.name, markdown_table(self.results))
        return self.results


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(results: Mapping) -> str:
    """One row per metric, one column per mask-ratio bin plus all images; first row: images per bin."""
    bins = results["bins"]
    lines = [
        "| metric | " + " | ".join(bins) + " | all |",
        "|---|" + "---|" * (len(bins) + 1),
        "| images | " + " | ".join(str(results["count"][b]) for b in bins) + f" | {len(results['images'])} |",
    ]
    for name, per_bin in results["mean"].items():
        cells = [_fmt(per_bin[b]) for b in bins] + [_fmt(results["all"][name])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [f"| {name} | skipped (no local weights) |" for name in results.get("skipped", [])]
    return "\n".join(lines)


def comparison_table(
    runs: Mapping[str, Mapping | str | Path],
    metric: str = "psnr",
    digits: int = 2,
    notes: Mapping[str, str] | None = None,
) -> str:
    """One row per run (label -> results dict or path of a :class:`BinnedMetricsWriter` JSON), one column per
    bin (``metric`` mean, images per bin in the header) plus all images, as the paper lays out its tables;
    ``notes`` (label -> text) come first, one row each (e.g. the paper's numbers, or why they are missing)."""
    loaded = {
        k: json.loads(Path(v).read_text(encoding="utf-8")) if isinstance(v, (str, Path)) else v
        for k, v in runs.items()
    }
    first = next(iter(loaded.values()))
    bins = first["bins"]
    header = [f"{b} (n={first['count'][b]})" for b in bins] + [f"all (n={len(first['images'])})"]
    lines = [f"| {metric} | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines += [f"| {label} | {text} |" + " |" * len(bins) for label, text in (notes or {}).items()]
    for label, res in loaded.items():
        cells = [_fmt(res["mean"][metric][b], digits) for b in bins] + [_fmt(res["all"][metric], digits)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def expand_sweep(
    evaluator: Engine,
    network: torch.nn.Module,
    writer: BinnedMetricsWriter,
    values: Sequence[int] = (-2, 0, 2, 4, 6, 8),
    mask_source: str = "hint",
) -> dict:
    """Table I: evaluate with the mask eroded (d < 0) or dilated (d > 0) by d pixels for every d in ``values``.

    ``mask_source="hint"`` feeds the inpainters the true mask (the evaluator's hint) +- d, the paper's
    "inpainter alone" setting; ``"segmenter"`` modifies the segmenter's chosen mask instead. Each d writes
    ``expand_<d>.json/.md`` through ``writer``; ``expand_sweep.json/.md`` gather them (one table per metric).
    """
    base = (writer.name, network.mask_source, network.expand)
    network.mask_source = mask_source
    runs = {}
    try:
        for d in values:
            network.expand, writer.name = int(d), f"expand_{int(d):+d}"
            evaluator.run()
            runs[f"d = {int(d):+d} px"] = writer.results
    finally:
        writer.name, network.mask_source, network.expand = base
    tables = [f"mask source: {mask_source}"] + [comparison_table(runs, m, 3) for m in writer.binned]
    (writer.output_dir / "expand_sweep.md").write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    (writer.output_dir / "expand_sweep.json").write_text(json.dumps(runs, indent=2), encoding="utf-8")
    logger.info("expand sweep:\n%s", "\n\n".join(tables))
    return runs


def write_panel(
    network: torch.nn.Module,
    checkpoints: Mapping[str, str],
    dataset: Sequence[Mapping],
    path: str,
    count: int = 4,
    device: str | torch.device = "cpu",
) -> Path:
    """PNG panel, one row per test pair (``count`` pairs evenly spaced over ``dataset``): input with the object,
    true mask, then for every model (label -> checkpoint of the whole pipeline) its chosen mask and its output,
    then the truth (object-free image).

    Models are copies of ``network`` with each checkpoint loaded; the hint is the true mask, as in evaluation.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _load_models(network, checkpoints, device)
    items = [dataset[i] for i in evenly_spaced(len(dataset), count)]  # spread over the subjects and levels
    columns = 3 + 2 * len(models)
    fig, axes = plt.subplots(len(items), columns, figsize=(2.2 * columns, 2.3 * len(items)), squeeze=False)
    for row, item in zip(axes, items):
        image, clean, mask = (torch.as_tensor(item[k]).float() for k in ("image", "clean", "mask"))
        x = torch.cat([image, mask], dim=0)[None].to(device)
        panels = [("input with object", image[0]), (f"true mask ({100 * float(mask.mean()):.1f} %)", mask[0])]
        for label, model in models.items():
            with torch.no_grad():
                out = model(x, details=True)
            chosen = out["selected"][0, 0].cpu()
            panels += [(f"mask: {label}", chosen), (f"output: {label}", out["pred"][0, 0].cpu())]
        panels.append(("truth", clean[0]))
        for ax, (title, picture) in zip(row, panels):
            ax.imshow(np.asarray(picture), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _load_models(network: torch.nn.Module, checkpoints: Mapping[str, str], device) -> dict[str, torch.nn.Module]:
    """label -> a copy of ``network`` in eval mode with that checkpoint (a whole-pipeline state dict) loaded."""
    models = {}
    for label, ckpt in checkpoints.items():
        model = copy.deepcopy(network).to(device).eval()
        model.load_state_dict(read_state_dict(ckpt, map_location="cpu"))
        models[label] = model
    return models


def mask_diagnostics(
    network: torch.nn.Module,
    checkpoints: Mapping[str, str],
    dataset: Sequence[Mapping],
    output_dir: str,
    device: str | torch.device = "cpu",
) -> Path:
    """What each model's chosen mask does to the object, over every test pair (hint = the true mask, as in
    evaluation): mean recall (share of the object's pixels inside the chosen mask), precision, chosen / true
    area, the share of pairs whose chosen mask misses over half of the object, and the whole-image PSNR; plus
    the row "object left in" (the input itself scored against the truth), the PSNR of removing nothing.

    Why: a segmenter trained end to end through a weak inpainter can score by keeping the object (its pixels
    are closer to the truth than a poor fill); the mask expansion loss forbids that, so the two PSNRs alone do not
    say which model removes the object. Writes ``<output_dir>/mask_diagnostics.json`` and ``.md``.
    """
    models = _load_models(network, checkpoints, device)
    psnr = PSNRMetric()  # whole image, max 1: evaluate.json's val_psnr

    def _psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
        return float(psnr(pred[None], truth[None]))

    rows: dict[str, dict[str, list[float]]] = {"object left in": {"psnr": []}}
    rows.update({label: {k: [] for k in ("psnr", "recall", "precision", "area", "missed")} for label in models})
    for item in (dataset[i] for i in range(len(dataset))):
        image, clean, mask = (torch.as_tensor(item[k]).float() for k in ("image", "clean", "mask"))
        true = mask[0] > 0.5
        rows["object left in"]["psnr"].append(_psnr(image, clean))
        x = torch.cat([image, mask], dim=0)[None].to(device)
        for label, model in models.items():
            with torch.no_grad():
                out = model(x, details=True)
            chosen = out["selected"][0, 0].cpu() > 0.5
            hit = float((chosen & true).sum())
            recall = hit / max(float(true.sum()), 1.0)
            values = {
                "psnr": _psnr(out["pred"][0].cpu(), clean),
                "recall": recall,
                "precision": hit / max(float(chosen.sum()), 1.0),
                "area": float(chosen.sum()) / max(float(true.sum()), 1.0),
                "missed": float(recall < 0.5),
            }
            for key, value in values.items():
                rows[label][key].append(value)
    results = {
        "pairs": len(dataset),
        "rows": {label: {k: float(np.mean(v)) for k, v in row.items()} for label, row in rows.items()},
    }
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mask_diagnostics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    lines = [
        f"| model ({results['pairs']} test pairs) | PSNR | recall | precision | chosen / true area | misses > half |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in results["rows"].items():
        cells = [f"{row['psnr']:.2f}"] + [
            _fmt(row[k], 2) if k in row else "–" for k in ("recall", "precision", "area", "missed")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    path = out_dir / "mask_diagnostics.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
