"""Lesion masks from label images and the synthetic lesion-mask bank (common/transforms/lesion_masks.py)."""

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.transforms import lesion_masks
from common.transforms.lesion_masks import (
    LESION_LOADS_ML,
    AppendDifferenceWeightd,
    LesionMaskd,
    build_lesion_bank,
    lesion_bank_paths,
    lesion_mask,
    synthetic_lesion_masks,
)


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


def ball_white_matter(size=64, radius=26.5):
    """A WM probability ball of ~78 mL (1 mm voxels) in a slightly larger brain mask: room for every load class."""
    distance = np.sqrt(((np.indices((size,) * 3) - (size - 1) / 2) ** 2).sum(axis=0))
    return np.clip(radius - distance, 0.0, 1.0).astype(np.float32), distance < radius + 3


@pytest.fixture(scope="module")
def small_bank():
    wm, brain = ball_white_matter()
    return wm, brain, list(synthetic_lesion_masks(wm, brain, n_masks=7, seed=3))


def test_bank_splits_masks_evenly_over_the_load_classes(small_bank):
    loads = [load for load, _ in small_bank[2]]
    assert loads == ["small"] * 3 + ["medium"] * 2 + ["large"] * 2


def test_bank_masks_have_their_class_load_and_lie_inside_white_matter(small_bank):
    wm, brain, masks = small_bank
    for load, mask in masks:
        low, high = LESION_LOADS_ML[load]
        assert mask.dtype == bool and mask.shape == wm.shape
        assert low <= mask.sum() / 1000.0 <= high, (load, mask.sum())  # 1 mm^3 voxels
        assert not np.any(mask & ~((wm > 0.5) & brain)), "lesion voxels outside white matter"


def test_bank_is_deterministic_per_seed(small_bank):
    wm, brain, masks = small_bank
    again = list(synthetic_lesion_masks(wm, brain, n_masks=7, seed=3))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(masks, again))
    other = list(synthetic_lesion_masks(wm, brain, n_masks=3, seed=4))
    assert not np.array_equal(other[0][1], masks[0][1])


def test_bank_rejects_too_few_masks_and_white_matter_without_room():
    wm, brain = ball_white_matter()
    with pytest.raises(ValueError, match="n_masks"):
        list(synthetic_lesion_masks(wm, brain, n_masks=2))
    with pytest.raises(ValueError, match="no voxel above 0.9"):
        list(synthetic_lesion_masks(wm * 0.5, brain, n_masks=3))
    small_wm, small_brain = ball_white_matter(size=32, radius=10.0)  # ~4 mL: no medium or large load fits
    with pytest.raises(RuntimeError, match="too small"):
        list(synthetic_lesion_masks(small_wm, small_brain, n_masks=3, max_tries=2))


def test_a_complete_bank_is_reused_without_rebuilding(tmp_path, monkeypatch):
    (tmp_path / "small_000.nii.gz").write_bytes(b"")
    manifest = {
        "version": 1,
        "seed": 0,
        "masks": [{"load": "small", "file": "small_000.nii.gz", "volume_ml": 2.0}],
    }
    (tmp_path / "bank.json").write_text(json.dumps(manifest), encoding="utf-8")

    def no_template():
        raise AssertionError("the bank was rebuilt")

    monkeypatch.setattr("common.data.load_template", no_template)
    assert build_lesion_bank(3, 0, tmp_path) == tmp_path
    assert lesion_bank_paths(3, 0, tmp_path) == [str(tmp_path / "small_000.nii.gz")]


@pytest.mark.slow
def test_default_bank_of_500_masks_on_the_mni_white_matter():
    """The bank stage-1 training uses (built and cached on first use, ~5 min)."""
    from common.data import load_template
    from common.transforms.preprocessing import resample_to_mni

    folder = build_lesion_bank(500, 0)
    manifest = json.loads((folder / "bank.json").read_text(encoding="utf-8"))
    assert [m["load"] for m in manifest["masks"]].count("small") == 167
    assert [m["load"] for m in manifest["masks"]].count("large") == 166
    template = load_template()
    wm = resample_to_mni(template.wm, template.affine) > 0.5
    for entry in manifest["masks"][::25]:
        mask = np.asarray(lesion_masks.nib.load(folder / entry["file"]).dataobj) > 0
        low, high = LESION_LOADS_ML[entry["load"]]
        assert low <= mask.sum() / 1000.0 <= high and not np.any(mask & ~wm)


def test_difference_weight_marks_only_voxels_that_differ_beyond_the_threshold():
    image = MetaTensor(torch.zeros(1, 3, 3, 3), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    label = image.clone()
    label[0, 0, 0, 0] = 0.5  # a lesion voxel the network must change
    label[0, 2, 2, 2] = 0.04  # a difference below the 0.05 threshold
    out = AppendDifferenceWeightd(threshold=0.05, weight=100.0)({"image": image, "label": label})
    assert out["label"].shape == (2, 3, 3, 3)
    assert torch.equal(out["label"][:1], label)  # the target itself is unchanged
    expected = torch.ones(1, 3, 3, 3)
    expected[0, 0, 0, 0] = 101.0
    assert torch.equal(out["label"][1:].as_tensor(), expected)
    assert torch.equal(out["label"].affine, image.affine)
    assert torch.equal(out["image"], image)


def test_difference_weight_rejects_mismatched_grids_and_negative_weights():
    with pytest.raises(ValueError, match="same grid"):
        AppendDifferenceWeightd()({"image": torch.zeros(1, 4, 4, 4), "label": torch.zeros(1, 4, 4, 3)})
    with pytest.raises(ValueError, match=">= 0"):
        AppendDifferenceWeightd(weight=-1.0)
