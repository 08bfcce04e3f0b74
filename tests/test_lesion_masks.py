"""Lesion masks from label images (common/transforms/lesion_masks.py), 2D and 3D."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.transforms.lesion_masks import LesionMaskd, lesion_mask


def volume(shape=(1, 12, 12, 12), seed=0):
    return np.random.RandomState(seed).uniform(0, 1, shape).astype(np.float32)


def test_3d_lesion_is_masked_with_fill_minus_one_and_dilated_by_a_ball():
    label = np.zeros((1, 12, 12, 12), np.int64)
    label[0, 4:7, 4:7, 4:7] = 1
    image = volume()
    out = LesionMaskd("img")({"img": image, "label": label})
    assert np.array_equal(out["mask"], label.astype(np.float32))
    assert np.array_equal(out["masked_image"], np.where(label == 1, -1.0, image).astype(np.float32))
    # a 3x3x3 cube grown by the 6-neighbour ball of radius 1 gains one 3x3 face on each of its 6 sides
    assert LesionMaskd("img", dilation=1)({"img": image, "label": label})["mask"].sum() == 27 + 6 * 9


def test_2d_lesion_dilation_and_label_selection():
    label = np.zeros((1, 16, 16), np.int64)
    label[0, 5:8, 5:8] = 2
    label[0, 12, 12] = 1
    holes = lesion_mask(label[0], label_values=[2], dilation=1)
    assert holes.sum() == 9 + 4 * 3 and not holes[12, 12]  # 3x3 square + a 3-pixel row/column per side
    assert lesion_mask(label[0]).sum() == 10  # default: every non-zero label
    out = LesionMaskd("img", fill_value=0.0, label_values=[1])({"img": volume((1, 16, 16)), "label": label})
    assert out["mask"].sum() == 1 and out["masked_image"][0, 12, 12] == 0.0


def test_metatensor_image_keeps_its_affine():
    image = MetaTensor(torch.from_numpy(volume()), affine=torch.diag(torch.tensor([1.5, 1.5, 3.0, 1.0])))
    label = torch.zeros(1, 12, 12, 12)
    label[0, 2, 3, 4] = 1
    out = LesionMaskd("img")({"img": image, "label": label})
    assert isinstance(out["mask"], MetaTensor) and torch.equal(out["mask"].affine, image.affine)
    assert out["masked_image"][0, 2, 3, 4] == -1 and isinstance(out["masked_image"], MetaTensor)


def test_empty_label_is_an_error_unless_allowed():
    data = {"img": volume(), "label": np.zeros((1, 12, 12, 12))}
    with pytest.raises(ValueError, match="no lesion"):
        LesionMaskd("img")(data)
    out = LesionMaskd("img", allow_empty=True)(data)
    assert out["mask"].sum() == 0 and np.array_equal(out["masked_image"], data["img"])


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (np.ones((1, 12, 12, 11)), "shape"),
        (np.ones((2, 12, 12, 12)), "shape"),
        (np.ones((12, 12, 12)), "shape"),
        (np.full((1, 12, 12, 12), np.nan), "NaN"),
    ],
)
def test_bad_labels_are_rejected(label, message):
    with pytest.raises(ValueError, match=message):
        LesionMaskd("img")({"img": volume(), "label": label})


def test_negative_dilation_is_rejected():
    with pytest.raises(ValueError, match="dilation"):
        LesionMaskd("img", dilation=-1)
