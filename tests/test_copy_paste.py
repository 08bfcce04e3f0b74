"""Copy-paste paired data: pasting arithmetic, locations, seeded pairs, medical pairing, COCO reader errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from common.bundle_scripts import load_bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"
copy_paste = load_bundle_scripts(BUNDLE).copy_paste
RandCopyPasted, copy_paste_datalist = copy_paste.RandCopyPasted, copy_paste.copy_paste_datalist
coco_backgrounds, coco_objects = copy_paste.coco_backgrounds, copy_paste.coco_objects
object_components = copy_paste.object_components
paste_locations, paste_object = copy_paste.paste_locations, copy_paste.paste_object


def square_object(size=12, box=(3, 5, 4, 3), value=5.0, channels=1):
    """A source image of ones with a (top, left, height, width) box of ``value`` and its mask."""
    top, left, h, w = box
    source = np.ones((channels, size, size), np.float32)
    mask = np.zeros((1, size, size), np.uint8)
    source[:, top : top + h, left : left + w] = value
    mask[0, top : top + h, left : left + w] = 1
    return source, mask


def test_plain_paste_replaces_exactly_the_object_pixels():
    source, mask = square_object()
    target = np.zeros((1, 10, 10), np.float32)
    image, pasted = paste_object(target, source, mask, (2, 6), blend="plain")
    expected = np.zeros((1, 10, 10), np.float32)
    expected[0, 2:6, 6:9] = 5.0
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(pasted, expected / 5.0)
    assert target.max() == 0, "the target must not be modified in place"


def test_blended_paste_keeps_the_object_and_adds_a_gaussian_halo_outside_the_mask():
    source, mask = square_object(size=30, box=(12, 12, 4, 4), value=1.0)
    source[:] = 1.0  # source: all ones, so the pasted value is the alpha itself
    target = np.zeros((1, 30, 30), np.float32)
    sigma = 1.5
    image, pasted = paste_object(target, source, mask, (12, 12), blend="blended", sigma=sigma)
    window = mask[0].astype(float)
    expected_alpha = np.maximum(window, ndimage.gaussian_filter(window, sigma, mode="constant", truncate=3.0))
    inside = pasted[0] > 0
    np.testing.assert_allclose(image[0][inside], 1.0)
    np.testing.assert_allclose(image[0], expected_alpha, atol=1e-6)
    assert image[0, 11, 13] > 0.1, "the halo must reach outside the mask"
    np.testing.assert_array_equal(pasted, mask.astype(np.float32))


def test_paste_locations_counts_positions_and_honours_the_region():
    _, mask = square_object(size=12, box=(0, 0, 4, 3))
    fits = paste_locations(mask[0], (10, 10))
    assert fits.shape == (7, 8) and fits.all()
    region = np.zeros((10, 10), bool)
    region[2:8, 2:8] = True  # a 6x6 region: a 4x3 box fits at 3x4 positions
    fits = paste_locations(mask[0], (10, 10), region)
    assert fits.sum() == 3 * 4
    assert fits[2, 2] and not fits[1, 2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, m, t: paste_object(t, s, np.zeros_like(m), (0, 0)), "selects nothing"),
        (
            lambda s, m, t: paste_object(np.zeros((1, 3, 3), np.float32), s, m, (0, 0)),
            "larger than the target",
        ),
        (lambda s, m, t: paste_object(np.zeros((3, 10, 10), np.float32), s, m, (0, 0)), "channels"),
        (lambda s, m, t: paste_object(t, s, m[:, :5], (0, 0)), "does not match"),
        (lambda s, m, t: paste_object(t, s, m, (9, 9)), "outside"),
        (lambda s, m, t: paste_object(t, s, m * 2, (0, 0)), "binary"),
        (lambda s, m, t: paste_object(t, s, m, (0, 0), blend="poisson"), "blend"),
        (lambda s, m, t: paste_object(t[0], s, m, (0, 0)), "channel-first"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, message):
    source, mask = square_object()
    with pytest.raises(ValueError, match=message):
        call(source, mask, np.zeros((1, 10, 10), np.float32))


def test_object_components_are_sorted_and_filtered():
    mask = np.zeros((10, 10), np.uint8)
    mask[0:2, 0:2] = 1  # 4 px
    mask[5:9, 5:8] = 1  # 12 px
    mask[0, 9] = 1  # 1 px
    components = object_components(mask, min_pixels=2)
    assert [int(c.sum()) for c in components] == [12, 4]


def pair(size=16, channels=1):
    source, mask = square_object(size=size, box=(2, 2, 3, 3), value=9.0, channels=channels)
    return {
        "target": torch.zeros((channels, size, size)),
        "source": torch.as_tensor(source),
        "source_mask": torch.as_tensor(mask),
    }


def test_transform_builds_a_consistent_triplet_and_is_seeded():
    transform = RandCopyPasted(min_object_pixels=1)
    transform.set_random_state(3)
    out = transform(pair())
    image, clean, mask = out["image"], out["clean"], out["mask"]
    assert image.shape == clean.shape == (1, 16, 16) and mask.shape == (1, 16, 16)
    assert torch.equal(clean, torch.zeros((1, 16, 16)))
    assert int(mask.sum()) == 9
    torch.testing.assert_close(image, 9.0 * mask)  # plain: object pixels replaced, nothing else
    again = RandCopyPasted(min_object_pixels=1)
    again.set_random_state(3)
    torch.testing.assert_close(again(pair())["mask"], mask)
    positions = set()
    for _ in range(10):
        positions.add(tuple(np.argwhere(transform(pair())["mask"][0].numpy())[0]))
    assert len(positions) > 1, "locations must vary between draws"


def test_entry_seed_fixes_the_pasting_whatever_the_transform_state():
    masks = []
    for state in (0, 1):
        transform = RandCopyPasted(min_object_pixels=1, blend="random")
        transform.set_random_state(state)
        masks.append(transform({**pair(), "paste_seed": 11})["mask"])
    torch.testing.assert_close(masks[0], masks[1])


def test_transform_keeps_metadata_and_pastes_inside_the_region():
    data = pair(size=20)
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
    data["target"] = MetaTensor(data["target"], affine=affine)
    region = torch.zeros((1, 20, 20))
    region[0, 10:15, 10:15] = 1
    data["region"] = region
    transform = RandCopyPasted(region_key="region", min_object_pixels=1)
    for seed in range(5):
        transform.set_random_state(seed)
        out = transform(data)
        assert torch.all(out["mask"] <= region), "the object must fall inside the region"
    assert isinstance(out["image"], MetaTensor)
    torch.testing.assert_close(out["image"].affine, affine.to(out["image"].affine.dtype))
    region[:] = 0
    region[0, 0, 0] = 1
    with pytest.raises(ValueError, match="cannot be pasted"):
        transform(data)


def test_fit_tries_redraw_an_object_that_does_not_fit_the_region():
    """Components of 9 and 16 px, a 3x3 region, whole objects inside: only the 9 px one fits."""
    data = pair(size=20)
    data["source_mask"][0, 12:16, 12:16] = 1
    data["region"] = torch.zeros((1, 20, 20))
    data["region"][0, 8:11, 8:11] = 1
    failed = 0
    for seed in range(12):
        once = RandCopyPasted(region_key="region", min_object_pixels=1)
        once.set_random_state(seed)
        try:
            once(data)
        except ValueError as error:
            assert "in 1 draw(s)" in str(error)
            failed += 1
        redraw = RandCopyPasted(region_key="region", min_object_pixels=1, fit_tries=20)
        redraw.set_random_state(seed)
        mask = redraw(data)["mask"]
        assert int(mask.sum()) == 9 and torch.equal(mask, data["region"])
    assert 0 < failed < 12, "one draw picks the 16 px object for some seeds only"
    with pytest.raises(ValueError, match="fit_tries"):
        RandCopyPasted(fit_tries=0)


def test_scale_range_rescales_the_object():
    transform = RandCopyPasted(min_object_pixels=1, scale_range=(2.0, 2.0))
    out = transform(pair(size=24))
    assert int(out["mask"].sum()) == 36  # a 3x3 object doubled


def test_random_component_picks_one_object_of_the_source():
    data = pair(size=20)
    data["source_mask"][0, 12:16, 12:16] = 1
    sizes = set()
    transform = RandCopyPasted(min_object_pixels=1)
    for seed in range(12):
        transform.set_random_state(seed)
        sizes.add(int(transform(data)["mask"].sum()))
    assert sizes == {9, 16}
    assert int(RandCopyPasted(component="all")(data)["mask"].sum()) == 25


def test_medical_pairing_uses_other_subjects_at_the_same_level_and_fixed_seeds():
    entries = [
        {"subject": s, "slice_z": z, "image": f"{s}_{z}_t1", "brain": f"{s}_{z}_brain",
         "image_tumour": f"{s}_{z}_tum", "label_tumour": f"{s}_{z}_tumlab", "tumour_pixels": tp,
         "image_ms": f"{s}_{z}_ms", "label_ms": f"{s}_{z}_mslab", "ms_pixels": mp}
        for s, z, tp, mp in [("a", 1, 100, 0), ("b", 1, 0, 50), ("c", 2, 100, 100), ("d", 2, 0, 0)]
    ]  # fmt: skip
    pairs = copy_paste_datalist(entries, seed=5)
    assert [p["subject"] for p in pairs] == ["a", "b", "d"]  # c has no other subject with an object at z=2
    by_subject = {p["subject"]: p for p in pairs}
    assert by_subject["a"]["source"] == "b_1_ms" and by_subject["a"]["source_mask"] == "b_1_mslab"
    assert by_subject["b"]["source"] == "a_1_tum" and by_subject["b"]["region"] == "b_1_brain"
    assert by_subject["d"]["source_subject"] == "c"
    assert pairs == copy_paste_datalist(entries, seed=5)
    assert all("paste_seed" in p for p in pairs)
    assert all("paste_seed" not in p for p in copy_paste_datalist(entries, seed=None))
    with pytest.raises(ValueError, match="no copy-paste pair"):
        copy_paste_datalist(entries, min_object_pixels=1000)


def test_sample_data_pairs_paste_a_real_lesion_into_the_brain():
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from common.data import load_datalist

    entries = load_datalist("2d", "training")
    pairs = copy_paste_datalist(entries, seed=0)
    load = Compose([LoadImaged(["target", "source", "source_mask", "region"]),
                    EnsureChannelFirstd(["target", "source", "source_mask", "region"])])  # fmt: skip
    out = RandCopyPasted(region_key="region")(load(pairs[0]))
    mask = out["mask"] > 0
    assert mask.any() and torch.all(out["region"][mask] > 0)
    assert torch.equal(out["image"][~mask], out["clean"][~mask])


def write_coco(tmp_path, annotations):
    """A COCO annotation file and an empty file for each listed image."""
    for image in annotations["images"]:
        (tmp_path / image["file_name"]).write_bytes(b"")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(annotations), encoding="utf-8")
    return path


def test_coco_reader_errors_are_clear(tmp_path, monkeypatch):
    annotations = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8},
                   {"id": 2, "file_name": "b.jpg", "height": 8, "width": 8}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 4, "iscrowd": 0,
                         "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
    }  # fmt: skip
    path = write_coco(tmp_path, annotations)
    assert coco_backgrounds(path, tmp_path) == [str(tmp_path / "b.jpg")]
    with pytest.raises(ValueError, match=r"category 'cat' not in .*\['dog', 'person'\]"):
        coco_backgrounds(path, tmp_path, category="cat")
    with pytest.raises(FileNotFoundError, match="COCO annotation file .*missing.json"):
        coco_backgrounds(tmp_path / "missing.json", tmp_path)
    (tmp_path / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image 'b.jpg' .* is not in"):
        coco_backgrounds(path, tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        coco_objects(path, tmp_path)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools decode
def test_coco_polygon_and_rle_masks_of_the_selected_category(tmp_path):
    """One polygon and one uncompressed-RLE person, a dog that must be left out, a crowd person (compressed
    RLE) kept only on request; expected masks built by hand on a non-square image (x = column, y = row)."""
    coco_mask = pytest.importorskip("pycocotools.mask")
    height, width = 8, 10
    # L shape (1,1) (6,1) (6,3) (3,3) (3,6) (1,6): the pixels whose centres lie inside
    polygon = np.zeros((height, width), np.uint8)
    polygon[1:3, 1:6] = 1
    polygon[3:6, 1:3] = 1
    # column-major runs: 53 off, then 2 on / 6 off in each of columns 6, 7, 8, then 9 off
    rle = np.zeros((height, width), np.uint8)
    rle[5:7, 6:9] = 1
    crowd = np.zeros((height, width), np.uint8)
    crowd[0, 7:] = 1
    crowd_rle = coco_mask.encode(np.asfortranarray(crowd))
    annotations = {
        "images": [{"id": 1, "file_name": "street.jpg", "height": height, "width": width},
                   {"id": 2, "file_name": "park.jpg", "height": height, "width": width},
                   {"id": 3, "file_name": "empty.jpg", "height": height, "width": width}],
        "categories": [{"id": 3, "name": "dog"}, {"id": 7, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "area": 16, "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 3, 3, 3, 3, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 3, "area": 20, "iscrowd": 0,
             "segmentation": [[0, 0, 9, 0, 9, 7, 0, 7]]},
            {"id": 3, "image_id": 2, "category_id": 7, "area": 6, "iscrowd": 0,
             "segmentation": {"size": [height, width], "counts": [53, 2, 6, 2, 6, 2, 9]}},
            {"id": 4, "image_id": 2, "category_id": 7, "area": 3, "iscrowd": 1,
             "segmentation": {"size": crowd_rle["size"], "counts": crowd_rle["counts"].decode("ascii")}},
        ],
    }  # fmt: skip
    path = write_coco(tmp_path, annotations)
    objects = coco_objects(path, tmp_path, category="person")
    assert [o["source"] for o in objects] == [str(tmp_path / "street.jpg"), str(tmp_path / "park.jpg")]
    np.testing.assert_array_equal(objects[0]["source_mask"], polygon[None])
    np.testing.assert_array_equal(objects[1]["source_mask"], rle[None])
    with_crowd = coco_objects(path, tmp_path, category="person", include_crowd=True)
    np.testing.assert_array_equal(with_crowd[2]["source_mask"], crowd[None])
    assert len(coco_objects(path, tmp_path, category="person", min_area=10)) == 1
    (dog,) = coco_objects(path, tmp_path, category="dog")
    assert dog["source_mask"][0, :7, :9].all() and dog["source_mask"].sum() == 63
    assert coco_backgrounds(path, tmp_path, category="person") == [str(tmp_path / "empty.jpg")]
    assert coco_backgrounds(path, tmp_path, category="dog") == [
        str(tmp_path / n) for n in ("park.jpg", "empty.jpg")
    ]
