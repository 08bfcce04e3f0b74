"""Real-anatomy inpainting benchmark (issue #17): every bundle's shipped weights and three classical fills,
measured the same way on holes over healthy tissue of the IXI validation subjects.

Run::

    python benchmarks/real_inpainting.py --data ../shared/data/ixi_t1_2mm [--quick] [--seed 0] [--out docs/results]
        [--variant standard|scanner_shift|both] [--families standard own] [--bundles NAME ...]
        [--weights NAME=PATH ...]

Protocol (the module constants below hold every number):

- subjects: the fixed validation split only (``common.data.ixi.fixed_split()["validation"]``, never a training
  subject; ``--quick``: the first 2); skull-stripped brain from the DLMUSE parcellation
  (``common.data.ixi.read_subject``); RAS axial slices at the data's native 2 mm, ``SLICES`` per subject evenly
  spaced over the middle 60 % of the brain's axial extent (``--quick``: 2);
- holes over healthy tissue, three placements scored separately: ``deep WM`` (centre drawn in the WM mask eroded
  by ``WM_EROSION`` px) and ``cortex`` (centre in the GM mask within ``CORTEX_DEPTH`` px of the brain's edge),
  both a ``common.transforms.masks.square_mask`` of ``HOLE_SIDE`` px (20 mm) restricted to the brain mask; and
  ``tumour blob``: a smooth irregular 3-D blob (``smooth_blob_mask``) of 5-300 cm^3 (log-uniform) centred in
  the slice at least ``BRAIN_EROSION`` px inside the brain, its slice the 2-D hole (the 3-D bundle fills the
  blob as a volume); one seeded ``numpy.random.RandomState`` per slice, the same holes for every
  method and both variants; a method sees the slice with the hole voided (0), never the truth inside it;
- intensities: each slice scaled to [0, 1] by the 0.5 / 99.5 percentiles of its known brain voxels (outside the
  hole), clipped to [0, 1]; every method's output is scored in those units;
- metrics inside the hole only: PSNR (data range 1), SSIM (local map averaged over the hole), MAE, mean predicted and mean true intensity; mean +/- sd
  over holes, and n; ``known max`` is the largest change of a known pixel (0 = composited output);
- ``--variant scanner_shift``: the same slices after a seeded simulated change of scanner applied to the volume
  before scaling: a random monotone intensity remap, a smooth multiplicative bias field of +/-20 %, a coarser
  resolution (anisotropic Gaussian blur) and Rician-like noise of 2 % of the brain's 99.5th percentile.

Mask families (``--families``, default both): ``standard`` = the three placements above, the same holes for every
method; ``own`` = each bundle scored on holes of its own evaluation mask family (issue #17 (b)), drawn by the
bundle's or ``common``'s own generator with the parameters read from the bundle's configs / scripts, on the same
validation slices, restricted to the brain and seeded (``RandomState([seed, 77, subject, slice, family])``), the
three baselines filling exactly the same holes beside it (table "own mask family": bundle, best baseline, margin):

- shape_aware_mask_inpainting: ``common.transforms.PseudoSegmentMaskd`` as ``configs/ixi.json`` validates (1-5
  pseudo-segments of the slice, OPS, ``region_key`` = brain);
- mask_optimized_object_removal: one tumour / MS-lesion object of the sample cohort's test split pasted by its
  ``scripts.copy_paste.RandCopyPasted`` at physical size, ``min_inside`` 0.9 of ``train.json``;
- autoinpainting_tumor_segmentation: ``common.transforms.masks.irregular_mask`` at ``hole_coverage`` (25-30 % of
  the slice), restricted to the brain as ``IrregularMaskd(region_key="brain")``;
- ipa_medgan: ``irregular_mask`` at the paper's 1.36-5.46 % (``scripts.masks.BANKS``) of the field of view (the
  brain's bounding box), and the 64x64-of-256 square scaled (side 1/4 of the box's), both restricted to the brain;
- blind_lesion_inpainting_3d: a 3-D MS-like lesion mask of ``common.transforms.lesion_masks.synthetic_lesion_masks``
  (drawn at 1 mm in the upsampled WM, class small / medium / large cycled over subjects), filled as a volume; the
  slices it reaches are scored.

Methods: biharmonic (``skimage.restoration.inpaint_biharmonic``), mean fill (mean of the known brain voxels),
diffusion fill (Laplace's equation in the hole, known pixels as boundary, ``scipy.sparse`` solver), and each
bundle's shipped ``models/model*.pt`` through its own inference route (``configs/inference.json`` in this
process, a datalist of NIfTI files written to a temporary folder), or ``n/a (reason)`` where a bundle has no
route that fills a user's mask.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.ndimage as ndi
import scipy.sparse
import scipy.sparse.linalg
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from common.data.ixi import find_subjects, fixed_split, read_subject  # noqa: E402
from common.transforms.lesion_masks import LESION_LOADS_ML, synthetic_lesion_masks  # noqa: E402
from common.transforms.masks import smooth_blob_mask, square_mask  # noqa: E402

SLICES, QUICK_SLICES, QUICK_SUBJECTS = 6, 2, 2
MIDDLE_FRACTION = 0.6
HOLE_SIDE = 10  # px: 20 mm at 2 mm
WM_EROSION = 3  # px (6 mm): "deep" white matter
CORTEX_DEPTH = 4  # px (8 mm) from the brain's edge: cortical grey matter
DEPTH_3D = 3  # the 3-D bundle's hole: the 2-D hole extruded over z-3..z+3 (14 mm)
PERCENTILES = (0.5, 99.5)
PLACEMENTS = ("deep WM", "cortex", "tumour blob")
PLACEMENT_TAGS = {"deep WM": "wm", "cortex": "cortex", "tumour blob": "tumour"}
TUMOUR_CM3 = (5.0, 300.0)  # 3-D blob volumes, log-uniform; at 2 mm a voxel is 0.008 cm^3
BRAIN_EROSION = 4  # px: blob centres at least 8 mm inside the brain
#: the simulated other scanner: a random monotone intensity remap (knots in [0, 1] of the brain's range), a
#: smooth +/-20 % bias field, Rician-like noise of 2 %, and a coarser resolution (Gaussian blur of sigma
#: 0.6 voxel in-plane and 1.0 through-plane: about 2.8 mm in-plane and 4.7 mm slices, FWHM)
SCANNER_SHIFT = {"knots": 6, "bias": 0.2, "noise": 0.02, "blur_sigma": (0.6, 0.6, 1.0)}
BASELINES = ("biharmonic", "mean fill", "diffusion fill")
# --weights NAME=PATH: score a candidate checkpoint instead of a bundle's shipped one (e.g. before shipping it)
WEIGHTS: dict[str, Path] = {}
# --configs BUNDLE=FILE: configs merged after the bundle's own route (e.g. the padded route of IXI weights);
# --set BUNDLE:ID=JSON: config ids overridden (e.g. the architecture flag of a candidate checkpoint)
EXTRA_CONFIGS: dict[str, list[str]] = {}
OVERRIDES: dict[str, dict] = {}
BUNDLES = {
    "shape_aware_mask_inpainting": "shape-aware (CTSDG)",
    "mask_optimized_object_removal": "object removal",
    "autoinpainting_tumor_segmentation": "autoinpainting",
    "ipa_medgan": "ipA-MedGAN",
    "blind_lesion_inpainting_3d": "blind lesion 3D (non-blind)",
}


# ----------------------------------------------------------------------------------------------------------
# baselines and metrics (arrays in [0, 1]; ``hole`` True = unknown)
# ----------------------------------------------------------------------------------------------------------


def mean_fill(image: np.ndarray, hole: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The hole filled with the mean of the known brain pixels."""
    out = image.astype(np.float64).copy()
    out[hole] = image[brain & ~hole].mean()
    return out


