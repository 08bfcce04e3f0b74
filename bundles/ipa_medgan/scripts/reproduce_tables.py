"""Reproduce the paper's Table I (a: 64x64 squares, b: arbitrary masks) beside the paper's numbers: train every
model of ``evaluation.MODELS`` (ipA-MedGAN, single MultiResUNet, pix2pix, context encoder, MedGAN / ip-MedGAN,
Gated-Conv) per experiment and seed, score each through evaluate.json's ``reporting`` route
(``evaluation.write_report``: the same test slices and fixed masks for every row, plus the biharmonic baseline),
and write ``table_I.md`` / ``table_I.csv`` (mean ± sd over seeds, a ``paper`` column, one verdict per main
claim) and the panel of the first seed.

    python bundles/ipa_medgan/scripts/reproduce_tables.py [--quick] [--output_dir DIR] [--jobs 2]

Default (CPU scale): ``train.json`` + ``quick.json`` (64x64, widths /4, random VGG-19), 40 epochs, seeds 0 1 2.
``--quick``: 1 epoch on 8 training slices, seed 0 (a smoke test of the whole route; minutes).
``--paper_scale``: ``train.json`` alone (256x256, 100 epochs, ImageNet VGG-19 on disk; a GPU job).
Runs live in ``<runs_dir>/seed<k>/<model>_<experiment>`` (default ``runs/reproduce[_quick]``); a run whose ``trained`` marker exists is not retrained.
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
EXPERIMENTS = {"square": [], "arbitrary": ["arbitrary.json"]}  # as evaluation.EXPERIMENTS
METRICS = ("ssim", "psnr", "mse", "uqi")
LABELS = {
    "ipa_medgan": "ipA-MedGAN (2 x MultiResUNet)",
    "multiresunet": "single MultiResUNet (ablation)",
    "pix2pix": "pix2pix (U-Net + patch D + L1)",
    "context_encoder": "CE (context-encoder style)",
    "medgan": "MedGAN / ip-MedGAN (CasNet: 6 x U-Net)",
    "gated_conv": "Gated-Conv (gated-conv U-Net, given the mask)",
    "biharmonic": "biharmonic (given the mask)",
}
#: the paper's main claims: (text, experiment, winner, loser), judged on PSNR
CLAIMS = [
    (
        "(a) ipA-MedGAN beats CE on squares (paper 30.62 vs 23.79 dB)",
        "square",
        "ipa_medgan",
        "context_encoder",
    ),
    ("(a) ipA-MedGAN beats ip-MedGAN on squares (paper 30.62 vs 29.68 dB)", "square", "ipa_medgan", "medgan"),
    (
        "(b) ipA-MedGAN beats pix2pix on arbitrary masks (paper 35.12 vs 32.34 dB)",
        "arbitrary",
        "ipa_medgan",
        "pix2pix",
    ),
    (
        "(b) ipA-MedGAN beats MedGAN on arbitrary masks (paper 35.12 vs 31.92 dB)",
        "arbitrary",
        "ipa_medgan",
        "medgan",
    ),
    (
        "(b) ipA-MedGAN beats Gated-Conv on arbitrary masks (paper 35.12 vs 31.46 dB)",
        "arbitrary",
        "ipa_medgan",
        "gated_conv",
    ),
]


def summarise(per_seed: list[dict]) -> dict:
    """``{(model, experiment): {metric: [values over seeds]}}`` from ``write_report``'s rows of each seed."""
    out: dict = {}
    for rows in per_seed:
        for key, scores in rows.items():
            if scores:
                for metric in METRICS:
                    out.setdefault(key, {}).setdefault(metric, []).append(float(scores[metric]))
    return out


def verdict(winner: list[float] | None, loser: list[float] | None) -> str:
    """Does ``winner`` beat ``loser`` (higher is better)? The difference of the means must exceed the combined
    seed spread (sqrt(sd_w² + sd_l²)); one seed judges the direction alone."""
    from common.reproduction import mean_sd

    if not winner or not loser:
        return "not measurable here (a model was not trained)"
    (mw, sw), (ml, sl) = mean_sd(winner), mean_sd(loser)
    diff, spread = mw - ml, float(np.hypot(sw, sl))
    seeds = f"{min(len(winner), len(loser))} seed(s)"
    if diff > spread:
        return f"reproduced ({mw:.2f} vs {ml:.2f}, {seeds})"
    if diff < -spread:
        return f"not reproduced at CPU scale: the reverse ({mw:.2f} vs {ml:.2f}, {seeds})"
    return (
        f"not reproduced at CPU scale: within the seed spread ({mw:.2f} vs {ml:.2f} ± {spread:.2f}, {seeds})"
    )


