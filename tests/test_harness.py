"""The harness's own helpers: bundle discovery and the DICOM series writer."""

import nibabel as nib
import numpy as np
import pytest
from harness import find_bundles, spatial_geometry, write_dicom_series
from monai.transforms import LoadImage


def test_a_new_bundle_folder_is_picked_up(tmp_path):
    (tmp_path / "zeta" / "configs").mkdir(parents=True)
    (tmp_path / "alpha" / "configs").mkdir(parents=True)
    (tmp_path / "not_a_bundle").mkdir()
    assert [p.name for p in find_bundles(tmp_path)] == ["alpha", "zeta"]
    assert find_bundles(tmp_path / "missing") == []


def test_dicom_series_keeps_volume_geometry_and_values(tmp_path):
    affine = np.array([[0.9, 0, 0, -80.0], [0, 1.1, 0, -100.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
    volume = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5) * 3.0
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), path)
    folder = write_dicom_series(path, tmp_path / "series")
    assert len(list(folder.glob("*.dcm"))) == 5
    read = LoadImage(image_only=True)(str(folder))
    np.testing.assert_allclose(read.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_array_equal(read.numpy(), volume)
    assert spatial_geometry(folder)[0] == (6, 7, 5)


def test_a_2d_image_becomes_a_one_slice_series(tmp_path):
    affine = np.diag([0.85, 0.85, 1.0, 1.0])
    affine[:2, 3] = (-100.0, -120.0)
    plane = np.random.default_rng(0).integers(0, 1000, (12, 9)).astype(np.float32)
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(plane, affine), path)
    folder = write_dicom_series(path, tmp_path / "series")
    shape, read_affine = spatial_geometry(folder)
    assert shape == (12, 9)
    np.testing.assert_allclose(read_affine[:2, :2], affine[:2, :2], atol=1e-5)
    np.testing.assert_allclose(read_affine[:2, 3], affine[:2, 3], atol=1e-4)
    np.testing.assert_array_equal(LoadImage(image_only=True)(str(folder)).numpy()[..., 0], plane)


def test_each_bundle_imports_its_own_scripts_package(tmp_path):
    from common.bundle_scripts import load_bundle_scripts

    def make_bundle(root, name):
        (root / "scripts").mkdir(parents=True)
        (root / "scripts" / "__init__.py").write_text(f"from . import part\nNAME = {name!r}\n", encoding="utf-8")
        (root / "scripts" / "part.py").write_text(f"PART = {name!r}\n", encoding="utf-8")

    for name in ("first", "second"):
        make_bundle(tmp_path / name, name)
    make_bundle(tmp_path / "elsewhere" / "first", "other copy")
    loaded = [load_bundle_scripts(tmp_path / n) for n in ("first", "second", "elsewhere/first", "first")]
    assert [m.NAME for m in loaded] == ["first", "second", "other copy", "first"]
    assert [m.part.PART for m in loaded] == ["first", "second", "other copy", "first"]
    assert loaded[0] is loaded[3]  # imported once per folder
    assert len({m.__name__ for m in loaded}) == 3
    assert "scripts" not in __import__("sys").modules
    with pytest.raises(FileNotFoundError, match="bundle_root"):
        load_bundle_scripts(tmp_path)
