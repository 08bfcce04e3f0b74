"""Metrics of common.metrics against hand computations, RoI behaviour and the ignite/MONAI integration."""

import numpy as np
import pytest
import torch
from harness import block_mask
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import PSNRMetric as MonaiPSNR
from monai.metrics import SSIMMetric as MonaiSSIM

from common.masking import inpainting_target
from common.metrics import (
    BestThresholdDiceMetric,
    BinaryOverlapMetric,
    MAEMetric,
    MSEMetric,
    PearsonMetric,
    PSNRMetric,
    SSIMMetric,
    UQIMetric,
    from_engine_with_mask,
    roi_region,
)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 1, 24, 24, generator=g), torch.rand(2, 1, 24, 24, generator=g)


def test_psnr_mse_mae_of_a_constant_error(images):
    y = images[0]
    y_pred = y + 0.1
    assert torch.allclose(PSNRMetric()(y_pred, y), torch.full((2, 1), 20.0), atol=1e-4)  # 10 log10(1 / 0.01)
    assert torch.allclose(
        PSNRMetric(max_val=255.0)(255 * y_pred, 255 * y), torch.full((2, 1), 20.0), atol=1e-4
    )
    assert torch.allclose(MSEMetric()(y_pred, y), torch.full((2, 1), 25.5**2), rtol=1e-5)  # on 0-255
    assert torch.allclose(MSEMetric(report_range=1.0)(y_pred, y), torch.full((2, 1), 0.01), rtol=1e-4)
    assert torch.allclose(MAEMetric()(y_pred, y), torch.full((2, 1), 0.1), rtol=1e-4)
    assert torch.allclose(MAEMetric(report_range=255.0)(y_pred, y), torch.full((2, 1), 25.5), rtol=1e-4)


def test_whole_image_psnr_and_ssim_equal_monai(images):
    y_pred, y = images
    assert torch.allclose(PSNRMetric()(y_pred, y), MonaiPSNR(max_val=1.0)(y_pred, y), atol=1e-4)
    assert torch.allclose(SSIMMetric()(y_pred, y), MonaiSSIM(spatial_dims=2)(y_pred, y), atol=1e-5)
    assert torch.allclose(SSIMMetric()(y, y), torch.ones(2, 1), atol=1e-6)
    volume = torch.rand(1, 1, 12, 12, 12)
    assert SSIMMetric()(volume, volume).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_bbox_equals_ssim_of_the_crop(images):
    y_pred, y = images
    mask = block_mask((2, 1, 24, 24), (3, 17), (5, 20))
    crop = (slice(None), slice(None), slice(3, 17), slice(5, 20))
    expected = MonaiSSIM(spatial_dims=2)(y_pred[crop], y[crop])
    assert torch.allclose(SSIMMetric(roi="bbox")(y_pred, y, mask=mask), expected, atol=1e-5)


def test_uqi_by_hand():
    g = np.random.default_rng(0)
    x, y = g.random((8, 8)), g.random((8, 8))  # one 8x8 window
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    q = 4 * cov * mx * my / ((x.var() + y.var()) * (mx**2 + my**2))
    value = UQIMetric()(torch.tensor(x)[None, None].float(), torch.tensor(y)[None, None].float())
    assert value.item() == pytest.approx(q, rel=1e-4)
    a = torch.rand(1, 1, 10, 10)
    assert UQIMetric()(a, a).item() == pytest.approx(1.0, abs=1e-6)
    # flat windows follow Wang & Bovik's code: 2 mx my / (mx^2 + my^2), and 1 for two black windows
    flat = UQIMetric()(torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.6))
    assert flat.item() == pytest.approx(2 * 0.2 * 0.6 / (0.04 + 0.36), rel=1e-5)
    assert UQIMetric()(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)).item() == 1.0