def _cell(values: list[float] | None, metric: str) -> str:
    from common.reproduction import cell

    return cell(values, 4 if metric in ("ssim", "uqi") else 2) if values else "not trained"


def write_tables(out_dir: Path, summary: dict, meta: dict) -> Path:
    """``table_I.md`` (per experiment: ours and paper side by side, then the verdicts) and ``table_I.csv``: one
    row per model run on the experiment, beside the paper's row it stands for (``evaluation.paper_row`` of
    ``evaluation.PAPER_TABLE_I``; "-" for none)."""
    from common.bundle_scripts import load_bundle_scripts
    from common.reproduction import mean_sd, write_csv

    evaluation = load_bundle_scripts(BUNDLE).evaluation

    out_dir.mkdir(parents=True, exist_ok=True)
    records, lines = (
        [],
        ["# Table I (ipA-MedGAN): paper vs ours\n", *(f"- {k}: {v}" for k, v in meta.items()), ""],
    )
    for experiment in EXPERIMENTS:
        title = "(a) square regions" if experiment == "square" else "(b) arbitrarily shaped regions"
        lines += [
            f"## Table I {title}\n",
            "| method | " + " | ".join(f"{m.upper()} ours | {m.upper()} paper" for m in METRICS) + " |",
            "|---" * (1 + 2 * len(METRICS)) + "|",
        ]
        for model, label in LABELS.items():
            scores = summary.get((model, experiment))
            # the CE runs on squares only, Gated-Conv on arbitrary masks only, biharmonic on both
            runs_on = evaluation.MODELS[model][2] if model in evaluation.MODELS else EXPERIMENTS
            if scores is None and experiment not in runs_on:
                continue
            row = evaluation.paper_row(model, experiment)
            paper = evaluation.PAPER_TABLE_I[experiment].get(row) if row else None
            cells = []
            for metric in METRICS:
                ours = _cell(scores[metric] if scores else None, metric)
                ref = "-" if paper is None else f"{paper[metric]}"
                cells += [ours, ref]
                mean, sd = mean_sd(scores[metric]) if scores else (None, None)
                records.append(
                    {
                        "table": f"I ({experiment})",
                        "method": label,
                        "metric": metric,
                        "paper": "" if paper is None else paper[metric],
                        "ours_mean": "" if mean is None else mean,
                        "ours_sd": "" if sd is None else sd,
                        "n_seeds": len(scores[metric]) if scores else 0,
                    }
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Verdicts (PSNR; mean ± sd over seeds)\n"]
    for text, experiment, winner, loser in CLAIMS:
        w, lo = (summary.get((m, experiment), {}).get("psnr") for m in (winner, loser))
        lines.append(f"- {text}: **{verdict(w, lo)}**")
    lines += [
        "- Absolute values near the paper's (e.g. 35.12 dB): **not measurable here**: synthetic T1 slices, not the "
        "paper's FLAIR; CPU scale (see Scale) instead of 256x256 and 100 epochs; random, not ImageNet, VGG-19.",
        "",
    ]
    path = out_dir / "table_I.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    write_csv(out_dir / "table_I.csv", records)
    return path


def train(run: tuple, base: list[str], runs_dir: Path, extra: list[str]) -> float:
    """Train one (seed, model, experiment) with its configs (skipped when trained); returns the wall seconds.
    The ``trained`` marker records them and the end time (``{"wall_s", "end"}``) for the tables' wall time."""
    from common.reproduction import configs_arg, run_monai_bundle

    seed, model, experiment, model_configs = run
    out = runs_dir / f"seed{seed}" / f"{model}_{experiment}"
    if (out / "trained").exists():
        return 0.0
    start = time.perf_counter()
    configs = base + EXPERIMENTS[experiment] + model_configs
    run_monai_bundle(
        [
            "run",
            "training",
            "--config_file",
            configs_arg(BUNDLE, *configs),
            "--bundle_root",
            str(BUNDLE),
            "--runs_dir",
            str(runs_dir / f"seed{seed}"),
            "--seed",
            str(seed),
            "--progress_bar",
            "false",
            *extra,
        ],
        out / "run.log",
        REPO,
    )
    wall = time.perf_counter() - start
    (out / "trained").write_text(json.dumps({"wall_s": round(wall, 1), "end": round(time.time(), 1)}), "utf-8")
    return wall


def training_times(runs_dir: Path, runs: list[tuple]) -> tuple[float, float]:
    """(seconds while any of ``runs`` was training, seconds summed over them) from their ``trained`` markers."""
    from common.reproduction import busy_time

    texts = [(runs_dir / f"seed{s}" / f"{m}_{e}" / "trained").read_text(encoding="utf-8") for s, m, e, _ in runs]
    return busy_time(json.loads(text) for text in texts if text)  # "": a run marked before markers held times


def configured_epochs(configs: list[str]) -> int:
    """``max_epochs`` of the last of ``configs`` (bundle config names, merged in order) that sets it."""
    values = [json.loads((BUNDLE / "configs" / c).read_text(encoding="utf-8")).get("max_epochs") for c in configs]
    return [v for v in values if v is not None][-1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch on 8 slices, seed 0 (minutes)")
    parser.add_argument("--paper_scale", action="store_true", help="train.json alone (GPU, VGG-19 weights)")
    parser.add_argument(
        "--output_dir", default=None, help="default docs/results (docs/results/quick with --quick)"
    )
    parser.add_argument("--runs_dir", default=None, help="default runs/reproduce[_quick] (git-ignored)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--max_epochs", type=int, default=None, help="default the configs' (1 with --quick)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    args = parser.parse_args(argv)
    out = Path(args.output_dir or BUNDLE / "docs" / "results" / ("quick" if args.quick else ""))
    runs_dir = Path(args.runs_dir or BUNDLE / "runs" / ("reproduce_quick" if args.quick else "reproduce"))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    base = ["train.json"] if args.paper_scale else ["train.json", "quick.json"]
    extra = [] if args.max_epochs is None and not args.quick else ["--max_epochs", str(args.max_epochs or 1)]
    if args.quick:
        extra += ["--train#dataset#data", "$@train#datalist[:8]"]
    sys.path.insert(0, str(REPO))  # common/, when run as a file from a clone
    from common.bundle_scripts import load_bundle_scripts
    from common.reproduction import configs_arg, git_commit, run_monai_bundle, utc_date

    models = load_bundle_scripts(BUNDLE).evaluation.MODELS
    runs = [
        (s, m, e, cfg)
        for s in seeds
        for m, (_, cfg, exps) in models.items()
        for e in EXPERIMENTS
        if e in exps
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        train_s = sum(pool.map(lambda r: train(r, base, runs_dir, extra), runs))
    per_seed = []
    for seed in seeds:  # evaluate.json's reporting route: every run of this seed + biharmonic
        report = out / f"seed{seed}"
        run_monai_bundle(
            [
                "run",
                "reporting",
                "--config_file",
                configs_arg(BUNDLE, *base, "evaluate.json"),
                "--bundle_root",
                str(BUNDLE),
                "--runs_dir",
                str(runs_dir / f"seed{seed}"),
                "--quick",
                str(not args.paper_scale),
                "--report#docs_dir",
                str(report),
            ],
            report / "report.log",
            REPO,
        )
        rows = json.loads((report / "table1.json").read_text(encoding="utf-8"))
        per_seed.append({tuple(k.split("/")): v for k, v in rows.items()})
    scale = (
        "paper (train.json: 256x256, widths 32-512, ImageNet VGG-19)"
        if args.paper_scale
        else "CPU (quick.json: 64x64 slices, widths /4, seeded random VGG-19, 2 style layers)"
    )
    epochs = (
        "1 epoch on 8 training slices (--quick)"
        if args.quick
        else f"{args.max_epochs or configured_epochs(base)} epochs"
    )
    busy_s, summed_s = training_times(runs_dir, runs)
    meta = {
        "date": utc_date(),
        "git commit": git_commit(REPO),
        "data": "embedded synthetic sample cohort (common.data.build_sample_data(), T1 slices; 96 training, 32 "
        "test slices, split by subject); the same fixed test masks for every row (scripts.masks)",
        "scale": f"{scale}; {epochs}; batch 4",
        "seeds": " ".join(map(str, seeds)),
        "wall time": f"{busy_s / 60:.1f} min while any training ran, {summed_s / 60:.1f} min summed over the "
        f"{len(runs)} runs; this call {time.perf_counter() - start:.0f} s (training {train_s:.0f} s of it, runs not "
        f"already trained; {args.jobs} job(s))",
        "command": "python bundles/ipa_medgan/scripts/reproduce_tables.py " + " ".join(argv or sys.argv[1:]),
        "panel": f"seed{seeds[0]}/panel.png",
    }
    if args.quick:
        meta["note"] = (
            "smoke test of the route: 2 training iterations per model, the verdicts judge untrained networks"
        )
    path = write_tables(out, summarise(per_seed), meta)
    print(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
