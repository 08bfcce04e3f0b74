"""Quick-scale Tables II and IV of Shimosato & Ukita in one command: runs, evaluations, tables and PNG panels.

Table II compares inpainters pretrained on object masks (copy-paste pairs, the paper's proposal) with
inpainters pretrained on free-form random masks (``--inpainter_masks random``), both evaluated on the fixed
test pairs with the true mask (the inpainter alone) and with the independently pretrained segmenter's mask.
Table IV trains the whole pipeline end to end for each mask-expansion ``alpha`` and evaluates it. Every
number is binned by mask ratio like Table V (``evaluate.json``). Each stage is a ``monai.bundle run`` of
this bundle's configs (so the tables are what the configs produce) and is skipped when its output exists,
so an interrupted run resumes::

    python bundles/mask_optimized_object_removal/scripts/paper_tables.py --output_dir /tmp/mor_tables

writes ``<output_dir>/tables.md`` (PSNR and SSIM, one row per setting, the paper's bins as columns),
``table2_panel.png``, ``table4_panel.png`` and the logs, checkpoints and ``binned_metrics.json`` of every
stage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1]
QUICK_SCALE = [
    "--pretrain_epochs", "10", "--max_epochs", "5", "--train_limit", "48",
    "--area_ratio_range", "[0.01,0.4]", "--min_inside", "0.5",
]  # fmt: skip
"""The scale of the README's Table V runs: train objects rescaled like the test objects (1-40 % of the image)."""

PAPER_NUMBERS = "not available offline (only the paper's Table V is quoted in issue 8)"
DIGITS = {"psnr": 2, "ssim": 3}


def _configs(*names: str) -> str:
    return "[" + ",".join(f"'{BUNDLE / 'configs' / n}'" for n in names) + "]"


TRAIN = _configs("train.json", "quick.json")
EVALUATE = _configs("train.json", "quick.json", "evaluate.json")


def _alpha_dir(alpha: float) -> str:
    return f"alpha_{alpha:g}"


def stages(out: Path, alphas: Sequence[float], scale: Sequence[str]) -> list[tuple[str, Path, list[str]]]:
    """(name, output file that marks it done, ``monai.bundle run`` arguments) of every stage, in order."""
    seg, inp_obj, inp_rnd = out / "segmenter.pt", out / "inpainter.pt", out / "random_masks" / "inpainter.pt"
    run = []
    run.append(
        ("pretrain segmenter", seg, ["pretrain_segmenter", "--config_file", TRAIN, "--output_dir", str(out)])
    )
    run.append(
        (
            "pretrain inpainters on object masks",
            inp_obj,
            ["pretrain_inpainters", "--config_file", TRAIN, "--output_dir", str(out)],
        )
    )
    run.append(
        (
            "pretrain inpainters on random masks",
            inp_rnd,
            [
                "pretrain_inpainters",
                "--config_file",
                TRAIN,
                "--output_dir",
                str(inp_rnd.parent),
                "--inpainter_masks",
                "random",
            ],
        )
    )
    run = [(n, f, a + list(scale)) for n, f, a in run]
    for alpha in alphas:
        folder = out / _alpha_dir(alpha)
        run.append(
            (
                f"end to end, alpha {alpha:g}",
                folder / "checkpoint_final.pt",  # model.pt (best epoch) exists from the first validation on
                [
                    "training",
                    "--config_file",
                    TRAIN,
                    "--output_dir",
                    str(folder),
                    "--ckpt_dir",
                    str(out),
                    "--alpha",
                    str(alpha),
                    *scale,
                ],
            )
        )
    for masks, inpainter in (("object", inp_obj), ("random", inp_rnd)):
        for source in ("hint", "segmenter"):
            folder = out / "eval" / f"table2_{masks}_{source}"
            run.append(
                (
                    f"evaluate {masks}-mask inpainters, mask from {source}",
                    folder / "binned_metrics.json",
                    [
                        "evaluating",
                        "--config_file",
                        EVALUATE,
                        "--output_dir",
                        str(folder),
                        "--eval_independent",
                        "true",
                        "--pretrained_segmenter",
                        str(seg),
                        "--pretrained_inpainter",
                        str(inpainter),
                        "--network_def#mask_source",
                        source,
                    ],
                )
            )
    for alpha in alphas:
        folder = out / "eval" / f"table4_{_alpha_dir(alpha)}"
        run.append(
            (
                f"evaluate alpha {alpha:g}",
                folder / "binned_metrics.json",
                [
                    "evaluating",
                    "--config_file",
                    EVALUATE,
                    "--output_dir",
                    str(folder),
                    "--ckpt_dir",
                    str(out / _alpha_dir(alpha)),
                ],
            )
        )
    pipelines = {m: out / "table2" / f"pipeline_{m}_masks.pt" for m in ("object", "random")}
    run.append(
        (
            "Table II panel",
            out / "table2_panel.png",
            [
                "panel",
                "--config_file",
                EVALUATE,
                "--output_dir",
                str(out / "table2"),
                "--network_def#mask_source",
                "hint",
                "--panel_checkpoints",
                repr({f"{m} masks": str(p) for m, p in pipelines.items()}),
            ],
        )
    )
    run.append(
        (
            "Table IV panel",
            out / "table4_panel.png",
            [
                "panel",
                "--config_file",
                EVALUATE,
                "--output_dir",
                str(out / "table4"),
                "--panel_checkpoints",
                repr({f"alpha {a:g}": str(out / _alpha_dir(a) / "model.pt") for a in alphas}),
            ],
        )
    )
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
    for masks, inpainter in (
        ("object", out / "inpainter.pt"),
        ("random", out / "random_masks" / "inpainter.pt"),
    ):
        torch.save(
            pipeline_state(out / "segmenter.pt", inpainter), out / "table2" / f"pipeline_{masks}_masks.pt"
        )


