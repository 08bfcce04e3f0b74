"""The answer check of tools/monailabel_check.py (the MONAI Label server run itself needs its own venv)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from harness import load_module

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "monailabel_check.py"
METADATA = {"network_data_format": {"outputs": {"pred": {
    "format": "segmentation", "channel_def": {"0": "background", "1": "tumour"}}}}}


@pytest.fixture(scope="module")
def check():
    return load_module(SCRIPT, "monailabel_check").check_answer


def save(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), path)
    return path


@pytest.fixture
def files(tmp_path):
    labels = np.zeros((6, 5))
    labels[1:3, 2:4] = 1
    image = save(tmp_path / "image.nii.gz", np.random.default_rng(0).random((6, 5)))
    return tmp_path, image, save(tmp_path / "reference.nii.gz", labels), labels


def test_answer_equal_to_reference_passes_and_notes_the_added_axis(check, files):
    folder, image, reference, labels = files
    problems, notes = check(save(folder / "answer.nii.gz", labels[None]), image, reference, METADATA)
    assert problems == []
    assert any("(1, 6, 5)" in n for n in notes) and any("30 voxels" in n for n in notes)


def test_one_wrong_voxel_fails(check, files):
    folder, image, reference, labels = files
    wrong = labels.copy()
    wrong[0, 0] = 1
    problems, _ = check(save(folder / "answer.nii.gz", wrong), image, reference, METADATA)
    # Dice of the foregrounds: 2 * 4 / (5 + 4)
    assert problems == ["1 of 30 voxels differ from the bundle's own inference (Dice 0.8889)"]


def test_label_outside_channel_def_fails(check, files):
    folder, image, _, labels = files
    reference = save(folder / "reference2.nii.gz", labels * 2)
    problems, _ = check(save(folder / "answer.nii.gz", labels * 2), image, reference, METADATA)
    assert problems == ["label values [0.0, 2.0] not within channel_def [0, 1]"]


def test_wrong_spatial_size_fails(check, files):
    folder, image, reference, labels = files
    problems, _ = check(save(folder / "answer.nii.gz", labels.T), image, reference, METADATA)
    assert "spatial size (5, 6) != input (6, 5)" in problems
