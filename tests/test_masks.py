"""Geometric mask generators (common/transforms/masks.py): coverage statistics, containers, errors, seeds."""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from skimage.morphology import disk

from common.transforms.masks import (
    FreeFormMaskd,
    IrregularMaskd,
    LargeSquareMaskd,
    MaskBankd,
    MultiSquareMaskd,
    SlidingCircleMasksd,
    SquareMaskd,
    _capsule,
    _ellipsoid,
    free_form_mask,
    irregular_mask,
    large_square_mask,
    load_mask_bank,
    main,
    multi_square_mask,
    sliding_circle_masks,
    smooth_blob_mask,
    square_mask,
    write_mask_bank,
)


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    write_mask_bank(folder, count=6, spatial_size=(64, 64), seed=3)
    return folder


def image(shape=(1, 64, 64), seed=0):
    return np.random.RandomState(seed).rand(*shape).astype(np.float32)


def test_square_has_exact_area_and_uniform_positions():
    rng = np.random.RandomState(0)
    corners = set()
    for _ in range(300):
        holes = square_mask((16, 20), 4, rng)
        rows, cols = np.nonzero(holes)
        assert holes.sum() == 16 and np.ptp(rows) == 3 and np.ptp(cols) == 3
        corners.add((rows.min(), cols.min()))
    assert {r for r, _ in corners} == set(range(13)) and {c for _, c in corners} == set(range(17))


def test_square_default_is_ipa_medgan_6_25_percent_and_cube_in_3d():
    out = SquareMaskd("img")({"img": image((1, 256, 256))})
    assert out["mask"].mean() == pytest.approx(64 * 64 / 256**2) == 0.0625
    cube = square_mask((10, 12, 14), 5, np.random.RandomState(1))
    assert cube.sum() == 125 and all(np.ptp(axis) == 4 for axis in np.nonzero(cube))


def test_large_square_area_is_uniform_in_20_to_60_percent():
    rng = np.random.RandomState(0)
    fractions = np.array([large_square_mask((64, 64), rng).mean() for _ in range(500)])
    # side = round(sqrt(f * 4096)) for f in [0.2, 0.6]: the extreme sides are 29 and 50
    assert fractions.min() >= 29**2 / 4096 and fractions.max() <= 50**2 / 4096
    assert fractions.min() < 0.22 and fractions.max() > 0.58
    assert fractions.mean() == pytest.approx(0.4, abs=0.015)
    assert np.mean(fractions < 0.3) == pytest.approx(0.25, abs=0.05)


def test_large_square_that_cannot_fit_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        large_square_mask((64, 16), np.random.RandomState(0))


def test_multi_square_total_area_matches_target():
    rng = np.random.RandomState(0)
    for _ in range(20):
        holes = multi_square_mask((64, 64), rng, side=4, target_fraction=0.0625)
        labels, count = ndimage.label(holes, structure=np.ones((3, 3)))
        assert holes.sum() == 256 and count <= 16
    assert MultiSquareMaskd("img")({"img": image((1, 256, 256))})["mask"].sum() == 64 * 64
    with pytest.raises(ValueError, match="non-overlapping"):
        multi_square_mask((16, 16), rng, side=4, target_fraction=0.99, max_tries=200)


def test_irregular_coverage_batch_average_in_25_to_30_percent():
    rng = np.random.RandomState(0)
    coverages = np.array([irregular_mask((64, 64), rng).mean() for _ in range(200)])
    assert 0.25 <= coverages.mean() <= 0.30
    assert coverages.min() >= 0.25 - 2 / 4096 and coverages.max() <= 0.30
    assert coverages.std() > 0.005  # the per-mask target is drawn, not fixed


@pytest.mark.parametrize("kind", ["circle", "ellipse", "line"])
def test_irregular_single_shape_kind_in_3d(kind):
    rng = np.random.RandomState(1)
    for _ in range(3):
        assert (
            0.1 - 2 / 24**3 <= irregular_mask((24, 24, 24), rng, (0.1, 0.15), shapes=(kind,)).mean() <= 0.15
        )


