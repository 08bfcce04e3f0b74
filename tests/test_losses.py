"""Losses of common.losses against hand computations on small tensors."""

import math

import pytest
import torch
import torch.nn.functional as F
from harness import block_mask
from torch import nn

from common.losses import (
    DiscriminatorAdversarialLoss,
    DiscriminatorPerceptualLoss,
    DiscriminatorStyleLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
    HoleL1Loss,
    LaplacianPyramidLoss,
    MaskAwareLoss,
    OutputLoss,
    PerceptualLoss,
    StyleLoss,
    TotalVariationLoss,
    ValidL1Loss,
    WeightedSumLoss,
    gram_matrix,
)
from common.masking import inpainting_target


class Identity(nn.Module):
    """A 'feature extractor' whose only layer is the image itself, so feature losses reduce to pixel formulas."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return [x]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("spatial", [(6, 5), (4, 5, 3)])
def test_hole_and_valid_l1_liu_normalisation(spatial):
    target = torch.rand(2, 3, *spatial)
    mask = torch.zeros(2, 1, *spatial)
    mask[:, :, :2] = 1  # hole = first two rows
    a, b = 0.5, -0.25
    output = target + a * mask + b * (1 - mask)
    n_pixels = math.prod(spatial)
    hole_fraction = 2 * n_pixels / spatial[0] / n_pixels
    # Liu et al.: divide by the number of image elements (C*H*W), not by the hole size
    assert HoleL1Loss()(output, target, mask).item() == pytest.approx(abs(a) * hole_fraction, rel=1e-5)
    assert ValidL1Loss()(output, target, mask).item() == pytest.approx(abs(b) * (1 - hole_fraction), rel=1e-5)


def test_hole_loss_gradients_only_into_output_hole():
    target = torch.rand(1, 1, 6, 6, requires_grad=True)
    output = torch.rand(1, 1, 6, 6, requires_grad=True)
    mask = block_mask((1, 1, 6, 6), (1, 3), (2, 5))
    HoleL1Loss()(output, target, mask).backward()
    assert target.grad is None
    assert (output.grad[mask == 1] != 0).all() and (output.grad[mask == 0] == 0).all()


def test_tv_plain_on_ramp():
    a = 0.3
    ramp = a * torch.arange(7.0).expand(2, 1, 5, 7)  # horizontal ramp: horizontal diffs a, vertical 0
    mask = torch.zeros(2, 1, 5, 7)
    loss = TotalVariationLoss(region="image", on="output")(ramp, ramp, mask)
    assert loss.item() == pytest.approx(a * 5 * 6 / (5 * 7), rel=1e-5)


def test_tv_restricted_to_dilated_hole():
    a = 0.3
    ramp = a * torch.arange(10.0).expand(1, 1, 8, 10)
    mask = block_mask((1, 1, 8, 10), (3, 5), (4, 6))  # 2x2 hole, dilation = rows 2..5, cols 3..6 (4x4)
    loss = TotalVariationLoss()(ramp, ramp, mask)  # composite == ramp
    # horizontal pairs inside the 4x4 dilation: 4 rows x 3 pairs, each |a|; vertical diffs 0
    assert loss.item() == pytest.approx(a * 4 * 3 / (8 * 10), rel=1e-5)


def test_tv_composite_gradient_stays_in_hole_3d():
    target = torch.rand(1, 1, 5, 5, 5)
    output = torch.rand(1, 1, 5, 5, 5, requires_grad=True)
    mask = torch.zeros(1, 1, 5, 5, 5)
    mask[..., 2, 2, 2] = 1
    with torch.no_grad():
        output[..., 2, 2, 2] = 10.0  # above all 6 neighbours: d TV / d centre = 6 / numel, no cancellation
    TotalVariationLoss()(output, target, mask).backward()
    assert output.grad[mask == 1].item() == pytest.approx(6 / 125)
    assert (output.grad[mask == 0] == 0).all()


def test_laplacian_pyramid_of_step_image():
    step = torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]).expand(1, 1, 8, 8)
    band0 = LaplacianPyramidLoss().pyramid(step)[0][0, 0, 0]
    # x - blur(x), blur = [1,4,6,4,1]/16 with reflect padding, by hand
    expected = torch.tensor([0, 0, -1, -5, 5, 1, 0, 0]) / 16
    assert torch.allclose(band0, expected, atol=1e-6)


def test_laplacian_loss_of_constant_offset_hits_only_lowpass_level():
    target = torch.rand(1, 2, 16, 16)
    c = 0.1
    # a constant has zero band-pass levels; the low-pass residual (level 2, weight 2^4) differs by c
    assert LaplacianPyramidLoss()(target + c, target).item() == pytest.approx(16 * c, rel=1e-4)
    weighted = LaplacianPyramidLoss(levels=2, level_weights=[1.0, 3.0])(target + c, target)
    assert weighted.item() == pytest.approx(3 * c, rel=1e-4)


def test_gram_matrix_normalisation():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (N=1, C=2, H=1, W=2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(f)[0], expected)


def test_perceptual_and_style_hand_values_output_and_composite():
    target = torch.rand(2, 1, 4, 4)
    output = torch.rand(2, 1, 4, 4, requires_grad=True)
    mask = block_mask((2, 1, 4, 4), (0, 2), (0, 4))
    comp = mask * output + (1 - mask) * target
    perceptual = PerceptualLoss(feature_extractor=Identity())(output, target, mask)
    expected = (output - target).abs().mean() + (comp - target).abs().mean()
    assert perceptual.item() == pytest.approx(expected.item(), rel=1e-6)

    def gram(x):
        flat = x.reshape(2, 1, 16)
        return flat @ flat.transpose(1, 2) / 16

    style_out = StyleLoss(feature_extractor=Identity(), include_composite=False)(output, target, mask)
    assert style_out.item() == pytest.approx((gram(output) - gram(target)).abs().mean().item(), rel=1e-6)
    style_comp = StyleLoss(feature_extractor=Identity(), include_output=False)(output, target, mask)
    assert style_comp.item() == pytest.approx((gram(comp) - gram(target)).abs().mean().item(), rel=1e-6)


def test_weighted_sum_matches_terms_and_shares_features():
    target, output = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    mask = block_mask((1, 1, 8, 8), (2, 5), (2, 6))
    extractor = Identity()
    loss = WeightedSumLoss(
        {"valid": 30, "hole": 240, "perceptual": 0.2, "style": 0.05, "tv": 0, "laplacian": 20},
        feature_extractor=extractor,
    )
    expected = (
        30 * ValidL1Loss()(output, target, mask)
        + 240 * HoleL1Loss()(output, target, mask)
        + 0.2 * PerceptualLoss(feature_extractor=Identity())(output, target, mask)
        + 0.05 * StyleLoss(feature_extractor=Identity())(output, target, mask)
        + 20 * LaplacianPyramidLoss()(output, target)
    )
    assert loss(output, target, mask).item() == pytest.approx(expected.item(), rel=1e-5)
    assert extractor.calls == 1  # perceptual and style shared one forward pass
    terms = WeightedSumLoss({"valid": 2, "tv": 0}, return_terms=True)(output, target, mask)
    assert list(terms) == ["valid"]  # zero weights are skipped
    assert terms["valid"].item() == pytest.approx(2 * ValidL1Loss()(output, target, mask).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss names"):
        WeightedSumLoss({"nope": 1})


def test_weighted_sum_with_every_weight_zero_is_zero():
    # an ablation switches a loss group off from the command line (e.g. --loss_weights#expansion 0)
    output = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    total = WeightedSumLoss({"hole": 0, "valid": 0.0})(
        output, torch.rand_like(output), torch.ones_like(output)
    )
    assert total.shape == () and total.item() == 0.0 and total.dtype == torch.float64


def test_weighted_sum_builds_no_vgg_without_feature_terms(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    WeightedSumLoss({"hole": 1})  # no VGG needed, so no missing-file error
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        WeightedSumLoss({"perceptual": 1})


LOGITS_REAL = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]])
LOGITS_FAKE = torch.tensor([[[[-0.5, 1.5], [0.25, -2.0]]]])


@pytest.mark.parametrize(
    "criterion, g_expected, d_expected",
    [
        (
            "bce",
            F.softplus(-LOGITS_FAKE).mean(),
            0.5 * (F.softplus(-LOGITS_REAL).mean() + F.softplus(LOGITS_FAKE).mean()),
        ),
        (
            "least_squares",
            ((LOGITS_FAKE - 1) ** 2).mean(),
            0.5 * (((LOGITS_REAL - 1) ** 2).mean() + (LOGITS_FAKE**2).mean()),
        ),
        (
            "hinge",
            -LOGITS_FAKE.mean(),
            0.5 * (F.relu(1 - LOGITS_REAL).mean() + F.relu(1 + LOGITS_FAKE).mean()),
        ),
    ],
)
def test_adversarial_criteria(criterion, g_expected, d_expected):
    g = GeneratorAdversarialLoss(criterion)(LOGITS_FAKE)
    d = DiscriminatorAdversarialLoss(criterion)(LOGITS_REAL, LOGITS_FAKE)
    assert g.item() == pytest.approx(g_expected.item(), rel=1e-6)
    assert d.item() == pytest.approx(d_expected.item(), rel=1e-6)
    # PatchDiscriminator convention: a list (features..., logits) uses the logits only
    feature = torch.rand(1, 4, 3, 3)
    assert GeneratorAdversarialLoss(criterion)([feature, LOGITS_FAKE]).item() == pytest.approx(
        g.item(), rel=1e-6
    )
    # multi-scale (outputs, features): mean over scales
    two_scales = ([LOGITS_FAKE, LOGITS_FAKE * 0], [[feature], [feature]])
    zero = GeneratorAdversarialLoss(criterion)(LOGITS_FAKE * 0)
    expected = 0.5 * (g + zero)
    assert GeneratorAdversarialLoss(criterion)(two_scales).item() == pytest.approx(expected.item(), rel=1e-6)


def test_adversarial_bad_criterion():
    with pytest.raises(ValueError, match="criterion"):
        GeneratorAdversarialLoss("wasserstein")


def test_feature_matching_and_discriminator_perceptual():
    real = [torch.full((1, 2, 4, 4), float(i)) for i in range(5)] + [torch.zeros(1, 1, 2, 2)]
    fake = [r + (i + 1) for i, r in enumerate(real[:-1])] + [torch.zeros(1, 1, 2, 2)]
    fake = [f.requires_grad_() for f in fake]
    real = [r.requires_grad_() for r in real]
    fm = FeatureMatchingLoss()(fake, real)
    assert fm.item() == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)  # mean over the 5 intermediate layers
    fm.backward()
    assert all(r.grad is None for r in real) and fake[0].grad is not None
    # ipA-MedGAN: first four layers, summed with weight 1
    assert DiscriminatorPerceptualLoss()(fake, real).item() == pytest.approx(1 + 2 + 3 + 4)
    with pytest.raises(ValueError, match="not available"):
        FeatureMatchingLoss(layers=[7])(fake, real)
    with pytest.raises(TypeError, match="intermediate"):
        FeatureMatchingLoss()(torch.zeros(1), torch.zeros(1))


def test_discriminator_style_loss_compares_gram_matrices_of_the_discriminator_features():
    # layer i: real constant i, fake constant 2i + 1 on (1, 2, 4, 4): every Gram entry is 16 x^2 / 32 = x^2 / 2
    real = [torch.full((1, 2, 4, 4), float(i)) for i in range(5)] + [torch.zeros(1, 1, 2, 2)]
    fake = [torch.full((1, 2, 4, 4), 2.0 * i + 1).requires_grad_() for i in range(5)] + [torch.zeros(1, 1, 2, 2)]
    style = DiscriminatorStyleLoss()(fake, real)
    assert style.item() == pytest.approx(sum(((2 * i + 1) ** 2 - i**2) / 2 for i in range(5)) / 5)  # 13.5
    style.backward()
    assert fake[0].grad is not None
    # a Gram matrix ignores where a feature is: a spatially shuffled copy has no style distance, only FM
    features = [torch.rand(1, 3, 4, 4), torch.zeros(1, 1, 2, 2)]
    shuffled = [features[0].flip(-1).flip(-2), features[1]]
    assert DiscriminatorStyleLoss()(shuffled, features).item() == pytest.approx(0.0, abs=1e-7)
    assert FeatureMatchingLoss()(shuffled, features).item() > 0.01


def test_wrappers_take_the_mask_by_name_and_select_outputs():
    target, output = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    mask = block_mask((2, 1, 4, 4), (0, 2), (0, 2))
    expected = HoleL1Loss()(output, target, mask)
    assert MaskAwareLoss(HoleL1Loss())(output, inpainting_target(target, mask)).item() == pytest.approx(
        expected.item()
    )
    batch = {"image": target, "mask": mask, "edge": target * 2}
    pred = {"image": output, "edge": output}
    assert OutputLoss(HoleL1Loss())(pred, batch).item() == pytest.approx(expected.item())
    edge = OutputLoss(nn.L1Loss(), output_key="edge", target_key="edge", mask_key=None)(pred, batch)
    assert edge.item() == pytest.approx((output - 2 * target).abs().mean().item())


@pytest.mark.parametrize(
    "loss", [HoleL1Loss(), ValidL1Loss(), TotalVariationLoss(), LaplacianPyramidLoss(), StyleLoss(Identity())]
)
def test_bad_inputs_raise(loss):
    x, mask = torch.rand(1, 1, 8, 8), block_mask((1, 1, 8, 8), (2, 4), (2, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        loss(x, torch.rand(1, 1, 8, 7), mask)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, x, mask)
    with pytest.raises(ValueError, match="binary"):
        loss(x, x, mask * 0.5)
    with pytest.raises(ValueError, match="mask shape"):
        loss(x, x, torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize(
    "loss",
    [
        HoleL1Loss(),
        ValidL1Loss(),
        TotalVariationLoss(region="image", on="output"),
        LaplacianPyramidLoss(),
        PerceptualLoss(Identity()),
        StyleLoss(Identity()),
        WeightedSumLoss({"hole": 1, "perceptual": 1, "laplacian": 1}, feature_extractor=Identity()),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_gradients_reach_the_prediction_not_the_ground_truth(loss):
    output = torch.rand(1, 1, 8, 8, requires_grad=True)
    target = torch.rand(1, 1, 8, 8, requires_grad=True)
    loss(output, target, block_mask((1, 1, 8, 8), (2, 6), (1, 5))).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert target.grad is None
