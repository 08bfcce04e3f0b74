"""Putting a slice on the grid a model was trained on and back (common/transforms/slices.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ResampleToMatchd

from common.transforms import RestrictToRegiond, ToModelGridd


def slice_at(spacing: float, flip: bool = False, shape=(60, 40)) -> MetaTensor:
    """A smooth slice of a 120 x 80 mm field of view sampled at ``spacing`` mm (stored LAS when ``flip``)."""
    ys, xs = (np.arange(n) * spacing for n in shape)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    data = np.sin(yy / 11.0) + np.cos(xx / 7.0)
    affine = np.diag([spacing, spacing, 1.0, 1.0])
    if flip:
        data = data[::-1].copy()
        affine[0, 0], affine[0, 3] = -spacing, spacing * (shape[0] - 1)
    return MetaTensor(torch.from_numpy(data[None].astype(np.float32)), affine=torch.from_numpy(affine),
                      meta={"filename_or_obj": "slice.nii.gz"})


def test_model_grid_reorients_and_resamples_and_maps_back():
    """A 1 mm LAS slice goes to 2 mm RAS (half the pixels, positive axes) and comes back onto its own grid close
    to itself (bilinear twice); the 2 mm RAS slice of the same field is what the model sees either way."""
    fine = slice_at(1.0, flip=True, shape=(120, 80))
    out = ToModelGridd("image", spacing=(2.0, 2.0))({"image": fine})["image"]
    affine = np.asarray(out.affine)
    np.testing.assert_allclose(np.diag(affine)[:2], [2.0, 2.0])
    assert tuple(out.shape) == (1, 60, 40)
    np.testing.assert_allclose(out[0].numpy(), slice_at(2.0)[0].numpy(), atol=0.02)
    back = ResampleToMatchd("pred", "original", mode="bilinear", padding_mode="border")(
        {"pred": out, "original": fine}
    )["pred"]
    assert tuple(back.shape) == tuple(fine.shape)
    assert float((back - fine).abs()[0, 2:-2, 2:-2].max()) < 0.02


def test_model_grid_masks_cover_the_hole_and_labels_stay_nearest():
    """A hole mask resampled to a coarser grid covers every pixel the original hole touches; a label map stays 0/1
    nearest-neighbour; padding to min_size and a divisible size keeps the affine consistent."""
    image = slice_at(1.0, shape=(50, 30))
    hole = torch.zeros(1, 50, 30)
    hole[0, 21, 11] = 1  # one pixel: at 3 mm it is a fraction of a pixel, still hole
    mask = MetaTensor(hole, affine=image.affine)
    out = ToModelGridd("image", mask_keys="mask", label_keys="organ", spacing=(3.0, 3.0), min_size=32, divisible=16)(
        {"image": image, "mask": mask, "organ": MetaTensor(hole.clone(), affine=image.affine)}
    )
    assert tuple(out["image"].shape) == (1, 32, 32)
    assert int(out["mask"].sum()) >= 1 and set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert set(out["organ"].unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(np.asarray(out["mask"].affine), np.asarray(out["image"].affine))
    with pytest.raises(ValueError, match="one positive value per axis"):
        ToModelGridd("image", spacing=(2.0,))
    with pytest.raises(ValueError, match="affine"):
        ToModelGridd("image")({"image": torch.zeros(1, 8, 8)})


def test_restrict_to_region_zeroes_outside_and_keeps_the_image_metadata():
    """Outside the brain mask the image is 0 (as the skull-stripped training slices), inside unchanged, and the
    result keeps the image's own metadata (its file name names the outputs), not the mask's."""
    image = slice_at(1.0)
    region = torch.zeros(1, 60, 40)
    region[0, 10:50, 5:35] = 1
    brain = MetaTensor(region, affine=image.affine, meta={"filename_or_obj": "brain.nii.gz"})
    out = RestrictToRegiond("image", region_key="brain")({"image": image, "brain": brain})["image"]
    assert out.meta["filename_or_obj"] == "slice.nii.gz"
    assert float(out[0, :10].abs().max()) == 0.0
    assert torch.equal(out[0, 10:50, 5:35], image[0, 10:50, 5:35])
    assert RestrictToRegiond("image")({"image": image})["image"] is image  # no brain mask: unchanged
    assert RestrictToRegiond("image", enabled=False)({"image": image, "brain": brain})["image"] is image
    with pytest.raises(KeyError, match="brain"):
        RestrictToRegiond("image", allow_missing_region=False)({"image": image})
    with pytest.raises(ValueError, match="empty"):
        RestrictToRegiond("image")({"image": image, "brain": brain * 0})