def test_irregular_primitives_match_their_formulas():
    shape = (64, 64)
    region, inside = _ellipsoid(shape, np.array([32.0, 32.0]), np.array([10.0, 5.0]), np.eye(2))
    holes = np.zeros(shape, bool)
    holes[region] = inside
    rows, cols = np.nonzero(holes)
    assert holes.sum() == pytest.approx(math.pi * 10 * 5, rel=0.03)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (22, 42, 27, 37)
    quarter_turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # principal axes swapped
    region, inside = _ellipsoid(shape, np.array([32.0, 32.0]), np.array([10.0, 5.0]), quarter_turn)
    assert np.array_equal(inside, holes[region].T)
    region, inside = _capsule(shape, np.array([10.0, 10.0]), np.array([10.0, 50.0]), 3.0)
    holes[:] = False
    holes[region] = inside
    rows, cols = np.nonzero(holes)
    # lattice count: body of 7 rows x 41 columns, each round cap holds 5 + 5 + 1 pixels of columns 7-9 / 51-53
    assert holes.sum() == 7 * 41 + 2 * (5 + 5 + 1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7, 13, 7, 53)


def test_irregular_bad_options():
    with pytest.raises(ValueError, match="shapes"):
        IrregularMaskd("img", shapes=("star",))
    with pytest.raises(ValueError, match="coverage_range"):
        IrregularMaskd("img", coverage_range=(0.3, 0.2))


def test_free_form_strokes_are_thick_2d_only():
    rng = np.random.RandomState(0)
    coverages = []
    for _ in range(30):
        holes = free_form_mask((256, 256), rng)
        assert ndimage.binary_erosion(holes, structure=disk(5)).any()  # brush width >= 12 px
        coverages.append(holes.mean())
    assert 0.0 < min(coverages) and max(coverages) < 0.6
    with pytest.raises(ValueError, match="2D"):
        FreeFormMaskd("img")({"img": image((1, 8, 8, 8))})


def test_mask_bank_ipa_medgan_area_ranges(tmp_path):
    train = load_mask_bank(write_mask_bank(tmp_path / "train")[0].parent)
    val = load_mask_bank(write_mask_bank(tmp_path / "val", 50, (0.0166, 0.0456), seed=1)[0].parent)
    assert train.shape == (100, 256, 256) and val.shape == (50, 256, 256)
    for bank, (low, high) in ((train, (0.0136, 0.0546)), (val, (0.0166, 0.0456))):
        areas = bank.mean(axis=(1, 2))
        assert areas.min() >= low - 2 / 256**2 and areas.max() <= high
    assert not np.array_equal(train[:50], val)


def test_mask_bank_transform_draws_bank_masks(bank_dir):
    bank = load_mask_bank(bank_dir)
    transform = MaskBankd("img", str(bank_dir))
    transform.set_random_state(0)
    drawn = set()
    for _ in range(40):
        mask = transform({"img": image()})["mask"][0]
        drawn |= {index for index, banked in enumerate(bank) if np.array_equal(mask, banked)}
    assert drawn == set(range(6))


