"""Abnormal-white-matter map of the blind 3-D bundle on real anatomy (issue #18): does it find lesions?

On the 4 IXI validation subjects registered to the bundle's MNI grid (``common.data.ixi``; only these 4 are
registered, ~40 s each, cached), synthetic MS-like lesions are painted into the T1 with the cohort's own MS-lesion
generator (``common.data.cohort._paint_ms_lesions``, the one behind ``synthetic_lesion_masks`` and the lesion
bank): T1-hypointense (45-75 % of the local WM intensity), ovoid blobs that merge into confluent lesions,
centres in periventricular WM (within 8 mm of the ventricles) and in deep WM of the subject's own (DLMUSE) WM,
soft edges; the darkening field is then blurred (sigma 0.85 mm, the 2 mm acquisition's partial volume). Seeded:
one ``SeedSequence([seed, subject index])`` stream per subject.

Each subject runs twice through the bundle's blind route, in this process: ``configs/inference.json`` parsed with
``monai.bundle.ConfigParser`` (its ``preprocessing``: NLM denoising, N4, standardisation, modality check; with
``preprocessing_options#register`` false because the volumes are already on the MNI grid), its ``network`` with
the weights loaded by its own ``StateDictLoader`` handler (``models/model.pt``, the shipped demo weights), its
``inferer``, and the first two transforms of its ``postprocessing`` (``AbnormalWMd``: ``|input - inpainted| >
abnormal_threshold`` inside the MNI WM prior > 0.5): once with lesions, once without (same subject).

Methods, all inside the bundle's WM (the MNI152 2009a WM prior > 0.5 on the MNI grid):

- ``blind map``: the bundle's map. Default: the config's ``abnormal_threshold``; best: the threshold on
  ``|input - inpainted|`` that maximises Dice per subject (an oracle: it sees the truth).
- ``T1 < t (tuned)``: hypointensity of the preprocessed input, best ``t`` per subject (oracle).
- ``T1 < WM mean - 2 sd``: no tuning (mean and sd of the subject's WM voxels).
- ``WM prior``: the prior probability alone: > 0.5 (the whole WM the map is restricted to) and best level
  (oracle).

Scores: voxel Dice; lesion-wise detection rate (a lesion = a 26-connected component of the truth of at least
10 voxels = 0.01 mL, smaller ones being fragments of the soft edges; detected when >= 10 % of its voxels are in
the map); false-positive volume (cm^3, 1 voxel = 1 mm^3) of the same method and
threshold (tuned thresholds: the one tuned on the lesioned volume) on the same subject without lesions.

Run::

    python benchmarks/abnormal_wm_detection.py --data ../shared/data/ixi_t1_2mm [--quick] [--seed 0]
        [--overlay configs/inference_ixi.json] [--checkpoint PATH] [--set ID=JSON ...] [--out docs/results]

``--overlay`` merges bundle configs after ``inference.json`` (as ``monai.bundle run --config_file "[...]"``
does), e.g. ``inference_ixi.json`` for the IXI-trained weights; ``--set`` overrides an id of ``inference.json`` before parsing (JSON values), e.g. ``--set residual=true
abnormal_threshold=0.3`` to score weights of another architecture or threshold before they are shipped.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUNDLE = REPO / "bundles" / "blind_lesion_inpainting_3d"
#: (periventricular load class, deep-WM load class) per validation subject (classes of the cohort generator:
#: small 1-4 mL, medium 5-12 mL, large 15-30 mL); totals 2-42 mL
LESION_PLANS = (("small", "small"), ("medium", "small"), ("large", "medium"), ("medium", "medium"))
DETECTED_FRACTION = 0.10
#: truth components smaller than this (voxels = mm^3) are fragments of the generator's soft edges, not lesions:
#: left out of the detection rate (still in the Dice)
MIN_LESION_VOXELS = 10
PERIVENTRICULAR_MM = 8.0
PARTIAL_VOLUME_SIGMA = 0.85
METHODS = ("blind map", "T1 < t (tuned)", "T1 < WM mean - 2 sd", "WM prior")


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return float(2 * np.count_nonzero(pred & truth) / total) if total else float("nan")


def detection_rate(pred: np.ndarray, components: np.ndarray, count: int) -> float:
    """Share of truth components (labels 1..count) of at least MIN_LESION_VOXELS voxels with >=
    DETECTED_FRACTION of their voxels in ``pred``."""
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    hits = np.bincount(components[pred].ravel(), minlength=count + 1)[1:]
    lesions = sizes >= MIN_LESION_VOXELS
    if not lesions.any():
        return float("nan")
    return float(np.mean(hits[lesions] >= DETECTED_FRACTION * sizes[lesions]))


def best_threshold(score: np.ndarray, truth: np.ndarray, region: np.ndarray, thresholds) -> tuple[float, float]:
    """(best Dice, its threshold) of ``score > t`` inside ``region`` over ``thresholds``."""
    values, labels = score[region], truth[region]
    n_truth = int(labels.sum())
    best = (-1.0, float("nan"))
    for t in thresholds:
        pred = values > t
        total = int(pred.sum()) + n_truth
        d = 2 * np.count_nonzero(pred & labels) / total if total else 0.0
        if d > best[0]:
            best = (float(d), float(t))
    return best


def ventricles(csf: np.ndarray, brain: np.ndarray, depth_mm: float = 12.0) -> np.ndarray:
    """CSF deeper than ``depth_mm`` inside the brain (the cortical CSF lies at the surface): the ventricles."""
    return csf & (ndimage.distance_transform_edt(brain | csf) > depth_mm)


def paint_lesions(t1, wm, csf, brain, rng, plan: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """MS-like lesions in ``t1`` (MNI grid, scanner units) with the cohort generator: the first load class of
    ``plan`` centred in periventricular WM, the second in deep WM, both restricted to the subject's WM.
    Returns (lesioned T1, truth mask, info)."""
    from common.data.cohort import CohortParameters, _paint_ms_lesions

    params = CohortParameters()
    wm_soft = ndimage.gaussian_filter(wm.astype(np.float32), 1.5) * wm  # > 0.9: deep WM, 0 outside the WM
    near = ndimage.distance_transform_edt(~ventricles(csf, brain)) <= PERIVENTRICULAR_MM
    periventricular = np.where(wm & near, 1.0, np.where(wm, 0.6, 0.0)).astype(np.float32)
    ones = np.ones(t1.shape, np.float32)
    factor, truth, info = ones, np.zeros(t1.shape, bool), {"periventricular": plan[0], "deep": plan[1]}
    for where, wm_map, load in (("pv", periventricular, plan[0]), ("deep", wm_soft, plan[1])):
        if not np.any(wm_map > 0.9):
            raise ValueError(f"no {where} WM to place lesions in")
        part, mask, part_info = _paint_ms_lesions(ones, wm_map, brain, rng, params, load)
        factor, truth = factor * part, truth | mask
        info[f"{where}_ml"] = part_info["volume_ml"]
    factor = ndimage.gaussian_filter(factor, PARTIAL_VOLUME_SIGMA)
    components, count = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    sizes = sizes[sizes >= MIN_LESION_VOXELS] / 1000.0
    info.update(
        load_ml=float(truth.sum()) / 1000.0,
        lesions=int(sizes.size),
        lesion_ml_min=float(sizes.min()),
        lesion_ml_max=float(sizes.max()),
    )
    return (t1 * factor).astype(np.float32), truth, info


class BlindRoute:
    """The bundle's blind inference route (``configs/inference.json``) in this process, stopped before the
    map goes back to native space: returns the standardised input, the inpainted volume and the map."""

    def __init__(
        self,
        checkpoint: Path | None,
        work_dir: Path,
        overrides: dict | None = None,
        overlays: tuple[str | Path, ...] = (),
    ):
        from monai.bundle import ConfigParser
        from monai.transforms import Compose

        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / "inference.json"), *(str(BUNDLE / o) for o in overlays)])
        parser.update({"bundle_root": str(BUNDLE), "output_dir": str(work_dir)})
        if checkpoint is not None:
            parser["checkpoint"] = str(checkpoint)
        for key, value in (overrides or {}).items():
            if key not in parser:
                raise KeyError(f"--set {key}: inference.json has no id {key!r}")
            parser[key] = value
        parser["device"] = "$torch.device('cpu')"
        parser["preprocessing_options#register"] = False  # the volumes are on the MNI grid already
        self.checkpoint = parser.get_parsed_content("checkpoint")
        self.threshold = float(parser.get_parsed_content("abnormal_threshold"))
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network")
        parser.get_parsed_content("handlers")[0]()  # its StateDictLoader: the weights into the network
        self.network.eval()
        self.inferer = parser.get_parsed_content("inferer")
        self.to_map = Compose(parser.get_parsed_content("postprocessing").transforms[:2])  # copy + AbnormalWMd
        self.wm = parser.get_parsed_content("scripts").abnormal_wm.mni_white_matter()

    @torch.no_grad()
    def __call__(self, path: Path) -> dict[str, np.ndarray]:
        d = self.preprocessing({"image": str(path)})
        d["pred"] = self.inferer(d["image"][None], self.network)[0]
        d = self.to_map(d)
        image, inpainted = d["image"][0].numpy(), d["inpainted"][0].numpy()
        return {"image": image, "inpainted": inpainted, "map": d["pred"][0].numpy() > 0.5}


def wm_prior() -> np.ndarray:
    """nilearn's MNI152 2009a WM probability on the MNI grid (what the bundle thresholds at 0.5)."""
    from nilearn import datasets

    from common.transforms.preprocessing import resample_to_mni

    wm = datasets.load_mni152_wm_template(resolution=1)
    return resample_to_mni(np.asarray(wm.get_fdata(), np.float32), np.asarray(wm.affine))


