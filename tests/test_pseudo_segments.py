"""Pseudo-segment (shape-aware) masks: segmentation, weights, position/shape modes, cache, errors, seeds."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from scipy.stats import chisquare
from skimage import graph
from skimage.draw import disk as draw_disk
from skimage.segmentation import felzenszwalb

from common.transforms.masks import load_mask_bank, write_mask_bank
from common.transforms.pseudo_segments import (
    PseudoSegmentCache,
    PseudoSegmentMaskd,
    PseudoSegments,
    compute_pseudo_segments,
    merge_adjacent_segments,
    organ_bounded_region,
    sample_pseudo_segment_mask,
)


def phantom(seed=0, size=96):
    """A noisy 'organ': bright disk with a dark ring and blobs of several intensities on a dark background."""
    rng = np.random.RandomState(seed)
    img = np.zeros((size, size), np.float32)
    img[draw_disk((size / 2, size / 2), size * 0.4)] = 0.6
    img[draw_disk((size / 2, size / 2), size * 0.2)] = 0.2
    for _ in range(6):
        img[draw_disk(rng.uniform(size * 0.25, size * 0.75, 2), rng.uniform(3, 8), shape=img.shape)] = (
            rng.uniform(0.3, 1)
        )
    return (img + rng.normal(0, 0.01, img.shape)).astype(np.float32)[None]


@pytest.fixture(scope="module")
def segments():
    return PseudoSegments(compute_pseudo_segments(phantom()[0]))


def test_pseudo_segments_partition_the_image_into_connected_regions(segments):
    labels = segments.labels
    assert labels.shape == (96, 96) and labels.min() == 0 and segments.sizes.sum() == 96 * 96
    assert np.array_equal(np.unique(labels), np.arange(segments.count)) and segments.count > 5
    for index in range(segments.count):  # felzenszwalb segments and their merges are 8-connected
        assert ndimage.label(labels == index, structure=np.ones((3, 3)))[1] == 1


def test_merge_joins_adjacent_segments_closer_than_tau():
    stripes = np.repeat(np.array([0.0, 5.0, 255.0, 255.0], np.float32), 8)[None].repeat(16, 0)
    assert len(np.unique(compute_pseudo_segments(stripes))) == 2  # |0 - 5| < 10 merges, 250 does not
    assert len(np.unique(compute_pseudo_segments(stripes, tau=3))) == 3
    chain = np.repeat(np.array([0.0, 8.0, 16.0, 255.0], np.float32), 8)[None].repeat(16, 0)
    assert len(np.unique(compute_pseudo_segments(chain))) == 2  # 0-8 and 8-16 merge transitively


def test_merge_matches_skimage_cut_threshold_on_a_mean_intensity_rag():
    image = phantom(seed=7)[0] * 255
    segments = felzenszwalb(image, scale=2, sigma=0.5, min_size=9)
    ours = merge_adjacent_segments(segments, image, tau=10)
    # rag_mean_color treats one channel as RGB, so its edge weights are sqrt(3) x the intensity difference
    rag = graph.rag_mean_color(image[..., None], segments, connectivity=2)
    reference = graph.cut_threshold(segments, rag, 10 * np.sqrt(3))
    pairs = np.unique(np.stack([ours.ravel(), reference.ravel()]), axis=1)
    assert len(np.unique(ours)) < len(np.unique(segments))  # some merges happened
    assert pairs.shape[1] == len(np.unique(ours)) == len(np.unique(reference))  # same partition


def test_inverse_size_weights_and_sampling_frequencies():
    labels = np.repeat(np.arange(4), [100, 200, 400, 800]).reshape(30, 50)
    pseudo = PseudoSegments(labels)
    expected = np.array([8, 4, 2, 1]) / 15  # 1/100 : 1/200 : 1/400 : 1/800, normalised
    assert np.allclose(pseudo.probabilities(), expected) and np.allclose(
        pseudo.probabilities("uniform"), 0.25
    )
    counts = np.bincount(pseudo.sample(np.random.RandomState(0), 30000), minlength=4)
    assert chisquare(counts, expected * 30000).pvalue > 0.001
    uniform = np.bincount(pseudo.sample(np.random.RandomState(0), 30000, "uniform"), minlength=4)
    assert chisquare(uniform, np.full(4, 7500)).pvalue > 0.001


def test_ops_segment_mode_places_the_sampled_segments_in_place(segments):
    rng = np.random.RandomState(0)
    for _ in range(30):
        holes, placements = sample_pseudo_segment_mask((96, 96), segments, rng, perturb_px=0)
        assert np.array_equal(holes, np.isin(segments.labels, [index for index, _ in placements]))
        holes, placements = sample_pseudo_segment_mask((96, 96), segments, rng, perturb_px=2)
        assert all((holes & (segments.labels == index)).any() for index, _ in placements)


def test_ops_square_mode_has_the_segment_area_and_centre(segments):
    rng = np.random.RandomState(1)
    for _ in range(30):
        holes, [(index, centre)] = sample_pseudo_segment_mask(
            (96, 96), segments, rng, num_segments=(1, 1), shape="square", perturb_px=0
        )
        rows, cols = np.nonzero(holes)
        side = round(np.sqrt(segments.sizes[index]))
        box = np.nonzero(segments.labels == index)
        assert np.allclose(centre, [(axis.min() + axis.max()) / 2 for axis in box])
        if holes.sum() == side**2:  # not clipped by the border
            assert np.allclose(
                [(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2], centre, atol=0.5
            )


def test_random_mode_keeps_the_segment_shape_inside_the_image(segments):
    rng = np.random.RandomState(2)
    moved = 0
    for _ in range(30):
        holes, [(index, _)] = sample_pseudo_segment_mask(
            (96, 96), segments, rng, num_segments=(1, 1), position="random", perturb_px=0
        )
        crop = segments.crop(index)
        found = ndimage.find_objects(holes.astype(int))[0]
        assert np.array_equal(holes[found], crop)
        moved += found != segments.boxes[index]
    assert moved >= 25


def test_ibr_is_the_filled_organ_and_centres_lie_inside(segments):
    image = phantom()[0]
    region = organ_bounded_region(image)
    yy, xx = np.mgrid[:96, :96]
    organ = (yy - 48) ** 2 + (xx - 48) ** 2 <= (96 * 0.4) ** 2
    assert (region != organ).sum() < 0.02 * organ.sum()  # the dark core (a hole) is filled in
    coords = np.argwhere(region)
    rng = np.random.RandomState(3)
    for _ in range(30):
        _, placements = sample_pseudo_segment_mask(
            (96, 96), segments, rng, position="ibr", shape="square", region_coordinates=coords
        )
        assert all(region[tuple(centre.astype(int))] for _, centre in placements)


def test_irregular_shape_mode_uses_bank_masks(tmp_path, segments):
    write_mask_bank(tmp_path, count=3, spatial_size=(96, 96), area_range=(0.02, 0.03))
    transform = PseudoSegmentMaskd(
        "img", position="random", shape="irregular", bank_dir=str(tmp_path), num_segments=(1, 1)
    )
    transform.set_random_state(0)
    bank_areas = set(load_mask_bank(tmp_path).sum(axis=(1, 2)).tolist())
    for _ in range(10):
        assert transform({"img": phantom()})["mask"].sum() in bank_areas


def test_other_image_source_uses_its_segments():
    other = phantom(seed=5)
    other_labels = compute_pseudo_segments(other[0])
    for kwargs, data in (
        ({"source_key": "other_img"}, {"img": phantom(), "other_img": other}),
        ({"source_images": [other]}, {"img": phantom()}),
    ):
        transform = PseudoSegmentMaskd("img", source="other", perturb_px=0, num_segments=(2, 4), **kwargs)
        transform.set_random_state(0)
        for _ in range(5):
            holes = transform(data)["mask"][0] == 1
            # a union of whole segments of the other image
            touched = np.unique(other_labels[holes])
            assert np.array_equal(holes, np.isin(other_labels, touched))


def test_ops_with_another_image_of_another_size_is_an_error():
    transform = PseudoSegmentMaskd("img", source="other", source_key="other_img")
    with pytest.raises(ValueError, match="must match"):
        transform({"img": phantom(), "other_img": phantom(size=64)})


def test_cache_computes_once_in_memory_and_on_disk(tmp_path):
    image = torch.from_numpy(phantom())
    transform = PseudoSegmentMaskd("img", cache_dir=str(tmp_path))
    for _ in range(5):
        transform({"img": image})
    assert transform.cache.computed == 1 and len(list(tmp_path.glob("*.npy"))) == 1
    fresh = PseudoSegmentMaskd("img", cache_dir=str(tmp_path))
    fresh({"img": image})
    assert fresh.cache.computed == 0
    small = PseudoSegmentCache(max_items=1)
    for img in (phantom(0)[0], phantom(1)[0], phantom(0)[0]):
        small.segments(img)
    assert small.computed == 3  # LRU of one entry evicted the first image


def test_metatensor_metadata_is_kept():
    image = MetaTensor(torch.from_numpy(phantom()), affine=torch.diag(torch.tensor([0.9, 0.8, 1.0, 1.0])))
    out = PseudoSegmentMaskd("img", position="ibr")({"img": image})
    assert isinstance(out["mask"], MetaTensor) and torch.equal(out["mask"].affine, image.affine)
    assert torch.equal(out["masked_image"], image * (1 - out["mask"]))


@pytest.mark.parametrize("position", ["random", "ibr", "ops"])
def test_same_seed_same_masks_different_seed_differs(position):
    transform = PseudoSegmentMaskd("img", position=position, shape="square")
    masks = {}
    for seed in (0, 0, 1):
        transform.set_random_state(seed)
        masks.setdefault(seed, []).append(np.stack([transform({"img": phantom()})["mask"] for _ in range(3)]))
    assert np.array_equal(masks[0][0], masks[0][1]) and not np.array_equal(masks[0][0], masks[1][0])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full((1, 32, 32), 0.5, np.float32), "constant"),
        (np.zeros((1, 32, 32), np.float32), "constant"),
        (np.ones((1, 1, 1), np.float32), "too small"),
        (np.where(np.eye(32) > 0, np.nan, 1.0).astype(np.float32)[None], "NaN"),
        (np.random.rand(1, 16, 16, 16).astype(np.float32), "2D"),
        (np.random.rand(2, 32, 32).astype(np.float32), "one channel"),
    ],
)
def test_bad_images_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        PseudoSegmentMaskd("img")({"img": bad})


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="position"):
        PseudoSegmentMaskd("img", position="middle")
    with pytest.raises(ValueError, match="bank_dir"):
        PseudoSegmentMaskd("img", shape="irregular")
    with pytest.raises(ValueError, match="source_key"):
        PseudoSegmentMaskd("img", source="other")
    with pytest.raises(ValueError, match="num_segments"):
        PseudoSegmentMaskd("img", num_segments=(0, 2))
    with pytest.raises(ValueError, match="constant"):
        organ_bounded_region(np.ones((8, 8)))
