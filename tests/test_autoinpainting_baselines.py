"""The autoinpainting bundle's anomaly-detection baselines (scripts/baselines.py, paper Table 6): every kind builds
and trains one step; the corruptions, the GMVAE mixture KL and the WGAN-GP penalty against hand references."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch

from common.bundle_scripts import load_bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "autoinpainting_tumor_segmentation"
baselines = importlib.import_module(f"{load_bundle_scripts(BUNDLE).__name__}.baselines")


def images(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", baselines.BASELINES)
def test_every_kind_reconstructs_in_range_and_trains_one_step(kind):
    torch.manual_seed(0)
    network = baselines.build_baseline(kind, size=64, latent_size=16, n_critic=1)
    network.eval()
    with torch.no_grad():
        recon = network.reconstruction(images())
    assert recon.shape == (2, 1, 64, 64)
    assert recon.min() >= 0 and recon.max() <= 1
    network.train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    losses = [step(images(i)) for i, (_, _, step) in enumerate(network.phases(1, 1e-3))]
    assert all(math.isfinite(loss) for loss in losses)
    after = network.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the step updated something


def test_the_report_names_cover_the_papers_table_6():
    compare = importlib.import_module(f"{load_bundle_scripts(BUNDLE).__name__}.compare")
    paper_rows = {compare.BASELINE_PAPER_NAMES[name] for name in baselines.REPORT_NAMES.values() if name in
                  compare.BASELINE_PAPER_NAMES}  # fmt: skip
    assert paper_rows == set(compare.PAPER_UAD_SEGMENTATION)  # all eight rows of Table 6
    # reproduce_tables trains exactly the kinds behind those rows
    tables = importlib.import_module(f"{load_bundle_scripts(BUNDLE).__name__}.reproduce_tables")
    trained = {compare.BASELINE_PAPER_NAMES[baselines.REPORT_NAMES[kind]] for kind in tables.TABLE6_KINDS}
    assert trained == set(compare.PAPER_UAD_SEGMENTATION) and len(tables.TABLE6_KINDS) == 8


def test_noise_corrupts_only_the_input_and_stays_in_range():
    clean = images()
    noisy = baselines.add_noise(clean, 0.1, torch.Generator().manual_seed(3))
    by_hand = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    torch.testing.assert_close(noisy, by_hand)
    assert noisy.min() >= 0 and noisy.max() <= 1
    network = baselines.build_baseline("dae", size=64, latent_size=16, seed=5)
    network.train()
    loss = network.loss(clean)  # the target is the clean slice, the input the noisy one
    replay = baselines.add_noise(clean, 0.1, torch.Generator().manual_seed(5))
    expected = (network(replay)[0] - clean).abs().flatten(1).sum(1).mean()
    torch.testing.assert_close(loss, expected)


def test_erase_changes_only_pixels_inside_the_boxes():
    image = images() + 0.5  # no zeros, so every erased pixel changes
    mask = baselines.box_mask(image.shape, [[(10, 20, 5, 7)], [(0, 0, 3, 3), (60, 50, 4, 14)]])
    by_hand = image.clone()
    by_hand[0, :, 10:15, 20:27] = 0
    by_hand[1, :, 0:3, 0:3] = 0
    by_hand[1, :, 60:64, 50:64] = 0
    torch.testing.assert_close(baselines.erase(image, mask), by_hand)
    network = baselines.build_baseline("ceae", size=64, latent_size=16, seed=7)
    corrupted = network.corrupt(image)
    rects = baselines.random_boxes(2, 64, (1, 3), (0.125, 0.25), torch.Generator().manual_seed(7))
    inside = baselines.box_mask(image.shape, rects)
    assert torch.equal(corrupted != image, inside)  # changed exactly inside the drawn boxes
    assert all(1 <= len(r) <= 3 and all(8 <= h <= 16 and 8 <= w <= 16 for _, _, h, w in r) for r in rects)


def test_mixture_kl_is_zero_when_the_posterior_is_a_component_of_weight_one():
    mu, logvar = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.5]])
    means = torch.stack([mu[0], torch.zeros(2)])
    logvars = torch.stack([logvar[0], torch.zeros(2)])
    logits = torch.tensor([0.0, -math.inf])  # weights (1, 0)
    z = torch.tensor([[1.7, 0.4]])
    torch.testing.assert_close(baselines.mixture_kl(z, mu, logvar, means, logvars, logits), torch.zeros(1))
    # one N(0, I) component: the sampled estimate averages to the closed-form Gaussian KL
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    estimate = baselines.mixture_kl(z, mu, logvar, torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1)).mean()
    closed = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum()
    assert abs(estimate - closed) < 0.01


def test_gradient_penalty_on_a_linear_critic_is_the_hand_formula():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    real, fake = images()[:, :, :4, :4], images(1)[:, :, :4, :4]
    penalty = baselines.gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0), weight=10.0)
    norm = critic[1].weight.norm()  # the gradient of a linear critic is its weight, wherever it is taken
    torch.testing.assert_close(penalty, 10.0 * (norm - 1) ** 2)
