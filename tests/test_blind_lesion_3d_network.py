"""Space-to-depth 3D U-Net and its deep-supervision loss (blind_lesion_inpainting_3d scripts/networks.py,
scripts/losses.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.bundle_scripts import load_bundle_scripts

scripts = load_bundle_scripts(Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d")
SpaceToDepthUNet3D = scripts.networks.SpaceToDepthUNet3D
count_parameters = scripts.networks.count_parameters
depth_to_space, space_to_depth = scripts.networks.depth_to_space, scripts.networks.space_to_depth
InpaintingDeepSupervisionLoss = scripts.losses.InpaintingDeepSupervisionLoss
space_to_depth_target = scripts.losses.space_to_depth_target

SMALL = (46, 54, 46)  # a quarter of the MNI grid per axis: half-resolution 23x27x23, odd like 91x109x91


def test_space_to_depth_is_the_decimation_with_one_voxel_shifts():
    volume = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(1, 2, 4, 6, 8)
    depth = space_to_depth(volume)
    assert depth.shape == (1, 16, 2, 3, 4)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                for k in range(2):
                    expected = volume[0, c, i::2, j::2, k::2]
                    assert torch.equal(depth[0, c * 8 + 4 * i + 2 * j + k], expected)


def test_space_to_depth_is_lossless_and_invertible_on_the_mni_grid():
    generator = torch.Generator().manual_seed(0)
    volume = torch.rand((1, 1, 182, 218, 182), generator=generator)
    depth = space_to_depth(volume)
    assert depth.shape == (1, 8, 91, 109, 91)
    # every voxel once: same multiset of values, and depth-to-space gives the volume back bit for bit
    assert torch.equal(torch.sort(depth.flatten()).values, torch.sort(volume.flatten()).values)
    assert torch.equal(depth_to_space(depth), volume)
    # same layout as the deep-supervision target of scripts/losses.py
    assert torch.equal(space_to_depth_target(volume, depth), depth)


def test_space_to_depth_rejects_odd_sizes_and_non_volumes():
    with pytest.raises(ValueError, match="even spatial sizes"):
        space_to_depth(torch.zeros(1, 1, 5, 6, 6))
    with pytest.raises(ValueError, match="batched 3D volume"):
        space_to_depth(torch.zeros(1, 6, 6, 6))


@pytest.mark.parametrize("levels", [1, 3, 4])
def test_output_shapes_on_odd_half_resolution_grid(levels):
    """23x27x23 (odd, not a multiple of 2**(levels-1)) is padded for the poolings and cropped back."""
    net = SpaceToDepthUNet3D(filters=4, levels=levels)
    image = torch.randn(2, 1, *SMALL)
    full, low = net.train()(image)
    assert full.shape == (2, 1, *SMALL)
    assert low.shape == (2, 8, 23, 27, 23)
    assert net.eval()(image).shape == (2, 1, *SMALL)


def test_odd_grid_is_zero_padded_at_the_high_end_and_cropped():
    """Stated padding rule: the 23x27x23 half-resolution grid is zero-padded at the high end of each axis to
    24x28x24 (multiple of 4 for 3 levels). So the output equals that of the input zero-padded by hand at full
    resolution (46x54x46 -> 48x56x48), cropped back -- except in the last 2 voxels of each axis, where the
    full-resolution reconstruction conv sees the cropped border. Padding at the low end instead would differ."""
    torch.manual_seed(0)
    net = SpaceToDepthUNet3D(filters=4, levels=3).eval()
    image = torch.randn(1, 1, *SMALL)
    with torch.no_grad():
        out = net(image)
        padded_by_hand = net(torch.nn.functional.pad(image, (0, 2, 0, 2, 0, 2)))
        padded_low_end = net(torch.nn.functional.pad(image, (2, 0, 2, 0, 2, 0)))
    inner = (slice(None), slice(None), slice(0, 44), slice(0, 52), slice(0, 44))
    torch.testing.assert_close(out[inner], padded_by_hand[inner])
    assert not torch.allclose(out[inner], padded_low_end[:, :, 2:, 2:, 2:][inner])


def test_width_and_parameter_count_follow_the_paper_formula():
    """One 3x3x3 conv + BN per level, 40 filters doubling: the count is the hand-written sum below."""
    f, levels = 40, 4
    widths = [f * 2**i for i in range(levels)]

    def conv(c_in, c_out, k=3):
        return c_in * c_out * k**3 + c_out

    expected = conv(8, widths[0]) + 2 * widths[0]
    for i in range(1, levels):
        expected += conv(widths[i - 1], widths[i]) + 2 * widths[i]
    for i in range(levels - 1):
        expected += conv(widths[i + 1] + widths[i], widths[i]) + 2 * widths[i]
    expected += conv(widths[0], 8, 1)  # low-resolution (depth-wise) head
    expected += conv(9, 8) + 2 * 8  # reconstruction block: 8 upsampled + 1 depth-to-space channels -> 8
    expected += conv(8, 1, 1)  # final 1x1x1 conv
    assert count_parameters(SpaceToDepthUNet3D()) == expected


def test_deep_supervision_loss_is_the_sum_of_both_mses():
    torch.manual_seed(1)
    net = SpaceToDepthUNet3D(filters=4, levels=2).train()
    image, target = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 1, 16, 16, 16)
    full, low = net(image)
    loss = InpaintingDeepSupervisionLoss(target_transform=space_to_depth_target)([full, low], target)
    manual_low = torch.stack(
        [
            ((low[0, 4 * i + 2 * j + k] - target[0, 0, i::2, j::2, k::2]) ** 2).mean()
            for i in range(2)
            for j in range(2)
            for k in range(2)
        ]
    ).mean()
    manual = ((full - target) ** 2).mean() + manual_low
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_deep_supervision_area_resized_targets():
    target = torch.rand(1, 1, 8, 8, 8)
    full = torch.rand(1, 1, 8, 8, 8, requires_grad=True)
    half = torch.rand(1, 1, 4, 4, 4, requires_grad=True)
    target_half = target.reshape(1, 1, 4, 2, 4, 2, 4, 2).mean(dim=(3, 5, 7))  # 2x2x2 block means by hand
    expected = ((full - target) ** 2).mean() + ((half - target_half) ** 2).mean()
    loss = InpaintingDeepSupervisionLoss()([full, half], target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert half.grad is not None


def test_deep_supervision_weights_scale_each_output():
    """The weights come from the config's loss_weights (full resolution first, then space-to-depth)."""
    target, full, low = torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 4, 4, 4), torch.rand(1, 8, 2, 2, 2)
    loss = InpaintingDeepSupervisionLoss(weights=[2.0, 0.5], target_transform=space_to_depth_target)
    expected = 2.0 * ((full - target) ** 2).mean() + 0.5 * ((low - space_to_depth(target)) ** 2).mean()
    assert loss([full, low], target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_weight_channel_gives_each_output_a_weighted_mean():
    """The target's last channel weights every voxel, in both outputs (rearranged like the target for the
    space-to-depth one): loss_l = sum(w (o - t)^2) / sum(w), computed here by hand."""
    torch.manual_seed(2)
    target, full, low = torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 4, 4, 4), torch.rand(1, 8, 2, 2, 2)
    weight = torch.ones(1, 1, 4, 4, 4)
    weight[0, 0, 3, 0, 3] = 101.0
    loss = InpaintingDeepSupervisionLoss(target_transform=space_to_depth_target, weight_channel=True)
    value = loss([full, low], torch.cat([target, weight], dim=1))
    full_term = (weight * (full - target) ** 2).sum() / weight.sum()
    # the heavy voxel (3, 0, 3) sits in phase (1, 0, 1) = channel 5 at coarse position (1, 0, 1)
    low_sq = torch.stack(
        [(low[0, 4 * i + 2 * j + k] - target[0, 0, i::2, j::2, k::2]) ** 2 for i in range(2) for j in range(2) for k in range(2)]
    )
    low_w = torch.ones_like(low_sq)
    low_w[5, 1, 0, 1] = 101.0
    low_term = (low_w * low_sq).sum() / low_w.sum()
    assert value.item() == pytest.approx((full_term + low_term).item(), rel=1e-6)
    # all-ones weights are the plain loss
    plain = InpaintingDeepSupervisionLoss(target_transform=space_to_depth_target)([full, low], target)
    ones = loss([full, low], torch.cat([target, torch.ones_like(target)], dim=1))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        InpaintingDeepSupervisionLoss(loss=lambda a, b: (a - b).abs().mean(), weight_channel=True)


