"""VGG feature stacks: torchvision key layout, the pretrained-weights policy, the LPIPS hook."""

import logging

import pytest
import torch
import torch.nn.functional as F

from common.metrics import LPIPSMetric
from common.networks import LPIPSNetwork, VGGFeatures, vgg_layer_names

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def torchvision_style_vgg16(seed=0):
    """A state dict with torchvision's vgg16 keys and shapes (plus its classifier), random values."""
    g = torch.Generator().manual_seed(seed)
    state, in_ch = {}, 3
    for index, out_ch in zip(VGG16_CONVS, VGG16_WIDTHS):
        state[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.randn(out_ch, generator=g) * 0.1
        in_ch = out_ch
    state["classifier.0.weight"] = torch.zeros(8, 8)  # extra keys of the real file are ignored
    return state


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_layer_names_follow_torchvision_indices():
    names = vgg_layer_names("vgg16")
    assert len(names) == 31 and names[4] == "pool1" and names[9] == "pool2" and names[16] == "pool3"
    assert names[3] == "relu1_2" and names[29] == "relu5_3"
    names19 = vgg_layer_names("vgg19")
    assert (
        len(names19) == 37
        and names19[36] == "pool5"
        and names19[34] == "conv5_4"
        and names19[35] == "relu5_4"
    )


def test_loads_generated_checkpoint_and_uses_its_weights(tmp_path, hub_dir):
    state = torchvision_style_vgg16()
    path = tmp_path / "my_vgg16.pth"
    torch.save(state, path)
    vgg = VGGFeatures(layers=["relu1_1", "pool1"], weights_path=str(path))
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    x = torch.rand(2, 1, 8, 8)
    relu1_1, pool1 = vgg(x)
    rgb = (x.expand(-1, 3, -1, -1) - IMAGENET_MEAN) / IMAGENET_STD  # grey -> RGB, ImageNet normalisation
    manual = F.relu(F.conv2d(rgb, state["features.0.weight"], state["features.0.bias"], padding=1))
    assert torch.allclose(relu1_1, manual, atol=1e-5)
    second = F.relu(F.conv2d(manual, state["features.2.weight"], state["features.2.bias"], padding=1))
    assert torch.allclose(pool1, F.max_pool2d(second, 2), atol=1e-5)
    # multichannel: each channel is scored as its own grey image
    two = torch.rand(1, 2, 8, 8)
    per_channel = vgg(two)[0]
    assert per_channel.shape == (2, 64, 8, 8)
    assert torch.allclose(per_channel[1], vgg(two[:, 1:])[0][0], atol=1e-6)
    # input_range maps e.g. [-1, 1] to [0, 1] first
    shifted = VGGFeatures(layers=["relu1_1"], weights_path=str(path), input_range=(-1, 1))(x * 2 - 1)[0]
    assert torch.allclose(shifted, relu1_1, atol=1e-5)


def test_loads_from_hub_cache_and_stays_frozen(hub_dir):
    (hub_dir / "checkpoints").mkdir(parents=True)
    state = torchvision_style_vgg16(seed=3)
    torch.save(state, hub_dir / "checkpoints" / "vgg16-397923af.pth")
    vgg = VGGFeatures()
    assert torch.equal(vgg.features[28].bias, state["features.28.bias"])
    vgg.train()
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    sum(f.sum() for f in vgg(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_weights_error_names_file_locations_and_remedy(hub_dir):
    with pytest.raises(FileNotFoundError) as info:
        VGGFeatures(arch="vgg19")
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message
    assert str(hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "pretrained: false" in message
    with pytest.raises(FileNotFoundError, match="/no/such/file.pth"):
        VGGFeatures(weights_path="/no/such/file.pth")


def test_pretrained_false_warns_and_is_seeded(hub_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="common.networks.vgg"):
        a = VGGFeatures(pretrained=False, seed=1)
    assert "pretrained=False" in caplog.text
    b, c = VGGFeatures(pretrained=False, seed=1), VGGFeatures(pretrained=False, seed=2)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_wrong_checkpoint_and_bad_arguments(tmp_path, hub_dir):
    path = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="missing keys"):
        VGGFeatures(weights_path=str(path))
    state = torchvision_style_vgg16()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, path)
    with pytest.raises(ValueError, match="shape mismatch"):
        VGGFeatures(weights_path=str(path))
    with pytest.raises(ValueError, match="unknown VGG layer"):
        VGGFeatures(layers=["pool9"], pretrained=False)
    with pytest.raises(ValueError, match="2D images"):
        VGGFeatures(pretrained=False)(torch.rand(1, 1, 4, 4, 4))


def test_lpips_with_generated_weights(tmp_path, hub_dir):
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(torchvision_style_vgg16(), hub_dir / "checkpoints" / "vgg16-397923af.pth")
    widths = (64, 128, 256, 512, 512)
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(widths)}
    torch.save(lins, hub_dir / "checkpoints" / "lpips_vgg_v0.1.pth")
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    net = LPIPSNetwork()
    assert torch.allclose(net(x, x), torch.zeros(2))
    # the LPIPS formula by hand on the backbone's five layers
    feats_x, feats_y = net.backbone(x), net.backbone(y)
    expected = torch.zeros(2)
    for i, (fx, fy) in enumerate(zip(feats_x, feats_y)):
        nx = fx / fx.norm(dim=1, keepdim=True).clamp_min(1e-10)
        ny = fy / fy.norm(dim=1, keepdim=True).clamp_min(1e-10)
        expected += ((nx - ny) ** 2 * lins[f"lin{i}.model.1.weight"]).sum(dim=1).mean(dim=(1, 2))
    assert torch.allclose(net(x, y), expected, rtol=1e-4)
    metric = LPIPSMetric()
    metric(x, y)
    assert metric.aggregate().item() == pytest.approx(expected.mean().item(), rel=1e-4)


def test_lpips_missing_linear_weights(hub_dir):
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(torchvision_style_vgg16(), hub_dir / "checkpoints" / "vgg16-397923af.pth")
    with pytest.raises(FileNotFoundError, match="lpips_vgg_v0.1.pth"):
        LPIPSNetwork(vgg_weights_path=None, pretrained=True)