def diffusion_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Harmonic fill: solve Laplace's equation (5-point stencil) in the hole with the known pixels as Dirichlet
    boundary (pixels beyond the image border are ignored: zero flux there)."""
    out = image.astype(np.float64).copy()
    index = -np.ones(hole.shape, dtype=np.int64)
    points = np.argwhere(hole)
    index[hole] = np.arange(len(points))
    rows, cols, vals = [], [], []
    rhs = np.zeros(len(points))
    for k, (i, j) in enumerate(points):
        degree = 0
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            a, b = i + di, j + dj
            if not (0 <= a < hole.shape[0] and 0 <= b < hole.shape[1]):
                continue
            degree += 1
            if hole[a, b]:
                rows.append(k)
                cols.append(index[a, b])
                vals.append(-1.0)
            else:
                rhs[k] += out[a, b]
        rows.append(k)
        cols.append(k)
        vals.append(float(degree))
    matrix = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(points), len(points)))
    out[hole] = scipy.sparse.linalg.spsolve(matrix, rhs)
    return out


def biharmonic_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(image.astype(np.float64), hole)


def hole_metrics(pred: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """PSNR (data range 1), SSIM (the local SSIM map, 7x7 windows, averaged over the hole), MAE, mean predicted
    and mean true intensity inside ``hole``."""
    from skimage.metrics import structural_similarity

    error = pred[hole].astype(np.float64) - truth[hole]
    mse = float(np.mean(error**2))
    window = min(7, min(truth.shape) - (1 - min(truth.shape) % 2))  # 7, or the largest odd size that fits
    _, ssim_map = structural_similarity(
        truth.astype(np.float64), pred.astype(np.float64), data_range=1.0, full=True, win_size=window
    )
    return {
        "psnr": float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse)),
        "ssim": float(ssim_map[hole].mean()),
        "mae": float(np.mean(np.abs(error))),
        "mean_pred": float(pred[hole].mean()),
        "mean_true": float(truth[hole].mean()),
        "pixels": int(hole.sum()),
    }


# ----------------------------------------------------------------------------------------------------------
# data: slices, holes, scaling, scanner shift
# ----------------------------------------------------------------------------------------------------------


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    orientation = nib.orientations.io_orientation(affine)
    return (
        np.ascontiguousarray(nib.orientations.apply_orientation(array, orientation)),
        affine @ nib.orientations.inv_ornt_aff(orientation, array.shape),
    )


def slice_indices(brain: np.ndarray, count: int) -> list[int]:
    """``count`` axial indices evenly spaced over the middle ``MIDDLE_FRACTION`` of the brain's z extent."""
    z = np.flatnonzero(brain.any(axis=(0, 1)))
    margin = (1 - MIDDLE_FRACTION) / 2 * (z[-1] - z[0])
    return [int(round(v)) for v in np.linspace(z[0] + margin, z[-1] - margin, count)]


def draw_tumour(brain: np.ndarray, z: int, rng: np.random.RandomState) -> np.ndarray:
    """A 3-D tumour-like blob (``smooth_blob_mask``) of a log-uniform 5-300 cm^3, centred in slice ``z`` at least
    ``BRAIN_EROSION`` px inside the brain, kept in the brain."""
    inner = ndi.binary_erosion(brain, iterations=BRAIN_EROSION)
    candidates = np.argwhere(inner[:, :, z])
    if not len(candidates):
        raise ValueError(f"no brain pixel {BRAIN_EROSION} px deep in slice {z} to centre a tumour on")
    centre = (*candidates[rng.randint(len(candidates))], z)
    volume_cm3 = float(np.exp(rng.uniform(*np.log(TUMOUR_CM3))))
    return smooth_blob_mask(brain.shape, rng, int(round(volume_cm3 / 0.008)), centre, brain)


def draw_hole(
    placement: str, brain: np.ndarray, wm: np.ndarray, gm: np.ndarray, rng: np.random.RandomState
) -> np.ndarray:
    """A ``HOLE_SIDE`` square (``square_mask``) centred on a seeded centre of the placement, inside the brain."""
    if placement == "deep WM":
        region = ndi.binary_erosion(wm, iterations=WM_EROSION)
    else:
        region = gm & (ndi.distance_transform_edt(brain) <= CORTEX_DEPTH)
    if not region.any():
        raise ValueError(f"no {placement} pixel to centre a hole on")
    centre = np.argwhere(region)[rng.randint(int(region.sum()))]
    square = square_mask((HOLE_SIDE, HOLE_SIDE), HOLE_SIDE, rng)
    hole = np.zeros(brain.shape, bool)
    start = centre - HOLE_SIDE // 2
    for i, j in np.argwhere(square):
        a, b = start[0] + i, start[1] + j
        if 0 <= a < hole.shape[0] and 0 <= b < hole.shape[1]:
            hole[a, b] = True
    return hole & brain


def scaling(image: np.ndarray, known: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image[known], PERCENTILES)
    return float(lo), float(hi)


def to_unit(image: np.ndarray, lo: float, hi: float, brain: np.ndarray) -> np.ndarray:
    return np.where(brain, np.clip((image - lo) / (hi - lo), 0, 1), 0.0)


