"""blind_lesion_inpainting_3d non-blind fill on real input (issue #17): the written fill is in the input's units
(N4's bias field multiplied back), never the -1 marker nor below the brain's intensity floor, and the known voxels
are the input's."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from common.bundle_scripts import load_bundle_scripts
from common.transforms.preprocessing import MNIPreprocessd, MNIToNatived

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "blind_lesion_inpainting_3d"
IXI = REPO.parent / "shared" / "data" / "ixi_t1_2mm"

scripts = load_bundle_scripts(BUNDLE)


def _brain(shape=(40, 48, 40)) -> tuple[np.ndarray, np.ndarray]:
    grid = np.indices(shape).astype(np.float64)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(
        (((grid - centre[:, None, None, None]) / (np.array(shape)[:, None, None, None] / 2.4)) ** 2).sum(0)
    )
    t1 = np.select([r < 0.6, r < 1.0], [900.0, 500.0], 0.0).astype(np.float32)
    hole = np.zeros(shape, bool)
    hole[17:23, 21:27, 17:23] = True
    return t1, hole


def test_out_of_range_fill_falls_back_to_the_lesions_surroundings_with_a_warning(caplog):
    t1, hole = _brain()
    fill = np.full(t1.shape, -1.0, np.float32)  # the marker, as an untrained network returns it
    fill[hole & (np.indices(t1.shape)[0] < 20)] = 850.0  # an in-range part is kept
    with caplog.at_level(logging.WARNING):
        out = scripts.abnormal_wm.in_range_fill(fill, np.where(hole, 0, t1), hole)
    assert "outside the input's intensity range" in caplog.text and "50.0 %" in caplog.text
    kept = hole & (np.indices(t1.shape)[0] < 20)
    np.testing.assert_array_equal(out[kept], 850.0)
    np.testing.assert_array_equal(out[hole & ~kept], 900.0)  # the median of the WM shell around the lesion
    np.testing.assert_array_equal(out[~hole], fill[~hole])


def test_native_composite_is_the_input_outside_and_in_range_inside():
    t1, hole = _brain()
    native = MetaTensor(torch.from_numpy(np.where(hole, 0, t1)[None]), affine=torch.eye(4))
    pred = MetaTensor(torch.full((1, *t1.shape), float("nan")), affine=torch.eye(4))
    out = scripts.abnormal_wm.NativeComposited(keys="pred", mask_key="label")(
        {"pred": pred, "label": torch.from_numpy(hole[None]), "mni": {"native": native}}
    )["pred"].numpy()[0]
    np.testing.assert_array_equal(out[~hole], native.numpy()[0][~hole])
    assert np.isfinite(out).all() and (out[hole] >= 500.0).all()


def test_mni_to_native_multiplies_n4s_bias_field_back():
    """With bias correction on, the round trip native -> MNI -> native gives the input's units back (before the
    fix, results came back divided by N4's field, whose mean is not 1)."""
    t1, _ = _brain((60, 72, 60))
    field = np.linspace(0.6, 1.0, t1.shape[0], dtype=np.float32)[:, None, None] * np.ones_like(t1)
    native = t1 * field + 1.0
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = -np.array(t1.shape) * 1.5
    image = MetaTensor(torch.from_numpy(native[None]), affine=torch.from_numpy(affine))
    options = {"denoise": False, "register": False, "check_modality": False}
    data = MNIPreprocessd(keys="image", bias_correct=True, **options)({"image": image})
    assert "bias_field" in data["mni"] and abs(float(np.mean(data["mni"]["bias_field"])) - 1.0) > 1e-3
    back = MNIToNatived(keys="image")(data)["image"].numpy()[0]
    inside = ndimage.binary_erosion(t1 > 0, iterations=3)
    np.testing.assert_allclose(back[inside], native[inside], rtol=2e-3)


@pytest.mark.skipif(
    not IXI.is_dir(), reason=f"the IXI T1 folder {IXI} is absent (a user's clone has no ../shared)"
)
def test_non_blind_inference_on_a_real_t1_with_a_white_matter_hole(tmp_path):
    """The shipped non-blind weights through inference.json + inference_nonblind.json (default preprocessing) on
    a skull-stripped IXI validation T1 with a 9-voxel (18 mm) hole in deep white matter, voided to 0."""
    from monai.bundle import ConfigWorkflow

    import common.data

    entry = common.data.load_ixi_datalist("3d", "validation")[0]
    image = nib.load(entry["image"])
    t1 = image.get_fdata(dtype=np.float32)
    wm = ndimage.binary_erosion(nib.load(entry["wm"]).get_fdata() > 0.5, iterations=3)
    brain = nib.load(entry["brain"]).get_fdata() > 0.5
    centre = np.argwhere(wm)[int(wm.sum()) // 2]
    hole = ((np.indices(t1.shape) - centre[:, None, None, None]) ** 2).sum(0) <= 16
    hole &= brain
    voided = np.where(hole, 0, t1).astype(np.float32)
    nib.save(nib.Nifti1Image(voided, image.affine), tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(hole.astype(np.uint8), image.affine), tmp_path / "hole.nii.gz")
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / c) for c in ("inference.json", "inference_nonblind.json")],
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        output_dir=str(tmp_path / "out"),
        datalist=[{"image": str(tmp_path / "t1.nii.gz"), "label": str(tmp_path / "hole.nii.gz")}],
        device="$torch.device('cpu')",
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = nib.load(tmp_path / "out" / "t1_filled.nii.gz")
    filled = written.get_fdata(dtype=np.float32)
    assert filled.shape == t1.shape
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-4)
    np.testing.assert_array_equal(filled[~hole], voided[~hole])
    floor = np.percentile(t1[brain & ~hole], 0.5)  # the brain's intensity floor (bundle: its head mask)
    assert floor > 0 and np.isfinite(filled[hole]).all() and (filled[hole] >= 0.99 * floor).all()
    assert filled[hole].max() <= t1[brain & ~hole].max()
