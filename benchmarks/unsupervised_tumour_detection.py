"""Unsupervised tumour detection on real anatomy (issue #18): autoinpainting against intensity thresholding
inside the same object of interest and against the trivial prior, on the IXI validation subjects with
synthetic tumours (:func:`common.data.ixi_tumours.build_ixi_tumour_data`: 2 tumours a subject, one hyper- and
one hypointense, 5-60 mm, every brain slice written).

Run::

    python benchmarks/unsupervised_tumour_detection.py --data ../shared/data/ixi_t1_2mm [--quick] [--seed 0]
        [--checkpoint PATH] [--search-override k=v ...] [--out docs/results]

Methods, all restricted to the OOI (the brain mask) and scored per subject, then averaged over subjects:

- ``autoinpainting``: the bundle's own evaluation route in this process: ``train.json`` + ``quick.json`` +
  ``evaluate.json`` parsed with ``monai.bundle.ConfigParser``, the weights (default ``models/model_ixi.pt``)
  loaded into its ``network`` as its ``StateDictLoader`` does, and its ``segmentation_report``
  (``scripts.evaluation.evaluate_segmentation``) run on **every** brain slice of the subjects (its
  ``segmentation_datalist`` replaced by all slices, tumour or not, so that volumes are whole); the residual
  volumes come from its ``segment_subjects``. The search radii of ``evaluate.json`` are pixels of the sample
  data's 0.85 mm slices, or in mm (``radius_mm``, ...: the route converts them at the slices' spacing); while
  they are in pixels, the 2 mm equivalents :data:`SEARCH_2MM` are passed as overrides. The search used is printed.
  Dice at the config's ``threshold`` and best-threshold Dice over its ``best_threshold_range`` (per subject).
- ``threshold (tuned)``: ``image > t`` and ``image < t`` on the scanner intensities of the tumour T1, ``t`` over
  the 1st..99th percentiles of the subject's OOI intensities; per subject the best ``t`` and direction (an
  oracle: it sees the truth, as best-threshold Dice does).
- ``threshold two-sided (tuned)``: ``|image - median| > t`` (median of the OOI), ``t`` over the percentiles of
  that distance in the OOI, the best per subject: catches hyper- and hypointense tumours at once.
- ``autoinpainting + per-scan adaptation``: the same route with evaluate.json's ``adaptation#enabled`` (a copy of
  the network fine-tuned on each subject's own slices before its search; its time is in the s / slice).
- ``threshold (mean +/- 2 sd)``: no tuning: ``|image - mean| > 2 sd`` with the OOI's mean and sd per subject.
- ``trivial prior``: the whole OOI as the prediction (what "the hole is the segmentation" gives at most).

Per slice: Dice of each tumour slice, averaged over the subject's tumour slices (best-threshold variants: the
one threshold per subject that maximises that mean). Per volume: all brain slices of the subject stacked.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUNDLE = REPO / "bundles" / "autoinpainting_tumor_segmentation"
DEFAULT_CHECKPOINT = BUNDLE / "models" / "model_ixi.pt"
#: evaluate.json's search at 0.85 mm pixels (radius 27, step 15, min radius 6, widths 7-15) scaled to 2 mm
SEARCH_2MM = {"radius": 13, "step": 7, "min_tumour_radius": 3, "dilation_widths": [3, 5, 7]}
PERCENTILES = np.arange(1, 100)
QUICK_SLICES = 4  # --quick: the first subject, this many tumour slices around its largest + 2 without tumour
ADAPTED = "autoinpainting + per-scan adaptation"
METHODS = (
    "autoinpainting",
    ADAPTED,
    "threshold (tuned)",
    "threshold two-sided (tuned)",
    "threshold (mean +/- 2 sd)",
    "trivial prior (OOI)",
)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return float(2 * (pred & truth).sum() / total) if total else float("nan")


def _parse_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def select_slices(entries: list[dict], quick: bool) -> list[dict]:
    if not quick:
        return entries
    subject = sorted({e["subject"] for e in entries})[0]
    mine = sorted((e for e in entries if e["subject"] == subject), key=lambda e: e["slice_z"])
    tumour = [e for e in mine if e["tumour_pixels"] > 0]
    k = int(np.argmax([e["tumour_pixels"] for e in tumour]))
    start = max(0, min(k - QUICK_SLICES // 2, len(tumour) - QUICK_SLICES))
    healthy = [e for e in mine if e["tumour_pixels"] == 0][:2]
    return sorted(tumour[start : start + QUICK_SLICES] + healthy, key=lambda e: e["slice_z"])


def run_autoinpainting(entries: list[dict], checkpoint: Path, overrides: dict, work_dir: Path, adapt: bool = False):
    """The bundle's evaluation route on ``entries`` (``adapt``: with its per-scan adaptation); returns ({subject: residual (H, W, Z)}, the route's
    summary, the search used, seconds)."""
    from monai.bundle import ConfigParser

    from common.engines import StateDictLoader

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / c) for c in ("train.json", "quick.json", "evaluate.json")])
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(work_dir), "checkpoint": str(checkpoint)})
    parser["device"] = "$torch.device('cpu')"
    parser["adaptation#enabled"] = adapt
    scripts = parser.get_parsed_content("scripts")
    in_mm = scripts.autoinpainting.is_in_mm(parser["search"])
    # a search still in pixels of the sample data's 0.85 mm: the 2 mm equivalents first (then user overrides)
    for key, value in (overrides if in_mm else SEARCH_2MM | overrides).items():
        parser[f"search#{key}"] = value
    # every brain slice, not only tumour slices (``tumour_slices``), so that each subject's volume is whole
    keys = parser["segmentation_keys"]
    parser["segmentation_datalist"] = [
        {"subject": e["subject"], "slice_z": e["slice_z"], **{k: e[v] for k, v in keys.items()}}
        for e in entries
    ]
    network = parser.get_parsed_content("network")
    StateDictLoader(str(checkpoint), network, map_location="cpu").load()
    captured = {}
    original = scripts.evaluation.segment_subjects

    def capture(predict, subjects, *args, **kwargs):
        result = original(predict, subjects, *args, **kwargs)
        captured["result"], captured["subjects"] = result, subjects
        return result

    scripts.evaluation.segment_subjects = capture
    try:
        start = time.perf_counter()
        summary = parser.get_parsed_content("segmentation_report")
        seconds = time.perf_counter() - start
    finally:
        scripts.evaluation.segment_subjects = original
    residuals = {s: o["residual"][0].numpy() for s, o in captured["result"]["outputs"].items()}
    images = {
        s: torch.stack([c["image"][0] for c in cases], -1).numpy()
        for s, cases in captured["subjects"].items()
    }
    search = dict(parser.get_parsed_content("search"))
    if in_mm:  # what the route ran: evaluate.json's mm search in pixels of the slices' spacing
        spacing = float(nib.affines.voxel_sizes(nib.load(entries[0]["image_tumour"]).affine)[:2].mean())
        pixels = scripts.autoinpainting.search_in_pixels(spacing, **search)
        search = {"config (mm)": search, f"pixels at {spacing:g} mm": pixels}
    settings = {
        "threshold": float(parser.get_parsed_content("threshold")),
        "range": [float(v) for v in parser.get_parsed_content("best_threshold_range")],
    }
    return residuals, images, summary, search, settings, seconds


def score_maps(maps: list[np.ndarray], truth: np.ndarray, tumour_z: np.ndarray) -> tuple[float, float]:
    """(mean Dice over tumour slices, volume Dice) of binary maps (H, W, Z); with several candidate maps, the
    best of each (one candidate per subject)."""
    per_slice = max(np.mean([dice(m[..., z], truth[..., z]) for z in tumour_z]) for m in maps)
    per_volume = max(dice(m, truth) for m in maps)
    return float(per_slice), float(per_volume)


def evaluate_subject(image, truth, ooi, residuals: dict, settings) -> dict[str, dict]:
    """Rows of every method on one subject; ``residuals``: {method: residual (H, W, Z)} of the bundle's runs."""
    tumour_z = np.flatnonzero(truth.any(axis=(0, 1)))
    rows: dict[str, dict] = {}
    for method, residual in residuals.items():
        thresholds = np.arange(*settings["range"])
        default = score_maps([(residual > settings["threshold"]) & ooi], truth, tumour_z)
        best = score_maps([(residual > t) & ooi for t in thresholds], truth, tumour_z)
        rows[method] = {"default": default, "best": best}
    values = image[ooi]
    levels = np.percentile(values, PERCENTILES)
    maps = [(image > t) & ooi for t in levels] + [(image < t) & ooi for t in levels]
    best = score_maps(maps, truth, tumour_z)
    above = score_maps(maps[: len(levels)], truth, tumour_z)
    below = score_maps(maps[len(levels) :], truth, tumour_z)
    rows["threshold (tuned)"] = {"best": best, "direction": ">" if above[1] >= below[1] else "<"}
    distance = np.abs(image - np.median(values))
    rows["threshold two-sided (tuned)"] = {
        "best": score_maps([(distance > t) & ooi for t in np.percentile(distance[ooi], PERCENTILES)], truth, tumour_z)
    }
    mean, sd = float(values.mean()), float(values.std())
    rows["threshold (mean +/- 2 sd)"] = {
        "default": score_maps([(np.abs(image - mean) > 2 * sd) & ooi], truth, tumour_z)
    }
    rows["trivial prior (OOI)"] = {"default": score_maps([ooi.copy()], truth, tumour_z)}
    return rows


