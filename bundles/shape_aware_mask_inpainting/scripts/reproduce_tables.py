"""Reproduce the paper's Tables 1-3 (training-mask position, shape, distribution x weighting) beside its numbers,
on real brain MR, in one command.

Every variant is a CTSDG trained from scratch with one training-mask configuration (``monai.bundle run training``
with ``train.json`` [+ ``quick.json``] + ``ixi.json``: the 30 IXI training subjects' axial slices, skull-stripped,
masks clipped to the brain) and scored by ``evaluate.json`` (the paper's three evaluation masks, PSNR/SSIM/LPIPS on
the masked RoI) on the 4 IXI validation subjects' slices, which no variant trains on. The paper's rows:

- Table 1: **square** masks placed Random / IBR / OPS;
- Table 2: square / irregular (a bank of free-form masks) / pseudo-segment shapes, all placed by OPS;
- Table 3: pseudo-segments from the same or another image, inverse-size weighted or not, OPS or IBR.

Variants shared between tables are trained once per seed. Writes ``table1_position``, ``table2_shape`` and
``table3_distribution`` (``.md`` + ``.csv``: ours as mean ± sd over seeds beside the paper's numbers, one verdict
per claim), ``values.json`` (every run's means) and one PNG panel per evaluation mask (first seed)::

    python bundles/shape_aware_mask_inpainting/scripts/reproduce_tables.py [--quick] [--jobs 2]

Default (CPU scale): ``quick.json`` width at 128x128, 400 iterations of batch 6 per variant, seeds 0 1 2, every
4th validation slice. ``--quick``: 4 iterations of batch 2, seed 0, 4 validation slices (checks the route, not
the claims; writes to ``docs/results/quick``). ``--paper_scale``: ``train.json`` alone (full width, 10,000
iterations of batch 6, ImageNet VGG16 on disk for the perceptual/style terms) on every validation slice: a GPU
job. Runs live in ``<runs_dir>/seed<k>/<variant>``; one whose ``evaluation.json`` exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parents[1]
REPO = BUNDLE.parents[1]
KINDS = ("segments", "squares", "large_square")
KIND_LABELS = {"segments": "segments", "squares": "small squares", "large_square": "large square"}
METRICS = ("psnr", "ssim", "lpips")
#: one training-mask configuration: position, shape, source, weighting (``mask_config`` keys)
BASE = {"position": "ops", "shape": "segment", "source": "same", "weighting": "inverse_size"}


def _paper(*values: float) -> dict:
    """The paper's 9 numbers of one row (PSNR, SSIM, LPIPS per evaluation mask) as ``{kind: {metric: v}}``."""
    return {kind: dict(zip(METRICS, values[3 * i : 3 * i + 3])) for i, kind in enumerate(KINDS)}


