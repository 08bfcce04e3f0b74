"""Real T1 data (common/data/ixi.py, common/data/skull_stripping.py), checked against values read independently
from the IXI set's own files. Tests that need the set skip when it is absent (a user's clone has no ../shared)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from common.data import MNI_AFFINE, MNI_SHAPE, build_ixi_data, build_ixi_mni, find_subjects, skull_strip
from common.data.ixi import (
    IXI_DIR_ENV,
    default_ixi_dir,
    fixed_split,
    ixi_data_dir,
    load_ixi_datalist,
    read_derived_rois,
    read_subject,
    skull_strip_dice,
    tissue_masks,
)

IXI_DIR = default_ixi_dir()
HAS_IXI = (IXI_DIR / "t1").is_dir()
SKIP_REASON = f"IXI T1 set not found at {IXI_DIR} (set {IXI_DIR_ENV} to the ixi_t1_2mm folder; CI has it)"
needs_ixi = pytest.mark.skipif(not HAS_IXI, reason=SKIP_REASON)
TRAIN_ID, VALIDATION_ID = "IXI132-HH-1415", "IXI546-HH-2450"
# From the set's README / muse_derived_rois.csv: ventricles 509 and cortical CSF 600, white matter 604.
CSF_IDS = {1, 4, 11, 49, 50, 51, 52}
WM_IDS = {40, 41, 61, 62, *range(81, 96)}


def number(subject: str) -> int:
    return int(re.match(r"IXI(\d+)", subject).group(1))


def derived_ids(roi: int) -> set[int]:
    with (IXI_DIR / "muse_derived_rois.csv").open(newline="") as file:
        row = next(r for r in csv.reader(file) if r and r[0] == str(roi))
    return {int(cell) for cell in row[2:] if cell}


def t1_path(subject: str) -> Path:
    return IXI_DIR / "t1" / f"{subject}_T1.nii.gz"


def labels_of(subject: str) -> np.ndarray:
    return np.asarray(nib.load(IXI_DIR / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz").dataobj)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def ixi_copy(folder: Path, subjects: list[str], parcellation: bool = True) -> Path:
    """A folder of links to some subjects of the set, laid out like it."""
    (folder / "t1").mkdir(parents=True)
    for subject in subjects:
        (folder / "t1" / f"{subject}_T1.nii.gz").symlink_to(t1_path(subject))
    if parcellation:
        (folder / "dlmuse_seg").mkdir()
        for subject in subjects:
            name = f"{subject}_T1_DLMUSE.nii.gz"
            (folder / "dlmuse_seg" / name).symlink_to(IXI_DIR / "dlmuse_seg" / name)
        for name in ("muse_derived_rois.csv", "participants.csv"):
            (folder / name).symlink_to(IXI_DIR / name)
    return folder


def test_default_folder_is_beside_the_repository_and_the_variable_overrides_it(monkeypatch, tmp_path):
    monkeypatch.delenv(IXI_DIR_ENV, raising=False)
    assert default_ixi_dir() == Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ixi_t1_2mm"
    monkeypatch.setenv(IXI_DIR_ENV, str(tmp_path))
    assert default_ixi_dir() == tmp_path


def test_split_file_holds_the_four_highest_ids_for_validation():
    split = fixed_split()
    assert len(split["validation"]) == 4 and len(split["training"]) == 30
    assert not set(split["validation"]) & set(split["training"])
    assert min(map(number, split["validation"])) > max(map(number, split["training"]))


def test_bad_folders_and_arguments_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=IXI_DIR_ENV):
        find_subjects(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no NIfTI"):
        find_subjects(tmp_path)
    with pytest.raises(ValueError, match="701"):
        tissue_masks(np.zeros((2, 2, 2), np.uint8), {701: (1,)}, brain_roi=600)
    with pytest.raises(ValueError, match="3D"):
        skull_strip(np.ones((8, 8)), (1.0, 1.0))
    with pytest.raises(ValueError, match="non-constant"):
        skull_strip(np.ones((8, 8, 8)), (1.0, 1.0, 1.0))


@needs_ixi
def test_records_match_the_files_participants_and_split():
    subjects = find_subjects()
    files = sorted((IXI_DIR / "t1").glob("*_T1.nii.gz"))
    assert sorted(s.subject for s in subjects) == sorted(f.name[: -len("_T1.nii.gz")] for f in files)
    assert all(s.parcellation is not None and s.parcellation.exists() for s in subjects)
    with (IXI_DIR / "participants.csv").open(newline="") as file:
        people = {row["MRID"]: row for row in csv.DictReader(file)}
    for s in subjects:
        assert s.age == pytest.approx(float(people[s.subject]["Age"]))
        assert s.sex == people[s.subject]["Sex"]
    validation = {s.subject for s in subjects if s.split == "validation"}
    assert validation == set(fixed_split()["validation"])
    assert validation == set(sorted((s.subject for s in subjects), key=number)[-4:])


@needs_ixi
@pytest.mark.parametrize("brain_roi", [701, 702])
def test_masks_count_the_voxels_of_their_roi_ids(brain_roi):
    labels = labels_of(TRAIN_ID)
    masks = tissue_masks(labels, read_derived_rois(IXI_DIR), brain_roi)
    assert masks["brain"].sum() == np.isin(labels, list(derived_ids(brain_roi))).sum() > 100_000
    assert masks["gm"].sum() == np.isin(labels, list(derived_ids(601))).sum()
    assert masks["wm"].sum() == np.isin(labels, list(WM_IDS)).sum()
    assert masks["csf"].sum() == np.isin(labels, list(CSF_IDS)).sum()
    if brain_roi == 702:  # ICV adds cortical CSF (1) and id 46 to TotalBrain
        assert masks["brain"].sum() == np.isin(labels, list(derived_ids(701) | {1, 46})).sum()


@needs_ixi
def test_skull_stripped_t1_is_the_t1_inside_the_brain_and_zero_outside():
    subject = next(s for s in find_subjects() if s.subject == TRAIN_ID)
    volumes = read_subject(subject)
    t1 = nib.load(t1_path(TRAIN_ID)).get_fdata()
    brain = np.isin(labels_of(TRAIN_ID), list(derived_ids(701)))
    assert volumes.brain_source == "parcellation"
    np.testing.assert_array_equal(volumes.masks["brain"], brain)
    np.testing.assert_allclose(volumes.t1_brain[brain], t1[brain], rtol=1e-6)
    assert not volumes.t1_brain[~brain].any()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if not HAS_IXI:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("ixi")
    return build_ixi_data(ixi_copy(root / "data", [TRAIN_ID, VALIDATION_ID]), root / "cache", workers=1)


def test_build_splits_subjects_and_keeps_the_t1_grid(build):
    datalist = json.loads((build / "datalist_3d.json").read_text())
    assert [e["subject"] for e in datalist["training"]] == [TRAIN_ID]
    assert [e["subject"] for e in datalist["validation"]] == [VALIDATION_ID]
    entry = datalist["training"][0]
    source = nib.load(t1_path(TRAIN_ID))
    image = nib.load(build / entry["image"])
    assert image.shape == source.shape
    np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
    brain = np.isin(labels_of(TRAIN_ID), list(derived_ids(701)))
    np.testing.assert_allclose(image.get_fdata()[brain], source.get_fdata()[brain], rtol=1e-6)
    assert (
        np.asarray(nib.load(build / entry["wm"]).dataobj).sum()
        == np.isin(labels_of(TRAIN_ID), list(WM_IDS)).sum()
    )


def test_build_slices_are_ras_axial_slices_through_the_brain(build):
    entries = [e for e in json.loads((build / "datalist_2d.json").read_text())["training"]]
    t1 = nib.as_closest_canonical(nib.load(t1_path(TRAIN_ID)))
    labels = nib.as_closest_canonical(nib.load(IXI_DIR / "dlmuse_seg" / f"{TRAIN_ID}_T1_DLMUSE.nii.gz"))
    brain = np.isin(np.asarray(labels.dataobj), list(derived_ids(701)))
    area = brain.sum(axis=(0, 1))
    assert [e["slice_z"] for e in entries] == list(np.flatnonzero(area >= 0.3 * area.max()))
    entry = entries[len(entries) // 2]
    z = entry["slice_z"]
    image = nib.load(build / entry["image"])
    assert entry["brain_pixels"] == area[z] == np.asarray(nib.load(build / entry["brain"]).dataobj).sum()
    np.testing.assert_allclose(image.get_fdata(), t1.get_fdata()[:, :, z] * brain[:, :, z], rtol=1e-6)
    corner = np.array([5, 7, 0, 1])
    np.testing.assert_allclose(image.affine @ corner, t1.affine @ (corner + [0, 0, z, 0]), atol=1e-4)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")


def test_build_is_reused_and_datalists_load_with_absolute_paths(build):
    manifest = (build / "manifest.json").stat().st_mtime_ns
    folder = build.parent.parent / "data"
    assert build_ixi_data(folder, build.parent, workers=1) == build
    assert (build / "manifest.json").stat().st_mtime_ns == manifest
    validation = load_ixi_datalist("2d", "validation", folder, build.parent)
    assert validation and all(Path(e["image"]).is_file() and Path(e["head"]).is_file() for e in validation)
    assert {e["subject"] for e in validation} == {VALIDATION_ID}


@needs_ixi
def test_cache_name_follows_file_contents_not_modification_times(tmp_path):
    """A re-mounted copy of the same files (new mtimes) finds the same cache; a changed byte makes a new one."""
    import os

    folder = tmp_path / "t1s"
    folder.mkdir()
    path = folder / "IXI002-Guys-0828-T1.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)), path)
    name = ixi_data_dir(folder, tmp_path / "cache")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert ixi_data_dir(folder, tmp_path / "cache") == name
    nib.save(nib.Nifti1Image(np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4), np.eye(4)), path)
    assert ixi_data_dir(folder, tmp_path / "cache") != name


def test_a_plain_folder_of_t1_files_gets_ids_split_and_a_skull_stripped_brain(tmp_path):
    # named like the full-resolution IXI release, no parcellation, no participants table
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{VALIDATION_ID}-T1.nii.gz").symlink_to(t1_path(VALIDATION_ID))
    (subject,) = find_subjects(tmp_path / "data")
    assert (subject.subject, subject.parcellation, subject.split, subject.age) == (
        VALIDATION_ID,
        None,
        "validation",
        None,
    )
    build = build_ixi_data(tmp_path / "data", tmp_path / "cache", workers=1)
    (entry,) = json.loads((build / "datalist_3d.json").read_text())["validation"]
    assert set(entry) == {"subject", "image", "head", "brain"}
    brain = np.asarray(nib.load(build / entry["brain"]).dataobj) > 0
    assert dice(brain, np.isin(labels_of(VALIDATION_ID), list(derived_ids(701)))) > 0.9
    # a folder with none of the fixed validation subjects: its own 4 highest ids are validation
    for index in range(6):
        (tmp_path / "other").mkdir(exist_ok=True)
        (tmp_path / "other" / f"sub-{index:02d}.nii").symlink_to(t1_path(TRAIN_ID))
    splits = {s.subject: s.split for s in find_subjects(tmp_path / "other")}
    assert [s for s, split in sorted(splits.items()) if split == "validation"] == [
        f"sub-{i:02d}" for i in range(2, 6)
    ]


@needs_ixi
def test_skull_strip_dice_on_the_validation_subjects():
    scores = []
    for subject in fixed_split()["validation"]:
        image = nib.load(t1_path(subject))
        mask = skull_strip(image.get_fdata(), image.header.get_zooms())
        scores.append(dice(mask, np.isin(labels_of(subject), list(derived_ids(701)))))
    assert min(scores) > 0.9, scores


@needs_ixi
def test_skull_strip_works_at_another_resolution():
    zoom = (2.0, 2.0, 1.6)  # 1 x 1 x 1.25 mm
    image = nib.load(t1_path(VALIDATION_ID))
    volume = ndimage.zoom(image.get_fdata(dtype=np.float32), zoom, order=1)
    reference = ndimage.zoom(
        np.isin(labels_of(VALIDATION_ID), list(derived_ids(701))).astype(np.uint8), zoom, order=0
    )
    mask = skull_strip(volume, [2.0 / z for z in zoom])
    assert mask.shape == volume.shape
    assert dice(mask, reference > 0) > 0.88


@needs_ixi
@pytest.mark.slow
def test_skull_strip_dice_on_all_subjects():
    scores = skull_strip_dice(workers=2)
    assert len(scores) == 34
    assert np.mean(list(scores.values())) > 0.92 and min(scores.values()) > 0.9, scores


@needs_ixi
@pytest.mark.slow
def test_registration_to_mni_is_cached_and_lands_the_brain_on_the_template(tmp_path):
    from common.transforms.preprocessing import mni_template, resample_to_mni

    data = ixi_copy(tmp_path / "data", [VALIDATION_ID])
    build = build_ixi_mni(data, tmp_path / "cache", workers=1)
    (entry,) = json.loads((build / "datalist_mni.json").read_text())["validation"]
    assert set(entry) == {"subject", "image", "brain", "gm", "wm", "csf"}
    for key in ("image", "brain", "wm"):
        image = nib.load(build / entry[key])
        assert image.shape == MNI_SHAPE
        np.testing.assert_allclose(image.affine, MNI_AFFINE)
    registration = build / "subjects" / VALIDATION_ID / "mni" / "registration.json"
    assert json.loads(registration.read_text())["t1_template_correlation"] > 0.4  # measured 0.47-0.51
    _, template_brain, template_affine = mni_template()
    on_grid = resample_to_mni(template_brain.astype(np.float32), template_affine, order=0) > 0.5
    assert dice(np.asarray(nib.load(build / entry["brain"]).dataobj) > 0, on_grid) > 0.85
    modified = registration.stat().st_mtime_ns
    build_ixi_mni(data, tmp_path / "cache", workers=1)
    assert registration.stat().st_mtime_ns == modified