def test_space_to_depth_target():
    target = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    output = torch.zeros(1, 8, 2, 3)
    assert torch.equal(space_to_depth_target(target, output), F.pixel_unshuffle(target, 2))
    volume = torch.rand(1, 1, 4, 4, 4)
    packed = space_to_depth_target(volume, torch.zeros(1, 8, 2, 2, 2))
    # channel i*4 + j*2 + k holds volume[2y+i, 2x+j, 2z+k]
    assert packed[0, 1 * 4 + 0 * 2 + 1, 1, 0, 1] == volume[0, 0, 3, 0, 3]
    loss = InpaintingDeepSupervisionLoss(target_transform=space_to_depth_target)([packed.clone()], volume)
    assert loss.item() == 0
    with pytest.raises(ValueError, match="space-to-depth"):
        space_to_depth_target(volume, torch.zeros(1, 3, 2, 2, 2))


def test_learns_an_identity_on_a_tiny_volume():
    """A few Adam steps fit the map image -> image much better than the untrained network (sanity of wiring)."""
    torch.manual_seed(0)
    net = SpaceToDepthUNet3D(filters=4, levels=2)
    image = torch.rand(2, 1, 16, 16, 16)
    loss_fn = InpaintingDeepSupervisionLoss(target_transform=space_to_depth_target)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = loss_fn(net.train()(image), image)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_untrained_residual_network_is_the_identity():
    """Residual mode starts at the identity (zero full-resolution head), in training and in eval mode."""
    torch.manual_seed(0)
    image = torch.randn(1, 1, *SMALL)
    net = SpaceToDepthUNet3D(filters=4, levels=3, residual=True)
    full, low = net.train()(image)
    assert torch.equal(full, image)
    assert low.shape == space_to_depth(image).shape and not torch.equal(low, space_to_depth(image))
    assert torch.equal(net.eval()(image), image)