#: the paper prints these two rows in two tables each (square + OPS: Tables 1, 2; PS + OPS: Tables 2, 3)
PAPER_SQUARE_OPS = _paper(18.07, 0.68, 0.2676, 18.45, 0.69, 0.2888, 13.49, 0.67, 0.2685)
PAPER_PS_OPS = _paper(19.38, 0.77, 0.2655, 19.58, 0.78, 0.2630, 13.5, 0.74, 0.2853)
#: (file name, title, rows (label, change from BASE, the paper's row), claims (evaluation mask, the paper's PSNR
#: order of row labels, best first));
#: paper: Hosseini et al., shape-aware masking, CHAOS T1-DUAL in-phase MR, Tables 1-3.
TABLES = [
    (
        "table1_position",
        "Table 1: training-mask position (square masks)",
        [
            (
                "Random",
                {"shape": "square", "position": "random"},
                _paper(16.66, 0.60, 0.2885, 16.78, 0.63, 0.32, 14.08, 0.64, 0.29),
            ),
            (
                "IBR",
                {"shape": "square", "position": "ibr"},
                _paper(18.04, 0.67, 0.2686, 18.13, 0.67, 0.2586, 13.65, 0.65, 0.2670),
            ),
            (
                "OPS",
                {"shape": "square"},
                PAPER_SQUARE_OPS,
            ),
        ],
        [("segments", ["OPS", "IBR", "Random"]), ("squares", ["OPS", "IBR", "Random"])],
    ),
    (
        "table2_shape",
        "Table 2: training-mask shape (OPS placement)",
        [
            (
                "square",
                {"shape": "square"},
                PAPER_SQUARE_OPS,
            ),
            (
                "irregular",
                {"shape": "irregular"},
                _paper(16.44, 0.61, 0.3078, 16.63, 0.64, 0.3174, 14.13, 0.66, 0.2780),
            ),
            ("pseudo-segment (PS)", {}, PAPER_PS_OPS),
        ],
        [
            ("segments", ["pseudo-segment (PS)", "square", "irregular"]),
            ("squares", ["pseudo-segment (PS)", "square", "irregular"]),
        ],
    ),
    (
        "table3_distribution",
        "Table 3: pseudo-segment source and weighting",
        [
            (
                "same image, not weighted, OPS",
                {"weighting": "uniform"},
                _paper(18.25, 0.6456, 0.29, 18.5, 0.6767, 0.2955, 14.02, 0.6865, 0.2862),
            ),
            (
                "other image, weighted, OPS",
                {"source": "other"},
                _paper(18.31, 0.6295, 0.3009, 18.48, 0.6552, 0.3054, 14.11, 0.6878, 0.2871),
            ),
            (
                "same image, weighted, IBR",
                {"position": "ibr"},
                _paper(19.16, 0.6836, 0.2544, 19.18, 0.7064, 0.2599, 13.42, 0.6619, 0.29665),
            ),
            (
                "same image, weighted, OPS",
                {},
                PAPER_PS_OPS,
            ),
        ],
        [
            ("segments", ["same image, weighted, OPS", "same image, not weighted, OPS"]),
            ("segments", ["same image, weighted, OPS", "other image, weighted, OPS"]),
            ("segments", ["same image, weighted, OPS", "same image, weighted, IBR"]),
        ],
    ),
]


def variant_name(config: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in sorted(config.items()))


def row_variant(change: dict) -> str:
    """The run name of a table row's training-mask configuration (``BASE`` with the row's change)."""
    return variant_name({**BASE, **change})


def variants() -> dict[str, dict]:
    """Every distinct training-mask configuration of the three tables, by name (first appearance first)."""
    return {row_variant(change): {**BASE, **change} for _, _, rows, _ in TABLES for _, change, _ in rows}


def training_schedule(iterations: int, iterations_per_epoch: int, **overrides) -> dict:
    """Training overrides for ``iterations``, validating once, after the last epoch."""
    return {
        "iterations": iterations,
        "iterations_per_epoch": iterations_per_epoch,
        **overrides,
        "val_interval": iterations // iterations_per_epoch,
    }


def scale_settings(quick: bool, paper_scale: bool) -> dict:
    """Configs merged before ``ixi.json``, the training overrides and the validation-slice step of one scale."""
    if paper_scale:
        return {"configs": ["train.json"], "train": {}, "eval_step": 1}
    if quick:
        return {
            "configs": ["train.json", "quick.json"],
            "train": training_schedule(4, 2, batch_size=2),
            "eval_step": 49,
        }
    return {
        "configs": ["train.json", "quick.json"],
        "train": training_schedule(400, 50, batch_size=6),
        "eval_step": 4,
    }


def train_and_evaluate(config: dict, seed: int, out: Path, settings: dict, baseline: bool) -> dict:
    """Train one variant with one seed and score it (skipped when its ``evaluation.json`` exists; the seconds it
    took go to ``wall_s.txt``); returns ``evaluation.json``'s results (``CTSDG``, and ``biharmonic`` when
    ``baseline``)."""
    from common.reproduction import configs_arg, run_monai_bundle

    result = out / "evaluation.json"
    if not result.exists():
        start = time.perf_counter()
        configs = [*settings["configs"], "ixi.json"]
        common_args = ["--bundle_root", str(BUNDLE), "--output_dir", str(out), "--seed", str(seed)]
        common_args += [arg for key, value in config.items() for arg in (f"--mask_config#{key}", value)]
        schedule = [arg for key, value in settings["train"].items() for arg in (f"--{key}", str(value))]
        log = out / "run.log"
        run_monai_bundle(
            [
                "run",
                "training",
                "--config_file",
                configs_arg(BUNDLE, *configs),
                *common_args,
                *schedule,
                "--val_slice_step",
                "8",
                "--progress_bar",
                "false",
            ],
            log,
            REPO,
        )
        run_monai_bundle(
            [
                "run",
                "--config_file",
                configs_arg(BUNDLE, *configs, "evaluate.json"),
                *common_args,
                "--test#datalist",
                f"$@ixi_records('validation', {settings['eval_step']})",
                "--eval_baseline",
                str(baseline),
            ],
            log,
            REPO,
        )
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - start:.0f}\n", encoding="utf-8")
    return json.loads(result.read_text(encoding="utf-8"))["results"]