def test_mask_bank_errors(tmp_path, bank_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MaskBankd("img", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no .png"):
        MaskBankd("img", str(tmp_path))
    np.save(tmp_path / "grey.npy", np.full((8, 8), 7))
    with pytest.raises(ValueError, match="binary"):
        load_mask_bank(tmp_path)
    with pytest.raises(ValueError, match="image is"):
        MaskBankd("img", str(bank_dir))({"img": image((1, 32, 32))})


def test_mask_bank_command_line(tmp_path, capsys):
    main([str(tmp_path), "--count", "3", "--size", "32", "40", "--area", "0.05", "0.1"])
    bank = load_mask_bank(tmp_path)
    assert bank.shape == (3, 32, 40) and "wrote 3 masks" in capsys.readouterr().out


def test_sliding_circles_on_grid_inside_region():
    region = np.zeros((256, 256), bool)
    region[100:140, 100:140] = True
    holes, centres = sliding_circle_masks(region)
    # grid multiples of 15 inside [100, 140): 105, 120, 135 on each axis
    assert sorted(map(tuple, centres)) == [(r, c) for r in (105, 120, 135) for c in (105, 120, 135)]
    assert holes.shape == (9, 256, 256)
    assert holes.sum(axis=(1, 2)) == pytest.approx(math.pi * 27**2, rel=0.01)
    for mask, (r, c) in zip(holes, centres, strict=True):
        rows, cols = np.nonzero(mask)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (r - 27, r + 27, c - 27, c + 27)


def test_sliding_circles_transform_batch_and_3d_spheres():
    img = MetaTensor(torch.from_numpy(image((2, 64, 64))), affine=torch.diag(torch.tensor([2.0, 2, 1, 1])))
    ooi = np.zeros((1, 64, 64), np.float32)
    ooi[0, 20:40, 20:40] = 1
    out = SlidingCircleMasksd("img", radius=5, step=10)({"img": img, "ooi": ooi})
    assert out["mask"].shape == (4, 1, 64, 64) and out["masked_image"].shape == (4, 2, 64, 64)
    assert torch.equal(out["masked_image"], img[None] * (1 - out["mask"]))
    assert torch.equal(out["mask"].affine, img.affine)
    spheres, _ = sliding_circle_masks(np.ones((20, 20, 20)), radius=3, step=10)
    # the sphere centred at (10, 10, 10) holds the 123 lattice points of norm <= 3 (OEIS A000605)
    assert spheres.shape == (8, 20, 20, 20) and spheres[-1].sum() == 123


def test_sliding_circles_empty_region_is_an_error():
    with pytest.raises(ValueError, match="organ-of-interest"):
        sliding_circle_masks(np.zeros((64, 64)))
    with pytest.raises(ValueError, match="shape"):
        SlidingCircleMasksd("img")({"img": image(), "ooi": np.ones((1, 32, 32))})


@pytest.mark.parametrize("container", ["numpy", "torch", "meta"])
def test_outputs_follow_the_image_container(container):
    data = image((2, 64, 64))
    if container != "numpy":
        data = torch.from_numpy(data)
    if container == "meta":
        data = MetaTensor(
            data, affine=torch.diag(torch.tensor([0.5, 0.7, 1.0, 1.0])), meta={"filename_or_obj": "a.nii"}
        )
    out = IrregularMaskd("img", fill_value=-3.0)({"img": data})
    mask, masked = out["mask"], out["masked_image"]
    assert type(mask) is type(data) and type(masked) is type(data)
    assert tuple(mask.shape) == (1, 64, 64) and mask.dtype in (np.float32, torch.float32)
    mask_np, masked_np, data_np = (np.asarray(x) for x in (mask, masked, data))
    assert set(np.unique(mask_np)) == {0.0, 1.0}
    assert np.array_equal(masked_np, np.where(mask_np == 1, -3.0, data_np).astype(np.float32))
    if container == "meta":
        assert torch.equal(mask.affine, data.affine) and mask.affine is not data.affine
        assert mask.meta["filename_or_obj"] == "a.nii"


def test_several_image_keys_share_one_mask():
    t1, t2 = image(seed=1), image(seed=2)
    out = SquareMaskd(["t1", "t2"], side=8, masked_key=["t1_masked", "t2_masked"])({"t1": t1, "t2": t2})
    holes = out["mask"] == 1
    assert holes.sum() == 64
    for key, original in (("t1_masked", t1), ("t2_masked", t2)):
        assert np.array_equal(out[key], np.where(holes, 0.0, original))
    with pytest.raises(ValueError, match="one masked key per image key"):
        SquareMaskd(["t1", "t2"])
    with pytest.raises(ValueError, match="different spatial shapes"):
        SquareMaskd(["t1", "t2"], masked_key=None)({"t1": image(), "t2": image((1, 32, 32))})


def all_random_transforms(bank):
    return [
        SquareMaskd("img", side=16),
        LargeSquareMaskd("img"),
        MultiSquareMaskd("img", side=4),
        IrregularMaskd("img"),
        FreeFormMaskd("img"),
        MaskBankd("img", str(bank)),
    ]


def test_same_seed_same_masks_different_seed_differs(bank_dir):
    for transform in all_random_transforms(bank_dir):
        runs = {}
        for seed in (0, 0, 1):
            transform.set_random_state(seed)
            runs.setdefault(seed, []).append(
                np.stack([transform({"img": image()})["mask"] for _ in range(4)])
            )
        assert np.array_equal(runs[0][0], runs[0][1]), type(transform).__name__
        assert not np.array_equal(runs[0][0], runs[1][0]), type(transform).__name__


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.full((1, 64, 64), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((64, 64), np.float32), ValueError, "channel-first"),
        (np.zeros((1, 2, 64, 64, 3), np.float32), ValueError, "channel-first"),
        (np.zeros((1, 1, 1), np.float32), ValueError, "too small"),
        ([[0.0, 1.0]], TypeError, "numpy array or torch tensor"),
    ],
)
def test_bad_images_are_rejected(bad, error, message):
    with pytest.raises(error, match=message):
        IrregularMaskd("img")({"img": bad})