def test_residual_outputs_are_the_plain_outputs_plus_the_input():
    """With the same weights, residual = plain network output + input, at both resolutions."""
    torch.manual_seed(1)
    plain = SpaceToDepthUNet3D(filters=4, levels=2)
    residual = SpaceToDepthUNet3D(filters=4, levels=2, residual=True)
    residual.load_state_dict(plain.state_dict())  # the plain head is random, so the correction is not zero
    image = torch.randn(2, 1, 16, 20, 16)
    (full_p, low_p), (full_r, low_r) = plain.train()(image), residual.train()(image)
    torch.testing.assert_close(full_r, full_p + image)
    torch.testing.assert_close(low_r, low_p + space_to_depth(image))
    assert "residual=True" in repr(residual)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="residual needs"):
        SpaceToDepthUNet3D(in_channels=1, out_channels=2, residual=True)
    with pytest.raises(ValueError, match="positive"):
        SpaceToDepthUNet3D(filters=0)
    net = SpaceToDepthUNet3D(filters=4, levels=2)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.zeros(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="even spatial sizes"):
        net(torch.zeros(1, 1, 9, 8, 8))


@pytest.mark.slow
def test_paper_width_on_the_full_mni_grid():
    net = SpaceToDepthUNet3D().eval()
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 182, 218, 182))
    assert out.shape == (1, 1, 182, 218, 182)


def test_cpu_bf16_is_opt_in_from_inference_json():
    """inference.json's ``cpu_bf16`` id reaches the network: off by default (the fp32 output), on from the
    command line; the option leaves training and autograd forwards alone."""
    from monai.bundle import ConfigParser

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d"
    flags = []
    for override in ({}, {"cpu_bf16": True}):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser.update({"bundle_root": str(bundle), **override})
        flags.append(parser.get_parsed_content("network_def").cpu_bf16)
    assert flags == [False, True]
    torch.manual_seed(0)
    net = SpaceToDepthUNet3D(filters=4, levels=2, recon_filters=4, cpu_bf16=True).eval()
    volume = torch.rand(1, 1, 16, 16, 16)
    assert net(volume).dtype == torch.float32 and net(volume).requires_grad  # autograd: the plain fp32 forward
    with torch.no_grad():
        net.fast_eval = False
        plain = net(volume)
        net.fast_eval = True
        fast = net(volume)
    assert fast.dtype == torch.float32 and 0 < float((fast - plain).abs().max()) < 0.05
