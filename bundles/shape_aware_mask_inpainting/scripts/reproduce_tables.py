"""Reproduce the paper's Tables 1-3: train one CTSDG per mask configuration, score each with the evaluation
protocol, write ``tables.md`` (paper layout) and one PNG panel per evaluation mask (rows: variants).

    python bundles/shape_aware_mask_inpainting/scripts/reproduce_tables.py --output_dir runs/tables [--paper_scale]

Quick scale (default): ``quick.json`` (reduced width, 128x128, 240 iterations, random VGG) and up to
``--max_images`` test images. ``--paper_scale``: ``train.json`` alone (10,000 iterations, batch 6, full width,
ImageNet VGG16, which must be on disk) on every test image. Variants that appear in several tables (OPS +
pseudo-segment + same image + weighted) are trained once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parents[1]
REPO = BUNDLE.parents[1]
BASE = {"position": "ops", "shape": "segment", "source": "same", "weighting": "inverse_size"}
TABLES = {
    "Table 1 (position; pseudo-segment shape)": [
        ("Random", {"position": "random"}),
        ("IBR", {"position": "ibr"}),
        ("OPS", {}),
    ],
    "Table 2 (shape; OPS)": [
        ("square", {"shape": "square"}),
        ("irregular", {"shape": "irregular"}),
        ("pseudo-segment", {}),
    ],
    "Table 3 (distribution x weighting; OPS and IBR)": [
        (f"{src} image, {w}, {pos}", {"source": s, "weighting": wk, "position": p})
        for p, pos in (("ops", "OPS"), ("ibr", "IBR"))
        for s, src in (("same", "same"), ("other", "other"))
        for wk, w in (("inverse_size", "weighted"), ("uniform", "uniform"))
    ],
}


def variant_name(config: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in sorted(config.items()))


def run_bundle(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "monai.bundle", *args], check=True, env=env)


def train_and_evaluate(config: dict, out: Path, paper_scale: bool, max_images: int | None) -> dict:
    """Train one variant (skipped when its ``evaluation.json`` exists) and return its results."""
    result = out / "evaluation.json"
    if result.exists():
        return json.loads(result.read_text(encoding="utf-8"))["results"]
    configs = [BUNDLE / "configs" / "train.json"] + (
        [] if paper_scale else [BUNDLE / "configs" / "quick.json"]
    )
    mask = json.dumps(
        {
            **json.loads((BUNDLE / "configs" / "train.json").read_text(encoding="utf-8"))["mask_config"],
            **config,
        }
    )
    common_args = ["--bundle_root", str(BUNDLE), "--output_dir", str(out), "--mask_config", mask]
    run_bundle(["run", "training", "--config_file", json.dumps([str(c) for c in configs]), *common_args])
    evaluate = [*configs, BUNDLE / "configs" / "evaluate.json"]
    limit = [] if max_images is None else ["--eval_max_images", str(max_images)]
    run_bundle(["run", "--config_file", json.dumps([str(c) for c in evaluate]), *common_args, *limit])
    return json.loads(result.read_text(encoding="utf-8"))["results"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default=str(BUNDLE / "eval" / "tables"))
    parser.add_argument("--paper_scale", action="store_true")
    parser.add_argument(
        "--max_images", type=int, default=8, help="test images at quick scale (all at paper scale)"
    )
    parser.add_argument("--tables", nargs="*", type=int, default=[1, 2, 3])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BUNDLE))
    from scripts.evaluation import MASK_KINDS, markdown_table, save_panel

    root = Path(args.output_dir)
    max_images = None if args.paper_scale else args.max_images
    lines = [
        f"Scale: {'paper' if args.paper_scale else 'quick'}; metrics on the masked RoI (see docs/README.md).\n"
    ]
    rows_for_panels: dict[str, Path] = {}
    baseline = None
    for number, (title, variants) in enumerate(TABLES.items(), start=1):
        if number not in args.tables:
            continue
        results = {}
        for label, change in variants:
            config = {**BASE, **change}
            out = root / variant_name(config)
            scores = train_and_evaluate(config, out, args.paper_scale, max_images)
            results[label] = scores["CTSDG"]
            baseline = scores.get("biharmonic", baseline)
            rows_for_panels[label] = out
        if baseline is not None:
            results["biharmonic (no training)"] = baseline
        lines += [f"## {title}\n", markdown_table(results)]
    (root / "tables.md").write_text("\n".join(lines), encoding="utf-8")
    for kind in MASK_KINDS:
        outputs = {}
        image = hole = None
        for label, out in rows_for_panels.items():
            example = np.load(out / "examples.npz")
            image, hole = example[f"{kind}__image"], example[f"{kind}__hole"]
            outputs[label] = example[f"{kind}__out_CTSDG"]
            if f"{kind}__out_biharmonic" in example:
                outputs["biharmonic"] = example[f"{kind}__out_biharmonic"]
        if image is not None:
            save_panel(root / f"panel_{kind}.png", image, hole, outputs)
    print((root / "tables.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
