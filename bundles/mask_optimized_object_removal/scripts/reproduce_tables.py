"""Shimosato & Ukita's Tables I-V at CPU scale beside the paper's numbers, in one command.

Every stage is a ``monai.bundle run`` of this bundle's configs (so the tables are what the configs produce) and
is skipped when its output exists, so an interrupted run resumes:

- Table I: the object-mask inpainter alone, true mask eroded/dilated by d px (run id ``evaluate_expand_sweep``);
- Table II: inpainters pretrained on object masks (copy-paste pairs) vs on free-form random masks
  (``--inpainter_masks random``), fed the true mask, and the independently pretrained segmenter's mask;
- Table III: the random-mask inpainter fine-tuned on N object-mask pairs (``--init_inpainter``, ``--train_limit
  N``; N = 0 is Table II's random-mask row);
- Table IV: the whole pipeline end to end for each mask-expansion ``alpha``;
- Table V: ours with (alpha 0.03) and without the mask-expansion loss (``--loss_weights#expansion 0``), and the
  independent segmenter + inpainter; the paper's twelve other methods are not run here.

Every number is binned by mask ratio (``evaluate.json``)::

    python bundles/mask_optimized_object_removal/scripts/reproduce_tables.py [--quick] [--data ixi|sample]
        [--seeds 0 1 2] [--output_dir DIR] [--work_dir DIR]

writes ``<output_dir>/table{1..5}_*.md`` + ``.csv`` (ours, ± sd over seeds, beside the paper's numbers, one
verdict per claim) and the Table II and IV PNG panels; runs, logs and checkpoints go to ``--work_dir``, each
stage's wall time to ``<work_dir>/seed<k>/stage_wall_s.json`` (the tables report their sum as the run time, so
seeds run as separate processes are counted). ``--data ixi`` (default): copy-paste pairs of synthetic tumours
painted into the real IXI T1 slices (``configs/ixi_pairs.json``, needs ``../shared/data/ixi_t1_2mm``);
``--data sample``: the bundle's synthetic sample cohort.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1]
REPO = BUNDLE.parents[1]
#: train objects rescaled like the test objects (1-40 % of the image); model selection on 32 fixed pairs
FULL = {
    "pretrain_epochs": 10, "max_epochs": 5, "train_limit": 192, "validate_limit": 32,
    "area_ratio_range": "[0.01,0.4]", "min_inside": 0.5,
}  # fmt: skip
QUICK = {**FULL, "pretrain_epochs": 1, "max_epochs": 1, "train_limit": 16, "validate_limit": 4}
SCALES = {"full": (FULL, [0, 1, 2], [24, 48, 96]), "quick": (QUICK, [0], [8])}
ALPHAS = (0.01, 0.03, 0.05, 0.07)
MEL_ALPHA = 0.03  # the paper's alpha: Table V's "MEL" row
EXPANDS = (-2, 0, 2, 4, 6, 8)  # evaluate.json's expand_sweep
#: --data: (extra config merged after train.json + quick.json, what the tables' "data" line says, short name)
DATA = {
    "ixi": (
        "ixi_pairs.json",
        "copy-paste pairs on real brain MR: synthetic tumours (common.data.build_ixi_tumour_splits, seed 0) of one "
        "IXI subject pasted onto another's healthy skull-stripped 2 mm T1 slice at the same level, objects "
        "rescaled to 1-40 % of the slice (padded to 120x120, resized to 64x64), slices with >= 3000 brain pixels; "
        "training on 26 IXI training subjects, model selection on the other 4, test: every fixed seeded pair of "
        "the 4 IXI validation subjects",
        "IXI pairs",
    ),
    "sample": (
        None,
        "copy-paste pairs of the bundle's synthetic sample cohort (common.data: lesions pasted into 64x64 brain "
        "slices, objects rescaled to 1-40 % of the slice); the fixed seeded test pairs",
        "sample-cohort pairs",
    ),
}
BINS = ("0-10%", "10-20%", "20-30%", "30-40%")
# The paper's numbers (PSNR per bin, SSIM per bin), quoted from its tables.
PAPER_TABLE1 = {  # Table I: mask size variation d (px)
    -2: ((26.75, 17.98, 16.16, 14.44), (0.943, 0.807, 0.704, 0.599)),
    0: ((32.31, 24.77, 21.45, 19.21), (0.969, 0.892, 0.807, 0.711)),
    2: ((31.89, 24.35, 21.07, 18.96), (0.967, 0.883, 0.796, 0.700)),
    4: ((31.47, 23.91, 20.80, 18.63), (0.964, 0.875, 0.785, 0.687)),
    6: ((31.07, 23.56, 20.46, 18.35), (0.961, 0.866, 0.773, 0.675)),
    8: ((30.70, 23.21, 20.18, 18.07), (0.959, 0.858, 0.762, 0.662)),
}
PAPER_TABLE2 = {  # Table II: training mask type
    "random": ((32.07, 23.97, 20.20, 17.81), (0.968, 0.888, 0.799, 0.702)),
    "object": ((32.31, 24.77, 21.45, 19.21), (0.969, 0.892, 0.807, 0.711)),
}
PAPER_TABLE3 = {  # Table III: thousands of paired images for fine-tuning from the random-mask inpainter
    0: ((32.07, 23.97, 20.20, 17.81), (0.968, 0.888, 0.799, 0.702)),
    20: ((32.10, 24.50, 21.17, 18.98), (0.968, 0.888, 0.800, 0.703)),
    60: ((32.17, 24.56, 21.22, 18.77), (0.968, 0.888, 0.803, 0.705)),
    100: ((32.19, 24.59, 21.18, 18.94), (0.968, 0.889, 0.803, 0.706)),
    110: ((32.12, 24.55, 21.13, 18.79), (0.968, 0.888, 0.800, 0.702)),
}
PAPER_TABLE4 = {0.01: (30.68, 0.951), 0.03: (30.87, 0.954), 0.05: (30.51, 0.949), 0.07: (30.47, 0.949)}
PAPER_TABLE5 = {  # Table V: ours without / with the mask expansion loss (MEL); PSNR, SSIM, LPIPS per bin
    "no MEL": ((29.60, 24.23, 24.66, 26.13), (0.945, 0.865, 0.839, 0.844), (0.099, 0.170, 0.191, 0.183)),
    "MEL": ((31.07, 24.71, 25.62, 26.50), (0.955, 0.874, 0.848, 0.850), (0.094, 0.165, 0.187, 0.193)),
}


def scale_args(scale: Mapping, **changes) -> list[str]:
    """``--id value`` bundle overrides of ``scale`` updated with ``changes``."""
    return [item for key, value in {**scale, **changes}.items() for item in (f"--{key}", str(value))]


def _alpha_dir(alpha: float) -> str:
    return f"alpha_{alpha:g}"


def evaluation(out: Path, name: str, segmenter: Path, inpainter: Path, source: str, evaluate: str) -> tuple:
    """Stage evaluating a separately pretrained segmenter + inpainter (mask from ``source``; ``evaluate``: the
    ``--config_file`` value)."""
    folder = out / "eval" / name
    return (
        f"evaluate {name}",
        folder / "binned_metrics.json",
        ["evaluating", "--config_file", evaluate, "--output_dir", str(folder), "--eval_independent", "true",
         "--pretrained_segmenter", str(segmenter), "--pretrained_inpainter", str(inpainter),
         "--network_def#mask_source", source],
    )  # fmt: skip


def stages(
    out: Path,
    scale: Mapping,
    alphas: Sequence[float] = ALPHAS,
    finetune: Sequence[int] = (8,),
    data: str = "ixi",
) -> list[tuple[str, Path, list[str]]]:
    """(name, output file that marks it done, ``monai.bundle run`` arguments) of every stage, in order."""
    from common.reproduction import configs_arg

    extra = [DATA[data][0]] if DATA[data][0] else []
    train = configs_arg(BUNDLE, "train.json", "quick.json", *extra)
    evaluate = configs_arg(BUNDLE, "train.json", "quick.json", *extra, "evaluate.json")
    seg, inp_obj, inp_rnd = out / "segmenter.pt", out / "inpainter.pt", out / "random_masks" / "inpainter.pt"
    run = [
        ("pretrain segmenter", seg, ["pretrain_segmenter", "--output_dir", str(out), *scale_args(scale)]),
        ("pretrain inpainters on object masks", inp_obj,
         ["pretrain_inpainters", "--output_dir", str(out), *scale_args(scale)]),
        ("pretrain inpainters on random masks", inp_rnd,
         ["pretrain_inpainters", "--output_dir", str(inp_rnd.parent), *scale_args(scale, inpainter_masks="random")]),
    ]  # fmt: skip
    for n in finetune:
        folder = out / f"finetune_{n}"
        run.append(
            (f"fine-tune random-mask inpainters on {n} pairs", folder / "inpainter.pt",
             ["pretrain_inpainters", "--output_dir", str(folder), "--init_inpainter", str(inp_rnd),
              *scale_args(scale, train_limit=n)])
        )  # fmt: skip
    end_to_end = {_alpha_dir(a): ["--alpha", str(a)] for a in alphas}
    end_to_end["no_expansion"] = ["--loss_weights#expansion", "0"]
    for name, change in end_to_end.items():
        folder = out / name
        run.append(
            (f"end to end, {name}", folder / "checkpoint_final.pt",  # model.pt (best epoch) exists from epoch 1
             ["training", "--output_dir", str(folder), "--ckpt_dir", str(out), *change, *scale_args(scale)])
        )  # fmt: skip
    run = [(name, done, [args[0], "--config_file", train, *args[1:]]) for name, done, args in run]
    for masks, inpainter in (("object", inp_obj), ("random", inp_rnd)):
        for source in ("hint", "segmenter"):
            run.append(evaluation(out, f"table2_{masks}_{source}", seg, inpainter, source, evaluate))
    for n in finetune:
        inpainter = out / f"finetune_{n}" / "inpainter.pt"
        run.append(evaluation(out, f"table3_finetune_{n}", seg, inpainter, "hint", evaluate))
    sweep = out / "eval" / "table1"
    run.append(
        ("evaluate Table I expand sweep", sweep / "expand_sweep.json",
         ["evaluate_expand_sweep", "--config_file", evaluate, "--output_dir", str(sweep), "--eval_independent",
          "true", "--pretrained_segmenter", str(seg), "--pretrained_inpainter", str(inp_obj)])
    )  # fmt: skip
    for name in end_to_end:
        folder = out / "eval" / f"end_to_end_{name}"
        run.append(
            (f"evaluate end to end, {name}", folder / "binned_metrics.json",
             ["evaluating", "--config_file", evaluate, "--output_dir", str(folder), "--ckpt_dir", str(out / name)])
        )  # fmt: skip
    pipelines = {m: out / "table2" / f"pipeline_{m}_masks.pt" for m in ("object", "random")}
    run.append(
        ("Table II panel", out / "table2_panel.png",
         ["panel", "--config_file", evaluate, "--output_dir", str(out / "table2"), "--network_def#mask_source",
          "hint", "--panel_checkpoints", repr({f"{m} masks": str(p) for m, p in pipelines.items()})])
    )  # fmt: skip
    run.append(
        ("Table IV panel", out / "table4_panel.png",
         ["panel", "--config_file", evaluate, "--output_dir", str(out / "table4"), "--panel_checkpoints",
          repr({f"alpha {a:g}": str(out / _alpha_dir(a) / "model.pt") for a in alphas})])
    )  # fmt: skip
    mel = _alpha_dir(MEL_ALPHA if MEL_ALPHA in alphas else alphas[0])
    diagnosed = {"end to end, MEL": out / mel / "model.pt", "end to end, no MEL": out / "no_expansion" / "model.pt",
                 "independent": pipelines["object"]}  # fmt: skip
    run.append(
        ("Table V mask diagnostics", out / "table5" / "mask_diagnostics.json",
         ["mask_diagnostics", "--config_file", evaluate, "--output_dir", str(out / "table5"), "--panel_checkpoints",
          repr({label: str(path) for label, path in diagnosed.items()})])
    )  # fmt: skip
    return run


def pipeline_state(segmenter: Path, inpainter: Path) -> dict:
    """State dict of ``ObjectRemovalPipeline`` from separately pretrained segmenter and inpainter files."""
    from common.engines import read_state_dict

    parts = {"segmenter": segmenter, "inpainter": inpainter}
    state = {}
    for prefix, path in parts.items():
        state.update({f"{prefix}.{k}": v for k, v in read_state_dict(path, map_location="cpu").items()})
    return state


def write_table2_pipelines(out: Path) -> None:
    """Whole-pipeline files (the pretrained segmenter with each pretrained inpainter) for the Table II panel."""
    import torch

    (out / "table2").mkdir(parents=True, exist_ok=True)
    for masks, inpainter in (("object", out / "inpainter.pt"), ("random", out / "random_masks" / "inpainter.pt")):
        torch.save(pipeline_state(out / "segmenter.pt", inpainter), out / "table2" / f"pipeline_{masks}_masks.pt")


def run_stages(out: Path, scale: Mapping, seed: int, finetune: Sequence[int], data: str) -> None:
    """Every stage of one seed not yet done, each logged to ``<out>/logs`` and its wall time recorded in
    ``<out>/stage_wall_s.json``; stops at the first failure."""
    from common.reproduction import run_monai_bundle

    walls = out / "stage_wall_s.json"
    for name, done, run_args in stages(out, scale, ALPHAS, finetune, data):
        if done.exists():
            print(f"[done] {name}: {done}", flush=True)
            continue
        if name in ("Table II panel", "Table V mask diagnostics"):
            write_table2_pipelines(out)
        log = out / "logs" / (name.replace(" ", "_").replace(",", "") + ".log")
        start = time.time()
        try:
            run_monai_bundle(["run", *run_args, "--bundle_root", str(BUNDLE), "--seed", str(seed)], log, REPO)
        except RuntimeError as error:
            print(f"[FAILED] {name}: {time.time() - start:.0f} s wall, log {log}", flush=True)
            raise SystemExit(f"stage '{name}' failed: {error}") from error
        end = time.time()
        print(f"[ok] {name}: {end - start:.0f} s wall, log {log}", flush=True)
        recorded = json.loads(walls.read_text(encoding="utf-8")) if walls.exists() else {}
        recorded[name] = {"wall_s": round(end - start, 1), "end": round(end, 1)}
        walls.write_text(json.dumps(recorded, indent=1), encoding="utf-8")
        if name.endswith("panel"):
            (done.parent / done.stem.split("_")[0] / "panel.png").replace(done)


def stage_times(seed_dirs: Sequence[Path]) -> tuple[float, float]:
    """(time during which at least one stage ran, sum of the stages' wall times) in seconds, over every seed's
    ``stage_wall_s.json`` (``common.reproduction.busy_time``)."""
    from common.reproduction import busy_time

    return busy_time(
        stage
        for d in seed_dirs
        if (d / "stage_wall_s.json").exists()
        for stage in json.loads((d / "stage_wall_s.json").read_text(encoding="utf-8")).values()
    )


def read_runs(seed_dirs: Sequence[Path], finetune: Sequence[int]) -> dict[str, list[dict]]:
    """{row: [binned results of each seed]} for every evaluated setting (``binned_metrics.json``)."""
    names = {f"table2_{m}_{s}": f"table2_{m}_{s}" for m in ("object", "random") for s in ("hint", "segmenter")}
    names |= {f"table3_finetune_{n}": f"table3_finetune_{n}" for n in finetune}
    names |= {f"alpha {a:g}": f"end_to_end_{_alpha_dir(a)}" for a in ALPHAS}
    names["no MEL"] = "end_to_end_no_expansion"
    runs = {row: [json.loads((d / "eval" / f / "binned_metrics.json").read_text(encoding="utf-8")) for d in seed_dirs]
            for row, f in names.items()}  # fmt: skip
    for d in seed_dirs:
        for key, result in json.loads((d / "eval" / "table1" / "expand_sweep.json").read_text(encoding="utf-8")).items():
            runs.setdefault(key, []).append(result)  # keys "d = +2 px"
        diagnostics = d / "table5" / "mask_diagnostics.json"
        if diagnostics.exists():
            runs.setdefault("mask diagnostics", []).append(json.loads(diagnostics.read_text(encoding="utf-8")))
    return runs


def per_bin(results: Sequence[dict], metric: str) -> list[list[float]]:
    """[bin][seed] means of ``metric`` in the paper's four bins, then over all images."""
    return [[r["mean"][metric][b] for r in results] for b in BINS] + [[r["all"][metric] for r in results]]


def bin_rows(
    label: str, results: Sequence[dict], paper: Sequence[Sequence[float]] | None, metrics=("psnr", "ssim")
) -> list[dict]:
    """One row per metric: ours (mean ± sd over seeds) and the paper's number for each bin, and all images."""
    from common.reproduction import cell

    rows = []
    for k, metric in enumerate(metrics):
        digits = 2 if metric == "psnr" else 3
        ours = per_bin(results, metric) if results else [[] for _ in range(len(BINS) + 1)]
        row = {"setting": label, "metric": metric.upper()}
        for b, values in zip([*BINS, "all"], ours):
            row[f"{b} ours"] = cell(values, digits)
            if b != "all":
                row[f"{b} paper"] = "–" if paper is None else f"{paper[k][BINS.index(b)]:.{digits}f}"
        rows.append(row)
    return rows


def columns() -> list[str]:
    return ["setting", "metric", *[f"{b} {w}" for b in BINS for w in ("ours", "paper")], "all ours"]


def psnr_all(runs: Mapping[str, Sequence[dict]], row: str) -> list[float]:
    return [r["all"]["psnr"] for r in runs.get(row, [])]


def bin_counts(results: Sequence[dict]) -> str:
    """'test images per bin a / b / c / d of n' of one evaluation's results (empty when not recorded)."""
    if not results or "count" not in results[0]:
        return ""
    counts, total = results[0]["count"], len(results[0].get("images", []))
    return f"; test images per bin {' / '.join(str(counts.get(b, 0)) for b in BINS)} of {total}"


def build_tables(
    runs: Mapping[str, Sequence[dict]], info: Mapping, out: Path, finetune: Sequence[int], data: str = "ixi"
) -> list:
    """Tables I-V (md + CSV) with the paper's numbers and one verdict per claim; returns the markdown files."""
    from common.reproduction import cell, order_verdict, write_table

    note = ("Ours: PSNR/SSIM over the whole image, mean per mask-ratio bin (the true mask's share of the image); "
            f"± is the sd over seeds{bin_counts(runs.get('alpha 0.03', []))}; 'all' includes the pairs above "
            "40 %.")  # fmt: skip
    written = []
    sweep = {d: f"d = {d:+d} px" for d in EXPANDS}
    rows = [r for d, key in sweep.items() for r in bin_rows(f"d = {d:+d} px", runs.get(key, []), PAPER_TABLE1[d])]
    written.append(write_table(
        out, "table1_mask_size", "Table I: the inpainter alone, true mask eroded (d < 0) or dilated (d > 0)",
        columns(), rows, info,
        {"d = 0 best, then PSNR falls as d grows (paper: 32.31 > 31.89 > ... > 30.70 dB at 0-10 %)":
            order_verdict({k: psnr_all(runs, k) for k in list(sweep.values())[1:]}, list(sweep.values())[1:]),
         "a 2 px erosion costs more than a 2 px dilation (paper: 26.75 vs 31.89 dB at 0-10 %)":
            order_verdict({k: psnr_all(runs, sweep[k]) for k in (2, -2)}, [2, -2])},
        [note, "d is in pixels of the evaluated 64x64 slices (about 4d px at the paper's 256x256)."],
    ))  # fmt: skip
    rows = []
    for masks in ("random", "object"):
        rows += bin_rows(f"{masks}-mask training, true mask", runs[f"table2_{masks}_hint"], PAPER_TABLE2[masks])
    for masks in ("random", "object"):
        rows += bin_rows(f"{masks}-mask training, segmenter's mask", runs[f"table2_{masks}_segmenter"], None)
    written.append(write_table(
        out, "table2_training_masks", "Table II: inpainters trained on random vs object masks", columns(), rows,
        info,
        {"object-mask training beats random-mask training (paper: +0.24 to +1.40 dB per bin)":
            order_verdict({k: psnr_all(runs, f"table2_{k}_hint") for k in ("object", "random")},
                          ["object", "random"])},
        [note, "The paper feeds the true mask (inpainter alone); the segmenter-mask rows are ours only."],
    ))  # fmt: skip
    rows = bin_rows("N = 0 (random-mask training)", runs["table2_random_hint"], PAPER_TABLE3[0])
    for n in finetune:
        rows += bin_rows(f"fine-tuned on N = {n} pairs", runs[f"table3_finetune_{n}"], None)
    rows += [
        {"setting": f"paper: fine-tuned on N = {k}k pairs", "metric": m,
         **{f"{b} paper": f"{PAPER_TABLE3[k][i][j]:.{2 if i == 0 else 3}f}" for j, b in enumerate(BINS)}}
        for k in list(PAPER_TABLE3)[1:] for i, m in enumerate(("PSNR", "SSIM"))
    ]  # fmt: skip
    largest = f"table3_finetune_{max(finetune)}"
    written.append(write_table(
        out, "table3_finetuning", "Table III: fine-tuning the random-mask inpainter on N object-mask pairs",
        columns(), rows, info,
        {f"fine-tuning improves on the random-mask inpainter (paper: in every bin); ours N = {max(finetune)}":
            order_verdict({"fine-tuned": psnr_all(runs, largest), "N = 0": psnr_all(runs, "table2_random_hint")},
                          ["fine-tuned", "N = 0"])},
        [note, f"Paper N is in thousands of COCO pairs; ours in {DATA[data][2]}, same epochs as pretraining "
               "(fewer pairs: fewer iterations)."],
    ))  # fmt: skip
    rows = [
        {"alpha": f"{a:g}", "PSNR ours": cell(psnr_all(runs, f"alpha {a:g}"), 2),
         "PSNR paper": f"{PAPER_TABLE4[a][0]:.2f}",
         "SSIM ours": cell([r["all"]["ssim"] for r in runs[f"alpha {a:g}"]], 3),
         "SSIM paper": f"{PAPER_TABLE4[a][1]:.3f}"}
        for a in ALPHAS
    ]  # fmt: skip
    written.append(write_table(
        out, "table4_alpha", "Table IV: mask-expansion alpha (end to end), mean over all test images",
        list(rows[0]), rows, info,
        {f"alpha 0.03 beats alpha {a:g} (paper: 30.87 vs {PAPER_TABLE4[a][0]:.2f} dB)":
            order_verdict({k: psnr_all(runs, f"alpha {k:g}") for k in (0.03, a)}, [0.03, a])
         for a in ALPHAS if a != 0.03},
        ["Ours: mean over all test pairs (the paper: mean of all mask ratios)."],
    ))  # fmt: skip
    lpips_present = "lpips" in runs["alpha 0.03"][0]["mean"]
    metrics = ("psnr", "ssim", "lpips") if lpips_present else ("psnr", "ssim")
    rows = bin_rows("ours w/o MEL (end to end, expansion weight 0)", runs["no MEL"], PAPER_TABLE5["no MEL"], metrics)
    rows += bin_rows("ours (end to end, MEL, alpha 0.03)", runs["alpha 0.03"], PAPER_TABLE5["MEL"], metrics)
    rows += bin_rows("independent segmenter + inpainter", runs["table2_object_segmenter"], None, metrics)
    if not lpips_present:
        rows.append({"setting": "LPIPS", "metric": "not computed (weights absent)"})
    written.append(write_table(
        out, "table5_ablation", "Table V: ours with and without the mask expansion loss (MEL)", columns(), rows,
        info,
        {"MEL improves PSNR (paper: +1.47 / +0.48 / +0.96 / +0.37 dB per bin)":
            order_verdict({"MEL": psnr_all(runs, "alpha 0.03"), "no MEL": psnr_all(runs, "no MEL")},
                          ["MEL", "no MEL"]),
         "end-to-end training beats the independent segmenter + inpainter":
            order_verdict({"end to end": psnr_all(runs, "alpha 0.03"),
                           "independent": psnr_all(runs, "table2_object_segmenter")},
                          ["end to end", "independent"]),
         "beats the twelve SOTA methods (G&L ... LDM)": "not measurable here (their code and weights are not "
            "in this repository)",
         "FID": "not measurable here (no Inception weights)"},
        [note, "Paper: Table V, COCO persons at 256x256; FID not quoted (not computed here)."],
    ))  # fmt: skip
    if runs.get("mask diagnostics"):
        written.append(mask_diagnostics_table(runs["mask diagnostics"], info, out))
    return written


def mask_diagnostics_table(per_seed: Sequence[Mapping], info: Mapping, out: Path) -> Path:
    """Table V's models by what their chosen mask does to the object (``scripts.evaluate.mask_diagnostics`` of
    every seed; mean ± sd over seeds), beside the PSNR of leaving the object in."""
    from common.reproduction import cell, order_verdict, write_table

    names = {"psnr": ("PSNR", 2), "recall": ("object recall", 2), "precision": ("precision", 2),
             "area": ("chosen / true area", 2), "missed": ("share missing > half the object", 2)}  # fmt: skip
    labels = list(per_seed[0]["rows"])
    rows = [
        {"model": label, **{title: cell([s["rows"][label][k] for s in per_seed], digits)
                            if k in per_seed[0]["rows"][label] else "–" for k, (title, digits) in names.items()}}
        for label in labels
    ]  # fmt: skip
    psnr = {label: [s["rows"][label]["psnr"] for s in per_seed] for label in labels}
    return write_table(
        out, "table5_mask_diagnostics", "Table V's models: what the chosen mask does to the object (ours only)",
        ["model", *[title for title, _ in names.values()]], rows, info,
        {f"{label} scores above leaving the object in": order_verdict(psnr, [label, "object left in"])
         for label in labels if label != "object left in"},
        [f"Every test pair ({per_seed[0]['pairs']}), hint = the true mask; recall = share of the object's pixels in "
         "the chosen mask. A model scoring near 'object left in' with a low recall mostly keeps the object."],
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch per stage, 16 pairs, one seed (minutes)")
    parser.add_argument("--data", choices=sorted(DATA), default="ixi",
                        help="ixi (default): tumours pasted into real IXI T1 slices; sample: the synthetic cohort")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="the tables; default docs/results (docs/results/quick with --quick)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="runs, checkpoints, logs; default eval/reproduce_tables[_quick] (git-ignored)")
    args = parser.parse_args(argv)  # fmt: skip
    sys.path.insert(0, str(REPO))  # common/, when run as a file from a clone
    from common.reproduction import provenance

    if args.data == "ixi":
        from common.data.ixi import IXI_DIR_ENV, default_ixi_dir

        if not (default_ixi_dir() / "t1").is_dir():
            raise SystemExit(f"--data ixi needs the IXI T1 set at {default_ixi_dir()} (set {IXI_DIR_ENV}), "
                             "or run --data sample")  # fmt: skip
    scale, seeds, finetune = SCALES["quick" if args.quick else "full"]
    seeds = args.seeds or seeds
    out = args.output_dir or BUNDLE / "docs" / "results" / ("quick" if args.quick else "")
    work = (args.work_dir or BUNDLE / "eval" / ("reproduce_tables_quick" if args.quick else "reproduce_tables"))
    start = time.time()
    seed_dirs = [work.resolve() / f"seed{seed}" for seed in seeds]
    for seed, folder in zip(seeds, seed_dirs):
        run_stages(folder, scale, seed, finetune, args.data)
    runs = read_runs(seed_dirs, finetune)
    scale_text = (f"{'quick' if args.quick else 'full'} (quick.json networks at 64x64, style loss on the image "
                  "discriminator's features; " + ", ".join(f"{k} {v}" for k, v in scale.items())
                  + f"; fine-tuning N = {list(finetune)})")  # fmt: skip
    span_s, stage_s = stage_times(seed_dirs)
    info = provenance(REPO, scale_text, DATA[args.data][1], seeds, max(span_s, time.time() - start))
    info["wall time"] += " (while any stage ran, all seeds)"
    info["run time"] = f"{stage_s / 60:.1f} min (sum of every stage's wall time, all seeds)"
    written = build_tables(runs, info, out, finetune, args.data)
    for panel in ("table2_panel.png", "table4_panel.png"):
        (out / panel).write_bytes((seed_dirs[0] / panel).read_bytes())
    for path in written:
        print(path.read_text(encoding="utf-8"))
    return written


if __name__ == "__main__":
    main()
