"""Synthetic brain tumours painted into the real IXI validation subjects (issue #18): the test cases of the
unsupervised tumour-detection benchmark (``benchmarks/unsupervised_tumour_detection.py``).

Per validation subject of :func:`common.data.ixi.build_ixi_data` (skull-stripped T1, DLMUSE masks, RAS), two
tumours, one **hyperintense** and one **hypointense** relative to the healthy tissue around it:

- shape: a smooth irregular 3-D blob (:func:`common.transforms.masks.smooth_blob_mask`) whose volume-equivalent
  sphere diameter is drawn uniformly in ``DIAMETER_MM`` (5-60 mm), centred in grey or white matter at least
  ``min(radius, MAX_DEPTH_MM)`` inside the brain, kept inside the brain mask and within the axial slices of the
  2-D datalist (so every tumour voxel is in a written slice), the two tumours apart from each other;
- intensity (T1, relative to ``ref``, the median of the healthy brain within ``SHELL_MM`` around the blob):
  hyperintense body ``HYPER_RATIO`` x ref (haemorrhagic / melanotic / fat-containing lesions), hypointense body
  ``HYPO_RATIO`` x ref (most gliomas and metastases before contrast); large tumours (diameter >=
  ``NECROSIS_MIN_MM``) get, with probability ``NECROSIS_PROBABILITY``, a necrotic / cystic core
  (``CORE_RATIO`` x ref, CSF-like: the voxels deeper than half the blob's depth) inside a rim of the body
  level; texture: a smooth multiplicative field
  of relative amplitude ``TEXTURE`` plus white noise at the image's own noise level (estimated in WM);
- edge: the blob's indicator smoothed by a Gaussian of ``EDGE_SIGMA`` voxels mixes tumour and healthy tissue
  (partial volume); the label is the blob (indicator > 0.5), and nothing outside one voxel around it changes.

Written (a cached folder beside the IXI build, named after it and the seed; rebuilt when either changes)::

    <cache>/ixi-tumours-v1-<IXI build name>-seed<seed>/
      manifest.json            seed, source build, tumours (subject, kind, diameter_mm, volume_ml, ratio, ...)
      datalist_2d.json         {"validation": [...]}: every brain slice of the 2-D IXI datalist
      subjects/<id>/t1_tumour.nii.gz, tumour_mask.nii.gz, tumour_labels.nii.gz (1, 2), brain.nii.gz  RAS
      subjects/<id>/slices/<id>_z040_{t1_tumour,tumour_mask,t1_brain,brain}.nii.gz

2-D entries use the sample cohort's keys: ``image_tumour``, ``label_tumour``, ``brain``, ``image`` (the healthy
slice), ``subject``, ``slice_z``, ``brain_pixels``, ``tumour_pixels`` (0 on slices without tumour; every brain slice is written
so that a volume-wise Dice is possible). Deterministic by seed (``numpy`` seed sequence per subject).

CLI: ``python -m common.data.ixi_tumours build [--seed 0]`` prints the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .cache import build_cached_folder
from .ixi import _to_ras, _translation, _write_json, build_ixi_data
from .sample import _save

__all__ = ["build_ixi_tumour_data", "build_ixi_tumour_splits", "ixi_tumour_dir", "paint_tumour", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: slice records carry brain_pixels
DIAMETER_MM = (5.0, 60.0)
HYPER_RATIO = (1.25, 1.6)
HYPO_RATIO = (0.5, 0.75)
CORE_RATIO = (0.25, 0.4)
NECROSIS_MIN_MM = 20.0
NECROSIS_PROBABILITY = 0.7
TEXTURE = 0.12
EDGE_SIGMA = 0.6
SHELL_MM = 6.0
MAX_DEPTH_MM = 8.0
ROUGHNESS = 0.5
#: the IXI splits (``common.data.ixi.fixed_split``) tumours can be painted into
SPLITS = ("training", "validation")


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    splits = tuple(splits)
    if not splits or len(set(splits)) != len(splits) or not set(splits) <= set(SPLITS):
        raise ValueError(f"splits must be distinct names out of {SPLITS}, got {splits!r}")
    return tuple(s for s in SPLITS if s in splits)


def ixi_tumour_dir(
    seed: int = 0,
    folder: str | Path | None = None,
    root: str | Path | None = None,
    splits: Sequence[str] = ("validation",),
) -> Path:
    """Folder :func:`build_ixi_tumour_data` writes for these arguments (built or not); next to the IXI build,
    whose name (a hash of the source files and options) it carries."""
    build = build_ixi_data(folder, root)
    splits = _check_splits(splits)
    suffix = "" if splits == ("validation",) else "-" + "-".join(splits)
    return build.parent / f"ixi-tumours-v{FORMAT_VERSION}-{build.name}-seed{int(seed)}{suffix}"


def _noise_sigma(t1: np.ndarray, wm: np.ndarray) -> float:
    """Noise level of the T1: median absolute deviation of the Laplacian-like residual in eroded WM."""
    core = ndimage.binary_erosion(wm > 0, iterations=1)
    if core.sum() < 50:
        return 0.0
    residual = t1 - ndimage.uniform_filter(t1, 3)
    values = residual[core]
    return float(1.4826 * np.median(np.abs(values - np.median(values))) * np.sqrt(27 / 26))


def paint_tumour(
    t1: np.ndarray,
    brain: np.ndarray,
    tissue: np.ndarray,
    allowed: np.ndarray,
    spacing: np.ndarray,
    rng: np.random.RandomState,
    bright: bool,
    noise_sigma: float,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One textured tumour painted into ``t1`` (RAS volume): returns (new t1, boolean mask, info).

    ``tissue``: where its centre may lie (GM / WM); ``allowed``: the voxels the blob may cover (brain, slices
    of the datalist, away from other tumours)."""
    voxel_mm3 = float(np.prod(spacing))
    diameter = float(rng.uniform(*DIAMETER_MM))
    size = max(1, int(round(np.pi / 6 * diameter**3 / voxel_mm3)))
    depth_mm = min(diameter / 2, MAX_DEPTH_MM)
    inside = ndimage.distance_transform_edt(allowed, sampling=spacing) >= depth_mm
    candidates = np.argwhere(inside & tissue)
    if not len(candidates):
        candidates = np.argwhere(inside)
    centre = candidates[rng.randint(len(candidates))]
    blob = _smooth_blob(allowed.shape, rng, size, centre, allowed)
    size = int(blob.sum())
    diameter = float((6 * size * voxel_mm3 / np.pi) ** (1 / 3))

    shell = (
        ndimage.binary_dilation(blob, iterations=max(1, int(round(SHELL_MM / spacing.min())))) & ~blob & brain
    )
    reference = float(np.median(t1[shell])) if shell.any() else float(np.median(t1[brain]))
    ratio = float(rng.uniform(*(HYPER_RATIO if bright else HYPO_RATIO)))
    level = np.full(t1.shape, reference * ratio, np.float32)
    necrotic = bool(diameter >= NECROSIS_MIN_MM and rng.rand() < NECROSIS_PROBABILITY)
    core_ratio = None
    if necrotic:
        depth = ndimage.distance_transform_edt(blob, sampling=spacing)
        core = depth > 0.5 * depth.max()
        core = ndimage.binary_opening(core) if ndimage.binary_opening(core).any() else core
        core_ratio = float(rng.uniform(*CORE_RATIO))
        core_soft = ndimage.gaussian_filter(core.astype(np.float32), EDGE_SIGMA)
        level = level * (1 - core_soft) + reference * core_ratio * core_soft
    noise = ndimage.gaussian_filter(rng.standard_normal(t1.shape).astype(np.float32), 2.0)
    noise /= np.abs(noise[blob]).max() + 1e-12
    level = level * (1 + TEXTURE * noise) + noise_sigma * rng.standard_normal(t1.shape).astype(np.float32)
    soft = ndimage.gaussian_filter(blob.astype(np.float32), EDGE_SIGMA)
    soft = np.where(blob, np.maximum(soft, 0.5), soft) * ndimage.binary_dilation(blob) * brain
    out = (t1 * (1 - soft) + np.maximum(level, 0) * soft).astype(np.float32)
    z = np.flatnonzero(blob.any(axis=(0, 1)))
    info = {
        "kind": "hyperintense" if bright else "hypointense",
        "diameter_mm": round(diameter, 2),
        "volume_ml": round(size * voxel_mm3 / 1000, 3),
        "voxels": size,
        "centre_voxel": [int(c) for c in centre],
        "ratio": round(ratio, 3),
        "reference_intensity": round(reference, 3),
        "necrotic_core_ratio": None if core_ratio is None else round(core_ratio, 3),
        "slices_z": [int(z.min()), int(z.max())],
    }
    return out, blob, info


