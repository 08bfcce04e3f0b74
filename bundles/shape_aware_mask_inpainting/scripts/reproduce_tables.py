"""Reproduce the paper's Tables 1-3: train one CTSDG per mask configuration, score each with the evaluation
protocol, write ``tables.md`` (paper layout) and one PNG panel per evaluation mask (rows: variants).

    python bundles/shape_aware_mask_inpainting/scripts/reproduce_tables.py --output_dir runs/tables [--paper_scale]

Quick scale (default): ``quick.json`` (reduced width, 128x128, 240 iterations, random VGG) and up to
``--max_images`` test images. ``--iterations N`` shortens (or lengthens) every variant's training, same
protocol otherwise (a multiple of ``iterations_per_epoch``). ``--paper_scale``: ``train.json`` alone (10,000
iterations, batch 6, full width, ImageNet VGG16, which must be on disk) on every test image. Variants that
appear in several tables are trained once; ``--jobs`` trains that many at a time. Each variant's log is
``<output_dir>/<variant>/run.log``; a variant whose ``evaluation.json`` exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
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


def config_names(paper_scale: bool) -> list[str]:
    return ["train.json"] if paper_scale else ["train.json", "quick.json"]


def train_and_evaluate(
    config: dict, out: Path, paper_scale: bool, max_images: int | None, iterations: int | None = None
) -> dict:
    """Train one variant (skipped when its ``evaluation.json`` exists) and return its results."""
    from common.reproduction import configs_arg, run_monai_bundle

    result = out / "evaluation.json"
    if result.exists():
        return json.loads(result.read_text(encoding="utf-8"))["results"]
    out.mkdir(parents=True, exist_ok=True)
    configs = config_names(paper_scale)
    mask = json.dumps(
        {
            **json.loads((BUNDLE / "configs" / "train.json").read_text(encoding="utf-8"))["mask_config"],
            **config,
        }
    )
    common_args = ["--bundle_root", str(BUNDLE), "--output_dir", str(out), "--mask_config", mask]
    schedule = [] if iterations is None else ["--iterations", str(iterations)]
    log = out / "run.log"
    run_monai_bundle(
        ["run", "training", "--config_file", configs_arg(BUNDLE, *configs), *common_args, *schedule], log, REPO
    )
    limit = [] if max_images is None else ["--eval_max_images", str(max_images)]
    evaluate = configs_arg(BUNDLE, *configs, "evaluate.json")
    run_monai_bundle(["run", "--config_file", evaluate, *common_args, *limit], log, REPO)
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
    parser.add_argument(
        "--iterations", type=int, default=None, help="training iterations per variant (default: the config's)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--tables", nargs="*", type=int, default=[1, 2, 3])
    args = parser.parse_args(argv)
    if args.iterations is not None:
        per_epoch = {}
        for name in config_names(args.paper_scale):
            per_epoch.update(json.loads((BUNDLE / "configs" / name).read_text(encoding="utf-8")))
        if args.iterations <= 0 or args.iterations % per_epoch["iterations_per_epoch"]:
            parser.error(
                f"--iterations must be a positive multiple of iterations_per_epoch "
                f"({per_epoch['iterations_per_epoch']}), got {args.iterations}"
            )
    sys.path.insert(0, str(REPO))  # common/, when run as a file from a clone
    from common.bundle_scripts import load_bundle_scripts

    evaluation = load_bundle_scripts(BUNDLE).evaluation
    MASK_KINDS, markdown_table, save_panel = evaluation.MASK_KINDS, evaluation.markdown_table, evaluation.save_panel

    root = Path(args.output_dir)
    max_images = None if args.paper_scale else args.max_images
    scale = "paper" if args.paper_scale else "quick"
    iterations = "config default" if args.iterations is None else args.iterations
    lines = [
        f"Scale: {scale}, iterations per variant: {iterations}, test images: {max_images or 'all'}; "
        "metrics on the masked RoI (see docs/README.md).\n"
    ]
    chosen = [(n, t, v) for n, (t, v) in enumerate(TABLES.items(), start=1) if n in args.tables]
    configs = {variant_name(c): c for _, _, vs in chosen for c in ({**BASE, **change} for _, change in vs)}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        scores_of = dict(
            zip(
                configs,
                pool.map(
                    lambda name: train_and_evaluate(
                        configs[name], root / name, args.paper_scale, max_images, args.iterations
                    ),
                    configs,
                ),
            )
        )
    panel_rows: dict[str, tuple[str, Path]] = {}  # variant -> (first label, run folder)
    baseline = None
    for _, title, variants in chosen:
        results = {}
        for label, change in variants:
            name = variant_name({**BASE, **change})
            out, scores = root / name, scores_of[name]
            results[label] = scores["CTSDG"]
            baseline = scores.get("biharmonic", baseline)
            panel_rows.setdefault(name, (label, out))
        if baseline is not None:
            results["biharmonic (no training)"] = baseline
        lines += [f"## {title}\n", markdown_table(results)]
    (root / "tables.md").write_text("\n".join(lines), encoding="utf-8")
    for kind in MASK_KINDS:
        outputs, baseline_output = {}, None
        image = hole = None
        for label, out in panel_rows.values():
            example = np.load(out / "examples.npz")
            image, hole = example[f"{kind}__image"], example[f"{kind}__hole"]
            outputs[label] = example[f"{kind}__out_CTSDG"]
            if f"{kind}__out_biharmonic" in example:
                baseline_output = example[f"{kind}__out_biharmonic"]
        if baseline_output is not None:  # the last row, as in the tables
            outputs["biharmonic"] = baseline_output
        if image is not None:
            save_panel(root / f"panel_{kind}.png", image, hole, outputs)
    print((root / "tables.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
