"""Reproduce the paper's numbers (reconstruction PSNR of both stages, Table 1 tissue Dice with and without blind
inpainting, Wilcoxon signed-rank test) beside the paper's: train both stages per seed, score them through
evaluate.json's ``evaluating`` route (``evaluation.Evaluation``), and write ``reconstruction.md`` /
``table1_tissue.md`` with their CSVs (date, commit, data, seeds, wall time, a ``paper`` column, one verdict per
main claim).

    python bundles/blind_lesion_inpainting_3d/scripts/reproduce_tables.py [--quick] [--output_dir DIR]

Default (CPU scale, the demo weights' recipe): quick.json's network (8 filters), all 6 training subjects, the
500-mask bank, stage 1 12 epochs x 10 cases, stage 2 8 epochs x 10 cases, seed 0; evaluated on the test subjects.
``--quick``: no training, the shipped demo weights (``models/``) through the same evaluation (minutes).
``--paper_scale``: train.json's schedule and width (a GPU job). ``--splits validation test`` scores more subjects.
Tissue classes: a 3-class Gaussian mixture of brain intensities (``scripts/tissue.py``), not SPM12.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

BUNDLE = Path(__file__).resolve().parents[1]
REPO = BUNDLE.parents[1]
#: the paper's numbers (Manjón et al., SASHIMI 2020): section 3 "Reconstruction performance" (PSNR) and Table 1
#: (mean ± sd Dice of SPM12 tissue classes on 43 MS test cases, original vs blind-inpainted)
PAPER_PSNR = {"psnr_input": 34.21, "nonblind_psnr": 48.13, "blind_psnr_ms": 49.57, "blind_psnr_normal": 44.97}
PAPER_TABLE1 = {
    "GM": ((0.9729, 0.0158), (0.9845, 0.0115)),
    "WM": ((0.9707, 0.0190), (0.9823, 0.0141)),
    "Average": ((0.9718, 0.0172), (0.9834, 0.0128)),
}
PSNR_ROWS = {
    "psnr_input": "input (lesioned) vs lesion-free truth",
    "nonblind_psnr": "non-blind output (stage 1, lesions set to -1)",
    "blind_psnr_ms": "blind output, MS cases (stage 2)",
    "blind_psnr_normal": "blind output, normal cases (stage 2)",
}
CLASSIFIER = (
    "3-class Gaussian mixture of the brain's intensities (scikit-learn GaussianMixture, scripts/tissue.py), not "
    "the paper's SPM12 (not available here; no spatial priors); reference = its classes on the lesion-free truth "
    "(the paper: SPM12 on the non-blind-inpainted image)"
)
#: smallest n for which a two-sided exact Wilcoxon signed-rank test can reach p < 0.05 (2 / 2^n < 0.05)
WILCOXON_MIN_N = 6


def direction(better: list[float], worse: list[float]) -> str:
    """Is ``better`` higher, pair by pair (the same subject, or the same seed)? Reproduced when every pair says
    so, the reverse when none does, mixed otherwise."""
    diffs = np.asarray(better) - np.asarray(worse)
    means = f"{np.mean(better):.2f} vs {np.mean(worse):.2f} dB, {len(diffs)} pair(s)"
    if (diffs > 0).all():
        return f"reproduced ({means})"
    if (diffs < 0).all():
        return f"not reproduced at CPU scale: the reverse ({means})"
    return (
        f"not reproduced at CPU scale: mixed, {int((diffs > 0).sum())} of {len(diffs)} pairs higher ({means})"
    )


def tissue_verdict(lesioned: list[float], inpainted: list[float]) -> tuple[str, float | None]:
    """Table 1's claim: inpainted Dice significantly higher (two-sided Wilcoxon signed-rank, paired by subject)."""
    diff = np.asarray(inpainted) - np.asarray(lesioned)
    if len(diff) < WILCOXON_MIN_N:
        better = "higher" if diff.mean() > 0 else "not higher"
        return (
            f"not measurable here: n = {len(diff)} subjects, the Wilcoxon signed-rank test cannot reach p < 0.05 "
            f"below n = {WILCOXON_MIN_N} (inpainted Dice {better} on average: {diff.mean():+.4f})",
            None,
        )
    p = float(wilcoxon(inpainted, lesioned).pvalue)
    if diff.mean() > 0 and p < 0.05:
        return f"reproduced (mean difference {diff.mean():+.4f}, Wilcoxon p = {p:.3g}, n = {len(diff)})", p
    return (
        f"not reproduced at CPU scale (mean difference {diff.mean():+.4f}, Wilcoxon p = {p:.3g}, n = {len(diff)})",
        p,
    )