def _cell(values: list[float], metric: str) -> str:
    from common.reproduction import cell

    if metric == "lpips" and not [v for v in values if np.isfinite(v)]:
        return "not computed (weights absent)"
    return cell(values, 2 if metric == "psnr" else 4)


def write_tables(out_dir: Path, scores: dict, info: dict) -> list[Path]:
    """One ``<table>.md`` + ``.csv`` per paper table from ``scores[variant][method][kind][metric] = [per seed]``:
    ours (mean ± sd) and the paper's row under each label, biharmonic last, then the verdicts."""
    from common.reproduction import order_verdict, write_table

    columns = ["training masks", "source"] + [f"{KIND_LABELS[k]} {m.upper()}" for k in KINDS for m in METRICS]
    baseline = next((s["biharmonic"] for s in scores.values() if "biharmonic" in s), None)

    def row(label: str, source: str, value) -> dict:
        """One table row: ``value(kind, metric)`` under every evaluation mask's metric column."""
        cells = {f"{KIND_LABELS[k]} {m.upper()}": value(k, m) for k in KINDS for m in METRICS}
        return {"training masks": label, "source": source, **cells}

    paths = []
    for name, title, rows, claims in TABLES:
        table, psnr = [], {}
        for label, change, paper in rows:
            ours = scores[row_variant(change)]["CTSDG"]
            psnr[label] = {kind: ours[kind]["psnr"] for kind in KINDS}
            table.append(row(label, "ours", lambda k, m, ours=ours: _cell(ours[k][m], m)))
            table.append(row(label, "paper", lambda k, m, paper=paper: paper[k][m]))
        if baseline is not None:
            table.append(row("biharmonic (no training)", "ours", lambda k, m: _cell(baseline[k][m], m)))
        paper_psnr = {label: paper for label, _, paper in rows}
        verdicts = {
            f"{' > '.join(order)} ({KIND_LABELS[kind]} PSNR; paper "
            f"{' / '.join(str(paper_psnr[label][kind]['psnr']) for label in order)})": order_verdict(
                {label: psnr[label][kind] for label in order}, order
            )
            for kind, order in claims
        }
        notes = [
            "Paper: CHAOS abdominal T1 MR, full-width CTSDG, 10,000 iterations of batch 6, ImageNet VGG16 "
            "perceptual/style terms. Ours: see scale and data above; the three evaluation masks and the RoI "
            "metrics follow the paper's protocol (docs/README.md, 'Evaluation protocol')."
        ]
        paths.append(write_table(out_dir, name, title, columns, table, info, verdicts, notes))
    return paths


