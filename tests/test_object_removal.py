"""Object-removal losses, inputs and one end-to-end step of the shared GAN engine through the pipeline."""

import math
from pathlib import Path

import pytest
import torch
from monai.losses import BoundaryLoss
from monai.networks.nets import BasicUNet
from monai.transforms import Compose
from scipy import ndimage

from common.bundle_scripts import load_bundle_scripts
from common.engines import DiscriminatorInput, InpaintingGanTrainer
from common.losses import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss, OutputLoss
from common.networks import SpectralNormPatchDiscriminator
from common.transforms import FreeFormMaskd

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"
scripts = load_bundle_scripts(BUNDLE)
HoleNormalisedL1Loss = scripts.losses.HoleNormalisedL1Loss
MaskExpansionLoss = scripts.losses.MaskExpansionLoss
NormalisedMaskExpansionLoss = scripts.losses.NormalisedMaskExpansionLoss
SegmenterLoss = scripts.losses.SegmenterLoss
InpainterInput = scripts.engines.InpainterInput
PipelineBatchPreparer = scripts.engines.PipelineBatchPreparer
PipelineInput = scripts.engines.PipelineInput
EdgeConnectInpainter = scripts.networks.EdgeConnectInpainter
ObjectRemovalPipeline = scripts.networks.ObjectRemovalPipeline


def centre_mask(size=16, lo=6, hi=10):
    mask = torch.zeros(1, 1, size, size)
    mask[..., lo:hi, lo:hi] = 1
    return mask


def test_mask_expansion_loss_hand_value():
    target = torch.zeros(1, 1, 3, 5)
    target[0, 0, 1, 2] = 1
    pred = torch.zeros(1, 1, 3, 5)
    pred[0, 0, 0, 0] = 1  # distance from (0,0) to the mask pixel (1,2) is sqrt(5)
    alpha = 1.5
    loss = MaskExpansionLoss(alpha=alpha)(pred, target)
    assert loss.item() == pytest.approx((math.sqrt(5) - alpha) / 15, rel=1e-5)
    # alpha = 0 is MONAI's BoundaryLoss; the shift subtracts alpha * mean(p)
    pred = torch.rand(2, 1, 6, 6)
    target = centre_mask(6, 2, 5).repeat(2, 1, 1, 1)
    plain = BoundaryLoss()(pred, target)
    assert MaskExpansionLoss(alpha=0)(pred, target).item() == pytest.approx(plain.item(), rel=1e-6)
    assert MaskExpansionLoss(alpha=2.0)(pred, target).item() == pytest.approx(
        plain.item() - 2.0 * pred.mean().item(), rel=1e-5
    )


def test_mask_expansion_rejects_degenerate_targets():
    pred = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="empty or all-ones"):
        MaskExpansionLoss(alpha=1)(pred, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="binary"):
        MaskExpansionLoss(alpha=1)(pred, torch.full((1, 1, 4, 4), 0.5))


def test_normalised_expansion_distance_is_scaled_to_unit_range_and_shifted():
    mask = centre_mask()
    loss = NormalisedMaskExpansionLoss()  # the paper's alpha 0.03
    assert loss.alpha == 0.03
    target = mask[0, 0].numpy().astype(bool)
    outside = ndimage.distance_transform_edt(~target)
    inside = ndimage.distance_transform_edt(target)
    phi = torch.from_numpy(outside - (inside - 1) * target).float()  # MONAI's signed distance
    expected = phi / phi.abs().max() - 0.03
    torch.testing.assert_close(loss.compute_distance_map(mask)[0, 0], expected)
    p = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loss(p, mask), (p[0, 0] * expected).mean())


def test_expansion_loss_prefers_a_slightly_larger_mask():
    loss = NormalisedMaskExpansionLoss(
        alpha=0.2
    )  # a band of 0.2 * max|phi| ~ 2 px around a 16x16 image's object
    mask = centre_mask()
    exact, grown = mask.clone(), torch.from_numpy(ndimage.binary_dilation(mask[0, 0].numpy(), iterations=1))
    grown = grown.float()[None, None]
    assert loss(grown, mask) < loss(exact, mask) < loss(torch.zeros_like(mask), mask)
    far = torch.from_numpy(ndimage.binary_dilation(mask[0, 0].numpy(), iterations=5)).float()[None, None]
    assert loss(far, mask) > loss(grown, mask)


def test_hole_normalised_l1_divides_by_the_hole_share():
    output, target = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2, :2] = 1  # a quarter of the image
    output = output * mask  # error only in the hole
    assert HoleNormalisedL1Loss()(output, target, mask).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        HoleNormalisedL1Loss()(output, target, torch.zeros_like(mask))


def test_segmenter_loss_is_low_for_the_right_answer_and_checks_input():
    target = torch.zeros(1, 2, 8, 8)
    target[0, 0, 2:4, 2:4] = 1
    target[0, 1, 4:, :] = 2
    onehot = torch.nn.functional.one_hot(target[0, 1].long(), 3).permute(2, 0, 1)[None].float()
    good = torch.cat([(target[:, :1] * 2 - 1) * 20, (onehot * 2 - 1) * 20], dim=1)
    loss = SegmenterLoss()
    assert loss(good, target) < 0.01 < loss(-good, target)
    with pytest.raises(ValueError, match="class indices"):
        loss(good, target * 2)
    with pytest.raises(ValueError, match="target"):
        loss(good, target[:, :1])