def _stack(entries: list[dict], key: str, folder: Path) -> np.ndarray:
    return np.stack([np.asarray(nib.load(folder / e[key]).dataobj, dtype=np.float32) for e in entries], -1)


def _panel(path: Path, image, truth, residual, threshold_map, title: str) -> None:
    from common.figures import save_panel_row

    panels = [
        ("slice (bundle's scaling)", image, "gray", (0, 1)),
        ("truth", truth, "gray", (0, 1)),
        ("autoinpainting residual", residual, "magma", (0, 0.5)),
        ("best intensity threshold", threshold_map, "gray", (0, 1)),
    ]
    save_panel_row(path, panels, title, width=2.5, height=3.6, fontsize=9)


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ixi_t1_2mm"))
    parser.add_argument("--quick", action="store_true", help="1 subject, a few slices (a test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic tumours")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--search-override", nargs="*", default=[], metavar="K=V",
                        help="evaluate.json search#K (Python literal); a search in pixels gets SEARCH_2MM first")  # fmt: skip
    parser.add_argument("--no-autoinpainting", action="store_true", help="the baselines only")
    parser.add_argument("--adaptation", choices=("off", "on", "both"), default="both",
                        help="the bundle's route without / with its per-scan adaptation (evaluate.json adaptation)")
    parser.add_argument("--out", default=str(REPO / "docs" / "results"), help="where the md / csv / png go")
    parser.add_argument(
        "--work-dir", default=None, help="the bundle route's output_dir (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    os.environ["MEDINPAINT_IXI_DIR"] = str(Path(args.data).resolve())

    from monai.data import load_decathlon_datalist

    from common.data.ixi_tumours import build_ixi_tumour_data

    folder = build_ixi_tumour_data(args.seed, args.data)
    entries = select_slices(
        load_decathlon_datalist(folder / "datalist_2d.json", False, "validation"), args.quick
    )
    entries = [dict(e, subject=Path(str(e["subject"])).name) for e in entries]
    relative = json.loads((folder / "datalist_2d.json").read_text("utf-8"))["validation"]
    by_key = {(e["subject"], e["slice_z"]): e for e in relative}
    overrides = dict(_parse_override(o) for o in args.search_override)
    print(
        f"data: {folder} ({len(entries)} slices); search overrides: {overrides or 'none'}",
        flush=True,
    )

    runs: dict[str, dict] = {}  # method -> {subject: residual}
    images, settings, search = {}, {"threshold": 0.1, "range": [0, 0.8, 0.02]}, None
    seconds: dict[str, float] = {}
    if not args.no_autoinpainting:
        work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="unsup_tumour_"))
        variants = {"off": [False], "on": [True], "both": [False, True]}[args.adaptation]
        for adapt in variants:
            method = ADAPTED if adapt else "autoinpainting"
            runs[method], images, _, search, settings, seconds[method] = run_autoinpainting(
                entries, Path(args.checkpoint), overrides, work / ("adapted" if adapt else "plain"), adapt
            )
            print(f"{method}: {seconds[method] / len(entries):.2f} s/slice; search {search}", flush=True)

    subjects = defaultdict(list)
    for e in entries:
        subjects[e["subject"]].append(by_key[(e["subject"], e["slice_z"])])
    results, panel_data = {}, None
    for subject, rows in sorted(subjects.items()):
        rows = sorted(rows, key=lambda e: e["slice_z"])
        image = _stack(rows, "image_tumour", folder)
        truth = _stack(rows, "label_tumour", folder) > 0
        ooi = _stack(rows, "brain", folder) > 0
        residual = runs.get("autoinpainting", runs.get(ADAPTED, {})).get(subject)
        residuals = {method: by_subject[subject] for method, by_subject in runs.items()}
        results[subject] = evaluate_subject(image, truth, ooi, residuals, settings)
        if panel_data is None:
            k = int(np.argmax(truth.sum(axis=(0, 1))))
            values = image[ooi]
            levels = np.percentile(values, PERCENTILES)
            direction = results[subject]["threshold (tuned)"]["direction"]
            candidates = [(image > t) if direction == ">" else (image < t) for t in levels]
            best = max(candidates, key=lambda m: dice(m & ooi, truth))
            shown = images[subject][..., k] if subject in images else image[..., k] / max(image.max(), 1e-6)
            panel_data = (shown, truth[..., k], None if residual is None else residual[..., k],
                          (best & ooi)[..., k], f"{subject}, z={rows[k]['slice_z']}")  # fmt: skip

    def value(subject, method, variant, index):
        row = results[subject].get(method, {})
        return row[variant][index] if variant in row else float("nan")

    table_rows = []
    for method in METHODS:
        if method.startswith("autoinpainting") and method not in runs:
            continue
        cells = []
        for variant, index in (("default", 0), ("best", 0), ("default", 1), ("best", 1)):
            values = [value(s, method, variant, index) for s in results]
            cells.append(
                float(np.mean([v for v in values if not np.isnan(v)]))
                if not all(map(np.isnan, values))
                else float("nan")
            )
        per_slice = seconds[method] / len(entries) if method in seconds else None
        table_rows.append((method, cells, per_slice))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    command = "python benchmarks/unsupervised_tumour_detection.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "| method | slice Dice (default) | slice Dice (best t) | volume Dice (default) | volume Dice (best t) | s / slice |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, cells, per_slice in table_rows:
        lines.append(f"| {method} | " + " | ".join(_fmt(c) for c in cells) + f" | {_fmt(per_slice)} |")
    per_subject = ["| subject | " + " | ".join(f"{m} (volume, best / default)" for m, _, _ in table_rows) + " |",
                   "|---|" + "---:|" * len(table_rows)]  # fmt: skip
    for subject in results:
        cells = [
            f"{_fmt(value(subject, m, 'best', 1))} / {_fmt(value(subject, m, 'default', 1))}"
            for m, _, _ in table_rows
        ]
        per_subject.append(f"| {subject} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table + "\n\n" + "\n".join(per_subject), flush=True)
    wall = time.perf_counter() - wall

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "unsupervised_tumour_detection" + ("_quick" if args.quick else "")
    header = [
        f"# Unsupervised tumour detection on IXI validation subjects with synthetic tumours{' (quick)' if args.quick else ''}",
        "",
        f"- date: {stamp}; commit {commit}{' (working tree modified)' if dirty else ''}; wall time {wall / 60:.1f} min",
        f"- command: `{command}`",
        f"- data: {folder.name} ({len(results)} subjects, {len(entries)} brain slices, "
        f"{sum(e['tumour_pixels'] > 0 for e in entries)} with tumour); tumour seed {args.seed}; 2 tumours a subject "
        "(one hyper-, one hypointense, 5-60 mm, textured, partial-volume edge; `common.data.ixi_tumours`)",
        f"- autoinpainting: checkpoint `{Path(args.checkpoint).name}`; evaluate.json's route with search {search}; "
        f"threshold {settings['threshold']}, best t over {settings['range']} per subject",
        "- threshold (tuned): `image > t` or `image < t` on the scanner intensities, t over the 1..99th "
        "percentiles of the subject's brain, best t and direction per subject (sees the truth); two-sided: "
        "`|image - median| > t`, best t per subject; per-scan adaptation: evaluate.json `adaptation` "
        f"{'(on)' if ADAPTED in runs else '(not run)'}; mean +/- 2 sd: `|image - mean| > 2 sd` of the brain, no tuning; trivial prior: the whole brain mask",
        "- slice Dice: mean over the tumour slices of a subject (best t: one t per subject); volume Dice: all "
        "brain slices stacked; every number is the mean over subjects",
        "",
        table,
        "",
        "Per subject (volume Dice):",
        "",
        *per_subject,
        "",
    ]
    (out / f"{name}.md").write_text("\n".join(header), encoding="utf-8")
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "commit", "seed", "subject", "method", "slice_dice_default", "slice_dice_best",
                         "volume_dice_default", "volume_dice_best", "seconds_per_slice", "command"])  # fmt: skip
        for subject in results:
            for method, _, per_slice in table_rows:
                cells = [
                    value(subject, method, v, i)
                    for v, i in (("default", 0), ("best", 0), ("default", 1), ("best", 1))
                ]
                writer.writerow(
                    [stamp, commit, args.seed, subject, method, *map(_fmt, cells), _fmt(per_slice), command]
                )
    if panel_data is not None:
        shown, truth, residual, threshold_map, title = panel_data
        residual = np.zeros_like(truth, dtype=float) if residual is None else residual
        _panel(out / f"{name}.png", shown, truth, residual, threshold_map, title)
    print(f"wrote {out / name}.{{md,csv,png}}; wall {wall:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
