"""benchmarks/real_inpainting.py: its baselines and metrics against independent references, and (slow) its
--quick path end to end on the IXI validation subjects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from harness import load_module

REPO = Path(__file__).resolve().parents[1]
IXI = REPO.parent / "shared" / "data" / "ixi_t1_2mm"


bench = load_module(REPO / "benchmarks" / "real_inpainting.py", "real_inpainting")


def _hole(shape=(24, 30)) -> np.ndarray:
    hole = np.zeros(shape, bool)
    hole[6:15, 9:20] = True
    hole[15:18, 12:14] = True  # not a plain rectangle
    return hole


def test_diffusion_fill_reproduces_a_linear_ramp():
    # a linear function is harmonic, and the 5-point Laplacian of a linear function is exactly 0
    i, j = np.mgrid[0:24, 0:30]
    ramp = 0.02 * i - 0.01 * j + 0.3
    hole = _hole()
    holed = np.where(hole, 0.0, ramp)
    filled = bench.diffusion_fill(holed, hole)
    np.testing.assert_allclose(filled[hole], ramp[hole], atol=1e-10)
    np.testing.assert_array_equal(filled[~hole], holed[~hole])


def test_diffusion_fill_of_a_constant_boundary_is_constant():
    hole = _hole()
    filled = bench.diffusion_fill(np.where(hole, 0.0, 0.7), hole)
    np.testing.assert_allclose(filled[hole], 0.7, atol=1e-12)


def test_mean_fill_is_the_hand_computed_mean_of_the_known_brain():
    image = np.array([[0.0, 0.2, 0.4], [0.6, 0.9, 0.8], [0.0, 0.1, 0.0]])
    brain = np.array([[0, 1, 1], [1, 1, 1], [0, 1, 0]], bool)
    hole = np.zeros((3, 3), bool)
    hole[1, 1] = True
    filled = bench.mean_fill(image, hole, brain)
    assert filled[1, 1] == pytest.approx((0.2 + 0.4 + 0.6 + 0.8 + 0.1) / 5)
    np.testing.assert_array_equal(filled[~hole], image[~hole])


def test_biharmonic_reproduces_a_linear_ramp_and_keeps_known_pixels():
    i, j = np.mgrid[0:24, 0:30]
    ramp = 0.02 * i + 0.01 * j
    hole = _hole()
    filled = bench.biharmonic_fill(np.where(hole, 0.0, ramp), hole)
    np.testing.assert_allclose(filled[hole], ramp[hole], atol=1e-6)
    np.testing.assert_allclose(filled[~hole], ramp[~hole])


def test_hole_metrics_by_hand():
    truth = np.zeros((4, 4))
    hole = np.zeros((4, 4), bool)
    hole[:2, :2] = True
    pred = truth.copy()
    pred[0, 0], pred[0, 1] = 0.1, -0.1  # errors inside the hole: 0.1, -0.1, 0, 0
    pred[3, 3] = 0.9  # outside the hole: ignored
    metrics = bench.hole_metrics(pred, truth, hole)
    mse = (0.01 + 0.01) / 4
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / mse))  # = 23.01 dB
    assert metrics["psnr"] == pytest.approx(23.0103, abs=1e-4)
    assert metrics["mae"] == pytest.approx(0.05)
    assert metrics["mean_pred"] == pytest.approx(0.0)
    assert metrics["mean_true"] == 0.0
    assert metrics["pixels"] == 4
    big_truth = np.tile(np.linspace(0, 1, 16), (16, 1))
    big_hole = np.zeros((16, 16), bool)
    big_hole[4:12, 4:12] = True
    assert bench.hole_metrics(big_truth, big_truth, big_hole)["ssim"] == pytest.approx(1.0)
    assert bench.hole_metrics(np.where(big_hole, 0.5, big_truth), big_truth, big_hole)["ssim"] < 0.9


def test_holes_are_seeded_inside_the_brain_and_placed_by_tissue():
    brain = np.zeros((60, 60), bool)
    brain[5:55, 5:55] = True
    wm = np.zeros_like(brain)
    wm[20:40, 20:40] = True
    gm = brain & ~wm
    hole = bench.draw_hole("deep WM", brain, wm, gm, np.random.RandomState(3))
    again = bench.draw_hole("deep WM", brain, wm, gm, np.random.RandomState(3))
    np.testing.assert_array_equal(hole, again)
    assert hole.sum() == bench.HOLE_SIDE**2
    centre = np.argwhere(hole).mean(0)
    assert 20 + bench.WM_EROSION - 1 <= centre.min() and centre.max() <= 40 - bench.WM_EROSION
    cortex = bench.draw_hole("cortex", brain, wm, gm, np.random.RandomState(3))
    assert not (cortex & ~brain).any()
    assert 0 < cortex.sum() <= bench.HOLE_SIDE**2


def test_scanner_shift_is_seeded_bounded_and_keeps_the_background():
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in (12, 14, 10)], indexing="ij")
    volume = (100 + 100 * grids[0] + 50 * np.sin(6 * grids[1])).astype(np.float32)  # smooth "anatomy"
    brain = np.zeros(volume.shape, bool)
    brain[2:10, 2:12, 2:8] = True
    volume[~brain] = 0
    first = bench.scanner_shift(volume, brain, np.random.RandomState(1))
    second = bench.scanner_shift(volume, brain, np.random.RandomState(1))
    np.testing.assert_array_equal(first, second)
    assert (first[~brain] == 0).all()
    assert not np.allclose(first[brain], volume[brain], rtol=0.05)  # another look ...
    assert np.corrcoef(first[brain], volume[brain])[0, 1] > 0.3  # ... of the same anatomy
    other = bench.scanner_shift(volume, brain, np.random.RandomState(2))
    assert not np.array_equal(first, other)


def test_tumour_holes_are_3d_blobs_of_5_to_300_cm3_in_the_brain():
    brain = np.zeros((90, 100, 80), bool)
    brain[5:85, 5:95, 5:75] = True
    sizes = []
    for seed in range(3):
        blob = bench.draw_tumour(brain, 40, np.random.RandomState(seed))
        assert blob[:, :, 40].any() and not (blob & ~brain).any()
        sizes.append(blob.sum() * 0.008)
    assert all(bench.TUMOUR_CM3[0] - 0.01 <= v <= bench.TUMOUR_CM3[1] + 0.01 for v in sizes)
    np.testing.assert_array_equal(
        bench.draw_tumour(brain, 40, np.random.RandomState(0)), bench.draw_tumour(brain, 40, np.random.RandomState(0))
    )


@pytest.mark.slow
@pytest.mark.skipif(not IXI.is_dir(), reason=f"the IXI T1 folder {IXI} is absent (a user's clone has no ../shared)")
def test_quick_benchmark_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = bench.main(["--data", str(IXI), "--quick", "--seed", "0", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert printed.count("| variant | method |") == 1  # one markdown table
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / f"real_inpainting.{suffix}").stat().st_size > 0
    rows = result["rows"]
    assert {r["subject"] for r in rows} <= set(bench.fixed_split()["validation"])
    assert len({r["subject"] for r in rows}) == bench.QUICK_SUBJECTS
    holes = bench.QUICK_SUBJECTS * bench.QUICK_SLICES
    for method in bench.BASELINES:
        for placement in bench.PLACEMENTS:
            picked = [r for r in rows if r["method"] == method and r["placement"] == placement]
            assert len(picked) == holes
            assert all(np.isfinite(r["psnr"]) and r["known_max_change"] == 0 for r in picked)
    # every bundle is either measured on the same holes or reported n/a with a reason
    for label, status in result["status"]["standard"].items():
        measured = [r for r in rows if r["method"] == label]
        assert (status == "ok" and len(measured) == len(bench.PLACEMENTS) * holes) or (status.startswith("n/a (") and not measured)
    text = (tmp_path / "real_inpainting.md").read_text()
    assert "git commit" in text and "wall time" in text and str(IXI) in text