def validation_subjects(data: str | None, limit: int | None = None) -> list[dict]:
    """The IXI validation subjects on the MNI grid, registering only them (the full ``load_ixi_datalist('mni')``
    would register the 30 training subjects too)."""
    from common.data.ixi import _register_subject, build_ixi_data

    build = build_ixi_data(data)
    entries = json.loads((build / "datalist_3d.json").read_text(encoding="utf-8"))["validation"][:limit]
    out = []
    for entry in entries:
        mni = _register_subject(str(build), entry)
        out.append({k: (v if k == "subject" else str(build / v)) for k, v in mni.items()})
    return out


def score_subject(route: BlindRoute, entry: dict, prior: np.ndarray, rng, plan, work_dir: Path) -> tuple[dict, dict]:
    from common.data import MNI_AFFINE

    load = {k: np.asarray(nib.load(entry[k]).dataobj) for k in ("image", "wm", "csf", "brain")}
    t1 = load["image"].astype(np.float32)
    lesioned, truth, info = paint_lesions(t1, load["wm"] > 0, load["csf"] > 0, load["brain"] > 0, rng, plan)
    paths = {}
    for name, volume in (("lesioned", lesioned), ("clean", t1)):
        paths[name] = work_dir / f"{entry['subject']}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(volume, MNI_AFFINE), paths[name])
    start = time.perf_counter()
    with_lesions, without = route(paths["lesioned"]), route(paths["clean"])
    seconds = time.perf_counter() - start
    wm = route.wm
    info["truth_ml_in_prior_wm"] = float((truth & wm).sum()) / 1000.0
    components, count = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    residual = {k: np.abs(v["image"] - v["inpainted"]) * wm for k, v in (("on", with_lesions), ("off", without))}
    image = {"on": with_lesions["image"], "off": without["image"]}
    # the bundle's own map must be its threshold on the same residual
    assert np.array_equal(with_lesions["map"], (residual["on"] > route.threshold) & wm)

    def row(pred_on, pred_off, threshold):
        return {
            "dice": dice(pred_on, truth),
            "detected": detection_rate(pred_on, components, count),
            "fp_cm3": float(pred_off.sum()) / 1000.0,
            "threshold": threshold,
        }

    rows = {}
    t = route.threshold
    rows[("blind map", "default")] = row(with_lesions["map"], without["map"], t)
    grid = np.unique(np.round(np.quantile(residual["on"][wm], np.linspace(0.5, 0.9999, 300)), 5))
    _, t_best = best_threshold(residual["on"], truth, wm, grid)
    rows[("blind map", "best")] = row(residual["on"] > t_best, residual["off"] > t_best, t_best)
    values = image["on"][wm]
    levels = np.quantile(values, np.linspace(0.001, 0.5, 300))
    _, t_best = best_threshold(-image["on"], truth, wm, -levels)
    rows[("T1 < t (tuned)", "best")] = row(
        (image["on"] < -t_best) & wm, (image["off"] < -t_best) & wm, float(-t_best)
    )
    cut_on = float(values.mean() - 2 * values.std())
    off_values = image["off"][wm]
    cut_off = float(off_values.mean() - 2 * off_values.std())
    rows[("T1 < WM mean - 2 sd", "default")] = row((image["on"] < cut_on) & wm, (image["off"] < cut_off) & wm, cut_on)
    rows[("WM prior", "default")] = row(wm.copy(), wm.copy(), 0.5)
    _, t_best = best_threshold(prior, truth, wm, np.linspace(0.5, 0.995, 100))
    rows[("WM prior", "best")] = row((prior > t_best) & wm, (prior > t_best) & wm, t_best)
    inside = truth & wm
    info["map_mean_in_lesions_with"] = float(residual["on"][inside].mean())
    info["map_mean_in_lesions_without"] = float(residual["off"][inside].mean())
    info["route_seconds"] = seconds
    figure = {
        "lesioned": image["on"], "truth": truth, "residual": residual["on"], "residual_off": residual["off"],
        "map": with_lesions["map"], "t1_rule": (image["on"] < cut_on) & wm, "threshold": route.threshold,
    }
    return {"rows": rows, "info": info}, figure