def tables(out: Path, alphas: Sequence[float], metrics: Sequence[str] = ("psnr", "ssim")) -> str:
    """Tables II and IV (markdown) from the evaluations' ``binned_metrics.json``, laid out by the evaluation's
    own ``comparison_table``."""
    from common.bundle_scripts import load_bundle_scripts

    comparison_table = load_bundle_scripts(BUNDLE).evaluate.comparison_table
    ev = out / "eval"
    table2 = {
        f"{m} masks, {'true mask' if s == 'hint' else 'independent segmenter mask'}":
            ev / f"table2_{m}_{s}" / "binned_metrics.json"
        for s in ("hint", "segmenter")
        for m in ("random", "object")
    }  # fmt: skip
    table4 = {f"alpha = {a:g}": ev / f"table4_{_alpha_dir(a)}" / "binned_metrics.json" for a in alphas}
    paper = {"paper": PAPER_NUMBERS}
    parts = ["## Table II: inpainters trained on random vs object masks (quick scale)"]
    parts += [comparison_table(table2, m, DIGITS[m], paper) for m in metrics]
    parts += ["## Table IV: mask expansion loss alpha (end to end, quick scale)"]
    parts += [comparison_table(table4, m, DIGITS[m], paper) for m in metrics]
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.03, 0.05, 0.07])
    parser.add_argument("--scale", nargs=argparse.REMAINDER, default=None,
                        help="bundle overrides replacing the quick scale (put last), e.g. --scale --pretrain_epochs 2")  # fmt: skip
    args = parser.parse_args(argv)
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    scale = QUICK_SCALE if args.scale is None else args.scale
    for name, done, run_args in stages(out, args.alphas, scale):
        if done.exists():
            print(f"[done] {name}: {done}", flush=True)
            continue
        if name == "Table II panel":
            write_table2_pipelines(out)
        log = out / "logs" / (name.replace(" ", "_").replace(",", "") + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "monai.bundle", "run", *run_args, "--bundle_root", str(BUNDLE)]
        start_cpu, start = os.times(), time.time()
        with log.open("w", encoding="utf-8") as stream:
            stream.write(" ".join(command) + "\n")
            stream.flush()
            result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False)
        cpu = os.times()
        cpu_s = cpu.children_user + cpu.children_system - start_cpu.children_user - start_cpu.children_system
        print(f"[{'ok' if result.returncode == 0 else 'FAILED'}] {name}: {cpu_s:.0f} s CPU, "
              f"{time.time() - start:.0f} s wall, log {log}", flush=True)  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"stage '{name}' failed (exit {result.returncode}); see {log}")
        if name.endswith("panel"):
            (done.parent / done.stem.split("_")[0] / "panel.png").replace(done)
    text = tables(out, args.alphas)
    (out / "tables.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