def test_pearson(images):
    x = images[0]
    assert torch.allclose(PearsonMetric()(2 * x + 1, x), torch.ones(2, 1), atol=1e-6)
    assert torch.allclose(PearsonMetric()(-x, x), -torch.ones(2, 1), atol=1e-6)
    assert torch.isnan(PearsonMetric()(torch.ones_like(x), x)).all()  # undefined for a constant image
    xs, ys = x[0].flatten().numpy(), images[1][0].flatten().numpy()
    assert PearsonMetric()(images[1][:1], x[:1]).item() == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-5)


@pytest.mark.parametrize("roi", ["hole", "bbox"])
@pytest.mark.parametrize(
    "metric",
    [PSNRMetric, MSEMetric, MAEMetric, PearsonMetric, SSIMMetric, UQIMetric],
    ids=lambda m: m.__name__,
)
def test_roi_metrics_ignore_pixels_outside_the_roi(images, metric, roi):
    y_pred, y = images
    mask = block_mask((2, 1, 24, 24), (4, 18), (6, 20))
    if roi == "hole":
        mask[:, :, 10:12, 6:9] = 0  # a notch: the hole is not its bounding box
    region = roi_region(mask, roi)
    noise = torch.rand(y_pred.shape, generator=torch.Generator().manual_seed(1))
    noisy = torch.where(region.bool(), y_pred, noise)
    m = metric(roi=roi)
    assert torch.allclose(m(y_pred, y, mask=mask), m(noisy, y, mask=mask), atol=1e-6, equal_nan=True)
    assert not torch.allclose(metric()(y_pred, y), metric()(noisy, y))


def test_pixelwise_roi_values_by_hand(images):
    y = images[0]
    mask = block_mask((2, 1, 24, 24), (0, 6), (0, 24))  # a quarter of the image
    y_pred = y + 0.2 * mask + 0.05 * (1 - mask)
    assert torch.allclose(MAEMetric(roi="hole")(y_pred, y, mask=mask), torch.full((2, 1), 0.2), rtol=1e-4)
    assert torch.allclose(
        MAEMetric()(y_pred, y, mask=mask), torch.full((2, 1), 0.25 * 0.2 + 0.75 * 0.05), rtol=1e-4
    )
    assert torch.allclose(
        PSNRMetric(roi="hole")(y_pred, y, mask=mask), torch.full((2, 1), 10 * np.log10(25)), atol=1e-3
    )


def test_bad_inputs_raise_clear_errors(images):
    y_pred, y = images
    mask = block_mask((2, 1, 24, 24), (4, 18), (6, 20))
    with pytest.raises(ValueError, match="shapes differ"):
        PSNRMetric()(y_pred, y[..., :20])
    nan = y_pred.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SSIMMetric()(nan, y)
    with pytest.raises(ValueError, match="empty RoI"):
        MSEMetric(roi="hole")(y_pred, y, mask=torch.zeros_like(mask))
    with pytest.raises(ValueError, match="binary"):
        MSEMetric(roi="bbox")(y_pred, y, mask=mask * 0.5)
    with pytest.raises(ValueError, match="needs the mask"):
        MSEMetric(roi="hole")(y_pred, y)
    with pytest.raises(ValueError, match="full"):
        SSIMMetric(roi="hole")(y_pred, y, mask=block_mask((2, 1, 24, 24), (0, 5), (0, 5)))
    with pytest.raises(ValueError, match="roi"):
        PSNRMetric(roi="box")


