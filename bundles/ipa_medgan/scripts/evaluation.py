"""Table I of ipA-MedGAN on the test split: SSIM, PSNR, MSE (0-255) and UQI for every model and experiment,
beside the paper's numbers, and a PNG panel (input, mask, output, residual).

Each model is rebuilt from the bundle's own configs (``train.json`` [+ ``quick.json``] + experiment override +
baseline override), its best generator (``runs/<model>_<experiment>/model.pt``) is loaded and scored on the test
slices with the fixed validation mask bank of the experiment, so every row sees identical holes. The
biharmonic baseline (``skimage.restoration.inpaint_biharmonic``) is the one method that is *given* the mask.
Metrics are computed on the whole image with ``common.metrics``, images in [0, 1].
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from skimage.restoration import inpaint_biharmonic

from common.metrics import MSEMetric, PSNRMetric, SSIMMetric, UQIMetric

__all__ = ["EXPERIMENTS", "MODELS", "PAPER", "write_report", "score", "biharmonic"]

EXPERIMENTS = {"square": [], "arbitrary": ["arbitrary.json"]}
#: model name -> (label, override config, experiments it runs on)
MODELS = {
    "ipa_medgan": ("ipA-MedGAN (2 x MultiResUNet)", [], ("square", "arbitrary")),
    "multiresunet": ("single MultiResUNet", ["multiresunet.json"], ("square", "arbitrary")),
    "pix2pix": ("pix2pix (U-Net + patch D + L1)", ["pix2pix.json"], ("square", "arbitrary")),
    "context_encoder": ("context-encoder style", ["context_encoder.json"], ("square",)),
}
METRICS = ("ssim", "psnr", "mse", "uqi")
#: Table I of the paper: the ipA-MedGAN rows, as quoted in this bundle's issue. The baselines' rows (CE, pix2pix,
#: ...) were not available offline, so they are left out rather than guessed.
PAPER = {
    ("ipa_medgan", "square"): {"ssim": 0.9606, "psnr": 30.62, "mse": 65.81, "uqi": 0.9620},
    ("ipa_medgan", "arbitrary"): {"ssim": 0.9818, "psnr": 35.12, "mse": 24.90, "uqi": 0.9889},
}


def _metric_fns() -> dict:
    return {
        "ssim": SSIMMetric(),
        "psnr": PSNRMetric(),
        "mse": MSEMetric(report_range=255.0),
        "uqi": UQIMetric(),
    }


def score(preds: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Mean SSIM, PSNR (dB), MSE (0-255) and UQI over (N, 1, H, W) images in [0, 1].

    A slice restored exactly (e.g. a hole lying in the zero background, filled by the biharmonic baseline) has
    an infinite PSNR, which would make the mean infinite: PSNR is averaged over the finite slices and the
    number of exact ones is returned as ``psnr_exact``.
    """
    out = {}
    for name, fn in _metric_fns().items():
        fn(preds, targets)
        if name == "psnr":
            values = fn.aggregate(reduction="none").flatten()
            finite = torch.isfinite(values)
            out[name] = float(values[finite].mean()) if finite.any() else float("inf")
            out["psnr_exact"] = int((~finite).sum())
        else:
            out[name] = float(fn.aggregate().item())
    return out


def biharmonic(masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``inpaint_biharmonic`` of each (1, H, W) image of a batch, given its mask."""
    filled = [
        inpaint_biharmonic(m[0].numpy().astype(np.float64), k[0].numpy() > 0) for m, k in zip(masked, mask)
    ]
    return torch.from_numpy(np.stack(filled)[:, None].astype(np.float32))


def _parser(bundle_root: str, configs: list[str], runs_dir: str, device) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([os.path.join(bundle_root, "configs", c) for c in configs])
    parser.update(
        {"bundle_root": bundle_root, "runs_dir": runs_dir, "device": device, "validate#split": "test"}
    )
    return parser


def _test_batch(parser: ConfigParser) -> dict[str, torch.Tensor]:
    """Test images, masks and masked inputs, stacked."""
    dataset = parser.get_parsed_content("validate#dataset")
    items = [dataset[i] for i in range(len(dataset))]
    return {
        k: torch.stack([torch.as_tensor(d[k]) for d in items]).float()
        for k in ("image", "mask", "masked_image")
    }


@torch.no_grad()
def _predict(network: torch.nn.Module, masked: torch.Tensor, device, batch_size: int = 8) -> torch.Tensor:
    network.eval()
    outs = [network(masked[i : i + batch_size].to(device)).cpu() for i in range(0, len(masked), batch_size)]
    return torch.cat(outs)


def write_report(
    bundle_root: str, base_configs: list[str], runs_dir: str, docs_dir: str, device="cpu"
) -> dict:
    """Score every trained model and the biharmonic baseline; write ``table1.md``, ``table1.json`` and
    ``panel.png`` into ``docs_dir``. Runs are looked up under ``runs_dir`` as in training. Models without a ``model.pt`` are listed as not trained."""
    rows, panels = {}, {}
    for experiment, exp_configs in EXPERIMENTS.items():
        data = None
        for model, (_, model_configs, experiments) in MODELS.items():
            if experiment not in experiments:
                continue
            parser = _parser(bundle_root, base_configs + exp_configs + model_configs, runs_dir, device)
            if data is None:
                data = _test_batch(parser)
            path = Path(parser.get_parsed_content("output_dir")) / "model.pt"
            if not path.exists():
                rows[(model, experiment)] = None
                continue
            network = parser.get_parsed_content("network")
            state = torch.load(path, map_location=device, weights_only=True)
            network.load_state_dict(
                state.get("model", state) if isinstance(state, dict) and "model" in state else state
            )
            pred = _predict(network, data["masked_image"], device)
            rows[(model, experiment)] = score(pred, data["image"])
            panels.setdefault(experiment, {})[model] = pred
        bih = biharmonic(data["masked_image"], data["mask"])
        rows[("biharmonic", experiment)] = score(bih, data["image"])
        panels.setdefault(experiment, {})["biharmonic"] = bih
        panels[experiment]["data"] = data
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
            measured, paper = rows.get((model, experiment), "n/a"), PAPER.get((model, experiment))
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
        "Paper values are given for ipA-MedGAN only: the paper's baseline rows were not available offline.\n"
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
