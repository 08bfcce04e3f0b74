"""EdgeConnect-style inpainters, the spectral-norm discriminator and the object-removal pipeline."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet
from skimage.feature import canny

from common.bundle_scripts import load_bundle_scripts
from common.networks import SpectralNormPatchDiscriminator

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"
networks = load_bundle_scripts(BUNDLE).networks
EdgeConnectGenerator, EdgeConnectInpainter = networks.EdgeConnectGenerator, networks.EdgeConnectInpainter
ObjectRemovalPipeline, batch_canny_edges = networks.ObjectRemovalPipeline, networks.batch_canny_edges
propose_segments, select_segments = networks.propose_segments, networks.select_segments


def tiny_inpainter(channels=1, classes=3):
    torch.manual_seed(0)
    return EdgeConnectInpainter(channels, classes, channels=4, residual_blocks=1)


def tiny_pipeline(channels=1, classes=3, **kwargs):
    segmenter = BasicUNet(
        spatial_dims=2, in_channels=channels, out_channels=1 + classes, features=(4, 4, 8, 8, 16, 4)
    )
    return ObjectRemovalPipeline(segmenter, tiny_inpainter(channels, classes), **kwargs)


def square_batch(batch=2, channels=1, size=32):
    torch.manual_seed(1)
    x = torch.rand(batch, channels + 1, size, size)
    x[:, channels:] = 0
    x[:, channels:, 8:16, 8:16] = 1
    return x


@pytest.mark.parametrize("output, low, high", [("sigmoid", 0, 1), ("unit_tanh", 0, 1)])
def test_generator_keeps_the_size_and_bounds_its_output(output, low, high):
    net = EdgeConnectGenerator(3, 2, channels=4, residual_blocks=2, output=output)
    y = net(torch.randn(2, 3, 32, 24) * 10)
    assert y.shape == (2, 2, 32, 24)
    assert y.min() >= low and y.max() <= high


def test_generator_rejects_bad_input():
    net = EdgeConnectGenerator(3, 1, channels=4, residual_blocks=1)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="output"):
        EdgeConnectGenerator(3, 1, output="relu")


def test_discriminator_is_spectrally_normalised_and_returns_features_and_logits():
    d = SpectralNormPatchDiscriminator(2, channels=(8, 16, 32, 64), return_features=True)
    outs = d(torch.rand(1, 2, 64, 64))
    assert [o.shape[1] for o in outs] == [8, 16, 32, 64, 1]  # EdgeConnect's widths (scaled), logits last
    d.return_features = False
    assert d(torch.rand(1, 2, 64, 64)).shape == outs[-1].shape  # logits alone
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(c, "weight_orig") and c.bias is None for c in convs)
    d.train()
    for _ in range(30):  # power iterations converge: the largest singular value of each kernel becomes 1
        d(torch.rand(1, 2, 64, 64))
    d.eval()
    w = convs[1].weight.reshape(convs[1].weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_batch_canny_matches_skimage_per_image():
    image = torch.zeros(2, 1, 32, 32)
    image[0, 0, 8:24, 8:24] = 1
    image[1, 0, :, 16:] = 1
    edges = batch_canny_edges(image)
    for b in range(2):
        np.testing.assert_array_equal(edges[b, 0].numpy(), canny(image[b, 0].double().numpy(), sigma=2.0))
    assert edges.shape == (2, 1, 32, 32) and edges.sum() > 0


def test_inpainter_keeps_known_pixels_and_uses_given_conditions():
    net = tiny_inpainter()
    image = torch.rand(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 4:12, 4:12] = 1
    edge = torch.zeros(2, 1, 32, 32)
    segmap = torch.softmax(torch.randn(2, 3, 32, 32), dim=1)
    out = net(image, mask, edge, segmap)
    keep = mask == 0
    assert torch.equal(out["pred"][keep], image[keep])
    assert torch.equal(out["edge"][keep], edge[keep])
    torch.testing.assert_close(out["segmap"].sum(1), torch.ones(2, 32, 32))
    hole = mask.bool().expand_as(image)
    torch.testing.assert_close(out["pred"][hole], out["image_raw"][hole])
    conditioned = net(
        image, mask, edge, segmap, edge_condition=torch.ones_like(edge), segmap_condition=segmap
    )
    assert not torch.equal(conditioned["image_raw"], out["image_raw"])
    torch.testing.assert_close(conditioned["edge"], out["edge"])  # conditions only reach the image inpainter


def test_inpainter_rejects_mismatched_inputs():
    net = tiny_inpainter()
    image, mask = torch.rand(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    edge, segmap = torch.zeros(1, 1, 32, 32), torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="channels"):
        net(torch.rand(1, 3, 32, 32), mask, edge, segmap)
    with pytest.raises(ValueError, match="mask"):
        net(image, torch.zeros(1, 1, 16, 16), edge, segmap)
    with pytest.raises(ValueError, match="segmap"):
        net(image, mask, edge, torch.rand(1, 2, 32, 32))


def test_segments_are_ranked_by_size_and_selected_by_overlap_or_index():
    prob = torch.zeros(1, 1, 10, 10)
    prob[0, 0, 0:2, 0:2] = 0.9  # 4 px
    prob[0, 0, 5:9, 5:9] = 0.9  # 16 px
    segments = propose_segments(prob)
    assert segments[0, 6, 6] == 1 and segments[0, 0, 0] == 2
    click = torch.zeros(1, 1, 10, 10)
    click[0, 0, 1, 1] = 1
    np.testing.assert_array_equal(select_segments(segments, hint=click)[0], segments[0] == 2)
    np.testing.assert_array_equal(select_segments(segments, index=0)[0], segments[0] == 1)
    far = torch.zeros(1, 1, 10, 10)
    far[0, 0, 9, 0] = 1
    assert not select_segments(segments, hint=far).any()
    with pytest.raises(ValueError, match="exactly one"):
        select_segments(segments)


def test_pipeline_removes_with_the_hint_when_no_segment_overlaps():
    net = tiny_pipeline(threshold=1.0).eval()  # no probability exceeds 1: no segment, fall back to the hint
    x = square_batch()
    with torch.no_grad():
        out = net(x, details=True)
    torch.testing.assert_close(out["mask"], x[:, 1:])
    assert net.fallbacks == 2
    keep = x[:, 1:] == 0
    assert torch.equal(out["pred"][keep], x[:, :1][keep])
    with torch.no_grad():
        assert net(x).shape == (2, 1, 32, 32)


def test_pipeline_chooses_the_segment_and_expands_it():
    net = tiny_pipeline(expand=2).eval()
    x = square_batch(batch=1)
    prob = torch.zeros(1, 1, 32, 32)
    prob[0, 0, 10:14, 10:14] = 1
    mask = net.choose_mask(prob, x[:, 1:])
    # a 4x4 square dilated twice by a cross (an L1 ball of radius 2): sides grow by 2, each corner gains 1 pixel
    assert int(mask.sum()) == 4 * 4 + 4 * (4 * 2) + 4 * 1


def test_pipeline_mask_is_differentiable_in_training():
    net = tiny_pipeline().train()
    out = net(square_batch(), details=True)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}  # hard in value
    out["pred"].sum().backward()
    grads = [p.grad for p in net.segmenter.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0, "inpainting must reach the segmenter"


def test_pipeline_bad_input():
    net = tiny_pipeline().eval()
    x = square_batch()
    with pytest.raises(ValueError, match="selects nothing"):
        net(torch.cat([x[:, :1], torch.zeros_like(x[:, 1:])], dim=1))
    with pytest.raises(ValueError, match="image channels"):
        net(torch.rand(1, 3, 32, 32))
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(x)
