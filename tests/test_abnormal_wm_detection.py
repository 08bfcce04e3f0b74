"""benchmarks/abnormal_wm_detection.py (issue #18, blind 3-D): its scores and lesion painting on phantoms, and
(slow, IXI set needed) the bundle's abnormal-WM map on a real subject with and without synthetic lesions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import load_module
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
IXI = REPO.parent / "shared" / "data" / "ixi_t1_2mm"
needs_ixi = pytest.mark.skipif(
    not (IXI / "t1").is_dir(), reason=f"IXI T1 set not found at {IXI} (a user's clone has no ../shared)"
)


bench = load_module(REPO / "benchmarks" / "abnormal_wm_detection.py", "abnormal_wm_detection")
BUNDLE = REPO / "bundles" / "blind_lesion_inpainting_3d"


IXI_OVERLAY = ("configs/inference_ixi.json",)  # the IXI-trained weights


def test_ixi_weights_load_strictly_into_the_overlay_network(tmp_path):
    """inference.json + inference_ixi.json: the residual network the IXI weights were trained as, their file,
    the threshold of their sweep; the route loads them strictly (its StateDictLoader)."""
    import torch

    route = bench.BlindRoute(None, tmp_path, overlays=IXI_OVERLAY)
    assert route.network.residual and route.threshold == 0.3
    assert Path(route.checkpoint).name == "model_ixi.pt"
    state = torch.load(BUNDLE / "models" / "model_ixi.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in route.network.state_dict().items())


def test_detection_rate_counts_lesions_with_a_tenth_of_their_voxels_and_skips_fragments():
    truth = np.zeros((40, 40, 40), bool)
    truth[2:12, 2:12, 2:12] = True  # 1000 voxels
    truth[20:30, 20:30, 20:30] = True  # 1000 voxels
    truth[35, 35, 35] = True  # a 1-voxel fragment: not a lesion
    components, count = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    pred = np.zeros_like(truth)
    pred[2:3, 2:12, 2:12] = True  # exactly 10 % of the first
    assert bench.detection_rate(pred, components, count) == 0.5
    pred[20, 20, 20:29] = True  # 0.9 % of the second
    assert bench.detection_rate(pred, components, count) == 0.5
    pred[35, 35, 35] = True
    assert bench.detection_rate(pred, components, count) == 0.5


def test_route_overrides_reach_the_network_and_unknown_ids_fail(tmp_path):
    """``--set`` scores weights of another architecture: the override reaches inference.json's network."""
    route = bench.BlindRoute(None, tmp_path, {"residual": True, "abnormal_threshold": 0.3})
    assert route.network.residual and route.threshold == 0.3
    with pytest.raises(KeyError, match="no_such_id"):
        bench.BlindRoute(None, tmp_path, {"no_such_id": 1})


def test_best_threshold_finds_the_separating_level():
    score = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    truth = score > 0.7
    best, t = bench.best_threshold(score, truth, np.ones_like(truth), np.linspace(0, 1, 101))
    assert best == pytest.approx(1.0) and 0.69 <= t < 0.71
    assert bench.dice(truth, truth) == 1.0 and np.isnan(bench.dice(truth & False, truth & False))


def test_painted_lesions_are_hypointense_seeded_and_inside_the_white_matter():
    shape = (90, 100, 90)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, np.float32)[:, None, None, None] / 2
    radius = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    brain, wm, csf = radius < 42, (radius < 36) & (radius > 8), radius <= 8  # a ball: CSF core, WM shell
    t1 = np.where(wm, 1000.0, np.where(brain, 700.0, 0.0)).astype(np.float32)

    def paint(seed):
        return bench.paint_lesions(t1, wm, csf, brain, np.random.default_rng(seed), ("small", "small"))

    lesioned, truth, info = paint(3)
    again, truth_again, _ = paint(3)
    np.testing.assert_array_equal(lesioned, again)
    np.testing.assert_array_equal(truth, truth_again)
    assert truth.any() and not (truth & ~wm).any()
    assert 2.0 <= info["load_ml"] <= 8.0 and info["lesions"] >= 1
    ratio = lesioned[truth] / t1[truth]
    assert np.median(ratio) < 0.85 and ratio.max() <= 1.0 + 1e-6  # darker than the WM, never brighter
    far = wm & (ndimage.distance_transform_edt(~truth) > 6)  # darkening: mask + 3 voxels, blurred
    np.testing.assert_allclose(lesioned[far], t1[far], rtol=1e-4)  # the rest is untouched


