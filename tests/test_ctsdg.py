"""CTSDG generator (shape_aware_mask_inpainting's scripts.networks), its attention block, the single-tensor
inpainter, and the spectral-norm discriminator (common.networks)."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.bundle_scripts import load_bundle_scripts
from common.networks import SpectralNormPatchDiscriminator

networks = load_bundle_scripts(
    Path(__file__).resolve().parents[1] / "bundles" / "shape_aware_mask_inpainting"
).networks
CTSDG, CTSDGInpainter = networks.CTSDG, networks.CTSDGInpainter
BiGFF, RegionAffinityLearning = networks.BiGFF, networks.RegionAffinityLearning

TINY = {"channels": (4, 8, 8), "kernels": (5, 3, 3), "edge_head_channels": 4}


def inputs(batch=2, channels=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, size, size, generator=g)
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, 8:20, 10:24] = 1
    edge = (torch.rand(batch, 1, size, size, generator=g) > 0.8).float()
    return image, mask, edge


@pytest.mark.parametrize("channels", [1, 3])
def test_four_outputs_with_the_documented_shapes_and_ranges(channels):
    torch.manual_seed(0)
    net = CTSDG(image_channels=channels, **TINY)
    image, mask, edge = inputs(channels=channels)
    out, out_edge, mid, mid_edge = net(image * (1 - mask), mask, edge)
    assert out.shape == mid.shape == (2, channels, 32, 32)
    assert out_edge.shape == mid_edge.shape == (2, 1, 32, 32)
    for t in (out, out_edge, mid, mid_edge):
        assert t.min() >= 0 and t.max() <= 1


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = CTSDG(**TINY)
    with torch.no_grad():  # open the BiGFF fusion (gammas start at 0, which blocks the gates' gradients)
        net.bigff.texture_gamma.fill_(1.0)
        net.bigff.structure_gamma.fill_(1.0)
    image, mask, edge = inputs()
    sum(o.mean() for o in net(image * (1 - mask), mask, edge)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_hole_content_of_image_and_edge_map_is_ignored():
    torch.manual_seed(0)
    net = CTSDG(**TINY).eval()
    image, mask, edge = inputs()
    other_image = torch.where(mask > 0, torch.rand_like(image), image)
    other_edge = torch.where(mask > 0, 1 - edge, edge)
    with torch.no_grad():
        first = net(image, mask, edge)
        second = net(other_image, mask, other_edge)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)


def test_inputs_are_checked():
    net = CTSDG(**TINY)
    image, mask, edge = inputs()
    with pytest.raises(ValueError, match="divisible by 8"):
        net(image[..., :30, :30], mask[..., :30, :30], edge[..., :30, :30])
    with pytest.raises(ValueError, match="mask"):
        net(image, mask[..., :16, :16], edge)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) image"):
        net(torch.cat([image, image], 1), mask, edge)


def naive_region_affinity(x, rate=2, scale=10.0):
    """The release's per-sample loop, written with explicit patches (independent of the batched version)."""
    outputs = []
    for item in x:
        item = item[None]
        c, height, width = item.shape[1:]
        small = F.interpolate(item, size=(height // rate, width // rate), mode="bilinear", align_corners=True)
        padded = F.pad(small, (1, 1, 1, 1))
        h, w = small.shape[2:]
        patches = torch.stack([padded[0, :, i : i + 3, j : j + 3] for i in range(h) for j in range(w)])
        patches = patches / patches.flatten(1).norm(dim=1).clamp(min=1e-4)[:, None, None, None]
        scores = F.conv2d(small, patches, padding=1)
        attention = F.softmax(scores * scale, dim=1).clamp(min=1e-8)
        k, p = 2 * rate, rate // 2
        big = F.pad(item, (p, p, p, p))
        values = torch.stack(
            [big[0, :, i * rate : i * rate + k, j * rate : j * rate + k] for i in range(h) for j in range(w)]
        )
        outputs.append(F.conv_transpose2d(attention, values, stride=rate, padding=p) / 4.0)
    return torch.cat(outputs)


def test_region_affinity_matches_the_per_sample_reference():
    x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(RegionAffinityLearning(2, 10.0)(x), naive_region_affinity(x))


def test_bigff_starts_as_identity_and_gates_once_opened():
    torch.manual_seed(0)
    fusion = BiGFF(4)
    t, s = torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6)
    torch.testing.assert_close(fusion(t, s), torch.cat([t, s], 1))
    with torch.no_grad():
        fusion.texture_gamma.fill_(1.0)
    gate = fusion.structure_gate(torch.cat([t, s], 1))
    torch.testing.assert_close(fusion(t, s)[:, :4], t + gate * s)


def test_inpainter_takes_one_tensor_keeps_known_pixels_and_scripts():
    torch.manual_seed(0)
    net = CTSDGInpainter(**TINY).eval()
    image, mask, edge = inputs(batch=1)
    x = torch.cat([image * (1 - mask), mask, edge], 1)
    with torch.no_grad():
        out = net(x)
        raw = net.generator(image * (1 - mask), mask, edge)[0]
        scripted = torch.jit.script(net)(x)
    known = mask == 0
    torch.testing.assert_close(out[known], image[known])
    torch.testing.assert_close(out[~known], raw[~known])
    torch.testing.assert_close(scripted, out)
    with pytest.raises(ValueError, match="masked image"):
        net(torch.cat([image, mask], 1))


def test_spectral_norm_discriminator_patch_logits():
    torch.manual_seed(0)
    net = SpectralNormPatchDiscriminator(2, channels=(4, 8, 8, 8))
    out = net(torch.rand(2, 2, 64, 64))
    size = (
        64 // 8 - 1 - 1
    )  # three stride-2 4x4 convs halve; two stride-1 4x4 convs (padding 1) remove one each
    assert out.shape == (2, 1, size, size)
    assert any(hasattr(m, "weight_orig") for m in net.modules()), "spectral normalisation is applied"