def test_square_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="smallest image side"):
        SquareMaskd("img")({"img": image((1, 32, 32))})


def test_an_all_zero_mask_is_never_returned():
    transform = SquareMaskd("img")
    with pytest.raises(ValueError, match="no hole"):
        transform.write_outputs({"img": image()}, np.zeros((64, 64), bool))


def test_holes_stay_inside_a_region_and_are_seeded():
    region = np.zeros((1, 64, 64), np.float32)
    region[0, 16:48, 20:44] = 1  # a "brain" of 32 x 24 pixels
    data = {"image": np.ones((1, 64, 64), np.float32), "brain": region}
    masks = []
    for _ in range(2):
        transform = IrregularMaskd("image", region_key="brain", masked_key=None)
        transform.set_random_state(seed=3)
        masks.append(np.stack([transform(data)["mask"] for _ in range(5)]))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert masks[0].any(axis=(1, 2, 3)).all()  # every draw has a hole
    assert not masks[0][:, 0][:, region[0] == 0].any()  # and nothing outside the region


def test_a_region_with_no_room_for_holes_is_an_error_naming_it():
    data = {"image": np.ones((1, 32, 32), np.float32), "brain": np.zeros((1, 32, 32), np.float32)}
    with pytest.raises(ValueError, match="inside region 'brain' after 20 draws \\(0 voxels"):
        IrregularMaskd("image", region_key="brain")(data)


def test_smooth_blob_has_the_size_stays_in_the_region_and_is_one_seeded_piece():
    region = np.zeros((40, 48, 44), bool)
    region[5:35, 6:42, 4:40] = True
    blobs = [smooth_blob_mask(region.shape, np.random.RandomState(5), 3000, (20, 24, 22), region) for _ in range(2)]
    np.testing.assert_array_equal(blobs[0], blobs[1])
    assert blobs[0].sum() == 3000 and not (blobs[0] & ~region).any()
    assert ndimage.label(blobs[0])[1] == 1
    # irregular, not a sphere: over 5 % of it lies outside the sphere of the same volume around the centre
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.ogrid[:40, :48, :44], (20, 24, 22))))
    sphere = distance <= np.sort(distance.ravel())[2999]
    assert (blobs[0] & ~sphere).sum() > 150
    other = smooth_blob_mask(region.shape, np.random.RandomState(6), 3000, (20, 24, 22), region)
    assert (other != blobs[0]).any()


def test_smooth_blob_refuses_a_region_too_small_or_a_centre_outside():
    region = np.zeros((20, 20), bool)
    region[5:10, 5:10] = True
    with pytest.raises(ValueError, match="holds 25 voxels, fewer than the blob's 30"):
        smooth_blob_mask(region.shape, np.random.RandomState(0), 30, (7, 7), region)
    with pytest.raises(ValueError, match="must lie inside the region"):
        smooth_blob_mask(region.shape, np.random.RandomState(0), 5, (0, 0), region)
