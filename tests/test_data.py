"""The embedded sample cohort: geometry, splits, determinism, lesions, and the CLI's errors."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImaged
from scipy import ndimage

from common.data import (
    MNI_AFFINE,
    MNI_SHAPE,
    SLICE_INDICES,
    build_sample_data,
    dataset_dir,
    load_template,
    make_subject,
    split_subjects,
)
from common.data.cohort import MS_LOADS_ML
from common.data.sample import array_checksum, slice_affine

N_SUBJECTS = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build_sample_data(tmp_path_factory.mktemp("data"), n_subjects=N_SUBJECTS, seed=7, workers=2)


@pytest.fixture(scope="module")
def manifest(cohort):
    return json.loads((cohort / "manifest.json").read_text(encoding="utf-8"))


def load(path):
    return np.asanyarray(nib.load(path).dataobj)


def test_mni_grid_matches_fsl_mni152_1mm():
    # FSL's MNI152_T1_1mm is 182x218x182 with sform x = 90 - i, y = j - 126, z = k - 72 (published header);
    # ours stores the same voxel centres in RAS order (x = -91 + i), with the MNI origin at voxel (91, 126, 72).
    assert MNI_SHAPE == (182, 218, 182)
    fsl = np.array([[-1, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]], dtype=float)
    corners = np.array([[0, 0, 0, 1], [181, 217, 181, 1]]).T
    ours = sorted(map(tuple, (MNI_AFFINE @ corners)[:3].T))
    theirs = sorted(map(tuple, (fsl @ corners)[:3].T))
    assert {c[0] for c in ours} == {c[0] for c in theirs} == {-91.0, 90.0}
    np.testing.assert_allclose(MNI_AFFINE @ [91, 126, 72, 1], [0, 0, 0, 1])


def test_volumes_and_slices_have_the_documented_geometry(cohort):
    volume = nib.load(cohort / "sub-000" / "t1.nii.gz")
    assert volume.shape == MNI_SHAPE
    np.testing.assert_allclose(volume.affine, MNI_AFFINE)
    k = SLICE_INDICES[3]
    plane = nib.load(cohort / "sub-000" / "slices" / f"sub-000_z{k:03d}_t1.nii.gz")
    assert plane.shape == (256, 256)
    np.testing.assert_allclose(plane.affine, slice_affine(k))
    # The slice's field of view is the 218 mm of the padded MNI plane, centred on the volume's x centre.
    spacing = 218 / 256
    np.testing.assert_allclose(plane.affine[0, 0], spacing)
    centre_x = plane.affine[0, 3] + spacing * 127.5
    np.testing.assert_allclose(centre_x, MNI_AFFINE[0, 3] + 90.5)
    # the slice and the volume agree where they overlap: mean brain intensity within 3%
    slice_values = plane.get_fdata()
    volume_values = volume.get_fdata()[:, :, k]
    assert abs(slice_values[slice_values > 0].mean() / volume_values[volume_values > 0].mean() - 1) < 0.03


def test_monai_reader_keeps_geometry(cohort):
    data = LoadImaged(keys="image", image_only=True)({"image": str(cohort / "sub-001" / "t1.nii.gz")})
    assert tuple(data["image"].shape) == MNI_SHAPE
    np.testing.assert_allclose(data["image"].affine.numpy(), MNI_AFFINE)


def test_anatomy_stays_in_mni_space(cohort):
    # Each subject is a deformed template but must stay registered: brain mask Dice with the template's > 0.9.
    from common.data.cohort import CohortParameters, _warp_template

    template = load_template()
    identity = CohortParameters(rotation_deg=0.0, scaling=0.0, elastic_mm=0.0)
    *_, reference, _ = _warp_template(template, np.random.default_rng(0), identity)
    for subject in range(N_SUBJECTS):
        brain = load(cohort / f"sub-{subject:03d}" / "brain.nii.gz") > 0
        dice = 2 * np.count_nonzero(brain & reference) / (brain.sum() + reference.sum())
        assert 0.9 < dice < 0.995  # registered, yet really deformed


def test_splits_are_by_subject(cohort):
    splits = split_subjects(10)
    assert [len(splits[s]) for s in ("training", "validation", "test")] == [6, 2, 2]
    assert sorted(sum(splits.values(), [])) == list(range(10))
    for kind in ("3d", "2d"):
        datalist = json.loads((cohort / f"datalist_{kind}.json").read_text(encoding="utf-8"))
        subjects = {s: {e["subject"] for e in datalist[s]} for s in ("training", "validation", "test")}
        assert all(len(v) == 1 for v in subjects.values())
        assert len(set.union(*subjects.values())) == N_SUBJECTS
    datalist_2d = json.loads((cohort / "datalist_2d.json").read_text(encoding="utf-8"))
    assert len(datalist_2d["training"]) == len(SLICE_INDICES)


def test_datalist_loads_with_monai_and_points_at_files(cohort):
    from monai.data import load_decathlon_datalist

    for kind in ("3d", "2d"):
        for split in ("training", "validation", "test"):
            entries = load_decathlon_datalist(cohort / f"datalist_{kind}.json", False, split)
            for entry in entries:
                for key in ("image", "image_ms", "label_ms", "image_tumour", "label_tumour", "brain"):
                    assert (cohort / entry[key]).exists(), entry[key]


def test_ms_lesions_are_hypointense_inside_white_matter(cohort, manifest):
    for info in manifest["subjects"]:
        folder = cohort / info["subject"]
        mask = load(folder / "ms_mask.nii.gz") > 0
        wm = load(folder / "wm.nii.gz")
        t1, t1_ms = load(folder / "t1.nii.gz"), load(folder / "t1_ms.nii.gz")
        assert mask.any()
        assert wm[mask].min() > 0.5, "every MS lesion voxel lies in white matter"
        low, high = MS_LOADS_ML[info["ms"]["load"]]
        assert low <= info["ms"]["target_ml"] <= high
        assert info["ms"]["target_ml"] <= mask.sum() / 1000 < info["ms"]["target_ml"] + 2.0
        # darker than the same voxels without lesions: ratio in the configured 0.45..0.75 range on average
        ratio = t1_ms[mask].mean() / t1[mask].mean()
        assert 0.4 < ratio < 0.85
        # the lesion is the only difference: identical away from the (smooth-bordered) lesions
        far = ~ndimage.binary_dilation(mask, iterations=4)
        np.testing.assert_array_equal(t1_ms[far], t1[far])


def test_tumours_are_masses_inside_the_brain(cohort, manifest):
    for info in manifest["subjects"]:
        folder = cohort / info["subject"]
        mask = load(folder / "tumour_mask.nii.gz") > 0
        brain = load(folder / "brain.nii.gz") > 0
        t1, t1_tumour = load(folder / "t1.nii.gz"), load(folder / "t1_tumour.nii.gz")
        assert 1.0 < mask.sum() / 1000 < 60.0
        assert not (mask & ~brain).any()
        wm_level = np.median(t1[load(folder / "wm.nii.gz") > 0.9])
        level = t1_tumour[mask].mean() / wm_level
        assert (level > 1.1) if info["tumour"]["bright"] else (level < 0.7)
        far = ~ndimage.binary_dilation(mask, iterations=4)
        np.testing.assert_array_equal(t1_tumour[far], t1[far])
        z = info["tumour"]["centre_voxel"][2]
        assert SLICE_INDICES[0] <= z <= SLICE_INDICES[-1], "the mass is visible in the 2D slices"


def test_same_seed_same_data_whatever_the_workers(cohort, manifest, tmp_path):
    again = build_sample_data(tmp_path, n_subjects=N_SUBJECTS, seed=7, workers=1)
    assert (
        json.loads((again / "manifest.json").read_text(encoding="utf-8"))["checksums"]
        == manifest["checksums"]
    )
    np.testing.assert_array_equal(
        load(again / "sub-002" / "t1_ms.nii.gz"), load(cohort / "sub-002" / "t1_ms.nii.gz")
    )


def test_different_seeds_differ():
    template = load_template()
    a = make_subject(template, np.random.SeedSequence(1), "small", (55, 121))
    b = make_subject(template, np.random.SeedSequence(2), "small", (55, 121))
    assert array_checksum(a.t1) != array_checksum(b.t1)
    assert array_checksum(a.ms_mask) != array_checksum(b.ms_mask)


def test_build_is_idempotent(cohort):
    stamp = (cohort / "manifest.json").stat().st_mtime_ns
    assert build_sample_data(cohort.parent, n_subjects=N_SUBJECTS, seed=7) == cohort
    assert (cohort / "manifest.json").stat().st_mtime_ns == stamp


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "common.data", *args], capture_output=True, text=True, encoding="utf-8", errors="replace", env=env
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--subjects", "0"], "at least 3"),
        (["--subjects", "-4"], "at least 3"),
        (["--seed", "-1"], "seed must be an integer in [0, 2**32)"),
        (["--seed", str(2**32)], "seed must be an integer in [0, 2**32)"),
        (["--seed", "abc"], "invalid int value"),
    ],
)
def test_cli_rejects_bad_arguments(args, message, tmp_path):
    result = run_cli("build", "--root", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = run_cli("build", "--root", str(blocker / "data"), "--subjects", "3")
    assert result.returncode == 2
    assert "cannot write sample data under" in result.stderr and "MEDINPAINT_DATA" in result.stderr


def test_cli_path_honours_the_environment(tmp_path):
    import os

    result = run_cli("path", env={**os.environ, "MEDINPAINT_DATA": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout.strip() == str(dataset_dir(tmp_path))
    assert "--subjects" in run_cli("--help").stdout + run_cli("build", "--help").stdout


def test_slice_file_names_are_unique_across_subjects(cohort):
    """Outputs named after their input (SaveImaged with separate_folder=False) must never overwrite each other."""
    entries = json.loads((cohort / "datalist_2d.json").read_text(encoding="utf-8"))
    splits = [entries[split] for split in ("training", "validation", "test")]
    names = [Path(e[key]).name for split in splits for e in split for key in ("image", "label_ms")]
    assert len(names) == len(set(names))
    assert Path(entries["test"][0]["image"]).name.startswith(entries["test"][0]["subject"] + "_z")
