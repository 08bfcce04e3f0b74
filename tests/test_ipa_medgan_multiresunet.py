"""MultiResUNet and its cascade (bundles/ipa_medgan/scripts/multiresunet.py)."""

from pathlib import Path

import pytest
import torch

from common.bundle_scripts import load_bundle_scripts

multiresunet = load_bundle_scripts(Path(__file__).resolve().parents[1] / "bundles" / "ipa_medgan").multiresunet
CascadedMultiResUNet = multiresunet.CascadedMultiResUNet
MultiResBlock = multiresunet.MultiResBlock
MultiResUNet = multiresunet.MultiResUNet
ResPath = multiresunet.ResPath
multires_block_channels = multiresunet.multires_block_channels

TINY = (4, 8, 16)  # two poolings: sizes divisible by 4


def test_block_channels_follow_the_reference_implementation():
    # W = 1.67 * 32 = 53.44 -> int(8.92), int(17.80), int(26.72)
    assert multires_block_channels(32) == (8, 17, 26)
    block = MultiResBlock(2, in_channels=3, filters=32)
    assert block(torch.rand(2, 3, 8, 8)).shape == (2, 51, 8, 8)


def test_tiny_block_is_refused():
    with pytest.raises(ValueError, match="without channels"):
        multires_block_channels(2)


def test_res_path_length_and_shape():
    path = ResPath(2, in_channels=5, filters=7, length=3)
    assert len(path) == 3
    assert path(torch.rand(1, 5, 6, 6)).shape == (1, 7, 6, 6)
    with pytest.raises(ValueError, match="length"):
        ResPath(2, 5, 7, 0)


def test_default_res_path_lengths_decrease_with_depth():
    net = MultiResUNet(filters=(4, 8, 16, 32, 64))
    assert [len(stage.res_path) for stage in net.encoders] == [4, 3, 2, 1]


def test_paper_configuration_parameter_count():
    # Ibtehaz & Rahman report 7,262,750 parameters for the 2D MultiResUNet (Keras, with biases in the 1x1
    # output conv-bn); ours differs only by such bias/BN details.
    count = sum(p.numel() for p in MultiResUNet().parameters())
    assert abs(count - 7_262_750) / 7_262_750 < 0.01


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_shape_and_range(spatial_dims):
    net = MultiResUNet(spatial_dims, in_channels=2, out_channels=3, filters=TINY)
    x = torch.rand(2, 2, *([8] * spatial_dims))
    y = net(x)
    assert y.shape == (2, 3, *([8] * spatial_dims))
    assert y.min() >= 0 and y.max() <= 1  # sigmoid output


def test_linear_and_tanh_outputs():
    x = torch.rand(1, 1, 8, 8)
    assert MultiResUNet(filters=TINY, out_activation="tanh")(x).abs().max() <= 1
    with pytest.raises(ValueError, match="out_activation"):
        MultiResUNet(filters=TINY, out_activation="relu")


def test_bad_inputs_are_refused():
    net = MultiResUNet(filters=TINY)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 1, 10, 8))
    with pytest.raises(ValueError, match="channels|tensor"):
        net(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="ResPath length"):
        MultiResUNet(filters=TINY, res_path_lengths=(1,))


def test_cascade_chains_stages_and_gradients_reach_both():
    torch.manual_seed(0)
    net = CascadedMultiResUNet(num_stages=2, filters=TINY).eval()
    x = torch.rand(2, 1, 8, 8)
    expected = net.stages[1](net.stages[0](x))
    torch.testing.assert_close(net(x), expected)
    net.train()
    net(x).square().mean().backward()
    for i, stage in enumerate(net.stages):
        grads = [p.grad for p in stage.parameters()]
        assert all(g is not None for g in grads), f"stage {i} has parameters without gradient"
        assert sum(float(g.abs().sum()) for g in grads) > 0, f"no gradient reaches stage {i}"


def test_single_stage_cascade_is_one_network():
    net = CascadedMultiResUNet(num_stages=1, filters=TINY)
    assert len(net.stages) == 1
    with pytest.raises(ValueError, match="num_stages"):
        CascadedMultiResUNet(num_stages=0)


def test_torchscript_matches_eager():
    net = CascadedMultiResUNet(filters=TINY).eval()
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(torch.jit.script(net)(x), net(x))
