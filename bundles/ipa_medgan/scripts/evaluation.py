"""Table I of ipA-MedGAN on the test split: SSIM, PSNR, MSE (0-255) and UQI for every model and experiment,
beside the paper's numbers, and a PNG panel (input, mask, output, residual).

Every row comes from the bundle's one evaluation route, ``evaluate.json``: for each model the configs it was
trained with (``train.json`` [+ ``quick.json``] + experiment override + baseline override) plus
``evaluate.json``, whose evaluator loads the run's best generator (``<runs_dir>/<model>_<experiment>/model.pt``)
and scores it on the test slices with the experiment's fixed validation mask bank, so every row sees identical
holes. The biharmonic baseline (``skimage.restoration.inpaint_biharmonic``), the one method *given* the mask,
runs through the same evaluator in place of the generator. Whole-image metrics, images in [0, 1].
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from skimage.restoration import inpaint_biharmonic

__all__ = [
    "EXPERIMENTS",
    "MODELS",
    "PAPER_ROW",
    "PAPER_TABLE_I",
    "BiharmonicInpainter",
    "paper_row",
    "evaluate_run",
    "table_scores",
    "write_report",
]

EXPERIMENTS = {"square": [], "arbitrary": ["arbitrary.json"]}
#: model name -> (label, override config, experiments it runs on)
MODELS = {
    "ipa_medgan": ("ipA-MedGAN (2 x MultiResUNet)", [], ("square", "arbitrary")),
    "multiresunet": ("single MultiResUNet", ["multiresunet.json"], ("square", "arbitrary")),
    "pix2pix": ("pix2pix (U-Net + patch D + L1)", ["pix2pix.json"], ("square", "arbitrary")),
    "context_encoder": ("context-encoder style", ["context_encoder.json"], ("square",)),
    "medgan": ("MedGAN / ip-MedGAN (6 x U-Net)", ["medgan.json"], ("square", "arbitrary")),
    "gated_conv": (
        "Gated-Conv (gated-conv U-Net, given the mask)",
        ["pix2pix.json", "gated_conv.json"],
        ("arbitrary",),
    ),
}
#: Table I's metrics -> the evaluator's names for them (``validate#metrics`` of train.json)
METRICS = {"ssim": "val_ssim", "psnr": "val_psnr", "mse": "val_mse_255", "uqi": "val_uqi"}
#: Table I of the paper (Armanious et al., ICIP 2020), every row: (a) squares, (b) arbitrary masks
PAPER_TABLE_I = {
    "square": {
        "CE": {"ssim": 0.8556, "psnr": 23.79, "mse": 281.59, "uqi": 0.8006},
        "ip-MedGAN": {"ssim": 0.9518, "psnr": 29.68, "mse": 81.14, "uqi": 0.8628},
        "ipA-MedGAN": {"ssim": 0.9606, "psnr": 30.62, "mse": 65.81, "uqi": 0.9620},
    },
    "arbitrary": {
        "pix2pix": {"ssim": 0.9667, "psnr": 32.34, "mse": 43.77, "uqi": 0.8379},
        "MedGAN": {"ssim": 0.9653, "psnr": 31.92, "mse": 47.42, "uqi": 0.8732},
        "Gated-Conv": {"ssim": 0.9650, "psnr": 31.46, "mse": 50.26, "uqi": 0.8094},
        "ipA-MedGAN": {"ssim": 0.9818, "psnr": 35.12, "mse": 24.90, "uqi": 0.9889},
    },
}
#: our model name (evaluation.MODELS, + biharmonic) -> the paper's row it stands for (None: not in the paper),
#: or ``{experiment: row}`` where the row differs by experiment (see :func:`paper_row`)
PAPER_ROW = {
    "ipa_medgan": "ipA-MedGAN",
    "pix2pix": "pix2pix",
    "context_encoder": "CE",
    "medgan": {"square": "ip-MedGAN", "arbitrary": "MedGAN"},
    "gated_conv": "Gated-Conv",
    "multiresunet": None,
    "biharmonic": None,
}
#: overrides that make evaluate.json's evaluator score the biharmonic baseline: no weights to load, and the
#: masked image and the mask as the "network"'s two inputs
BIHARMONIC = {
    "network": "$@scripts.evaluation.BiharmonicInpainter()",
    "validate#prepare_batch#mode": "separate",
    "validate#handlers": [],
}


def paper_row(model: str, experiment: str) -> str | None:
    """The paper's Table I row that ``model`` stands for in ``experiment`` (None: none), from :data:`PAPER_ROW`."""
    row = PAPER_ROW.get(model)
    return row.get(experiment) if isinstance(row, dict) else row


