"""mask_optimized_object_removal, the user's own-mask route (``--mask_source hint``, issue #17): the fill is
written into the original image at the input's size and geometry, in the input's intensity units; every pixel
outside the mask is the input's, bit for bit."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"


def _inputs(folder: Path, dtype) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:100, :90]
    brain = ((y - 50) / 42.0) ** 2 + ((x - 45) / 38.0) ** 2 < 1
    image = np.where(
        brain, 600 + 300 * np.sin(x / 9.0) * np.cos(y / 11.0) + rng.normal(0, 20, brain.shape), 0
    )
    image = image.astype(dtype)
    hole = np.zeros(brain.shape, np.uint8)
    hole[40:55, 30:48] = 1
    affine = np.array([[-0.9, 0, 0, 40.0], [0, 0.85, 0, -60.0], [0, 0, 3.0, 12.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(image, affine), folder / "slice.nii.gz")
    nib.save(nib.Nifti1Image(hole, affine), folder / "slice_mask.nii.gz")
    return folder / "slice.nii.gz", folder / "slice_mask.nii.gz", image, hole.astype(bool), affine


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_own_mask_fill_is_composited_into_the_original_image(tmp_path, dtype):
    image_path, mask_path, image, hole, affine = _inputs(tmp_path, dtype)
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        output_dir=str(tmp_path / "out"),
        datalist=[{"image": str(image_path), "hint": str(mask_path)}],
        mask_source="hint",
        device="$torch.device('cpu')",
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = nib.load(tmp_path / "out" / "slice_pred.nii.gz")
    out = np.asarray(written.dataobj)
    assert out.shape == image.shape
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(out[~hole], image[~hole].astype(np.float32))  # bit-identical known pixels
    fill = out[hole]
    assert np.isfinite(fill).all() and fill.min() >= image.min() and fill.max() <= image.max()
    assert not np.array_equal(fill, image[hole].astype(np.float32))  # the hole is filled, not passed through


@pytest.mark.parametrize("mask_source, composited", [("hint", True), ("segmenter", False)])
def test_composite_runs_only_on_the_own_mask_route(mask_source, composited):
    """The segmenter route's mask is the network's own: its output is not composited into the input."""
    from monai.bundle import ConfigParser

    from common.transforms import CompositeToInputd

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "mask_source": mask_source})
    steps = parser.get_parsed_content("postprocessing").transforms
    assert any(isinstance(step, CompositeToInputd) for step in steps) is composited
