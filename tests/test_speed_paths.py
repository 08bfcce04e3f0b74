"""The speed paths of issue #20 compute what the plain paths compute (timings are never asserted here)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle_scripts import load_bundle_scripts
from common.transforms.masks import _uniform, free_form_mask, irregular_mask

ROOT = Path(__file__).resolve().parents[1]


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16]


# sha256 prefixes and hole counts of the masks drawn by the implementation before the speed-up (np.ogrid grids,
# np.linalg.qr rotations, numpy-scalar arithmetic), computed with that code for these seeds
IRREGULAR_BEFORE = {
    ((256, 256), (0.25, 0.30), 0): ("4b5c58a3641552a4", 18292),
    ((256, 256), (0.25, 0.30), 1): ("ace99a1aa5ae750f", 18146),
    ((256, 256), (0.25, 0.30), 2): ("a7ae715fd4792c48", 17829),
    ((256, 256), (0.25, 0.30), 3): ("f02ba6de2d102ea6", 19229),
    ((256, 256), (0.25, 0.30), 4): ("54b64d66799b66d5", 19597),
    ((24, 24, 24), (0.1, 0.15), 0): ("65661f28d45c7f37", 1762),
    ((24, 24, 24), (0.1, 0.15), 1): ("5b146cd9ca38ea88", 1684),
}


@pytest.mark.parametrize("key", sorted(IRREGULAR_BEFORE, key=str))
def test_irregular_mask_draws_the_same_masks_as_before_the_speed_up(key):
    shape, coverage, seed = key
    mask = irregular_mask(shape, np.random.RandomState(seed), coverage)
    assert (_digest(mask), int(mask.sum())) == IRREGULAR_BEFORE[key]


def test_free_form_mask_sharing_the_capsule_is_unchanged():
    mask = free_form_mask((256, 256), np.random.RandomState(3))
    assert (_digest(mask), int(mask.sum())) == ("1945a91906ea7653", 12586)


# (generator, spatial shape, seed, options) -> (sha256 prefix, hole count), computed with masks.py of commit 7f981fa
MASKS_BEFORE_SECOND_SPEED_UP = {
    ("irregular", (256, 256), 10, ()): ("7f0d06c82dc8d32f", 19015),
    ("irregular", (256, 256), 11, ()): ("6c6926f2fa7adf1e", 17769),
    ("irregular", (256, 256), 12, ()): ("881a62dc196f436f", 16921),
    ("irregular", (32, 32, 32), 0, ()): ("ce21d43b4ba09968", 9124),
    ("irregular", (32, 32, 32), 1, ()): ("b61169441266394f", 8915),
    ("irregular", (256, 256), 5, (("shapes", ("circle",)),)): ("83e4f697ca55d18d", 18677),
    ("irregular", (32, 32, 32), 5, (("shapes", ("circle",)),)): ("73d9645d5cb841bd", 8590),
    ("irregular", (256, 256), 5, (("shapes", ("ellipse",)),)): ("63b2dede1d2e6d40", 17586),
    ("irregular", (32, 32, 32), 5, (("shapes", ("ellipse",)),)): ("73797e7badb9509b", 8582),
    ("irregular", (256, 256), 5, (("shapes", ("line",)),)): ("d0b44655ef5ecefd", 17718),
    ("irregular", (32, 32, 32), 5, (("shapes", ("line",)),)): ("f19944006588ef51", 8556),
    (
        "irregular",
        (96, 160),
        7,
        (
            ("coverage_range", (0.05, 0.15)),
            ("radius_range", (0.05, 0.2)),
            ("line_length_range", (0.3, 1.2)),
            ("line_width_range", (0.05, 0.1)),
        ),
    ): ("e9c2c83925e82d4b", 912),
    ("irregular", (20, 48, 36), 8, (("coverage_range", (0.4, 0.5)),)): ("27ed03f08215f1e2", 16843),
    ("free_form", (256, 256), 0, ()): ("e04c57e572cc30ad", 3127),
    ("free_form", (256, 256), 1, ()): ("1da128bee262690d", 9652),
    ("free_form", (128, 200), 2, (("max_strokes", 6), ("width_range", (4, 10)))): ("9a29388a631e6098", 1847),
}


@pytest.mark.parametrize("key", sorted(MASKS_BEFORE_SECOND_SPEED_UP, key=str))
def test_masks_are_bit_identical_to_those_before_the_second_speed_up(key):
    """The digests were produced by the implementation before the second speed-up of issue #20 (masks.py of commit
    7f981fa: arange grids, numpy-array geometry, ``RandomState.uniform`` draws): every shape kind alone and mixed,
    2-D and 3-D, non-default sizes, and the free-form strokes sharing ``_capsule``."""
    generator, shape, seed, options = key
    draw = irregular_mask if generator == "irregular" else free_form_mask
    mask = draw(shape, np.random.RandomState(seed), **dict(options))
    assert (_digest(mask), int(mask.sum())) == MASKS_BEFORE_SECOND_SPEED_UP[key]


def test_uniform_draws_what_randomstate_uniform_draws():
    """The mask loop's ``_uniform`` stands in for ``RandomState.uniform``: the same values and stream position."""
    expected, drawn = np.random.RandomState(4), np.random.RandomState(4)
    for low, high in ((0, 1), (0.03, 0.10), (0.15, 0.45), (-3.5, 2.25)):
        assert [_uniform(drawn, low, high) for _ in range(1000)] == expected.uniform(low, high, 1000).tolist()
    assert drawn.randint(1 << 30) == expected.randint(1 << 30)


