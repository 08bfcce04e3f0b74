"""Gated-conv (GconvLap/GConv) and partial-conv (PConv) inpainting U-Nets: formulas, hole independence,
phase-2 BatchNorm freezing, TorchScript."""

import pytest
import torch
import torch.nn.functional as F

from common.networks import GatedConv2d, GatedUNet, PartialConv2d

SMALL = {"channels": (4, 8, 8, 8), "kernel_sizes": (7, 5, 3, 3)}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_gated_conv_is_feature_times_sigmoid_gate():
    torch.manual_seed(0)
    block = GatedConv2d(2, 3, kernel_size=3, batch_norm=False, activation="relu")
    x = torch.randn(1, 2, 6, 6)
    out, mask = block(x, torch.ones(1, 1, 6, 6))
    expected = F.relu(F.conv2d(x, block.feature.weight, block.feature.bias, padding=1)) * torch.sigmoid(
        F.conv2d(x, block.gating.weight, block.gating.bias, padding=1)
    )
    torch.testing.assert_close(out, expected)
    assert torch.equal(mask, torch.ones(1, 1, 6, 6))


def test_partial_conv_renormalises_by_window_over_known_count():
    """A constant image convolved with an all-ones kernel gives 9 * value wherever the window sees any known
    pixel (sum(1)/sum(M) undoes the missing pixels) and 0 where it sees none; the mask updates accordingly."""
    block = PartialConv2d(1, 1, kernel_size=3, batch_norm=False, activation="leaky_relu")
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
    image = torch.full((1, 1, 7, 7), 2.0)
    valid = torch.ones(1, 1, 7, 7)
    valid[..., 1:6, 1:6] = 0  # a 5x5 hole: its inner 3x3 pixels see no known pixel
    out, updated = block(image, valid)
    assert torch.equal(updated[0, 0, 2:5, 2:5], torch.zeros(3, 3))
    assert torch.equal(out[0, 0, 2:5, 2:5], torch.zeros(3, 3))
    seen = updated[0, 0] == 1
    assert int(seen.sum()) == 49 - 9
    # image-border windows (zero padding, 6 of 9 known) and hole-border windows alike give 9 * 2
    torch.testing.assert_close(out[0, 0][seen], torch.full_like(out[0, 0][seen], 18.0))


@pytest.mark.parametrize("conv", ["gated", "partial"])
@pytest.mark.parametrize("channels", [1, 2])
def test_output_shape_range_and_hole_content_is_ignored(conv, channels):
    torch.manual_seed(0)
    net = GatedUNet(in_channels=channels, out_channels=channels, conv=conv, **SMALL).eval()
    image = torch.rand(2, channels, 32, 40)
    hole = torch.zeros(2, 1, 32, 40)
    hole[..., 8:20, 10:30] = 1
    other = image.clone()
    other[..., 8:20, 10:30] = torch.rand(2, channels, 12, 20)  # differs only inside the hole
    with torch.no_grad():
        out = net(torch.cat([image, hole], 1))
        out_other = net(torch.cat([other, hole], 1))
    assert out.shape == (2, channels, 32, 40)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, out_other)


def test_default_architecture_is_eight_levels():
    net = GatedUNet()
    assert len(net.encoder) == 8 and len(net.decoder) == 8
    assert [b.feature.stride[0] for b in net.encoder] == [2] * 8
    assert [b.feature.kernel_size[0] for b in net.encoder] == [7, 5, 5, 3, 3, 3, 3, 3]
    assert net.output.in_channels == 64 + 1 + 1  # last decoder features, masked image, mask


def test_phase2_freezes_encoder_batch_norm_only():
    torch.manual_seed(0)
    net = GatedUNet(freeze_encoder_bn=True, **SMALL).train()
    encoder_bn = net.encoder[0].norm
    decoder_bn = net.decoder[0].norm
    assert not encoder_bn.training and decoder_bn.training
    assert not any(p.requires_grad for p in encoder_bn.parameters())
    before_enc, before_dec = encoder_bn.running_mean.clone(), decoder_bn.running_mean.clone()
    net(torch.cat([torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)], 1))
    assert torch.equal(encoder_bn.running_mean, before_enc)
    assert not torch.equal(decoder_bn.running_mean, before_dec)
    net.set_encoder_bn_frozen(False)
    assert encoder_bn.training and all(p.requires_grad for p in encoder_bn.parameters())


@pytest.mark.parametrize("conv", ["gated", "partial"])
def test_torchscript_matches_eager(conv):
    net = GatedUNet(conv=conv, **SMALL).eval()
    x = torch.cat([torch.rand(1, 1, 16, 16), (torch.rand(1, 1, 16, 16) > 0.7).float()], 1)
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(x), net(x))


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(ValueError, match="conv"):
        GatedUNet(conv="dilated")
    with pytest.raises(ValueError, match="one entry per level"):
        GatedUNet(channels=(4, 8), kernel_sizes=(3,))
    with pytest.raises(ValueError, match="mask"):
        GatedUNet(**SMALL)(torch.rand(1, 1, 16, 16))
