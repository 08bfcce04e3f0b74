"""Per-scan adaptation (issue #18): briefly fine-tune the inpainter on the scan it is about to search.

A network trained on one scanner's healthy slices fills another scanner's tissue too bright or too smooth, and
the whole brain then leaves a residual. Before the search, :func:`adapt_to_scan` fine-tunes a copy of the
network on the scan's own slices with random irregular holes inside the organ of interest (the tumour is a small
part of them, so the network learns the scan's healthy look, not the tumour), with the training loss of the
bundle (:class:`common.losses.WeightedSumLoss` with ``loss_weights``). No label, no healthy set; seeded. The
network passed in is left untouched; the adapted copy is returned in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from common.losses import WeightedSumLoss
from common.transforms.masks import irregular_mask

__all__ = ["adapt_to_scan"]


def adapt_to_scan(
    network: torch.nn.Module,
    slices: Sequence[torch.Tensor],
    oois: Sequence[torch.Tensor],
    iterations: int = 150,
    learning_rate: float = 1e-4,
    batch_size: int = 8,
    hole_coverage: Sequence[float] = (0.05, 0.15),
    loss_weights: Mapping[str, float] | None = None,
    fill_value: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> torch.nn.Module:
    """A copy of ``network`` fine-tuned for ``iterations`` Adam steps on ``slices`` ((C, H, W) on the network's
    [0, 1] scale, one size) with irregular holes (covering ``hole_coverage`` of the slice) kept inside
    each slice's OOI (``oois``, (H, W) or (1, H, W)); ``iterations`` 0 returns an unchanged copy. ``loss_weights`` default: the paper's
    pixel terms (valid 30, hole 240, TV 250, Laplacian 20; no VGG terms, which need ImageNet weights)."""
    if len(slices) == 0 or len(slices) != len(oois):
        raise ValueError(f"need one OOI per slice and at least one slice, got {len(slices)} and {len(oois)}")
    if iterations < 0 or batch_size < 1 or learning_rate <= 0:
        raise ValueError("need iterations >= 0, batch_size >= 1 and a positive learning rate")
    weights = dict(loss_weights or {"valid": 30, "hole": 240, "tv": 250, "laplacian": 20})
    device = torch.device(device) if device is not None else next(network.parameters()).device
    adapted = copy.deepcopy(network).to(device)
    images = torch.stack([torch.as_tensor(s, dtype=torch.float32) for s in slices]).to(device)
    regions = [np.asarray(torch.as_tensor(o).cpu()).reshape(images.shape[-2:]) > 0 for o in oois]
    usable = [i for i, r in enumerate(regions) if r.sum() >= 16]
    if not usable or iterations == 0:
        return adapted.eval()
    loss = WeightedSumLoss(weights).to(device)
    optimizer = torch.optim.Adam(adapted.parameters(), lr=learning_rate)
    rng = np.random.RandomState(seed)
    generator = torch.Generator().manual_seed(seed)
    adapted.train()
    for _ in range(iterations):
        picks = torch.randint(len(usable), (batch_size,), generator=generator).tolist()
        masks = []
        for pick in picks:
            region = regions[usable[pick]]
            holes = irregular_mask(region.shape, rng, coverage_range=hole_coverage) & region
            masks.append(torch.from_numpy(holes[None].astype(np.float32)))
        mask = torch.stack(masks).to(device)
        target = images[[usable[p] for p in picks]]
        masked = target * (1 - mask) + fill_value * mask
        optimizer.zero_grad()
        value = loss(adapted(torch.cat([masked, mask], 1)), target, mask)
        value.backward()
        optimizer.step()
    return adapted.eval()