def write_tables(out_dir: Path, results: list[dict], meta: dict) -> list[Path]:
    """``reconstruction.md/.csv`` and ``table1_tissue.md/.csv`` from each seed's ``evaluation.json``."""
    from common.reproduction import cell, write_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    header = ["", *(f"- {k}: {v}" for k, v in meta.items()), ""]
    seed_means = {k: [r["summary"][k] for r in results if k in r["summary"]] for k in PSNR_ROWS}
    subjects = [s for r in results for s in r["subjects"]]
    n = f"{len(results)} seed(s) x {len(results[0]['subjects'])} subject(s)"
    spread = "sd over seeds" if len(results) > 1 else "sd over subjects"
    lines = [
        "# Reconstruction PSNR (paper section 3) vs ours",
        *header,
        f"| PSNR (dB), whole volume | paper | ours ({n}; {spread}) |",
        "|---|---|---|",
    ]
    records = []
    for key, label in PSNR_ROWS.items():
        values = seed_means[key] if len(results) > 1 else [s[key] for s in subjects if key in s]
        ours = cell(values, 2) if values else "not evaluated"
        lines.append(f"| {label} | {PAPER_PSNR[key]} | {ours} |")
        records.append(
            {
                "row": label,
                "paper": PAPER_PSNR[key],
                "ours_mean": np.mean(values) if values else "",
                "ours_sd": np.std(values, ddof=1) if len(values) > 1 else "",
                "n": len(values),
            }
        )
    per = {k: [s[k] for s in subjects if k in s] for k in PSNR_ROWS}
    claims = [
        (
            "non-blind inpainting brings the lesioned volume closer to the truth (paper 48.13 vs 34.21 dB)",
            "nonblind_psnr",
        ),
        ("blind inpainting of MS cases beats the lesioned input (paper 49.57 vs 34.21 dB)", "blind_psnr_ms"),
        (
            "blind network leaves normal cases closer to the truth than the lesions leave MS cases (paper 44.97 vs "
            "34.21 dB)",
            "blind_psnr_normal",
        ),
    ]
    lines += ["", "## Verdicts\n"]
    for text, key in claims:
        result = (
            direction(per[key], per["psnr_input"])
            if per[key]
            else "not measurable here (stage not evaluated)"
        )
        lines.append(f"- {text}: **{result}**")
    lines.append(
        "- absolute PSNR values: **not measurable here** (synthetic cohort with mild lesions, CPU-scale "
        "networks; the paper: 298 IXI + 243 MS real T1s)"
    )
    paths = [out_dir / "reconstruction.md", out_dir / "table1_tissue.md"]
    paths[0].write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_csv(out_dir / "reconstruction.csv", records)

    def paired(tissue: str) -> tuple[list[float], list[float]]:
        """Per-subject Dice of one Table 1 row (GM, WM, or their mean), original and inpainted."""
        prefix = {"GM": "tissue_dice_gm_", "WM": "tissue_dice_wm_"}.get(tissue, "tissue_dice_")
        measured = [s for s in subjects if prefix + "lesioned" in s]
        return [s[prefix + "lesioned"] for s in measured], [s[prefix + "inpainted"] for s in measured]

    lesioned, inpainted = paired("Average")
    lines = [
        "# Table 1 (tissue-segmentation Dice, original vs blind-inpainted) vs ours",
        *header,
        f"Tissue classifier: {CLASSIFIER}.",
        "",
        f"| tissue | paper original (N=43) | paper inpainted | ours original ({n}) | ours inpainted | ours "
        "Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    records, verdicts = [], []
    for tissue, ((po, pos), (pi, pis)) in PAPER_TABLE1.items():
        original, filled = paired(tissue)
        verdict, p = (
            tissue_verdict(original, filled) if original else ("not measurable here (no blind stage)", None)
        )
        ours = (cell(original, 4), cell(filled, 4)) if original else ("not measured",) * 2
        p_cell = "" if p is None else f"{p:.3g}"
        lines.append(f"| {tissue} | {po} ± {pos} | {pi} ± {pis}* | {ours[0]} | {ours[1]} | {p_cell} |")
        verdicts.append(f"- {tissue}: blind inpainting significantly improves tissue Dice (paper {pi} vs {po}): "
                        f"**{verdict}**")  # fmt: skip
        records.append(
            {
                "tissue": tissue,
                "paper_original": po,
                "paper_original_sd": pos,
                "paper_inpainted": pi,
                "paper_inpainted_sd": pis,
                "ours_original": np.mean(original) if original else "",
                "ours_inpainted": np.mean(filled) if original else "",
                "n": len(original),
                "wilcoxon_p": "" if p is None else p,
            }
        )
    lines += [
        "",
        "\\* the paper: significant, Wilcoxon signed-rank test. Ours: GM and WM Dice per subject and their mean "
        "(Average), paired by subject, two-sided Wilcoxon signed-rank test (scipy).",
        "",
        "## Verdict\n",
        *verdicts,
    ]
    paths[1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_csv(out_dir / "table1_tissue.csv", records)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="evaluate the shipped demo weights, no training")
    parser.add_argument("--paper_scale", action="store_true", help="train.json's width and schedule (GPU)")
    parser.add_argument(
        "--output_dir", default=None, help="default docs/results (docs/results/quick with --quick)"
    )
    parser.add_argument(
        "--runs_dir", default=str(BUNDLE / "runs" / "reproduce"), help="training runs (git-ignored)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--splits", nargs="+", default=["test"], help="datalist splits scored (held-out: test)"
    )
    parser.add_argument(
        "--reuse_scored",
        action="store_true",
        help="read the evaluation.json of seeds already scored in the output folder (e.g. committed by an earlier "
        "invocation) instead of training and scoring them again; the wall time then counts the new seeds only",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # common/, when run as a file from a clone
    from common.reproduction import configs_arg, git_commit, run_monai_bundle, utc_date

    out = Path(args.output_dir or BUNDLE / "docs" / "results" / ("quick" if args.quick else ""))
    base = ["train.json"] if args.paper_scale else ["train.json", "quick.json"]
    subjects = (
        f"$[e for s in {args.splits!r} for e in monai.data.load_decathlon_datalist(@datalist_file, False, s)]"
    )
    schedule = (
        []
        if args.paper_scale
        else [
            "--training_subjects",
            "$monai.data.load_decathlon_datalist(@datalist_file, False, 'training')",
            "--cases_per_epoch",
            "10",
            "--lesion_bank_size",
            "500",
        ]
    )
    start, results, reused = time.perf_counter(), [], []
    for seed in args.seeds if not args.quick else [0]:
        scored = out / f"seed{seed}" / "evaluation.json"
        if args.reuse_scored and not args.quick and scored.is_file():
            results.append(json.loads(scored.read_text(encoding="utf-8")))
            reused.append(seed)
            continue
        run = Path(args.runs_dir) / f"seed{seed}"
        common = [
            "--bundle_root",
            str(BUNDLE),
            "--output_dir",
            str(run),
            "--seed",
            str(seed),
            "--progress_bar",
            "false",
            *schedule,
        ]
        for stage, configs, epochs in (("nonblind", base, "12"), ("blind", [*base, "blind.json"], "8")):
            if args.quick or (run / f"{stage}.trained").exists():
                continue
            run_monai_bundle(
                [
                    "run",
                    "training",
                    "--config_file",
                    configs_arg(BUNDLE, *configs),
                    *common,
                    *([] if args.paper_scale else ["--max_epochs", epochs]),
                ],
                run / f"{stage}.log",
                REPO,
            )
            (run / f"{stage}.trained").write_text("", encoding="utf-8")
        evaluation = out / f"seed{seed}"
        ckpt_dir = BUNDLE / "models" if args.quick else run / "models"
        run_monai_bundle(
            [
                "run",
                "evaluating",
                "--config_file",
                configs_arg(BUNDLE, *base, "blind.json", "evaluate.json"),
                "--bundle_root",
                str(BUNDLE),
                "--ckpt_dir",
                str(ckpt_dir),
                "--output_dir",
                str(evaluation),
                "--datalist",
                subjects,
            ],
            evaluation / "evaluation.log",
            REPO,
        )
        results.append(json.loads((evaluation / "evaluation.json").read_text(encoding="utf-8")))
    scale = (
        "paper (train.json: 40 filters, 200 epochs x 50 cases)"
        if args.paper_scale
        else (
            "CPU: quick.json network (8 filters, standardisation-only preprocessing: the cohort is on the MNI grid)"
        )
    )
    training = (
        "none: the shipped demo weights models/model_nonblind.pt, models/model.pt (trained with the default "
        "recipe)"
        if args.quick
        else "stage 1 12 epochs x 10 cases, stage 2 8 epochs x 10 cases, 6 training subjects, 500-mask bank"
        if not args.paper_scale
        else "train.json"
    )
    meta = {
        "date": utc_date(),
        "git commit": git_commit(REPO),
        "data": "embedded synthetic cohort (common.data.build_sample_data(): 10 subjects on the 182x218x182 MNI "
        f"grid, healthy + MS-like lesions, split 6/2/2 by subject); scored: {' + '.join(args.splits)} "
        f"subjects, against their lesion-free truth",
        "scale": scale,
        "training": training,
        "seeds": "0" if args.quick else " ".join(map(str, args.seeds)),
        "wall time": f"{time.perf_counter() - start:.0f} s"
        + (f" (seeds {' '.join(map(str, reused))} read from an earlier invocation's evaluation.json)" if reused else ""),
        "command": "python bundles/blind_lesion_inpainting_3d/scripts/reproduce_tables.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "figure": "seed0/orthogonal_slices.png",
    }
    for path in write_tables(out, results, meta):
        print(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