def save_panels(out_dir: Path, runs: Path) -> None:
    """``panel_<kind>.png``: the first validation slice's hole filled by each table row (one seed), biharmonic last."""
    from common.bundle_scripts import load_bundle_scripts

    save_panel = load_bundle_scripts(BUNDLE).evaluation.save_panel
    labels: dict[str, str] = {}  # run name -> the label of its first table row
    for _, _, rows, _ in TABLES:
        for label, change, _ in rows:
            labels.setdefault(row_variant(change), label)
    examples = {name: dict(np.load(runs / name / "examples.npz")) for name in labels}
    for kind in KINDS:
        outputs = {labels[name]: example[f"{kind}__out_CTSDG"] for name, example in examples.items()}
        baseline = [e[f"{kind}__out_biharmonic"] for e in examples.values() if f"{kind}__out_biharmonic" in e]
        if baseline:
            outputs["biharmonic"] = baseline[-1]  # the last row, as in the tables
        example = next(iter(examples.values()))  # every run scores the same slice and hole
        save_panel(
            out_dir / f"panel_{kind}.png", example[f"{kind}__image"], example[f"{kind}__hole"], outputs
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="4 iterations, seed 0, 4 validation slices (minutes)"
    )
    parser.add_argument("--paper_scale", action="store_true", help="train.json alone (GPU, VGG16 weights)")
    parser.add_argument(
        "--output_dir", default=None, help="default docs/results (docs/results/quick with --quick)"
    )
    parser.add_argument("--runs_dir", default=None, help="default runs/reproduce[_quick] (git-ignored)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument(
        "--iterations", type=int, default=None, help="training iterations per run (default: the scale's)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    args = parser.parse_args(argv)
    if args.quick and args.paper_scale:
        parser.error("--quick and --paper_scale exclude each other")
    settings = scale_settings(args.quick, args.paper_scale)
    if args.iterations is not None:
        per_epoch = settings["train"].get("iterations_per_epoch", 1000)  # train.json's at paper scale
        if args.iterations <= 0 or args.iterations % per_epoch:
            parser.error(
                f"--iterations must be a positive multiple of iterations_per_epoch ({per_epoch}), got {args.iterations}"
            )
        settings["train"] = training_schedule(
            args.iterations,
            per_epoch,
            **{k: v for k, v in settings["train"].items() if k not in ("iterations", "iterations_per_epoch")},
        )
    out = Path(args.output_dir or BUNDLE / "docs" / "results" / ("quick" if args.quick else ""))
    runs_dir = Path(args.runs_dir or BUNDLE / "runs" / ("reproduce_quick" if args.quick else "reproduce"))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    sys.path.insert(0, str(REPO))  # common/, when run as a file from a clone
    from common.reproduction import provenance

    configs = variants()
    first = (seeds[0], next(iter(configs)))  # the one run that also scores the biharmonic baseline
    runs = [(seed, name) for seed in seeds for name in configs]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(
            pool.map(
                lambda run: train_and_evaluate(
                    configs[run[1]], run[0], runs_dir / f"seed{run[0]}" / run[1], settings, run == first
                ),
                runs,
            )
        )
    scores: dict = {}  # variant -> method -> kind -> metric -> [per seed]
    for (_, name), result in zip(runs, results):
        for method, kinds in result.items():
            for kind in KINDS:
                for metric in METRICS:
                    values = scores.setdefault(name, {}).setdefault(method, {}).setdefault(kind, {})
                    values.setdefault(metric, []).append(float(kinds[kind][metric]))
    schedule = {"iterations": 10000, "batch_size": 6, **settings["train"]}  # train.json's unless overridden
    scale = (
        "paper (train.json: full width, 256x256, ImageNet VGG16)"
        if args.paper_scale
        else "CPU (quick.json: widths 8-32, 128x128, no perceptual/style terms)"
    ) + f"; {schedule['iterations']} iterations of batch {schedule['batch_size']} per run"
    data = (
        "IXI T1 2 mm (../shared/data/ixi_t1_2mm via common.data.load_ixi_datalist): trained on the 30 training "
        f"subjects' axial slices, scored on every {settings['eval_step']}th slice of the 4 validation subjects"
    )
    out.mkdir(parents=True, exist_ok=True)
    info = provenance(REPO, scale, data, seeds, time.perf_counter() - start)
    timed = [runs_dir / f"seed{seed}" / name / "wall_s.txt" for seed, name in runs]
    run_s = sum(float(path.read_text(encoding="utf-8")) for path in timed if path.exists())
    info["run time"] = f"{run_s / 60:.1f} min over {len(runs)} runs, {args.jobs} at a time"
    info["command"] = "python bundles/shape_aware_mask_inpainting/scripts/reproduce_tables.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.quick:
        info["note"] = (
            "smoke test of the route: 4 training iterations per run, the verdicts judge untrained networks"
        )
    paths = write_tables(out, scores, info)
    (out / "values.json").write_text(json.dumps({"info": info, "scores": scores}, indent=1), encoding="utf-8")
    save_panels(out, runs_dir / f"seed{seeds[0]}")
    for path in paths:
        print(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