def _smooth_blob(shape, rng, size, centre, allowed) -> np.ndarray:
    """``smooth_blob_mask`` on a box around the centre (the full-volume call is slow), shrunk when the
    connected allowed region is smaller than the blob."""
    from common.transforms.masks import smooth_blob_mask

    half = int(np.ceil((3 * size / (4 * np.pi)) ** (1 / 3) * 2.5)) + 3
    lo = np.maximum(np.asarray(centre) - half, 0)
    hi = np.minimum(np.asarray(centre) + half + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    region = allowed[box]
    local = np.asarray(centre) - lo
    labels, _ = ndimage.label(region)
    size = min(size, int((labels == labels[tuple(local)]).sum()))
    blob = np.zeros(shape, bool)
    blob[box] = smooth_blob_mask(region.shape, rng, size, local, region, roughness=ROUGHNESS)
    return blob


def _subject_tumours(entry: dict, slices: list[dict], seed_sequence: np.random.SeedSequence):
    """Both tumours of one subject on its RAS grid; returns (healthy, tumour t1, mask, brain, affine, infos)."""
    rng = np.random.RandomState(seed_sequence.generate_state(4))
    images = {key: nib.load(entry[key]) for key in ("image", "brain", "gm", "wm")}
    affine = images["image"].affine
    arrays = {key: _to_ras(np.asarray(im.get_fdata(dtype=np.float32)), affine) for key, im in images.items()}
    t1, ras_affine = arrays["image"]
    brain, gm, wm = (arrays[k][0] > 0.5 for k in ("brain", "gm", "wm"))
    spacing = nib.affines.voxel_sizes(ras_affine)
    in_slices = np.zeros(brain.shape, bool)
    in_slices[:, :, [s["slice_z"] for s in slices]] = True
    allowed = brain & in_slices
    sigma = _noise_sigma(t1, wm)
    healthy = t1.copy()
    mask = np.zeros(brain.shape, np.uint8)
    infos = []
    for label, bright in enumerate(rng.permutation([True, False]), start=1):
        t1, blob, info = paint_tumour(t1, brain, gm | wm, allowed, spacing, rng, bool(bright), sigma)
        mask[blob] = label
        # the next tumour keeps a margin of SHELL_MM from this one so each has its own healthy surroundings
        margin = ndimage.binary_dilation(blob, iterations=int(round(SHELL_MM / spacing.min())) + 1)
        allowed = allowed & ~margin
        infos.append({"subject": entry["subject"], "label": label, **info})
    return healthy, t1, mask, brain, ras_affine, infos


def build_ixi_tumour_data(
    seed: int = 0,
    folder: str | Path | None = None,
    root: str | Path | None = None,
    force: bool = False,
    splits: Sequence[str] = ("validation",),
) -> Path:
    """Paint two tumours (one hyper-, one hypointense) into each IXI subject of ``splits`` (default the
    validation subjects: the detection benchmark's cases) and write every brain slice; returns the folder
    (reused when complete unless ``force``). The validation subjects' tumours do not depend on ``splits``.
    See the module docstring."""
    from monai.data import load_decathlon_datalist

    splits = _check_splits(splits)
    build = build_ixi_data(folder, root)
    target = ixi_tumour_dir(seed, folder, root, splits)

    def write_split(staging: Path, split: str) -> tuple[list[dict], list[dict]]:
        volumes = load_decathlon_datalist(build / "datalist_3d.json", False, split)
        slices_2d = load_decathlon_datalist(build / "datalist_2d.json", False, split)
        # validation keeps the seed's own sequence (the benchmark's tumours); other splits get their own
        base = [int(seed)] if split == "validation" else [int(seed), SPLITS.index(split) + 1]
        sequences = np.random.SeedSequence(base).spawn(len(volumes))
        entries, tumours = [], []
        for entry, sequence in zip(sorted(volumes, key=lambda e: e["subject"]), sequences):
            name = entry["subject"]
            slices = sorted((s for s in slices_2d if s["subject"] == name), key=lambda s: s["slice_z"])
            healthy, t1, mask, brain, affine, infos = _subject_tumours(entry, slices, sequence)
            tumours.extend(infos)
            out = staging / "subjects" / name
            (out / "slices").mkdir(parents=True)
            arrays = {
                "image_tumour": ("t1_tumour", t1),
                "label_tumour": ("tumour_mask", (mask > 0).astype(np.uint8)),
                "brain": ("brain", brain.astype(np.uint8)),
                "image": ("t1_brain", healthy),
            }
            for stem, array in list(arrays.values())[:3]:
                _save(array, affine, out / f"{stem}.nii.gz")
            _save(mask, affine, out / "tumour_labels.nii.gz")  # 1, 2: the manifest's "label" of each tumour
            for s in slices:
                z = int(s["slice_z"])
                record = {
                    "subject": name,
                    "slice_z": z,
                    "tumour_pixels": int(arrays["label_tumour"][1][:, :, z].sum()),
                    "brain_pixels": int(brain[:, :, z].sum()),
                }
                for key, (stem, array) in arrays.items():
                    path = out / "slices" / f"{name}_z{z:03d}_{stem}.nii.gz"
                    _save(np.ascontiguousarray(array[:, :, z]), affine @ _translation(z), path)
                    record[key] = str(path.relative_to(staging))
                entries.append(record)
        return entries, tumours

    def write(staging: Path) -> None:
        written = {split: write_split(staging, split) for split in splits}
        description = {"name": f"IXI subjects with synthetic tumours (seed {seed})", "kind": "2d"}
        _write_json(staging / "datalist_2d.json", {**description, **{k: v[0] for k, v in written.items()}})
        manifest = {
            "format_version": FORMAT_VERSION,
            "seed": int(seed),
            "splits": list(splits),
            "source": str(build),
            "parameters": {
                "diameter_mm": DIAMETER_MM,
                "hyper_ratio": HYPER_RATIO,
                "hypo_ratio": HYPO_RATIO,
                "core_ratio": CORE_RATIO,
                "necrosis_min_mm": NECROSIS_MIN_MM,
                "texture": TEXTURE,
                "edge_sigma": EDGE_SIGMA,
                "shell_mm": SHELL_MM,
            },
            "tumours": [t for _, tumours in written.values() for t in tumours],
        }
        _write_json(staging / "manifest.json", manifest)

    return build_cached_folder(target, lambda out: (out / "manifest.json").exists(), write, force)


def build_ixi_tumour_splits(
    seed: int = 0,
    selection_subjects: int = 4,
    folder: str | Path | None = None,
    root: str | Path | None = None,
) -> Path:
    """A folder holding one ``datalist_2d.json`` (absolute paths) of tumour-painted IXI slices in three
    splits for models trained on lesion data (e.g. copy-paste pairs): ``training`` = the IXI training
    subjects but the last ``selection_subjects`` by id, ``validation`` = those (model selection), ``test`` =
    the IXI validation subjects, never trained on nor selected with."""
    from .ixi import _id_order

    if selection_subjects < 1:
        raise ValueError(f"selection_subjects must be >= 1, got {selection_subjects}")
    tumours = build_ixi_tumour_data(seed, folder, root, splits=SPLITS)
    lists = json.loads((tumours / "datalist_2d.json").read_text("utf-8"))
    for entries in (lists["training"], lists["validation"]):
        for entry in entries:
            entry.update({k: str(tumours / entry[k]) for k in ("image_tumour", "label_tumour", "brain", "image")})
    subjects = sorted({e["subject"] for e in lists["training"]}, key=_id_order)
    if selection_subjects >= len(subjects):
        raise ValueError(f"selection_subjects={selection_subjects} leaves no training subject of {len(subjects)}")
    selection = set(subjects[-selection_subjects:])
    datalist = {
        "name": f"IXI subjects with synthetic tumours (seed {seed}): training / model selection / test",
        "kind": "2d",
        "training": [e for e in lists["training"] if e["subject"] not in selection],
        "validation": [e for e in lists["training"] if e["subject"] in selection],
        "test": lists["validation"],
    }
    target = tumours.parent / f"{tumours.name}-splits{int(selection_subjects)}"

    def write(staging: Path) -> None:
        _write_json(staging / "datalist_2d.json", datalist)

    return build_cached_folder(target, lambda out: (out / "datalist_2d.json").exists(), write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.data.ixi_tumours", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "path"):
        cmd = sub.add_parser(name, help=f"{name} the synthetic-tumour IXI validation set")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.add_argument(
            "--data", default=None, help="IXI T1 folder (default: $MEDINPAINT_IXI_DIR or shared)"
        )
        cmd.add_argument("--root", default=None, help="cache root (default: $MEDINPAINT_DATA or ~/.cache)")
        if name == "build":
            cmd.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(ixi_tumour_dir(args.seed, args.data, args.root))
    else:
        print(build_ixi_tumour_data(args.seed, args.data, args.root, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
