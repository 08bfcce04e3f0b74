"""Synthetic tumours in the real IXI validation subjects (issue #18) and the unsupervised-detection benchmark;
skipped, with the reason, when the IXI set is absent (a user's clone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from common.data.ixi import IXI_DIR_ENV, default_ixi_dir, fixed_split

REPO = Path(__file__).resolve().parents[1]
needs_ixi = pytest.mark.skipif(
    not (default_ixi_dir() / "t1").is_dir(),
    reason=f"IXI T1 set not found at {default_ixi_dir()} (set {IXI_DIR_ENV}; CI has it)",
)
KEYS = {"subject", "slice_z", "image_tumour", "label_tumour", "brain", "tumour_pixels", "brain_pixels", "image"}


@pytest.fixture(scope="module")
def built():
    from common.data.ixi_tumours import build_ixi_tumour_data

    folder = build_ixi_tumour_data(seed=0)
    return folder, json.loads((folder / "manifest.json").read_text("utf-8"))


def _volume(folder: Path, subject: str, stem: str) -> np.ndarray:
    return np.asarray(nib.load(folder / "subjects" / subject / f"{stem}.nii.gz").dataobj)


@needs_ixi
def test_datalist_keys_every_brain_slice_and_the_bundle_reads_it(built):
    from common.data import load_ixi_datalist
    from common.data.ixi_tumours import build_ixi_tumour_data

    folder, manifest = built
    assert build_ixi_tumour_data(seed=0) == folder  # cached
    entries = json.loads((folder / "datalist_2d.json").read_text("utf-8"))["validation"]
    assert all(set(e) == KEYS for e in entries)
    assert {e["subject"] for e in entries} == set(fixed_split()["validation"])
    healthy = load_ixi_datalist("2d", "validation")
    assert {(e["subject"], e["slice_z"]) for e in entries} == {
        (Path(e["subject"]).name, e["slice_z"]) for e in healthy
    }
    assert any(e["tumour_pixels"] == 0 for e in entries) and any(e["tumour_pixels"] > 0 for e in entries)
    for subject in {e["subject"] for e in entries}:  # every tumour voxel lies in a written slice
        labels = _volume(folder, subject, "tumour_labels")
        written = sum(e["tumour_pixels"] for e in entries if e["subject"] == subject)
        assert written == (labels > 0).sum()
        assert set(np.unique(labels)) == {0, 1, 2}


@needs_ixi
def test_the_bundles_tumour_slices_reads_the_datalist(built):
    import importlib

    folder, _ = built
    sys.path.insert(0, str(REPO / "bundles" / "autoinpainting_tumor_segmentation"))
    try:
        evaluation = importlib.import_module("scripts.evaluation")
        slices = evaluation.tumour_slices(str(folder / "datalist_2d.json"), ["validation"])
    finally:
        sys.path.remove(str(REPO / "bundles" / "autoinpainting_tumor_segmentation"))
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]
    entries = json.loads((folder / "datalist_2d.json").read_text("utf-8"))["validation"]
    assert len(slices) == sum(e["tumour_pixels"] > 0 for e in entries)
    assert all(
        Path(s["image"]).is_file() and Path(s["label"]).is_file() and Path(s["ooi"]).is_file() for s in slices
    )


@needs_ixi
def test_tumours_inside_the_brain_sizes_and_contrast(built):
    folder, manifest = built
    tumours = manifest["tumours"]
    assert len(tumours) == 2 * len(fixed_split()["validation"])
    for subject in {t["subject"] for t in tumours}:
        labels = _volume(folder, subject, "tumour_labels")
        brain = _volume(folder, subject, "brain") > 0
        t1 = _volume(folder, subject, "t1_tumour").astype(np.float32)
        spacing = nib.affines.voxel_sizes(nib.load(folder / "subjects" / subject / "brain.nii.gz").affine)
        assert not ((labels > 0) & ~brain).any(), "a tumour voxel lies outside the brain"
        mine = sorted((t for t in tumours if t["subject"] == subject), key=lambda t: t["label"])
        assert {t["kind"] for t in mine} == {"hyperintense", "hypointense"}
        for info in mine:
            blob = labels == info["label"]
            diameter = (6 * blob.sum() * np.prod(spacing) / np.pi) ** (1 / 3)
            assert 5.0 * 0.9 <= diameter <= 60.0 * 1.02 and abs(diameter - info["diameter_mm"]) < 0.5
            assert len(np.flatnonzero(blob.any(axis=(0, 1)))) >= 2, "a 3-D blob spans several axial slices"
            shell = ndimage.binary_dilation(blob, iterations=3) & ~ndimage.binary_dilation(blob) & brain
            shell &= labels == 0
            inside, around = float(t1[blob].mean()), float(np.median(t1[shell]))
            if info["kind"] == "hyperintense":
                assert inside > 1.1 * around, (subject, info, inside, around)
            else:
                assert inside < 0.9 * around, (subject, info, inside, around)


@needs_ixi
def test_deterministic_by_seed(built):
    from common.data.ixi_tumours import build_ixi_tumour_data

    folder, manifest = built
    other = build_ixi_tumour_data(seed=1)
    assert other != folder
    first = json.loads((other / "manifest.json").read_text("utf-8"))["tumours"]
    assert [t["centre_voxel"] for t in first] != [t["centre_voxel"] for t in manifest["tumours"]]
    subject = first[0]["subject"]
    image = _volume(other, subject, "t1_tumour")
    rebuilt = build_ixi_tumour_data(seed=1, force=True)
    assert json.loads((rebuilt / "manifest.json").read_text("utf-8"))["tumours"] == first
    assert np.array_equal(_volume(rebuilt, subject, "t1_tumour"), image)


@needs_ixi
@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "unsupervised_tumour_detection.py"), "--data",
         str(default_ixi_dir()), "--quick", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "unsupervised_tumour_detection_quick.md").read_text("utf-8")
    for method in ("autoinpainting", "threshold (tuned)", "threshold (mean +/- 2 sd)", "trivial prior (OOI)"):
        assert f"| {method} |" in table
    rows = (tmp_path / "unsupervised_tumour_detection_quick.csv").read_text("utf-8").splitlines()
    assert len(rows) == 1 + 4 and (tmp_path / "unsupervised_tumour_detection_quick.png").stat().st_size > 0


@needs_ixi
def test_real_t1_search_route_segments_a_synthetic_tumour_on_a_real_slice(built, tmp_path):
    """The documented real-brain route (inference.json + real_t1.json: IXI weights, 2 mm grid, skull-stripped by
    the brain mask, outputs named after the image) finds the largest synthetic tumour slice's tumour: Dice > 0.5
    (measured 0.84)."""
    from monai.bundle import ConfigWorkflow

    folder, _ = built
    entries = json.loads((folder / "datalist_2d.json").read_text("utf-8"))["validation"]
    entry = max(entries, key=lambda e: e["tumour_pixels"])
    bundle = REPO / "bundles" / "autoinpainting_tumor_segmentation"
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "real_t1.json")],
        workflow_type="infer", bundle_root=str(bundle), output_dir=str(tmp_path), dataset_dir=str(folder),
        datalist=[{"image": str(folder / entry["image_tumour"]), "brain": str(folder / entry["brain"])}],
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = sorted(p.name for p in tmp_path.rglob("*.nii.gz"))
    stem = Path(entry["image_tumour"]).name.replace(".nii.gz", "")
    assert f"{stem}_pred.nii.gz" in written, written
    pred = np.asarray(nib.load(next(tmp_path.rglob(f"{stem}_pred.nii.gz"))).dataobj) > 0
    truth = np.asarray(nib.load(folder / entry["label_tumour"]).dataobj) > 0
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.5


@needs_ixi
def test_tumour_splits_keep_the_test_subjects_out_of_training_and_model_selection(built):
    """Object removal's real-MR pairs: training / model selection from the IXI training subjects, test = the
    IXI validation subjects with the very tumours of the detection benchmark."""
    import re

    from common.data import build_ixi_tumour_splits

    folder = build_ixi_tumour_splits(seed=0, selection_subjects=4)
    lists = json.loads((folder / "datalist_2d.json").read_text("utf-8"))
    subjects = {k: {e["subject"] for e in lists[k]} for k in ("training", "validation", "test")}
    split = fixed_split()
    by_id = sorted(split["training"], key=lambda s: int(re.match(r"IXI(\d+)", s).group(1)))
    assert subjects["test"] == set(split["validation"])
    assert subjects["validation"] == set(by_id[-4:])
    assert subjects["training"] == set(by_id[:-4])
    entry = next(e for e in lists["training"] if e["tumour_pixels"] > 0)
    assert set(entry) == KEYS and all(Path(entry[k]).is_absolute() for k in ("image", "brain", "label_tumour"))
    assert entry["brain_pixels"] == int((np.asarray(nib.load(entry["brain"]).dataobj) > 0).sum())
    assert entry["tumour_pixels"] == int(np.asarray(nib.load(entry["label_tumour"]).dataobj).sum())
    benchmark, _ = built
    for test in lists["test"][::25]:  # the same tumour slices as the validation-only build
        name = Path(test["image_tumour"]).name
        same = np.asarray(nib.load(benchmark / "subjects" / test["subject"] / "slices" / name).dataobj)
        np.testing.assert_array_equal(np.asarray(nib.load(test["image_tumour"]).dataobj), same)
    with pytest.raises(ValueError, match="splits"):
        from common.data.ixi_tumours import build_ixi_tumour_data

        build_ixi_tumour_data(seed=0, splits=("test",))