def test_inputs_and_preparer_build_the_pipeline_arguments():
    batch = {
        "image": torch.rand(2, 1, 8, 8),
        "clean": torch.rand(2, 1, 8, 8),
        "mask": centre_mask(8, 2, 4).repeat(2, 1, 1, 1),
    }
    args = PipelineInput()(batch)
    assert args["details"] and torch.equal(args["x"], torch.cat([batch["image"], batch["mask"]], dim=1))
    x, label, extra, kwargs = PipelineBatchPreparer()(batch)
    clean, mask = label["image"], label["mask"]
    assert (
        torch.equal(x, args["x"]) and torch.equal(clean, batch["clean"]) and torch.equal(mask, batch["mask"])
    )
    batch.update(
        edge_input=torch.zeros(2, 1, 8, 8), segmap_input=torch.zeros(2, 3, 8, 8), edge=torch.ones(2, 1, 8, 8)
    )
    kwargs = InpainterInput(segmap_condition_key=None)(batch)
    assert set(kwargs) == {"image", "mask", "edge", "segmap", "edge_condition"}
    assert torch.equal(kwargs["edge_condition"], batch["edge"])


def test_one_end_to_end_step_updates_the_segmenter_through_the_inpainting_loss():
    torch.manual_seed(0)
    classes = 3
    segmenter = BasicUNet(
        spatial_dims=2, in_channels=1, out_channels=1 + classes, features=(4, 4, 8, 8, 16, 4)
    )
    pipeline = ObjectRemovalPipeline(
        segmenter, EdgeConnectInpainter(1, classes, channels=4, residual_blocks=1)
    )
    d_image = SpectralNormPatchDiscriminator(1, channels=(4, 8, 16, 32), return_features=True)
    mask = centre_mask(32, 8, 20).repeat(2, 1, 1, 1)
    clean = torch.rand(2, 1, 32, 32)
    batch = {"image": clean * (1 - mask) + mask, "clean": clean, "mask": mask}
    before = [p.detach().clone() for p in segmenter.parameters()]
    trainer = InpaintingGanTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[batch],
        generator=pipeline,
        g_optimizer=torch.optim.Adam(pipeline.parameters(), lr=1e-3),
        g_loss_function={"l1": OutputLoss(HoleNormalisedL1Loss(), output_key="pred", target_key="clean")},
        discriminators={"image": d_image},
        d_optimizers={"image": torch.optim.Adam(d_image.parameters(), lr=1e-3)},
        d_inputs={"image": DiscriminatorInput(real_key="clean", output_key="pred")},
        g_adversarial_losses={"image": GeneratorAdversarialLoss("hinge")},
        d_loss_functions={"image": DiscriminatorAdversarialLoss("hinge")},
        generator_input=PipelineInput(),
        image_key="clean",
        output_key="pred",
    )
    trainer.run()
    assert set(trainer.state.output[0]) >= {"g_l1", "g_adv_image", "d_image", "pred"}
    changed = [not torch.equal(a, b) for a, b in zip(before, segmenter.parameters())]
    assert all(changed), "every segmenter parameter must receive a gradient from the inpainting losses"


# --- data pieces: tissue classes, random masks instead of objects ----------------------------------------


def test_tissue_classes_are_background_then_intensity_classes_dark_to_bright():
    image = torch.zeros(1, 12, 12)
    spread = torch.linspace(-0.05, 0.05, 24).reshape(8, 3)  # each tissue a band of distinct intensities
    image[0, 2:10, 2:5], image[0, 2:10, 5:8], image[0, 2:10, 8:11] = 0.2 + spread, 0.5 + spread, 0.9 + spread
    region = (image > 0).float()  # the brain
    out = scripts.data.TissueClassesd(keys="clean", region_key="region", classes=3)({"clean": image, "region": region})
    classes = out["classes"][0]
    assert out["classes"].shape == (1, 12, 12) and out["segmap"].shape == (4, 12, 12)
    assert classes[0, 0] == 0 and (classes[2:10, 2] == 1).all() and (classes[2:10, 6] == 2).all()
    assert (classes[2:10, 9] == 3).all()
    torch.testing.assert_close(out["segmap"].argmax(0).float(), classes)


def test_random_masks_replace_the_object_only_for_the_random_baseline():
    sample = {"image": torch.rand(1, 32, 32), "clean": torch.rand(1, 32, 32), "mask": centre_mask(32)[0]}
    sample.update(edge=torch.ones(1, 32, 32), edge_input=torch.zeros(1, 32, 32))
    sample.update(segmap=torch.ones(4, 32, 32), segmap_input=torch.zeros(4, 32, 32))
    free_form = FreeFormMaskd(keys="clean", masked_key=None, width_range=(3, 6))
    unchanged = scripts.data.RandomMaskInsteadOfObjectd(free_form, inpainter_masks="object")(sample)
    assert all(unchanged[k] is sample[k] for k in sample)
    random = Compose([scripts.data.RandomMaskInsteadOfObjectd(free_form, inpainter_masks="random")])
    out = random.set_random_state(0)(sample)
    assert out["image"] is sample["clean"] and out["edge_input"] is sample["edge"]
    assert out["segmap_input"] is sample["segmap"] and not torch.equal(out["mask"], sample["mask"])
    free_form.set_random_state(1)
    assert torch.equal(random.set_random_state(0)(sample)["mask"], out["mask"]), "a Compose seeds the masks"
    with pytest.raises(ValueError, match="inpainter_masks"):
        scripts.data.RandomMaskInsteadOfObjectd(free_form, inpainter_masks="objects")