def _panel(path: Path, fig: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = int(np.argmax(fig["truth"].sum(axis=(0, 1))))
    view = lambda v: np.asarray(v)[:, :, z].T  # noqa: E731
    vmax = float(np.percentile(fig["lesioned"], 99.5))
    rmax = max(float(np.percentile(fig["residual"][fig["residual"] > 0], 99.5)), 2 * fig["threshold"])
    columns = [
        ("T1 with lesions", fig["lesioned"], "gray", vmax),
        ("truth", fig["truth"], "gray", 1),
        ("|input - inpainted| in WM", fig["residual"], "hot", rmax),
        ("same, without lesions", fig["residual_off"], "hot", rmax),
        (f"map (> {fig['threshold']:g})", fig["map"], "gray", 1),
        ("T1 < WM mean - 2 sd", fig["t1_rule"], "gray", 1),
    ]
    figure, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 3.3))
    for ax, (name, volume, cmap, top) in zip(axes, columns):
        ax.imshow(view(volume), cmap=cmap, origin="lower", vmin=0, vmax=top)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    figure.suptitle(f"{title}, axial z={z}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="the IXI folder (default: common.data.ixi's)")
    parser.add_argument("--quick", action="store_true", help="the first validation subject only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="blind weights (default: the config's models/model.pt)")
    parser.add_argument("--overlay", nargs="+", default=[], metavar="CONFIG",
                        help="bundle configs merged after inference.json, relative to the bundle")
    parser.add_argument("--set", nargs="+", default=[], metavar="ID=JSON", help="override inference.json ids")
    parser.add_argument("--out", default=str(REPO / "docs" / "results"))
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item}: need ID=JSON")
        overrides[key] = json.loads(value)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    subjects = validation_subjects(args.data, 1 if args.quick else None)
    prior = wm_prior()
    results, names = [], []
    with tempfile.TemporaryDirectory() as tmp:
        route = BlindRoute(Path(args.checkpoint) if args.checkpoint else None, Path(tmp), overrides, args.overlay)
        for index, entry in enumerate(subjects):
            rng = np.random.default_rng(np.random.SeedSequence([args.seed, index]))
            plan = LESION_PLANS[index % len(LESION_PLANS)]
            result, fig = score_subject(route, entry, prior, rng, plan, Path(tmp))
            results.append(result)
            names.append(entry["subject"])
            print(entry["subject"], json.dumps(result["info"]), flush=True)
            for (method, variant), r in result["rows"].items():
                print(f"  {method:22s} {variant:8s} dice {r['dice']:.4f} detected {r['detected']:.3f} "
                      f"fp {r['fp_cm3']:.2f} cm3 (t={r['threshold']:.4g})", flush=True)
            if index == 0:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                stem = "abnormal_wm_detection" + ("_quick" if args.quick else "")
                _panel(out / f"{stem}.png", fig, f"{entry['subject']} (seed {args.seed})")
    wall = time.perf_counter() - start
    keys = list(results[0]["rows"])
    csv_rows = []
    for name, result in zip(names, results):
        for (method, variant), r in result["rows"].items():
            csv_rows.append({"subject": name, "method": method, "variant": variant, **r,
                             "load_ml": result["info"]["load_ml"], "lesions": result["info"]["lesions"]})
    mean = {key: {m: float(np.nanmean([res["rows"][key][m] for res in results]))
                  for m in ("dice", "detected", "fp_cm3")} for key in keys}
    for key, m in mean.items():
        csv_rows.append({"subject": "mean", "method": key[0], "variant": key[1], **m, "threshold": "",
                         "load_ml": float(np.mean([r["info"]["load_ml"] for r in results])), "lesions": ""})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/abnormal_wm_detection.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    stem = "abnormal_wm_detection" + ("_quick" if args.quick else "")
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    checkpoint = Path(route.checkpoint).resolve()
    lines = [
        "# Abnormal-WM map on real subjects with synthetic MS-like lesions",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit "
        f"{commit.stdout.strip()}{' (+ uncommitted changes)' if dirty else ''}",
        f"- command: `{command.strip()}`; wall time {wall / 60:.1f} min (2 shared CPU cores)",
        f"- data: IXI validation subjects ({', '.join(names)}), affinely registered to the MNI 1 mm grid; weights "
        f"`{checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint}`; seed {args.seed} "
        "(one SeedSequence([seed, subject]) stream per subject)",
        f"- map: the bundle's inference.json route (NLM, N4, standardise; no registration: already MNI), "
        f"`|input - inpainted| > {route.threshold:g}` inside the MNI WM prior > 0.5; best: oracle threshold per "
        "subject. Detected: >= 10 % of a lesion's voxels in the map (lesion: 26-connected component of the truth, >= 0.01 mL; Dice counts all truth voxels). FP: the same "
        "method and threshold on the same subject without lesions (cm^3).",
        "",
        "| subject | load (mL) | lesions >= 0.01 mL (size range) | in prior WM (mL) | mean map in lesions, with / without |",
        "|---|---|---|---|---|",
    ]
    for name, result in zip(names, results):
        i = result["info"]
        lines.append(
            f"| {name} | {i['load_ml']:.1f} ({i['periventricular']} pv + {i['deep']} deep) | {i['lesions']} "
            f"({i['lesion_ml_min']:.3f}-{i['lesion_ml_max']:.1f} mL) | {i['truth_ml_in_prior_wm']:.1f} | "
            f"{i['map_mean_in_lesions_with']:.4f} / {i['map_mean_in_lesions_without']:.4f} |"
        )
    lines += ["", "| method | variant | " + " | ".join(f"Dice {n[:6]}" for n in names) +
              " | Dice mean | detected mean | FP cm^3 mean |",
              "|---|---|" + "---|" * (len(names) + 3)]
    for key in keys:
        dices = " | ".join(_fmt(res["rows"][key]["dice"], 4) for res in results)
        m = mean[key]
        lines.append(f"| {key[0]} | {key[1]} | {dices} | {_fmt(m['dice'], 4)} | {_fmt(m['detected'], 2)} | "
                     f"{_fmt(m['fp_cm3'], 1)} |")
    lines += ["", f"![panel]({stem}.png)", ""]
    (out / f"{stem}.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