class BiharmonicInpainter(torch.nn.Module):
    """``inpaint_biharmonic`` of each (1, H, W) image of a batch, given its mask: ``forward(masked, mask)``."""

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = [
            inpaint_biharmonic(m[0].cpu().numpy().astype(np.float64), k[0].cpu().numpy() > 0)
            for m, k in zip(masked, mask)
        ]
        return torch.from_numpy(np.stack(filled)[:, None].astype(np.float32)).to(masked.device)


def table_scores(metrics: dict, details: dict) -> dict[str, float]:
    """Table I entries from an evaluator's ``state.metrics`` and ``state.metric_details`` (see :data:`METRICS`).

    A slice restored exactly (e.g. a hole lying in the zero background, filled by the biharmonic baseline) has
    an infinite PSNR, which would make the mean infinite: PSNR is averaged over the finite slices and the
    number of exact ones is returned as ``psnr_exact``.
    """
    out = {}
    for name, key in METRICS.items():
        if name == "psnr":
            values = torch.as_tensor(details[key]).flatten()
            finite = torch.isfinite(values)
            out[name] = float(values[finite].mean()) if finite.any() else float("inf")
            out["psnr_exact"] = int((~finite).sum())
        else:
            out[name] = float(metrics[key])
    return out


def evaluate_run(parser: ConfigParser) -> tuple[dict[str, float], torch.Tensor]:
    """Run the parser's evaluator (what ``evaluate.json``'s ``run`` does); its :func:`table_scores` and its
    predictions, (N, 1, H, W) on the CPU."""
    evaluator = parser.get_parsed_content("validate#evaluator")
    preds: list[torch.Tensor] = []

    def keep_predictions(engine) -> None:
        preds.extend(item["pred"].detach().cpu() for item in engine.state.output)

    evaluator.add_event_handler(Events.ITERATION_COMPLETED, keep_predictions)
    evaluator.run()
    return table_scores(evaluator.state.metrics, evaluator.state.metric_details), torch.stack(preds)


def _parser(
    bundle_root: str, configs: list[str], runs_dir: str, device, overrides: dict | None = None
) -> ConfigParser:
    """``configs`` + ``evaluate.json`` of the bundle, as ``monai.bundle run`` would merge them."""
    parser = ConfigParser()
    parser.read_config([os.path.join(bundle_root, "configs", c) for c in [*configs, "evaluate.json"]])
    parser.update({"bundle_root": bundle_root, "runs_dir": runs_dir, "device": device, **(overrides or {})})
    return parser


def _test_batch(parser: ConfigParser) -> dict[str, torch.Tensor]:
    """Test images, masks and masked inputs, stacked (for the panel)."""
    dataset = parser.get_parsed_content("validate#dataset")
    items = [dataset[i] for i in range(len(dataset))]
    return {
        k: torch.stack([torch.as_tensor(d[k]) for d in items]).float()
        for k in ("image", "mask", "masked_image")
    }


def write_report(bundle_root: str, runs_dir: str, docs_dir: str, quick: bool = False, device="cpu") -> dict:
    """Evaluate every trained model and the biharmonic baseline; write ``table1.md``, ``table1.json`` and
    ``panel.png`` into ``docs_dir``. Runs are looked up under ``runs_dir`` as in training (with ``quick.json``
    when ``quick``); models without a ``model.pt`` are listed as not trained. Each evaluated run also gets
    evaluate.json's metric files beside its ``model.pt``."""
    base_configs = ["train.json", "quick.json"] if quick else ["train.json"]
    rows, panels = {}, {}
    for experiment, exp_configs in EXPERIMENTS.items():
        for model, (_, model_configs, experiments) in MODELS.items():
            if experiment not in experiments:
                continue
            parser = _parser(bundle_root, base_configs + exp_configs + model_configs, runs_dir, device)
            if not Path(parser.get_parsed_content("checkpoint")).is_file():
                rows[(model, experiment)] = None
                continue
            rows[(model, experiment)], panels.setdefault(experiment, {})[model] = evaluate_run(parser)
        parser = _parser(bundle_root, base_configs + exp_configs, runs_dir, device, BIHARMONIC)
        panels.setdefault(experiment, {})["data"] = _test_batch(parser)
        rows[("biharmonic", experiment)], panels[experiment]["biharmonic"] = evaluate_run(parser)
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    table = format_table(rows, n_test=len(next(iter(panels.values()))["data"]["image"]))
    (docs / "table1.md").write_text(table, encoding="utf-8")
    (docs / "table1.json").write_text(
        json.dumps({f"{m}/{e}": v for (m, e), v in rows.items()}, indent=1), encoding="utf-8"
    )
    write_panel(panels, docs / "panel.png")
    print(table)
    return rows