def _unet3d(residual: bool) -> torch.nn.Module:
    networks = load_bundle_scripts(ROOT / "bundles" / "blind_lesion_inpainting_3d").networks
    torch.manual_seed(0)
    net = networks.SpaceToDepthUNet3D(filters=4, levels=3, recon_filters=4, residual=residual)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them matters
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        torch.nn.init.normal_(net.full_head.weight, std=0.2)
    return net.eval()


@pytest.mark.parametrize("residual", [False, True])
def test_fast_3d_eval_forward_matches_the_plain_forward(residual):
    net = _unet3d(residual)
    volume = torch.rand(1, 1, 22, 30, 18)  # odd half-resolution sizes: the padded and cropped grid
    with torch.no_grad():
        fast = net(volume)
        net.fast_eval = False
        plain = net(volume)
    assert fast.shape == plain.shape == volume.shape and fast.is_contiguous()
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    assert float((plain - volume).abs().max()) > 1e-2  # the check compares real outputs, not the identity


def test_fast_3d_eval_forward_is_not_used_with_autograd_or_in_training():
    net = _unet3d(False)
    volume = torch.rand(1, 1, 16, 16, 16)
    assert net(volume).requires_grad  # eval mode with autograd: the plain, differentiable forward
    outputs = net.train()(volume)
    assert isinstance(outputs, list) and len(outputs) == 2


def _object_removal():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import object_removal_speed

    network, size = object_removal_speed.build("demo")
    fast_inference = load_bundle_scripts(ROOT / "bundles" / "mask_optimized_object_removal").fast_inference
    return network, object_removal_speed.sample_input(size), fast_inference


def test_optimised_object_removal_gives_the_plain_output_and_leaves_the_pipeline_intact():
    network, x, fast_inference = _object_removal()
    with torch.inference_mode():
        plain = network(x)
        fast = fast_inference.optimise_for_inference(network)
        assert not any(type(m).__name__.startswith("Parametrized") for m in fast.modules())
        torch.testing.assert_close(fast(x), plain, atol=1e-6, rtol=0)
        torch.testing.assert_close(network(x), plain, atol=0, rtol=0)  # the original still runs, unchanged


def test_optimised_object_removal_runs_the_last_layers_over_the_hole_only_with_the_same_outputs():
    network, x, fast_inference = _object_removal()
    network.mask_source = "hint"  # the mask is the hint: two blobs at the border (reflection-padded rows/columns)
    x = x.clone()
    x[:, 1:] = 0
    x[:, 1:, 0:4, 60:64] = 1
    x[:, 1:, 8:10, 57:59] = 1  # bounding box of both: rows 0:10, columns 57:64
    with torch.inference_mode():
        plain, plain_details = network(x), network(x, details=True)
        fast = fast_inference.optimise_for_inference(network)
        seen = []
        for generator in (fast.inpainter.edge_net, fast.inpainter.segmap_net, fast.inpainter.image_net):
            generator.decoder[-1].conv.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[2:])))
        torch.testing.assert_close(fast(x), plain, atol=1e-6, rtol=0)
        assert seen == [(10, 7)] * 3  # the three 7x7 output convs ran over the mask's bounding box only
        details = fast(x, details=True)  # the raw generator outputs are returned: computed whole
        assert seen[3:] == [tuple(x.shape[2:])] * 3
        for key in ("pred", "edge", "segmap", "segmap_logits", "image_raw"):
            torch.testing.assert_close(details[key], plain_details[key], atol=1e-6, rtol=0)


def test_fast_inference_wrapper_checks_its_copy_and_falls_back():
    network, x, fast_inference = _object_removal()
    with torch.inference_mode():
        plain = network(x)
        wrapper = fast_inference.FastInference(network).eval()
        first, second = wrapper(x), wrapper(x)
        assert wrapper._fast[0] is not None
        torch.testing.assert_close(first, plain, atol=0, rtol=0)
        torch.testing.assert_close(second, plain, atol=1e-4, rtol=0)
        strict = fast_inference.FastInference(network, atol=-1.0).eval()  # no copy can pass: the plain path
        with pytest.warns(UserWarning, match="running the plain one"):
            strict(x)
        assert strict._fast == [None]
        torch.testing.assert_close(strict(x), plain, atol=0, rtol=0)
