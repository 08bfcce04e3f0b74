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

#: Astaraki et al., NSCLC PET-CT (multimodal) results quoted in the issue.
PAPER_INPAINTING_PSNR = {"GconvLap": 33.27, "PConv": 32.81, "GConv": 30.39}
PAPER_SEGMENTATION = {"GconvLap": (0.708, 0.766), "best autoencoder baseline": (0.285, None)}


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
        "| model | MSE (0-255) | PSNR (dB) | SSIM | paper PSNR (NSCLC PET-CT) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, folder in runs.items():
        metrics = read_metrics(folder)
        if not metrics:
            continue
        paper = PAPER_INPAINTING_PSNR.get(name.split(" ")[0], "")
        lines.append(
            f"| {name} | {metrics.get('val_mse_255', float('nan')):.1f} | {metrics.get('val_psnr', float('nan')):.2f} "
            f"| {metrics.get('val_ssim', float('nan')):.3f} | {paper} |"
        )
    lines += [
        "",
        "| model | Dice | precision | recall | best-threshold Dice | subjects | paper Dice / best Dice |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, folder in runs.items():
        report = read_segmentation(folder, name.split(" ")[0])
        if report is None:
            continue
        mean, std = report["mean"], report["std"]
        paper = PAPER_SEGMENTATION.get(name.split(" ")[0])
        paper_text = "" if paper is None else " / ".join("" if v is None else f"{v:.3f}" for v in paper)
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