def format_table(rows: dict, n_test: int) -> str:
    """Table I layout: one row per method, SSIM/PSNR/MSE/UQI for squares then arbitrary masks, measured | paper."""
    labels = {**{m: v[0] for m, v in MODELS.items()}, "biharmonic": "biharmonic (given the mask)"}
    header = "| method | " + " | ".join(f"{e} {m.upper()}" for e in EXPERIMENTS for m in METRICS) + " |"
    lines = [header, "|---" * (1 + len(EXPERIMENTS) * len(METRICS)) + "|"]
    formats = {"ssim": "{:.4f}", "psnr": "{:.2f}", "mse": "{:.2f}", "uqi": "{:.4f}"}
    for model, label in labels.items():
        cells = []
        for experiment in EXPERIMENTS:
            measured = rows.get((model, experiment), "n/a")
            paper = PAPER_TABLE_I[experiment].get(paper_row(model, experiment) or "")
            for metric in METRICS:
                if measured == "n/a":
                    cell = "n/a"
                elif measured is None:
                    cell = "not trained"
                else:
                    cell = formats[metric].format(measured[metric])
                if paper:
                    cell += " (paper " + formats[metric].format(paper[metric]) + ")"
                cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    exact = [
        f"{labels[m]}, {e}: {v['psnr_exact']}"
        for (m, e), v in rows.items()
        if isinstance(v, dict) and v.get("psnr_exact")
    ]
    note = f"; PSNR over the finite slices (slices restored exactly: {'; '.join(exact)})" if exact else ""
    lines.append(
        f"\n{n_test} test slices; whole-image metrics; MSE on the 0-255 scale{note}. "
        "Paper values beside the rows that stand for a paper method (ipA-MedGAN, CE, ip-MedGAN = MedGAN on squares, pix2pix, MedGAN, Gated-Conv).\n"
    )
    return "\n".join(lines)


def write_panel(panels: dict, path: Path, index: int | None = None) -> Path:
    """One row per experiment: ground truth, input, mask, each model's output and the residual |output - truth|
    of ipA-MedGAN. ``index`` picks the test slice (default: the one with most brain inside its hole)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = list(panels)
    models = [m for m in [*MODELS, "biharmonic"] if any(m in panels[e] for e in experiments)]
    columns = ["truth", "input", "mask", *models, "residual"]
    fig, axes = plt.subplots(
        len(experiments), len(columns), figsize=(2.2 * len(columns), 2.4 * len(experiments))
    )
    axes = np.atleast_2d(axes)
    for row, experiment in enumerate(experiments):
        data = panels[experiment]["data"]
        i = index if index is not None else int((data["image"] * data["mask"]).sum(dim=(1, 2, 3)).argmax())
        main = panels[experiment].get("ipa_medgan", panels[experiment]["biharmonic"])
        images = {
            "truth": data["image"][i, 0],
            "input": data["masked_image"][i, 0],
            "mask": data["mask"][i, 0],
        }
        images.update({m: panels[experiment][m][i, 0] for m in models if m in panels[experiment]})
        images["residual"] = (main[i, 0] - data["image"][i, 0]).abs()
        for col, name in enumerate(columns):
            ax = axes[row, col]
            ax.axis("off")
            if name in images:
                ax.imshow(
                    images[name].numpy(), cmap="magma" if name == "residual" else "gray", vmin=0, vmax=1
                )
            ax.set_title(f"{experiment}: {name}" if col == 0 else name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