def scanner_shift(volume: np.ndarray, brain: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Another scanner's look (``SCANNER_SHIFT``): a random monotone intensity remap on the brain's 0-99.5th
    percentile range, a smooth multiplicative bias field (low-order cosine series, normalised over the brain),
    a coarser resolution (anisotropic Gaussian blur) and Rician-like noise; then skull-stripped again."""
    ref = np.percentile(volume[brain], 99.5)
    knots = np.linspace(0, 1, SCANNER_SHIFT["knots"])
    steps = rng.uniform(0.3, 1.7, SCANNER_SHIFT["knots"] - 1)  # positive slopes: monotone, not linear
    curve = np.concatenate([[0], np.cumsum(steps) / steps.sum()])
    out = ref * np.interp(np.clip(volume / ref, 0, None), knots, curve, right=None)
    out = np.where(volume > ref, volume - ref + ref * curve[-1], out)  # above the range: unit slope
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in volume.shape], indexing="ij")
    field = np.zeros(volume.shape)
    for i in range(3):
        for j in range(3):
            for k in range(3):
                if i + j + k:
                    field += (
                        rng.normal()
                        * np.cos(np.pi * i * grids[0])
                        * np.cos(np.pi * j * grids[1])
                        * np.cos(np.pi * k * grids[2])
                    )
    field = 1 + SCANNER_SHIFT["bias"] * field / np.abs(field[brain]).max()
    out = ndi.gaussian_filter(out * field, SCANNER_SHIFT["blur_sigma"])
    sigma = SCANNER_SHIFT["noise"] * np.percentile(out[brain], 99.5)
    out = np.sqrt((out + rng.normal(0, sigma, out.shape)) ** 2 + rng.normal(0, sigma, out.shape) ** 2)
    return np.where(brain, out, 0).astype(np.float32)


def build_cases(
    data: Path, quick: bool, seed: int, variant: str, standard: bool = True
) -> tuple[list[dict], dict]:
    """One case per hole: the slice (scanner units, hole voided), hole, brain, truth in [0, 1], scaling. Without
    ``standard`` only the volumes are read (``info``; the own-family cases are built from it)."""
    subjects = {s.subject: s for s in find_subjects(data)}
    ids = [s for s in fixed_split()["validation"] if s in subjects]
    if not ids:
        raise SystemExit(f"none of the validation subjects {fixed_split()['validation']} is in {data}")
    ids = ids[:QUICK_SUBJECTS] if quick else ids
    cases, volumes = [], {}
    for s_index, subject in enumerate(ids):
        record = subjects[subject]
        if record.split != "validation":
            raise SystemExit(f"{subject} is not a validation subject")
        vols = read_subject(record)
        t1, affine = to_ras(vols.t1, vols.affine)
        brain, wm, gm = (to_ras(vols.masks[k], vols.affine)[0] for k in ("brain", "wm", "gm"))
        t1 = np.where(brain, t1, 0).astype(np.float32)
        acquired = t1
        if variant == "scanner_shift":
            t1 = scanner_shift(t1, brain, np.random.RandomState([seed, 2323, s_index]))
        slices = slice_indices(brain, QUICK_SLICES if quick else SLICES)
        volumes[subject] = {
            "t1": t1,
            "brain": brain,
            "affine": affine,
            "wm": wm,
            "acquired": acquired,  # the unshifted volume: own-family holes that depend on the image use it
            "slices": slices,
            "index": s_index,
        }
        if not standard:
            continue
        for z_index, z in enumerate(slices):
            for p_index, placement in enumerate(PLACEMENTS):
                rng = np.random.RandomState([seed, s_index, z_index, p_index])
                if placement == "tumour blob":
                    hole3d = draw_tumour(brain, z, rng)
                    hole = np.ascontiguousarray(hole3d[:, :, z])
                else:
                    hole3d, hole = None, draw_hole(placement, brain[:, :, z], wm[:, :, z], gm[:, :, z], rng)
                cases.append(make_case(subject, z, placement, hole, hole3d, t1, brain, affine))
    return cases, {"subjects": ids, "volumes": volumes}


def make_case(
    subject: str,
    z: int,
    placement: str,
    hole: np.ndarray,
    hole3d: np.ndarray | None,
    t1: np.ndarray,
    brain: np.ndarray,
    affine: np.ndarray,
) -> dict:
    """A scored hole: slice ``z`` of ``t1`` (scanner units) with ``hole`` voided, its truth scaled to [0, 1]."""
    image, b2d = t1[:, :, z], brain[:, :, z]
    lo, hi = scaling(image, b2d & ~hole)
    return {
        "subject": subject,
        "z": z,
        "placement": placement,
        "name": f"{subject}_z{z:03d}_{PLACEMENT_TAGS[placement]}",
        "hole3d": hole3d,
        "image": np.where(hole, 0, image).astype(np.float32),
        "hole": hole,
        "brain": b2d,
        "truth": to_unit(image, lo, hi, b2d),
        "lo": lo,
        "hi": hi,
        "affine": affine @ _shift(z),
    }


def _shift(z: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = z
    return shift


# ----------------------------------------------------------------------------------------------------------
# bundles
# ----------------------------------------------------------------------------------------------------------


def _logs_to_stderr() -> None:
    """Point every logging stream handler writing to stdout at stderr."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)


def _run_workflow(
    bundle: Path, configs: list[str], output_dir: Path, datalist: list[dict], **overrides
) -> None:
    """``bundle``'s inference configs run in this process on ``datalist`` (as tests/harness.py does)."""
    from monai.bundle import ConfigWorkflow

    if bundle.name in WEIGHTS:
        overrides["checkpoint"] = str(WEIGHTS[bundle.name])
    configs = [*configs, *EXTRA_CONFIGS.get(bundle.name, [])]
    overrides.update(OVERRIDES.get(bundle.name, {}))
    # the bundles' logging.conf and MONAI's loggers write to stdout: keep the table alone there
    _logs_to_stderr()
    with contextlib.redirect_stdout(sys.stderr):
        workflow = ConfigWorkflow(
            config_file=[str(bundle / "configs" / c) for c in configs],
            workflow_type="infer",
            bundle_root=str(bundle),
            output_dir=str(output_dir),
            datalist=datalist,
            **overrides,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    _logs_to_stderr()


def _write_inputs(cases: list[dict], folder: Path, mask_key: str = "mask") -> list[dict]:
    entries = []
    for case in cases:
        image, mask = folder / f"{case['name']}.nii.gz", folder / f"{case['name']}_hole.nii.gz"
        nib.save(nib.Nifti1Image(case["image"], case["affine"]), image)
        nib.save(nib.Nifti1Image(case["hole"].astype(np.uint8), case["affine"]), mask)
        entries.append({"image": str(image), mask_key: str(mask)})
    return entries


def _read_outputs(cases: list[dict], folder: Path, postfix: str) -> list[np.ndarray]:
    outputs = []
    for case in cases:
        found = list(folder.rglob(f"{case['name']}_{postfix}.nii.gz"))
        if len(found) != 1:
            raise RuntimeError(
                f"expected one output {case['name']}_{postfix}.nii.gz in {folder}, found {found}"
            )
        outputs.append(
            np.asarray(nib.load(found[0]).get_fdata(dtype=np.float32)).reshape(case["image"].shape)
        )
    return outputs


def run_shape_aware(bundle: Path, cases: list[dict], tmp: Path) -> list[np.ndarray]:
    """inference.json with ``{"image", "mask"}`` (the README's own-mask command); output in input units."""
    entries = _write_inputs(cases, tmp)
    _run_workflow(bundle, ["inference.json"], tmp / "out", entries)
    return _read_outputs(cases, tmp / "out", "inpainted")


def run_object_removal(bundle: Path, cases: list[dict], tmp: Path) -> list[np.ndarray]:
    """inference.json with ``{"image", "hint"}`` and ``mask_source: hint`` (the inpainters fill the given mask;
    the default ``segmenter`` would remove a segment overlapping it instead). The bundle writes the fill
    composited into the input at its size, in the input's units (``common.transforms.CompositeToInputd``)."""
    entries = _write_inputs(cases, tmp, mask_key="hint")
    _run_workflow(bundle, ["inference.json"], tmp / "out", entries, mask_source="hint")
    return _read_outputs(cases, tmp / "out", "pred")


def run_ipa_medgan(bundle: Path, cases: list[dict], tmp: Path) -> list[np.ndarray]:
    """inference.json + fill.json with ``{"image", "mask"}``: the generator in its masked mode at its trained
    size, the fill resized back and composited into the input in its units."""
    entries = _write_inputs(cases, tmp)
    _run_workflow(bundle, ["inference.json", "fill.json"], tmp / "out", entries)
    return _read_outputs(cases, tmp / "out", "filled")


def run_autoinpainting(bundle: Path, cases: list[dict], tmp: Path) -> list[np.ndarray]:
    """inference.json + fill.json with ``{"image", "mask"}``: the inpainter alone (no circle search), composited
    into the input in its units."""
    entries = _write_inputs(cases, tmp)
    _run_workflow(bundle, ["inference.json", "fill.json"], tmp / "out", entries)
    return _read_outputs(cases, tmp / "out", "filled")


def run_blind_3d(
    bundle: Path, cases: list[dict], tmp: Path, volumes: dict
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """inference.json + inference_nonblind.json on the whole RAS volume with ``{"image", "label"}``: per subject
    and placement one volume whose holes are the slices' 2-D holes extruded over z-3..z+3 (in the brain); the
    same slices are scored. Returns the outputs (composited, native grid, the input's units) and, per case, the
    slice's hole as the bundle was given it: the union of the volume's holes, since another case's 3-D tumour
    blob can cross this slice (those pixels were unknown to the bundle, so they do not count as known)."""
    outputs: dict[str, np.ndarray] = {}
    given: dict[str, np.ndarray] = {}
    entries, groups = [], []
    for subject, vol in volumes.items():
        for placement in dict.fromkeys(c["placement"] for c in cases):  # standard placements or own families
            group = [c for c in cases if c["subject"] == subject and c["placement"] == placement]
            if not group:
                continue
            label = np.zeros(vol["t1"].shape, bool)
            for case in group:
                z = case["z"]
                if case["hole3d"] is not None:  # tumour blobs are 3-D already (the slices' blobs may overlap)
                    label |= case["hole3d"]
                else:
                    label[:, :, max(0, z - DEPTH_3D) : z + DEPTH_3D + 1] |= case["hole"][:, :, None]
            label &= vol["brain"]
            image = np.where(label, 0, vol["t1"]).astype(np.float32)
            name = f"{subject}_{PLACEMENT_TAGS[placement]}_3d"
            nib.save(nib.Nifti1Image(image, vol["affine"]), tmp / f"{name}.nii.gz")
            nib.save(nib.Nifti1Image(label.astype(np.uint8), vol["affine"]), tmp / f"{name}_hole.nii.gz")
            entries.append({"image": str(tmp / f"{name}.nii.gz"), "label": str(tmp / f"{name}_hole.nii.gz")})
            groups.append((name, group))
            given.update({case["name"]: label[:, :, case["z"]] | case["hole"] for case in group})
    _run_workflow(bundle, ["inference.json", "inference_nonblind.json"], tmp / "out", entries)
    for name, group in groups:
        filled = np.asarray(nib.load(tmp / "out" / f"{name}_filled.nii.gz").get_fdata(dtype=np.float32))
        for case in group:
            outputs[case["name"]] = filled[:, :, case["z"]]
    return [outputs[c["name"]] for c in cases], [given[c["name"]] for c in cases]


BUNDLE_RUNNERS: dict[str, Callable] = {
    "shape_aware_mask_inpainting": run_shape_aware,
    "mask_optimized_object_removal": run_object_removal,
    "autoinpainting_tumor_segmentation": run_autoinpainting,
    "ipa_medgan": run_ipa_medgan,
    "blind_lesion_inpainting_3d": run_blind_3d,
}
FOOTNOTES = {
    "shape_aware_mask_inpainting": "inference.json, datalist {image, mask}; output in the input's units",
    "mask_optimized_object_removal": "inference.json, datalist {image, hint}, `--mask_source hint`: the fill "
    "resized back from 64x64 and composited into the input in its units",
    "autoinpainting_tumor_segmentation": "inference.json + fill.json, datalist {image, mask}: the inpainter "
    "composited into the input in its units",
    "ipa_medgan": "inference.json + fill.json, datalist {image, mask}: masked mode at 64x64, the fill resized "
    "back and composited into the input in its units",
    "blind_lesion_inpainting_3d": "inference.json + inference_nonblind.json on the whole volume, 3-D hole = the "
    "2-D hole extruded over 7 slices (14 mm), or the tumour's 3-D blob (the subject's blobs together); output in "
    "the input's units",
}


# ----------------------------------------------------------------------------------------------------------
# (b) each bundle's own evaluation mask family: holes drawn by the bundle's (or common's) own generator, with the
# parameters read from the bundle's configs / scripts, placed inside the brain of the same validation slices
# ----------------------------------------------------------------------------------------------------------

FAMILIES = ("standard", "own")
REGION_TRIES = 20  # as common.transforms.masks.RandomMaskd: a draw with no pixel in the brain is redrawn
OBJECT_MIN_PIXELS = 16  # copy_paste_pairs' smallest cuttable object, counted at the benchmark's 2 mm
LESION_LOADS = ("small", "medium", "large")  # common.transforms.lesion_masks classes, cycled over subjects
#: bundle -> its families: (label, tag); the generators are in OWN_GENERATORS
OWN_FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    "shape_aware_mask_inpainting": (("pseudo-segments (OPS)", "segments"),),
    "mask_optimized_object_removal": (("copy-paste objects", "objects"),),
    "autoinpainting_tumor_segmentation": (("irregular 25-30 %", "irregular"),),
    "ipa_medgan": (("arbitrary 1.36-5.46 %", "arbitrary"), ("square 1/4 FOV", "square")),
    "blind_lesion_inpainting_3d": (("MS lesions (3-D)", "lesions"),),
}
for _families in OWN_FAMILIES.values():
    PLACEMENT_TAGS.update(dict(_families))


def _bundle_config(name: str, *files: str) -> dict:
    """The raw (unparsed) merged configs ``files`` of bundle ``name`` (later files override, ``a#b`` keys too)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / name / "configs" / f) for f in files])
    return parser.get()


def _bundle_scripts(name: str):
    from common.bundle_scripts import load_bundle_scripts

    return load_bundle_scripts(REPO / "bundles" / name)


def family_parameters() -> dict[str, dict]:
    """What each family draws with, read from the bundles (the IXI route's configs where a bundle has one)."""
    shape_aware = _bundle_config("shape_aware_mask_inpainting", "train.json", "ixi.json")["mask_config"]
    auto = _bundle_config("autoinpainting_tumor_segmentation", "train.json", "ixi.json")
    objects = _bundle_config("mask_optimized_object_removal", "train.json")
    banks = _bundle_scripts("ipa_medgan").masks.BANKS
    return {
        "segments": {k: shape_aware[k] for k in ("position", "weighting", "num_segments", "perturb_px")},
        "irregular": {"coverage_range": tuple(auto["hole_coverage"])},
        "arbitrary": {"coverage_range": tuple(banks["train_arbitrary"]["area_range"])},
        "square": {"side_fraction": float(banks["val_square"]["side_fraction"])},
        "objects": {"min_inside": float(objects["min_inside"]), "min_object_pixels": OBJECT_MIN_PIXELS},
        "lesions": {"loads_ml": {k: LESION_LOADS_ML[k] for k in LESION_LOADS}},
    }


def _in_brain(draw: Callable[[], np.ndarray], brain: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(hole, drawn)``: the first of up to ``REGION_TRIES`` draws with a pixel in ``brain``, restricted to it."""
    for _ in range(REGION_TRIES):
        drawn = draw()
        if (drawn & brain).any():
            return drawn & brain, drawn
    raise ValueError(f"no {what} hole inside the brain after {REGION_TRIES} draws")


def brain_box(brain: np.ndarray) -> tuple[slice, slice]:
    """The brain's bounding box in a slice: the field of view the ipA-MedGAN masks are sized on."""
    rows, cols = np.nonzero(brain)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def draw_segments(unit: np.ndarray, brain: np.ndarray, rng: np.random.RandomState, params: dict) -> tuple:
    """shape_aware_mask_inpainting: ``common.transforms.PseudoSegmentMaskd`` as its IXI route validates with
    (pseudo-segments of the slice placed by OPS, ``region_key`` = the brain)."""
    from common.transforms import PseudoSegmentMaskd

    transform = PseudoSegmentMaskd(keys="image", shape="segment", region_key="brain", masked_key=None, **params)
    transform.set_random_state(state=rng)
    out = transform({"image": unit[None].astype(np.float32), "brain": brain[None].astype(np.float32)})
    hole = np.asarray(out["mask"])[0] > 0
    return hole, hole


def draw_irregular(brain: np.ndarray, rng: np.random.RandomState, params: dict) -> tuple:
    """autoinpainting: ``common.transforms.masks.irregular_mask`` over the slice at the configs' coverage
    (``hole_coverage``), restricted to the brain as ``IrregularMaskd(region_key="brain")`` does."""
    from common.transforms.masks import irregular_mask

    return _in_brain(lambda: irregular_mask(brain.shape, rng, **params), brain, "irregular")


def draw_arbitrary(brain: np.ndarray, rng: np.random.RandomState, params: dict) -> tuple:
    """ipa_medgan experiment (b): ``irregular_mask`` at the paper's 1.36-5.46 % (``scripts.masks.BANKS``) of the
    field of view, here the brain's bounding box, restricted to the brain."""
    from common.transforms.masks import irregular_mask

    box = brain_box(brain)
    shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)

    def draw() -> np.ndarray:
        drawn = np.zeros(brain.shape, bool)
        drawn[box] = irregular_mask(shape, rng, **params)
        return drawn

    return _in_brain(draw, brain, "arbitrary")


def draw_square(brain: np.ndarray, rng: np.random.RandomState, params: dict) -> tuple:
    """ipa_medgan experiment (a): the 64x64-of-256 square scaled to the slice, a ``square_mask`` of side
    ``side_fraction`` x the brain box's (geometric mean) side, inside the box, restricted to the brain."""
    box = brain_box(brain)
    shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    side = max(1, round(params["side_fraction"] * float(np.sqrt(shape[0] * shape[1]))))

    def draw() -> np.ndarray:
        drawn = np.zeros(brain.shape, bool)
        drawn[box] = square_mask(shape, side, rng)
        return drawn

    return _in_brain(draw, brain, "square")


def object_sources() -> list[tuple[str, str]]:
    """The objects of mask_optimized_object_removal's copy-paste data: the tumour and MS-lesion labels of the
    sample cohort's test split (``copy_paste_datalist``'s ``DEFAULT_MEDICAL_OBJECTS``), ``(image, label)`` paths."""
    from common.data import build_sample_data

    folder = Path(build_sample_data())  # cached after the first build
    entries = json.loads((folder / "datalist_2d.json").read_text())["test"]
    objects = _bundle_scripts("mask_optimized_object_removal").copy_paste.DEFAULT_MEDICAL_OBJECTS
    return [
        (str(folder / e[image_key]), str(folder / e[label_key]))
        for e in entries
        for image_key, label_key, count_key in objects
        if e.get(count_key, 0) >= OBJECT_MIN_PIXELS
    ]


def draw_object(
    image: np.ndarray, brain: np.ndarray, spacing: float, rng: np.random.RandomState, params: dict, sources: list
) -> tuple:
    """mask_optimized_object_removal: one object (a connected component of a cohort tumour / MS-lesion label)
    cut and pasted by the bundle's ``scripts.copy_paste.RandCopyPasted`` (its training ``min_inside`` of the
    object in the brain, physical size kept: scaled from the cohort's spacing to the slice's); the hole is the
    pasted object in the brain."""
    copy_paste = _bundle_scripts("mask_optimized_object_removal").copy_paste
    for _ in range(REGION_TRIES):
        source_path, label_path = sources[rng.randint(len(sources))]
        source_image = nib.load(source_path)
        scale = float(source_image.header.get_zooms()[0]) / spacing
        label = np.squeeze(np.asarray(nib.load(label_path).dataobj)) > 0
        minimum = int(np.ceil(params["min_object_pixels"] / scale**2))
        if not copy_paste.object_components(label, minimum):
            continue
        paste = copy_paste.RandCopyPasted(
            region_key="region",
            min_object_pixels=minimum,
            scale_range=(scale, scale),
            min_inside=params["min_inside"],
        )
        data = {
            "target": image[None].astype(np.float32),
            "source": np.squeeze(np.asarray(source_image.dataobj, dtype=np.float32))[None],
            "source_mask": label[None].astype(np.float32),
            "region": brain[None].astype(np.float32),
            "paste_seed": int(rng.randint(2**31 - 1)),
        }
        try:
            drawn = np.asarray(paste(data)["mask"])[0] > 0
        except ValueError:  # the object does not fit this brain slice: another one
            continue
        if (drawn & brain).any():
            return drawn & brain, drawn
    raise ValueError(f"no copy-paste object fits the brain after {REGION_TRIES} draws")


def draw_lesions(wm: np.ndarray, brain: np.ndarray, spacing: float, seed: int, load: str) -> np.ndarray:
    """blind_lesion_inpainting_3d: one MS-like lesion mask of class ``load`` from
    ``common.transforms.lesion_masks.synthetic_lesion_masks`` (the cohort's lesion generator, which works at
    1 mm: the subject's WM / brain are upsampled to 1 mm on the brain's box); back at the volume's spacing a
    voxel is a hole when any of its 1 mm voxels is lesion (partial volume counts as unknown), kept in the brain."""
    factor = int(round(spacing))
    if factor < 1 or abs(spacing - factor) > 1e-3:
        raise ValueError(f"the lesion family needs an integer spacing in mm, got {spacing}")
    rows, cols, slices = (np.flatnonzero(brain.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = tuple(slice(int(v[0]), int(v[-1]) + 1) for v in (rows, cols, slices))
    up = tuple(np.kron(x[box].astype(np.float32), np.ones((factor,) * 3, np.float32)) for x in (wm, brain))
    masks = synthetic_lesion_masks(up[0], up[1] > 0.5, len(LESION_LOADS), seed)  # one per class, in order
    drawn_load, mask = next(itertools.islice(masks, LESION_LOADS.index(load), None))
    if drawn_load != load:
        raise RuntimeError(f"the lesion generator drew a {drawn_load} mask where a {load} one was expected")
    shape = tuple(s.stop - s.start for s in box)
    coarse = mask.reshape(shape[0], factor, shape[1], factor, shape[2], factor).any(axis=(1, 3, 5))
    lesions = np.zeros(brain.shape, bool)
    lesions[box] = coarse
    return lesions & (brain > 0)


def build_own_cases(info: dict, seed: int, bundles: set[str], log: Callable[[str], None]) -> dict[str, list[dict]]:
    """Per bundle, the cases of its own families on the slices of the standard cases (``info["volumes"]``):
    one seeded ``RandomState([seed, 77, subject, slice, family])`` per hole; the lesion family draws one 3-D
    mask per subject (class cycled small / medium / large over the subjects) and scores the slices it reaches."""
    params = family_parameters()
    own: dict[str, list[dict]] = {}
    sources = None
    for name, families in OWN_FAMILIES.items():
        if name not in bundles:
            continue
        start = time.time()
        own[name] = []
        for f_index, (family, tag) in enumerate(families):
            for subject, vol in info["volumes"].items():
                s_index, affine, brain = vol["index"], vol["affine"], vol["brain"]
                spacing = float(np.sqrt((affine[:3, :3] ** 2).sum(0))[0])
                lesions = None
                if tag == "lesions":
                    load = LESION_LOADS[s_index % len(LESION_LOADS)]
                    lesions = draw_lesions(vol["wm"], brain, spacing, seed * 1000 + s_index, load)
                for z_index, z in enumerate(vol["slices"]):
                    rng = np.random.RandomState([seed, 77, s_index, z_index, f_index])
                    b2d, acquired = brain[:, :, z], vol["acquired"][:, :, z]
                    if tag == "segments":
                        unit = to_unit(acquired, *scaling(acquired, b2d), b2d)
                        hole, _ = draw_segments(unit, b2d, rng, params[tag])
                    elif tag == "irregular":
                        hole, _ = draw_irregular(b2d, rng, params[tag])
                    elif tag == "arbitrary":
                        hole, _ = draw_arbitrary(b2d, rng, params[tag])
                    elif tag == "square":
                        hole, _ = draw_square(b2d, rng, params[tag])
                    elif tag == "objects":
                        sources = sources if sources is not None else object_sources()
                        hole, _ = draw_object(acquired, b2d, spacing, rng, params[tag], sources)
                    else:
                        hole = np.ascontiguousarray(lesions[:, :, z])
                        if not hole.any():  # the subject's lesions miss this slice: nothing to score there
                            continue
                    case = make_case(subject, z, family, hole, lesions, vol["t1"], brain, affine)
                    case["family_bundle"] = name
                    own[name].append(case)
        log(f"own family of {name}: {len(own[name])} holes ({time.time() - start:.0f} s)")
    return own


def own_summary(rows: list[dict], status: dict) -> list[list[str]]:
    """Per bundle and own family: the bundle's hole metrics, the baselines' PSNR on the same holes, the best
    baseline and the margin (bundle - best baseline PSNR, mean +/- sd of the paired per-hole difference)."""
    table = []
    for name, families in OWN_FAMILIES.items():
        label = BUNDLES[name]
        for family, _ in families:
            picked = [r for r in rows if r["family_bundle"] == name and r["placement"] == family]
            mine = [r for r in picked if r["method"] == label]
            if not picked:
                continue
            baseline = {m: [r for r in picked if r["method"] == m] for m in BASELINES}
            coverage = np.mean([r["brain_fraction"] for r in baseline[BASELINES[0]]])
            baseline_psnr = {m: np.mean([r["psnr"] for r in v]) for m, v in baseline.items()}
            best = max(baseline_psnr, key=baseline_psnr.get)
            psnrs = " / ".join(f"{baseline_psnr[m]:.2f}" for m in BASELINES)
            n = len(baseline[BASELINES[0]])
            if not mine:
                table.append(
                    [label, family, str(n), f"{coverage:.1%}", status.get(label, "n/a"), "", "", "", best, psnrs, ""]
                )
                continue

            def stat(key: str, digits: int, rows: list[dict] = mine) -> str:
                values = np.array([r[key] for r in rows])
                return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}"

            margin = np.array([r["psnr"] for r in mine]) - np.array([r["psnr"] for r in baseline[best]])
            table.append(
                [
                    label,
                    family,
                    str(len(mine)),
                    f"{coverage:.1%}",
                    stat("psnr", 2),
                    stat("ssim", 3),
                    stat("mae", 3),
                    f"{max(r['known_max_change'] for r in mine):.3f}",
                    best,
                    psnrs,
                    f"{margin.mean():+.2f} ± {margin.std(ddof=1) if len(margin) > 1 else 0:.2f}",
                ]
            )
    return table


OWN_HEADER = [
    "bundle",
    "own mask family",
    "n",
    "hole (% brain)",
    "PSNR (dB)",
    "SSIM",
    "MAE",
    "known max",
    "best baseline",
    "PSNR biharmonic / mean / diffusion",
    "margin (dB)",
]


# ----------------------------------------------------------------------------------------------------------
# run, tables, panel
# ----------------------------------------------------------------------------------------------------------


def evaluate(
    cases: list[dict], info: dict, log: Callable[[str], None], only: set[str] | None = None
) -> tuple[list[dict], dict, dict]:
    """Per-hole rows for every method (the bundles in ``only``, default all), the predictions (unit scale) and
    each bundle's status."""
    preds: dict[str, list[np.ndarray]] = {}
    status: dict[str, str] = {}
    negative: dict[str, list[float]] = {}
    given_holes: dict[str, list[np.ndarray]] = {}  # per method, where its holes differ from the cases'
    for case in cases:
        image = to_unit(case["image"], case["lo"], case["hi"], case["brain"]) * ~case["hole"]
        case["unit_input"] = image
        preds.setdefault("biharmonic", []).append(biharmonic_fill(image, case["hole"]))
        preds.setdefault("mean fill", []).append(mean_fill(image, case["hole"], case["brain"]))
        preds.setdefault("diffusion fill", []).append(diffusion_fill(image, case["hole"]))
    for name, label in BUNDLES.items():
        if only is not None and name not in only:
            continue
        bundle = REPO / "bundles" / name
        start = time.time()
        try:
            with tempfile.TemporaryDirectory(prefix=f"real_inpainting_{name}_") as tmp:
                if name == "blind_lesion_inpainting_3d":
                    raw, given_holes[label] = run_blind_3d(bundle, cases, Path(tmp), info["volumes"])
                else:
                    raw = BUNDLE_RUNNERS[name](bundle, cases, Path(tmp))
            key = label
            preds[key] = [to_unit(r, c["lo"], c["hi"], c["brain"]) for r, c in zip(raw, cases)]
            negative[key] = [float((r[c["hole"]] < 0).mean()) for r, c in zip(raw, cases)]
            status[label] = "ok"
        except Exception as error:  # a bundle that fails on real input is reported, not hidden
            status[label] = f"n/a ({type(error).__name__}: {str(error).splitlines()[0][:160]})"
        log(f"{label}: {status[label]} ({time.time() - start:.0f} s)")
    rows = []
    for method, outputs in preds.items():
        for index, (case, pred) in enumerate(zip(cases, outputs)):
            known = ~(given_holes[method][index] if method in given_holes else case["hole"])
            rows.append(
                {
                    "family": "own" if "family_bundle" in case else "standard",
                    "family_bundle": case.get("family_bundle", ""),
                    "method": method,
                    "subject": case["subject"],
                    "slice_z": case["z"],
                    "placement": case["placement"],
                    **hole_metrics(pred, case["truth"], case["hole"]),
                    "known_max_change": float(np.abs(pred[known] - case["unit_input"][known]).max()),
                    "negative_fraction": negative[method][index] if method in negative else 0.0,
                    "brain_fraction": float(case["hole"].sum() / case["brain"].sum()),
                }
            )
    return rows, preds, status


def summary(
    rows: list[dict], status: dict, methods: list[str], placements: tuple[str, ...] = PLACEMENTS
) -> list[list[str]]:
    table = []
    for method in methods:
        for placement in placements:
            picked = [r for r in rows if r["method"] == method and r["placement"] == placement]
            if not picked:
                table.append([method, placement, "0", status.get(method, "n/a"), "", "", "", "", ""])
                continue
            psnr, mae = np.array([r["psnr"] for r in picked]), np.array([r["mae"] for r in picked])
            ssim = np.array([r["ssim"] for r in picked])
            pred, true = (
                np.array([r["mean_pred"] for r in picked]),
                np.array([r["mean_true"] for r in picked]),
            )
            table.append(
                [
                    method,
                    placement,
                    str(len(picked)),
                    f"{psnr.mean():.2f} ± {psnr.std(ddof=1) if len(picked) > 1 else 0:.2f}",
                    f"{ssim.mean():.3f} ± {ssim.std(ddof=1) if len(picked) > 1 else 0:.3f}",
                    f"{mae.mean():.3f} ± {mae.std(ddof=1) if len(picked) > 1 else 0:.3f}",
                    f"{pred.mean():.3f} ± {pred.std(ddof=1) if len(picked) > 1 else 0:.3f}",
                    f"{true.mean():.3f}",
                    f"{max(r['known_max_change'] for r in picked):.3f}",
                ]
            )
    return table


HEADER = ["method", "holes", "n", "PSNR (dB)", "SSIM", "MAE", "mean pred", "mean true", "known max"]


def markdown(table: list[list[str]], extra: list[str] | None = None, header: list[str] | None = None) -> str:
    header = (extra or []) + (header or HEADER)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def panel(cases: list[dict], preds: dict, methods: list[str], best: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [i for p in PLACEMENTS for i in [k for k, c in enumerate(cases) if c["placement"] == p][:2]]
    shown = [m for m in methods if m in preds]
    columns = ["input", "hole", *shown, f"|{best} - truth|"]
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(1.6 * len(columns), 1.7 * len(picks)))
    axes = np.atleast_2d(axes)
    half = 20
    for row, k in enumerate(picks):
        case = cases[k]
        ci, cj = np.argwhere(case["hole"]).mean(0).round().astype(int)
        box = (slice(max(0, ci - half), ci + half), slice(max(0, cj - half), cj + half))
        images = [case["unit_input"], case["hole"].astype(float), *[preds[m][k] for m in shown]]
        images.append(np.abs(preds[best][k] - case["truth"]) * case["hole"])
        for col, (ax, image) in enumerate(zip(axes[row], images)):
            ax.imshow(
                np.rot90(image[box]), cmap="magma" if col == len(images) - 1 else "gray", vmin=0, vmax=1
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=6)
        axes[row, 0].set_ylabel(f"{case['subject'][:6]} z{case['z']}\n{case['placement']}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip() + (
            " (+ uncommitted changes)"
            if subprocess.run(
                ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
            else ""
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ixi_t1_2mm"))
    parser.add_argument("--quick", action="store_true", help="2 subjects, 2 slices each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs" / "results"))
    parser.add_argument("--variant", choices=("standard", "scanner_shift", "both"), default="standard")
    parser.add_argument(
        "--families",
        nargs="+",
        choices=FAMILIES,
        default=list(FAMILIES),
        help="standard: the three placements; own: each bundle's own evaluation mask family (default both)",
    )
    parser.add_argument("--bundles", nargs="+", choices=sorted(BUNDLES), help="score only these bundles")
    parser.add_argument(
        "--weights", nargs="+", default=[], metavar="BUNDLE=PATH", help="score PATH instead of BUNDLE's shipped weights"
    )
    parser.add_argument(
        "--configs", nargs="+", default=[], metavar="BUNDLE=FILE",
        help="merge the bundle's configs/FILE after its route (e.g. mask_optimized_object_removal=inference_ixi.json)",
    )
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="BUNDLE:ID=JSON", help="override a config id of BUNDLE's route"
    )
    args = parser.parse_args(argv)
    for item in args.configs:
        name, _, file = item.partition("=")
        if name not in BUNDLES or not (REPO / "bundles" / name / "configs" / file).is_file():
            parser.error(f"--configs {item}: need BUNDLE=FILE with FILE in the bundle's configs/ folder")
        EXTRA_CONFIGS.setdefault(name, []).append(file)
    for item in args.set:
        target, _, value = item.partition("=")
        name, _, key = target.partition(":")
        if name not in BUNDLES or not key or not value:
            parser.error(f"--set {item}: need BUNDLE:ID=JSON with BUNDLE one of {sorted(BUNDLES)}")
        OVERRIDES.setdefault(name, {})[key] = json.loads(value)
    for item in args.weights:
        name, _, path = item.partition("=")
        if name not in BUNDLES or not Path(path).is_file():
            parser.error(f"--weights {item}: need BUNDLE=PATH with BUNDLE one of {sorted(BUNDLES)} and PATH a file")
        WEIGHTS[name] = Path(path)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = ("standard", "scanner_shift") if args.variant == "both" else (args.variant,)
    families = [f for f in FAMILIES if f in args.families]
    selected = set(args.bundles or BUNDLES)
    methods = [*BASELINES, *(label for name, label in BUNDLES.items() if name in selected)]
    all_rows, tables, own_tables, results, walls = [], {}, {}, {}, {}
    for variant in variants:
        log = lambda m, v=variant: print(f"[{v}] {m}", file=sys.stderr)  # noqa: E731
        cases, info = build_cases(Path(args.data), args.quick, args.seed, variant, standard="standard" in families)
        if "standard" in families:
            begin = time.time()
            rows, preds, status = evaluate(cases, info, log, selected)
            all_rows += [{"variant": variant, **r} for r in rows]
            tables[variant] = summary(rows, status, methods)
            results[variant] = {"cases": cases, "preds": preds, "status": status, "info": info}
            walls["standard"] = walls.get("standard", 0.0) + time.time() - begin
        if "own" in families:
            begin = time.time()
            own_rows, own_status = [], {}
            for name, own_cases in build_own_cases(info, args.seed, selected, log).items():
                rows, _, status = evaluate(own_cases, info, log, {name})
                own_rows += rows
                own_status.update(status)
            all_rows += [{"variant": variant, **r} for r in own_rows]
            own_tables[variant] = own_summary(own_rows, own_status)
            results.setdefault(variant, {"info": info, "status": {}})["own_status"] = own_status
            walls["own"] = walls.get("own", 0.0) + time.time() - begin
    wall = time.time() - start
    if tables:
        print(markdown([[v, *row] for v, t in tables.items() for row in t], ["variant"]))
    if own_tables:
        print(markdown([[v, *row] for v, t in own_tables.items() for row in t], ["variant"], OWN_HEADER))
    first = results[variants[0]]
    best = None
    if "preds" in first:
        scored = [m for m in methods if m in first["preds"]]  # n/a rows (no own-mask route) are not candidates
        best = max(
            scored,
            key=lambda m: np.mean(
                [
                    r["psnr"]
                    for r in all_rows
                    if r["method"] == m and r["variant"] == variants[0] and r["family"] == "standard"
                ]
            ),
        )
        panel(first["cases"], first["preds"], methods, best, out / "real_inpainting.png")
    with open(out / "real_inpainting.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(all_rows[0]))
        writer.writeheader()
        writer.writerows(all_rows)
    info = first["info"]
    slices = QUICK_SLICES if args.quick else SLICES
    timing = ", ".join(f"{f} {walls[f]:.0f} s" for f in families)
    lines = [
        "# Real-anatomy inpainting benchmark (issue #17)",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; git commit: {git_commit()}",
        f"- data: `{args.data}` (IXI, one site: Philips 3 T, Hammersmith; native 2 mm isotropic, RAS axial slices)",
        f"- subjects (fixed validation split only): {', '.join(info['subjects'])}; {slices} slices each over the "
        f"middle {MIDDLE_FRACTION:.0%} of the brain's axial extent",
        f"- holes: `square_mask` {HOLE_SIDE}x{HOLE_SIDE} px ({2 * HOLE_SIDE} mm), in the brain; deep WM = centre in "
        f"WM eroded {WM_EROSION} px; cortex = centre in GM within {CORTEX_DEPTH} px of the brain edge; seed "
        f"{args.seed}; tumour blob = a smooth irregular 3-D blob of {TUMOUR_CM3[0]:.0f}-{TUMOUR_CM3[1]:.0f} cm³ "
        f"(log-uniform) centred in the slice at least {BRAIN_EROSION} px inside the brain, its slice the 2-D hole; "
        "same holes for every method and variant",
        "- units: each slice scaled by the 0.5/99.5 percentiles of its known brain pixels, clipped to [0, 1]; "
        "metrics inside the hole; mean ± sd over holes; `known max` = largest change of a known pixel; the "
        "slices are skull-stripped, so pixels outside the brain are known zeros (a cortex hole borders them)",
        f"- command: `python benchmarks/real_inpainting.py --data {args.data}{' --quick' if args.quick else ''} "
        f"--seed {args.seed} --variant {args.variant} --families {' '.join(families)}"
        f"{' --bundles ' + ' '.join(args.bundles) if args.bundles else ''}"
        f"{' --weights ' + ' '.join(args.weights) if args.weights else ''}"
        f"{' --configs ' + ' '.join(args.configs) if args.configs else ''}"
        f"{' --set ' + ' '.join(args.set) if args.set else ''}`; wall time {wall:.0f} s ({timing}; "
        "2 shared CPU cores, 1 thread)",
        "",
    ]
    for variant, table in tables.items():
        title = (
            "Standard (IXI validation slices as acquired)"
            if variant == "standard"
            else (
                "Scanner shift (simulated, applied before scaling: random monotone intensity remap, bias field "
                "±20 %, blur of sigma 0.6/0.6/1.0 voxel, Rician-like noise 2 %)"
            )
        )
        lines += [f"## {title}", "", markdown(table), ""]
    if own_tables:
        lines += own_markdown(own_tables, families, args.seed)
    lines += ["Bundle routes:", ""]
    for name, label in BUNDLES.items():
        if name not in selected:
            continue
        negative = [r["negative_fraction"] for r in all_rows if r["method"] == label]
        note = (
            f" (raw output < 0 in {np.mean(negative):.0%} of hole pixels)"
            if negative and np.mean(negative)
            else ""
        )
        lines.append(f"- {label}: {FOOTNOTES[name]}{note}")
    if best is not None:
        lines += [
            "",
            f"Panel (`real_inpainting.png`, standard variant, 80 mm crops): input with hole, hole, each "
            f"method's output, |output - truth| of the best method by mean PSNR ({best}).",
        ]
    lines.append("")
    (out / "real_inpainting.md").write_text("\n".join(lines), encoding="utf-8")
    return {
        "tables": tables,
        "own_tables": own_tables,
        "rows": [r for r in all_rows if r["family"] == "standard"],  # the standard placements' rows
        "own_rows": [r for r in all_rows if r["family"] == "own"],
        "wall_s": wall,
        "family_wall_s": walls,
        "status": {v: r["status"] for v, r in results.items()},
    }


def own_markdown(own_tables: dict, families: list[str], seed: int) -> list[str]:
    """The "own mask family" section: what each family is, then its table per variant."""
    params = family_parameters()
    segments, objects = params["segments"], params["objects"]
    loads = ", ".join(f"{k} {lo:g}-{hi:g} mL" for k, (lo, hi) in params["lesions"]["loads_ml"].items())
    lines = [
        "## Own mask family (issue #17 (b))",
        "",
        "Each bundle scored on holes drawn by its own evaluation mask generator (imported from the bundle or "
        "`common`, parameters read from its configs / scripts), on the same validation slices, inside the brain, "
        f"seeded (`RandomState([{seed}, 77, subject, slice, family])`); the three baselines fill exactly the same "
        "holes (their PSNR beside each row); `best baseline` = the highest mean PSNR of the three; `margin` = "
        "bundle - best baseline PSNR (mean ± sd of the per-hole difference); `hole (% brain)` = mean share of the "
        "slice's brain that is hole.",
        "",
        f"- pseudo-segments (OPS): `common.transforms.PseudoSegmentMaskd` as the bundle's `configs/ixi.json` "
        f"validates with ({segments['num_segments'][0]}-{segments['num_segments'][1]} pseudo-segments of the slice, "
        f"{segments['weighting']} weighting, perturbed by up to {segments['perturb_px']} px, placed by "
        f"{segments['position'].upper()}, `region_key` = brain);",
        "- copy-paste objects: one connected tumour or MS-lesion object of the sample cohort's test split "
        "(`scripts.copy_paste.DEFAULT_MEDICAL_OBJECTS`) pasted by the bundle's `scripts.copy_paste.RandCopyPasted` "
        f"at its physical size (1 mm cohort -> 2 mm slice), at least {objects['min_inside']:.0%} of it in the brain "
        f"(`min_inside` of `train.json`), objects of at least {objects['min_object_pixels']} px at 2 mm; the hole "
        "is its part in the brain;",
        "- irregular: `common.transforms.masks.irregular_mask` (circles, ellipses, thick lines) covering "
        f"{params['irregular']['coverage_range'][0]:.0%}-{params['irregular']['coverage_range'][1]:.0%} of the "
        "slice (`hole_coverage` of `train.json`), restricted to the brain as `IrregularMaskd(region_key=brain)` "
        "in `configs/ixi.json`;",
        "- arbitrary: `irregular_mask` covering the paper's "
        f"{params['arbitrary']['coverage_range'][0]:.2%}-{params['arbitrary']['coverage_range'][1]:.2%} "
        "(`scripts.masks.BANKS['train_arbitrary']`) of the field of view, here the brain's bounding box in the "
        "slice, restricted to the brain;",
        f"- square 1/4 FOV: the paper's 64x64-of-256 square scaled: a `square_mask` of "
        f"{params['square']['side_fraction']:g} x the brain box's (geometric-mean) side inside the box, "
        "restricted to the brain;",
        "- MS lesions (3-D): `common.transforms.lesion_masks.synthetic_lesion_masks` (the cohort's MS-lesion "
        f"generator, classes {loads}, cycled over the subjects) drawn at 1 mm in the subject's WM (upsampled), a "
        "2 mm voxel a hole when any of its 1 mm voxels is lesion; the bundle fills the volume (non-blind), the "
        "baselines fill the scored slices in 2-D; only the validation slices the lesions reach are scored.",
        "",
    ]
    for variant, table in own_tables.items():
        lines += [f"### {variant}", "", markdown(table, header=OWN_HEADER), ""]
    return lines



if __name__ == "__main__":
    main()
