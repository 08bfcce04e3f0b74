"""benchmarks/real_inpainting.py ``--families own``: each bundle's own evaluation mask family on the IXI validation
slices is deterministic by seed, inside the brain, non-empty and within the family's stated coverage / size range
(issue #17 (b)); skipped, with the reason, when the IXI set is absent (a user's clone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import load_module

from common.data.ixi import IXI_DIR_ENV, default_ixi_dir

REPO = Path(__file__).resolve().parents[1]
needs_ixi = pytest.mark.skipif(
    not (default_ixi_dir() / "t1").is_dir(),
    reason=f"IXI T1 set not found at {default_ixi_dir()} (set {IXI_DIR_ENV}; CI has it)",
)


bench = load_module(REPO / "benchmarks" / "real_inpainting.py", "real_inpainting_families")


def test_every_bundle_has_an_own_family():
    assert set(bench.OWN_FAMILIES) == set(bench.BUNDLES)
    params = bench.family_parameters()
    assert params["irregular"]["coverage_range"] == (0.25, 0.3)  # autoinpainting's hole_coverage
    assert params["arbitrary"]["coverage_range"] == (0.0136, 0.0546)  # ipA-MedGAN's paper range
    assert params["square"]["side_fraction"] == 0.25  # 64 of 256
    assert params["segments"]["position"] == "ops"


@pytest.fixture(scope="module")
def info():
    return bench.build_cases(default_ixi_dir(), True, 0, "standard", standard=False)[1]


@pytest.fixture(scope="module")
def own(info):
    return bench.build_own_cases(info, 0, set(bench.BUNDLES), lambda message: None)


@needs_ixi
def test_own_holes_are_deterministic_non_empty_and_in_the_brain(info, own):
    again = bench.build_own_cases(info, 0, set(bench.BUNDLES), lambda message: None)
    other = bench.build_own_cases(info, 1, set(bench.BUNDLES), lambda message: None)
    for name, families in bench.OWN_FAMILIES.items():
        cases = own[name]
        assert {c["placement"] for c in cases} == {family for family, _ in families}, name
        assert [c["name"] for c in cases] == [c["name"] for c in again[name]]
        for case, repeat in zip(cases, again[name]):
            assert np.array_equal(case["hole"], repeat["hole"]), case["name"]
            assert case["hole"].any(), case["name"]
            assert not (case["hole"] & ~case["brain"]).any(), f"{case['name']}: hole outside the brain"
            assert (case["image"][case["hole"]] == 0).all(), "the hole must be voided in the input"
            if case["hole3d"] is not None:
                assert not (case["hole3d"] & ~info["volumes"][case["subject"]]["brain"]).any()
        # another seed draws other holes (the lesion family may also reach other slices)
        changed = [c["name"] for c in cases] != [c["name"] for c in other[name]] or any(
            not np.array_equal(a["hole"], b["hole"]) for a, b in zip(cases, other[name])
        )
        assert changed, f"{name}: another seed must draw other holes"


def _slices(info):
    for vol in info["volumes"].values():
        for z in vol["slices"]:
            yield vol, z


@needs_ixi
def test_2d_families_keep_their_stated_coverage(info):
    params = bench.family_parameters()
    for index, (vol, z) in enumerate(_slices(info)):
        brain = vol["brain"][:, :, z]
        seed = [5, index]

        def rng(seed=seed):
            return np.random.RandomState(seed)

        box = bench.brain_box(brain)
        box_pixels = (box[0].stop - box[0].start) * (box[1].stop - box[1].start)
        # autoinpainting: 25-30 % of the slice drawn, then restricted to the brain
        low, high = params["irregular"]["coverage_range"]
        hole, drawn = bench.draw_irregular(brain, rng(), params["irregular"])
        assert low - 0.01 <= drawn.mean() <= high and np.array_equal(hole, drawn & brain)
        # ipA-MedGAN arbitrary: 1.36-5.46 % of the field of view (the brain box), drawn inside the box
        low, high = params["arbitrary"]["coverage_range"]
        hole, drawn = bench.draw_arbitrary(brain, rng(), params["arbitrary"])
        assert low - 0.005 <= drawn.sum() / box_pixels <= high and not drawn[~_box_map(brain.shape, box)].any()
        assert np.array_equal(hole, drawn & brain)
        # ipA-MedGAN square: one square of 1/4 the box's side, inside the box
        side = round(params["square"]["side_fraction"] * np.sqrt(box_pixels))
        hole, drawn = bench.draw_square(brain, rng(), params["square"])
        rows, cols = np.nonzero(drawn)
        assert drawn.sum() == side**2 and np.ptp(rows) + 1 == side and np.ptp(cols) + 1 == side
        # shape-aware: 1-5 pseudo-segments placed by OPS inside the brain (never the whole brain)
        hole, _ = bench.draw_segments(
            bench.to_unit(vol["acquired"][:, :, z], *bench.scaling(vol["acquired"][:, :, z], brain), brain),
            brain,
            rng(),
            params["segments"],
        )
        assert 0 < hole.sum() < 0.5 * brain.sum()


def _box_map(shape, box):
    inside = np.zeros(shape, bool)
    inside[box] = True
    return inside


@needs_ixi
def test_copy_paste_objects_lie_mostly_in_the_brain(info):
    params = bench.family_parameters()["objects"]
    sources = bench.object_sources()
    assert sources, "the sample cohort's test split holds no object"
    for index, (vol, z) in enumerate(_slices(info)):
        brain = vol["brain"][:, :, z]
        hole, drawn = bench.draw_object(
            vol["acquired"][:, :, z], brain, 2.0, np.random.RandomState([6, index]), params, sources
        )
        # RandCopyPasted's min_inside of the pasted object in the brain; objects of >= 16 px at 2 mm (nearest
        # rescaling may lose a few)
        assert hole.sum() >= params["min_inside"] * drawn.sum() - 0.5
        assert drawn.sum() >= params["min_object_pixels"] // 2


@needs_ixi
@pytest.mark.parametrize("load", bench.LESION_LOADS)
def test_lesion_masks_are_3d_white_matter_lesions_of_their_class(info, load):
    vol = next(iter(info["volumes"].values()))
    lesions = bench.draw_lesions(vol["wm"], vol["brain"], 2.0, 0, load)
    low, high = bench.LESION_LOADS_ML[load]
    volume_ml = lesions.sum() * 8 / 1000  # 2 mm voxels
    # a 2 mm voxel is a hole when any of its eight 1 mm voxels is lesion: at least the class's load, at most 8x
    assert low <= volume_ml <= 8 * high, (load, volume_ml)
    assert not (lesions & ~vol["brain"]).any()
    assert lesions.any(axis=(0, 1)).sum() > 1, "a 3-D lesion mask spans several slices"
    near_wm = bench.ndi.binary_dilation(vol["wm"] > 0, iterations=1)
    assert (lesions & near_wm).sum() == lesions.sum(), "MS-like lesions lie in the white matter"
    assert np.array_equal(lesions, bench.draw_lesions(vol["wm"], vol["brain"], 2.0, 0, load))
