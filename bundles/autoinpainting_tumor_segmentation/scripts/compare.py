"""Tables in the paper's layout from evaluation outputs, beside the paper's numbers.

Each ``--run NAME=DIR`` points at an evaluation output folder holding ``segmentation_*.json`` (written by
evaluate.json or scripts.baselines) and, for inpainting models, ``metrics.csv`` (MONAI ``MetricsSaver``:
``val_mse_255``, ``val_psnr``, ``val_ssim``)::

    python -m scripts.compare --run GconvLap=/tmp/eval_gconvlap --run DenseAE=/tmp/baselines ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Astaraki et al. Table 1 (NSCLC, multimodal PET-CT rows): inpainting MSE (0-255), PSNR (dB), SSIM, means.
PAPER_INPAINTING = {
    "GconvLap": (44.290, 33.271, 0.966),
    "GConv": (45.850, 32.814, 0.960),
    "PConv": (69.428, 30.385, 0.947),
}
#: Table 3 (NSCLC, multimodal): Dice at the fixed threshold and [Dice] (best threshold), means.
PAPER_SEGMENTATION = {"GconvLap": (0.708, 0.766), "GConv": (0.692, 0.747), "PConv": (0.625, 0.673)}
#: Table 6 (NSCLC, multimodal): the eight anomaly-detection baselines, Dice and [Dice], means.
PAPER_UAD_SEGMENTATION = {
    "dAE": (0.285, 0.305),
    "sAE": (0.094, 0.097),
    "ceAE": (0.314, 0.346),
    "VAE": (0.282, 0.311),
    "ceVAE": (0.242, 0.254),
    "GMVAE": (0.023, 0.023),
    "f-AnoGAN": (0.262, 0.262),
    "AAE": (0.237, 0.277),
}
#: our baseline report names (scripts.baselines) -> the paper's Table 6 names
BASELINE_PAPER_NAMES = {
    "DenseAE": "dAE",
    "SpatialAE": "sAE",
    "ceAE": "ceAE",
    "VAE": "VAE",
    "ceVAE": "ceVAE",
    "GMVAE": "GMVAE",
    "fAnoGAN": "f-AnoGAN",
    "AAE": "AAE",
}


def read_metrics(folder: Path) -> dict[str, float]:
    """``metrics.csv`` of MONAI's MetricsSaver: one ``name,value`` line per metric."""
    path = folder / "metrics.csv"
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(",")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def read_segmentation(folder: Path, name: str) -> dict | None:
    path = folder / f"segmentation_{name}.json"
    if not path.exists():
        candidates = sorted(folder.glob("segmentation_*.json"))
        if len(candidates) != 1:
            return None
        path = candidates[0]
    return json.loads(path.read_text(encoding="utf-8"))


def tables(runs: dict[str, Path]) -> str:
    lines = [
        "| model | MSE (0-255) | PSNR (dB) | SSIM | paper MSE / PSNR / SSIM (Table 1, NSCLC PET-CT) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, folder in runs.items():
        metrics = read_metrics(folder)
        if not metrics:
            continue
        paper = PAPER_INPAINTING.get(name.split(" ")[0])
        paper_text = "" if paper is None else "{:.2f} / {:.2f} / {:.3f}".format(*paper)
        lines.append(
            f"| {name} | {metrics.get('val_mse_255', float('nan')):.1f} | {metrics.get('val_psnr', float('nan')):.2f} "
            f"| {metrics.get('val_ssim', float('nan')):.3f} | {paper_text} |"
        )
    lines += [
        "",
        "| model | Dice | precision | recall | best-threshold Dice | subjects | paper Dice / [Dice] (Tables 3, 6) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, folder in runs.items():
        report = read_segmentation(folder, name.split(" ")[0])
        if report is None:
            continue
        mean, std = report["mean"], report["std"]
        key = name.split(" ")[0]
        paper = {**PAPER_SEGMENTATION, **PAPER_UAD_SEGMENTATION}.get(BASELINE_PAPER_NAMES.get(key, key))
        paper_text = "" if paper is None else "{:.3f} / {:.3f}".format(*paper)
        cells = " | ".join(
            f"{mean[k]:.3f} ± {std[k]:.3f}" for k in ("dice", "precision", "recall", "dice_best")
        )
        lines.append(f"| {name} | {cells} | {len(report['subjects'])} | {paper_text} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.run:
        name, _, folder = item.partition("=")
        runs[name] = Path(folder)
    text = tables(runs)
    print(text)
    return text


if __name__ == "__main__":
    main()