def test_mask_by_name_and_ignite_handler(images):
    y_pred, y = images
    mask = block_mask((2, 1, 24, 24), (4, 18), (6, 20))
    direct = PSNRMetric(roi="hole")(y_pred, y, mask=mask)
    assert torch.equal(PSNRMetric(roi="hole")(y_pred, inpainting_target(y, mask)), direct)
    per_image = [inpainting_target(y[i], mask[i]) for i in (0, 1)]
    assert torch.equal(PSNRMetric(roi="hole")(list(y_pred), per_image), direct)
    assert torch.equal(PSNRMetric(roi="hole")(list(y_pred), list(y), mask=list(mask)), direct)
    with pytest.raises(ValueError, match="not both"):
        PSNRMetric(roi="hole")(y_pred, inpainting_target(y, mask), mask=mask)
    with pytest.raises(ValueError, match="shapes differ"):  # no channel count decides a role
        PSNRMetric(roi="hole")(y_pred, torch.cat([y, mask], dim=1))
    with pytest.raises(ValueError, match="needs the mask"):
        PSNRMetric(roi="hole")(y_pred, y)
    # engine outputs, batched and decollated: the mask under its own key (GAN trainer) ...
    flat = [
        {"pred": y_pred, "label": y, "mask": mask},
        [{"pred": y_pred[i], "label": y[i], "mask": mask[i]} for i in (0, 1)],
    ]
    # ... or inside the label (InpaintingBatchPreparer), read with MONAI's own from_engine
    nested = [
        {"pred": y_pred, "label": inpainting_target(y, mask)},
        [{"pred": y_pred[i], "label": per_image[i]} for i in (0, 1)],
    ]
    runs = [(b, from_engine_with_mask()) for b in flat] + [(b, from_engine(["pred", "label"])) for b in nested]
    for batch, output_transform in runs:
        engine = Engine(lambda e, b: b)
        IgniteMetricHandler(PSNRMetric(roi="hole"), output_transform=output_transform).attach(engine, "psnr")
        engine.run([batch])
        assert engine.state.metrics["psnr"] == pytest.approx(direct.mean().item(), rel=1e-5)
        assert engine.state.metric_details["psnr"].shape == (2, 1)


def test_aggregate_reduces_over_batches(images):
    y = images[0]
    metric = MAEMetric()
    metric(y + 0.1, y)
    metric(y + 0.3, y)
    assert metric.aggregate().item() == pytest.approx(0.2, rel=1e-4)
    metric.reset()
    with pytest.raises(ValueError, match="nothing to aggregate"):
        metric.aggregate()


def test_dice_precision_recall_by_hand():
    pred = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0.0]).reshape(1, 1, 2, 4)
    gt = torch.tensor([1, 1, 0, 1, 1, 1, 0, 0.0]).reshape(1, 1, 2, 4)  # tp 2, fp 1, fn 3
    assert BinaryOverlapMetric("dice")(pred, gt).item() == pytest.approx(2 * 2 / (2 * 2 + 1 + 3))
    assert BinaryOverlapMetric("precision")(pred, gt).item() == pytest.approx(2 / 3)
    assert BinaryOverlapMetric("recall")(pred, gt).item() == pytest.approx(2 / 5)
    assert BinaryOverlapMetric("dice", threshold=0.5)(pred * 0.7, gt).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="binary"):
        BinaryOverlapMetric("dice")(pred * 0.7, gt)
    with pytest.raises(ValueError, match="binary"):
        BinaryOverlapMetric("dice")(pred, gt * 0.5)


def test_best_threshold_dice_per_subject():
    residual = torch.tensor([[0.9, 0.5, 0.3, 0.1], [0.9, 0.85, 0.05, 0.01]]).reshape(2, 1, 2, 2)
    gt = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0.0]]).reshape(2, 1, 2, 2)
    metric = BestThresholdDiceMetric()
    values = metric(residual, gt)
    # subject 0: perfect once t >= 0.30 (> 0.3 is excluded); subject 1: 0.85 is never cut (t <= 0.8) -> 2/3
    assert values[:, 0].tolist() == pytest.approx([1.0, 2 / 3])
    assert metric.best_thresholds.tolist() == pytest.approx([0.30, 0.06])
    assert len(metric.thresholds) == 41 and metric.thresholds[-1] == pytest.approx(0.8)
    assert metric.aggregate().item() == pytest.approx((1 + 2 / 3) / 2)