def first_subject_scored(overlays: tuple[str, ...] = ()):
    """(result, figure, route) of the first IXI validation subject, seed 0, through the route with ``overlays``."""
    import tempfile

    entry = bench.validation_subjects(str(IXI), limit=1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        route = bench.BlindRoute(None, Path(tmp), overlays=overlays)
        rng = np.random.default_rng(np.random.SeedSequence([0, 0]))
        result, figure = bench.score_subject(route, entry, bench.wm_prior(), rng, bench.LESION_PLANS[0], Path(tmp))
    return result, figure, route


@pytest.fixture(scope="module")
def subject():
    """The first IXI validation subject through the bundle's blind route with and without lesions."""
    return first_subject_scored()


@pytest.mark.slow
@needs_ixi
def test_map_changes_where_the_lesions_are(subject):
    """The map is the network's evidence, not a fixed prior: painting lesions changes |input - inpainted|
    inside them far more than in the white matter away from them (the WM prior alone would not change)."""
    _, figure, route = subject
    truth, wm = figure["truth"] & route.wm, route.wm
    change = np.abs(figure["residual"] - figure["residual_off"])
    away = wm & (ndimage.distance_transform_edt(~figure["truth"]) > 10)
    assert change[truth].mean() > 3 * change[away].mean(), (change[truth].mean(), change[away].mean())
    assert change[truth].mean() > 0.005  # standardised units (mean head intensity 1)


@pytest.mark.slow
@needs_ixi
@pytest.mark.xfail(
    strict=True,
    reason="shipped demo weights (8 filters, 80 blind steps on the synthetic cohort): on real IXI T1 the map is "
    "LOWER inside the lesions with them than without, and its best Dice is below the WM prior's "
    "(docs/results/abnormal_wm_detection.md); remove this marker when weights trained on real subjects pass",
)
def test_map_is_higher_in_lesions_and_beats_the_prior(subject):
    result, _, _ = subject
    info, rows = result["info"], result["rows"]
    assert info["map_mean_in_lesions_with"] > info["map_mean_in_lesions_without"]
    assert rows[("blind map", "best")]["dice"] > rows[("WM prior", "best")]["dice"]


@pytest.fixture(scope="module")
def ixi_subject():
    """The same subject and lesions through the IXI-trained weights (inference_ixi.json)."""
    return first_subject_scored(IXI_OVERLAY)


@pytest.mark.slow
@needs_ixi
def test_ixi_weights_map_finds_lesions_and_beats_the_prior_and_t1_thresholds(ixi_subject):
    """Issue #18 on a held-out real subject (benchmark lesions, not the training bank's): the map is higher in
    the lesions with them than without; like against like, it beats the WM prior, the default T1 threshold (WM
    mean - 2 sd) at its shipped threshold with less false-positive volume, and the per-subject tuned T1
    threshold at its own best threshold."""
    result, _, _ = ixi_subject
    info, rows = result["info"], result["rows"]
    assert info["map_mean_in_lesions_with"] > 2 * info["map_mean_in_lesions_without"]
    default, best = rows[("blind map", "default")], rows[("blind map", "best")]
    assert default["dice"] > rows[("WM prior", "best")]["dice"]
    assert default["dice"] > rows[("T1 < WM mean - 2 sd", "default")]["dice"]
    assert default["fp_cm3"] < rows[("T1 < WM mean - 2 sd", "default")]["fp_cm3"]
    assert best["dice"] > rows[("T1 < t (tuned)", "best")]["dice"]
