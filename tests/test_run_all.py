"""benchmarks/run_all.py (issue #20): the speed options give the default path's outputs; ``--quick`` writes one
record per row with the issue's keys."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle_scripts import load_bundle_scripts
from common.networks import GatedUNet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402

autoinpainting = load_bundle_scripts(ROOT / "bundles" / "autoinpainting_tumor_segmentation").autoinpainting

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 96


def disc(centre, radius, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.float32)


def scene():
    image = torch.full((1, SIZE, SIZE), 0.3) + 0.5 * torch.from_numpy(disc((40, 50), 9))[None]
    return image, torch.from_numpy(disc((48, 48), 40))


def test_rescoring_every_circle_on_the_whole_slice_gives_the_default_answer():
    """Crop scores shortlist the circles, whole-slice scores rank the shortlist: with the whole list
    shortlisted, the kept circles, the chosen mask and the inpainting are the default (whole-slice) search's."""
    image, ooi = scene()
    torch.manual_seed(0)
    net = GatedUNet(channels=(4, 8, 8), kernel_sizes=(5, 3, 3)).eval()
    default = autoinpainting.AutoInpainter(radius=12, step=12, min_tumour_radius=0).inpaint_slice(net, image, ooi)
    count = len(default.circles)
    fast = autoinpainting.AutoInpainter(
        radius=12, step=12, min_tumour_radius=0, crop_size=32, rescore_top=count, batch_size=64
    ).inpaint_slice(net, image, ooi)
    assert np.array_equal(fast.top, default.top) and fast.chosen == default.chosen
    np.testing.assert_allclose(fast.scores, default.scores, rtol=1e-4)
    torch.testing.assert_close(fast.inpainted, default.inpainted, atol=1e-5, rtol=1e-5)
    # a short shortlist still ranks by whole-slice scores among its circles
    short = autoinpainting.AutoInpainter(
        radius=12, step=12, min_tumour_radius=0, crop_size=32, rescore_top=4
    ).inpaint_slice(net, image, ooi)
    assert len(short.top) == 3 and np.all(np.diff(short.scores[short.top]) <= 0)
    with pytest.raises(ValueError, match="rescore_top"):
        autoinpainting.AutoInpainter(radius=12, crop_size=32, rescore_top=2)


def test_search_in_mm_passes_rescore_top():
    assert autoinpainting.search_in_pixels(1.0, crop_size_mm=80, rescore_top=8)["rescore_top"] == 8


def test_timed_3d_paths_are_the_bundle_forward_in_fp32_and_with_its_bf16_option():
    networks = load_bundle_scripts(ROOT / "bundles" / "blind_lesion_inpainting_3d").networks
    torch.manual_seed(0)
    net = networks.SpaceToDepthUNet3D(filters=4, levels=2, recon_filters=4).eval()
    volume = torch.rand(1, 1, 32, 32, 32)
    net.fast_eval = False
    with torch.no_grad():
        plain = net(volume)
    torch.testing.assert_close(run_all.fast_3d(net, bf16=False)(volume), plain, atol=1e-4, rtol=1e-4)
    bf16 = run_all.fast_3d(net, bf16=True)(volume)
    assert bf16.dtype == torch.float32 and net.cpu_bf16
    difference = float((bf16 - plain).abs().max())
    assert 0 < difference < 0.05 * float(plain.abs().max())  # bf16 rounding (8-bit mantissa), not another network


def test_frozen_object_removal_pipeline_gives_todays_output():
    network, size = run_all.object_removal_speed.build("demo")
    x = run_all.object_removal_speed.sample_input(size)
    with torch.no_grad():
        today = network(x)
    fast = run_all.freeze_object_removal(network, size)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), today, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_quick_run_writes_one_record_per_row_with_the_issue_keys(tmp_path):
    run_all.main(["--quick", "--threads", "1", "--output-dir", str(tmp_path)])
    records = json.loads((tmp_path / "performance.json").read_text(encoding="utf-8"))
    keys = {"bundle", "unit", "naive_s", "optimised_s", "ratio", "max_abs_diff", "metric_delta", "peak_mb", "threads"}
    assert all(keys <= set(r) for r in records)
    bundles = [r["bundle"] for r in records]
    # 3-D shipped width (+ its cpu_bf16 row on CPUs with native bf16); 2 autoinpainting, 2 object removal; 4 steps
    assert len(bundles) == len(set(bundles)) == 9 + run_all.native_bf16()
    assert {b.split(" ")[0] for b in bundles} == {
        "blind_lesion_inpainting_3d",
        "autoinpainting_tumor_segmentation",
        "mask_optimized_object_removal",
        "ipa_medgan",
        "shape_aware_mask_inpainting",
    }
    text = (tmp_path / "performance.md").read_text(encoding="utf-8")
    assert "| bundle |" in text and "CPU:" in text and "threads" in text
