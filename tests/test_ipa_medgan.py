"""Bundle-specific code of bundles/ipa_medgan: discriminators, style loss, mask banks, transforms, GAN training
and resume, evaluation metrics."""

import json
import sys
from pathlib import Path

import monai.bundle
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.handlers import CheckpointLoader

from common.bundle_scripts import load_bundle_scripts
from common.transforms import DropTrailingSingletond

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ipa_medgan"


scripts = load_bundle_scripts(BUNDLE)


# ---------------------------------------------------------------------------------------------- discriminators
def test_analytic_receptive_field_of_pix2pix_patchgan_is_70():
    assert scripts.networks.receptive_field([4] * 5, [2, 2, 2, 1, 1]) == 70


def test_patch_discriminator_measured_receptive_field_is_70x70_with_4_feature_maps():
    d = scripts.networks.patch_discriminator(in_channels=2, channels=4)
    assert scripts.networks.measured_receptive_field(d, (2, 256, 256)) == (70, 70)
    out = d(torch.rand(1, 2, 256, 256))
    assert len(out) == 5 and out[-1].shape == (1, 1, 30, 30)  # 4 intermediate maps for the perceptual loss


def test_global_discriminator_sees_the_whole_image_with_6_convolutions():
    d = scripts.networks.global_discriminator(in_channels=2, image_size=256, channels=(2,) * 6)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6
    assert scripts.networks.measured_receptive_field(d, (2, 256, 256)) == (256, 256)
    assert d(torch.rand(3, 2, 256, 256)).shape == (3, 1)
    with pytest.raises(ValueError, match="divisible"):
        scripts.networks.global_discriminator(image_size=100)


def test_baselines_are_twice_as_wide_as_the_multiresunet_filters():
    assert scripts.networks.baseline_channels([8, 16, 32]) == [16, 32, 64]


# ---------------------------------------------------------------------------------------------- style loss
class _Identity(torch.nn.Module):
    def forward(self, x):
        return [x]


def test_style_loss_matches_the_formula_by_hand():
    out, gt = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    loss = scripts.losses.GramStyleLoss(layers=("x",), feature_extractor=_Identity())(out, gt)
    # one channel: Gram = sum(F^2) / (1 * H * W); d = 1 -> mean over batch of (G_out - G_gt)^2 / 4
    g_out, g_gt = out.square().sum(dim=(1, 2, 3)) / 16, gt.square().sum(dim=(1, 2, 3)) / 16
    torch.testing.assert_close(loss, ((g_out - g_gt) ** 2 / 4).mean())


def test_style_loss_normalises_by_channels_as_medgan_and_layer_weights_recover_gatys():
    torch.manual_seed(0)
    out, gt = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    d, hw = 3, 4 * 5

    def gram(x):  # MedGAN's Gr: sum over pixels of F_m F_n / (h w d), by explicit loops
        g = torch.zeros(x.shape[0], d, d)
        for m in range(d):
            for n in range(d):
                g[:, m, n] = (x[:, m] * x[:, n]).sum(dim=(1, 2)) / (hw * d)
        return g

    frobenius = ((gram(out) - gram(gt)) ** 2).sum(dim=(1, 2))
    medgan = scripts.losses.GramStyleLoss(layers=("x",), feature_extractor=_Identity())(out, gt)
    torch.testing.assert_close(medgan, (frobenius / (4 * d**2)).mean())
    # Gatys et al.: 1 / (4 d^2 (hw)^2) * ||F F^T - A||^2 with the unnormalised Gram F F^T
    raw = lambda x: torch.einsum("bmhw,bnhw->bmn", x, x)  # noqa: E731
    gatys = (((raw(out) - raw(gt)) ** 2).sum(dim=(1, 2)) / (4 * d**2 * hw**2)).mean()
    weighted = scripts.losses.GramStyleLoss(
        layers=("x",), layer_weights=(d**2,), feature_extractor=_Identity()
    )
    torch.testing.assert_close(weighted(out, gt), gatys)


def test_style_loss_refuses_mismatched_inputs():
    loss = scripts.losses.GramStyleLoss(layers=("x",), feature_extractor=_Identity())
    with pytest.raises(ValueError):
        loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match="layer_weights"):
        scripts.losses.GramStyleLoss(layers=("relu1_1",), layer_weights=(1, 2), feature_extractor=_Identity())


def test_loss_terms_keeps_the_total_and_the_generator_and_discriminator_terms():
    terms = {"loss": 3.0, "g_rec_style": 1.0, "d_patch": 2.0}
    assert scripts.losses.loss_terms([{**terms, "pred": torch.zeros(1), "image": torch.zeros(1)}]) == terms


# ---------------------------------------------------------------------------------------------- mask banks
@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    from common.transforms import load_mask_bank

    return {name: load_mask_bank(scripts.masks.mask_bank(name, 256, root)) for name in scripts.masks.BANKS}


def test_mask_banks_have_the_specified_sizes_and_areas(banks):
    train, val = banks["train_arbitrary"], banks["val_arbitrary"]
    assert train.shape == (100, 256, 256) and val.shape == (50, 256, 256)
    train_area, val_area = train.mean(axis=(1, 2)), val.mean(axis=(1, 2))
    assert 0.0136 <= train_area.min() and train_area.max() <= 0.0546
    assert 0.0166 <= val_area.min() and val_area.max() <= 0.0456
    squares = banks["val_square"]
    assert squares.shape == (50, 256, 256) and (squares.sum(axis=(1, 2)) == 64 * 64).all()


def test_training_and_validation_masks_never_coincide(banks):
    train = banks["train_arbitrary"].reshape(100, -1).astype(np.float32)
    val = banks["val_arbitrary"].reshape(50, -1).astype(np.float32)
    intersection = val @ train.T
    union = val.sum(1)[:, None] + train.sum(1)[None] - intersection
    assert (intersection / union).max() < 0.99  # no validation mask is a training mask


def test_mask_bank_is_reused_and_deterministic(tmp_path):
    first = scripts.masks.mask_bank("val_square", 64, tmp_path)
    files = sorted(Path(first).glob("*.png"))
    again = scripts.masks.mask_bank("val_square", 64, tmp_path)
    assert first == again and sorted(Path(again).glob("*.png")) == files
    with pytest.raises(ValueError, match="unknown mask bank"):
        scripts.masks.mask_bank("nope", 64, tmp_path)


def test_fixed_bank_mask_picks_by_index_and_leaves_unindexed_images_alone(tmp_path):
    from common.transforms import load_mask_bank

    directory = scripts.masks.mask_bank("val_square", 64, tmp_path)
    bank = load_mask_bank(directory)
    transform = scripts.masks.FixedBankMaskd(keys="image", directory=directory)
    image = np.ones((1, 64, 64), np.float32)
    out = transform({"image": image, "mask_index": 53})
    np.testing.assert_array_equal(out["mask"][0] > 0, bank[53 % 50])
    np.testing.assert_array_equal(out["masked_image"][0], ~bank[3])
    plain = transform({"image": image})
    assert plain["mask"].sum() == 0 and (plain["masked_image"] == image).all()
    with pytest.raises(ValueError, match="holds"):
        transform({"image": np.ones((1, 32, 32), np.float32), "mask_index": 0})


# ---------------------------------------------------------------------------------------------- datalists
def test_slice_entries_keep_the_read_keys_resolve_paths_and_index_the_masks(tmp_path):
    datalist = {
        "test": [
            {"image": "a.nii.gz", "subject": "s1", "slice_z": 3, "label_ms": "a_ms.nii.gz"},
            {"image": "b.nii.gz"},  # a user's datalist: image only
        ]
    }
    (tmp_path / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    file = str(tmp_path / "datalist.json")
    assert scripts.data.slice_entries(file, "test") == [
        {"image": str(tmp_path / "a.nii.gz"), "subject": "s1", "slice_z": 3},
        {"image": str(tmp_path / "b.nii.gz")},
    ]
    indexed = scripts.data.slice_entries(file, "test", keys=["image"], mask_index=True)
    assert indexed == [
        {"image": str(tmp_path / "a.nii.gz"), "mask_index": 0},
        {"image": str(tmp_path / "b.nii.gz"), "mask_index": 1},
    ]


# ---------------------------------------------------------------------------------------------- transforms
def test_drop_trailing_singleton_keeps_the_affine():
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    affine[2, 3] = -22.0
    image = MetaTensor(torch.rand(1, 8, 6, 1), affine=affine)
    out = DropTrailingSingletond(keys="image", require_2d=True)({"image": image})["image"]
    assert out.shape == (1, 8, 6)
    torch.testing.assert_close(out.affine, affine)
    with pytest.raises(ValueError, match="2D"):
        DropTrailingSingletond(keys="image", require_2d=True)({"image": torch.rand(1, 8, 6, 3)})


def test_percentile_scaling_round_trips():
    image = torch.linspace(0, 200, 100).reshape(1, 10, 10)
    scaled = scripts.transforms.PercentileScaled(keys="image", lower=0, upper=100)({"image": image})
    assert scaled["image"].min() == 0 and scaled["image"].max() == 1
    restored = scripts.transforms.RestoreIntensityd(keys="image")(scaled)
    torch.testing.assert_close(restored["image"], image)
    with pytest.raises(ValueError, match="constant"):
        scripts.transforms.PercentileScaled(keys="image")({"image": torch.ones(1, 4, 4)})
    with pytest.raises(ValueError, match="NaN"):
        scripts.transforms.PercentileScaled(keys="image")({"image": torch.full((1, 4, 4), float("nan"))})


# ---------------------------------------------------------------------------------------------- metrics
def _configured_scores(pred, target):
    """Table I scores of ``pred`` by the metrics of train.json's ``validate#metrics`` (evaluate.json's)."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLE)})
    metrics, details = {}, {}
    for name, handler in parser.get_parsed_content("validate#metrics").items():
        handler.metric_fn(pred, target)
        metrics[name], details[name] = handler.metric_fn.aggregate().item(), handler.metric_fn.get_buffer()
    return scripts.evaluation.table_scores(metrics, details)


def test_scores_against_hand_values():
    target = torch.full((2, 1, 32, 32), 0.5)
    target[:, :, 8:24, 8:24] = 0.2
    perfect = _configured_scores(target.clone(), target)
    assert (
        perfect["ssim"] == pytest.approx(1.0) and perfect["mse"] == 0 and perfect["uqi"] == pytest.approx(1.0)
    )
    shifted = _configured_scores(target + 0.1, target)
    assert shifted["mse"] == pytest.approx(25.5**2, rel=1e-4)  # 0.1 on the 0-255 scale
    assert shifted["psnr"] == pytest.approx(20.0, rel=1e-4)  # 10 log10(1 / 0.01)


def test_psnr_of_exactly_restored_slices_is_counted_not_averaged():
    target = torch.rand(3, 1, 16, 16)
    pred = target.clone()
    pred[1:] += 0.1  # slices 1 and 2: MSE 0.01 -> 20 dB; slice 0 exact (infinite PSNR)
    scores = _configured_scores(pred.clamp(0, 2), target)
    assert scores["psnr"] == pytest.approx(20.0, rel=1e-4) and scores["psnr_exact"] == 1
    table = scripts.evaluation.format_table({("biharmonic", "square"): scores}, n_test=3)
    assert "slices restored exactly: biharmonic (given the mask), square: 1" in table


def test_report_quotes_the_papers_rows_beside_the_methods_that_stand_for_them():
    scores = {"ssim": 0.5, "psnr": 20.0, "mse": 100.0, "uqi": 0.5}
    rows = {
        (m, e): scores for m, e in [("pix2pix", "arbitrary"), ("medgan", "square"), ("medgan", "arbitrary")]
    }
    rows[("gated_conv", "arbitrary")] = scores
    table = scripts.evaluation.format_table(rows, n_test=3)

    def row(label):
        return next(line for line in table.splitlines() if line.startswith(f"| {label}"))

    assert "20.00 (paper 32.34)" in row("pix2pix")  # paper Table I (b), pix2pix PSNR
    assert "20.00 (paper 29.68)" in row("MedGAN") and "20.00 (paper 31.92)" in row(
        "MedGAN"
    )  # ip-MedGAN, MedGAN
    assert "20.00 (paper 31.46)" in row("Gated-Conv")
    assert scripts.evaluation.paper_row("medgan", "square") == "ip-MedGAN"
    assert scripts.evaluation.paper_row("medgan", "arbitrary") == "MedGAN"
    assert scripts.evaluation.paper_row("gated_conv", "square") == "Gated-Conv"  # run on (b) only: MODELS


def test_biharmonic_baseline_fills_only_the_hole():
    image = torch.linspace(0, 1, 16).repeat(16, 1)[None, None]
    mask = torch.zeros_like(image)
    mask[..., 6:10, 6:10] = 1
    filled = scripts.evaluation.BiharmonicInpainter()(image * (1 - mask), mask)
    torch.testing.assert_close(filled * (1 - mask), image * (1 - mask))
    torch.testing.assert_close(filled, image, atol=1e-3, rtol=0)  # a linear ramp is biharmonic


def test_evaluate_route_scores_a_checkpoint_without_building_the_training_setup(tmp_path):
    """evaluate.json loads ``checkpoint`` and writes the metrics without the training losses or writers: a VGG
    path that does not exist (the style loss would refuse it) does not matter, and no models/ or tensorboard/
    folder appears."""
    configs = ("train.json", "quick.json", "arbitrary.json", "evaluate.json")
    monai.bundle.run(
        run_id="evaluating",
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        config_file=[str(BUNDLE / "configs" / c) for c in configs],
        bundle_root=str(BUNDLE),
        output_dir=str(tmp_path),
        checkpoint=str(BUNDLE / "models" / "model.pt"),
        vgg_weights_path=str(tmp_path / "missing_vgg19.pth"),
        vgg_pretrained=True,
        **{"validate#dataset#data": "$@validate#datalist[:2]"},
    )
    metrics = dict(line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines())
    assert set(scripts.evaluation.METRICS.values()) <= set(metrics)
    assert 0 < float(metrics["val_ssim"]) < 1
    assert not (tmp_path / "models").exists() and not (tmp_path / "tensorboard").exists()


# ---------------------------------------------------------------------------------------------- GAN engine
TINY = {
    "image_size": 64,
    "square_side": 16,
    "batch_size": 1,
    "num_workers": 0,
    "filters": [4, 8, 16, 32, 64],
    "d_patch_channels": 4,
    "d_global_channels": [4, 4, 4, 4, 4, 4],
    "style_layers": ["relu1_1"],
    "vgg_pretrained": False,
    "max_epochs": 1,
    "device": "$torch.device('cpu')",
}


def _workflow(tmp_path, **overrides):
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json")])
    parser.update(
        {
            "bundle_root": str(BUNDLE),
            "output_dir": str(tmp_path),
            "train#dataset#data": "$@train#datalist[:2]",
            "validate#dataset#data": "$@validate#datalist[:1]",
            **TINY,
            **overrides,
        }
    )
    return parser


def _snapshot(parser):
    return {
        name: {k: v.detach().clone() for k, v in parser.get_parsed_content(name).state_dict().items()}
        for name in ("generator", "d_patch", "d_global")
    }


def _changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


@pytest.mark.parametrize(
    "configs, discriminators",
    [
        ([], {"patch": 2, "global": 2}),
        (["arbitrary.json"], {"patch": 2, "global": 2}),
        (["pix2pix.json"], {"patch": 2}),
        (["multiresunet.json"], {"patch": 2, "global": 2}),
        (["context_encoder.json"], {"global": 1}),
    ],
)
def test_each_experiment_and_baseline_wires_its_discriminators_to_their_inputs(configs, discriminators):
    """Every Table I configuration builds, its generator maps a masked 64x64 slice to a 64x64 slice in [0, 1],
    and each discriminator accepts the channels its ``d_inputs`` entry gives it (image + condition keys): the
    context encoder's global D is unconditional (1 channel), the others see the masked input as well (2)."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / c) for c in ["train.json", *configs]])
    parser.update({"bundle_root": str(BUNDLE), **TINY})
    d_inputs = parser.get_parsed_content("train#d_inputs")
    assert set(d_inputs) == set(discriminators)
    batch = {"image": torch.rand(2, 1, 64, 64), "masked_image": torch.rand(2, 1, 64, 64)}
    with torch.no_grad():
        pred = parser.get_parsed_content("generator")(batch["masked_image"])
        assert pred.shape == (2, 1, 64, 64) and 0 <= pred.min() and pred.max() <= 1
        for name, d in parser.get_parsed_content("discriminators").items():
            x = d_inputs[name](batch, pred, real=False)
            assert x.shape[1] == discriminators[name], name
            d(x)


def _quick_parser(model: str, experiment: str) -> ConfigParser:
    """train.json + quick.json + the experiment's and ``model``'s configs (``evaluation.MODELS``), as run."""
    configs = ["train.json", "quick.json", *scripts.evaluation.EXPERIMENTS[experiment]]
    configs += scripts.evaluation.MODELS[model][1]
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / c) for c in configs])
    parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')"})
    return parser


def _generator_batch(image: torch.Tensor, mask: torch.Tensor) -> dict:
    return {"image": image, "mask": mask, "masked_image": image * (1 - mask)}


def _evaluator_input(prepare_batch, batch: dict) -> tuple:
    """The generator's positional inputs as the evaluator's ``prepare_batch`` gives them."""
    inputs, _, args, _ = prepare_batch(batch)
    return (inputs, *args)


@pytest.mark.parametrize(
    "model, experiment",
    [("medgan", "square"), ("medgan", "arbitrary"), ("gated_conv", "arbitrary")],
)
def test_medgan_and_gated_conv_build_after_train_and_quick_and_map_a_slice_to_a_slice(model, experiment):
    """Each new baseline builds from its configs at quick scale; the generator, fed by the trainer's own
    ``generator_input`` and by the evaluator's ``prepare_batch``, maps a masked 64x64 slice to a 64x64 slice in
    [0, 1], and each discriminator accepts its ``d_inputs``."""
    parser = _quick_parser(model, experiment)
    assert parser.get_parsed_content("model_name") == model
    assert parser.get_parsed_content("experiment") == experiment
    generator = parser.get_parsed_content("generator").eval()
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:36, 20:36] = 1
    batch = _generator_batch(torch.rand(2, 1, 64, 64), mask)
    inputs = parser.get_parsed_content("train#trainer#generator_input")(batch)
    eval_inputs = _evaluator_input(parser.get_parsed_content("validate#prepare_batch"), batch)
    torch.testing.assert_close(torch.cat(eval_inputs, 1), torch.cat(inputs, 1))
    d_inputs = parser.get_parsed_content("train#d_inputs")
    with torch.no_grad():
        pred = generator(*inputs)
        assert pred.shape == (2, 1, 64, 64) and 0 <= pred.min() and pred.max() <= 1
        for name, d in parser.get_parsed_content("discriminators").items():
            d(d_inputs[name](batch, pred, real=False))


def test_medgan_generator_is_the_stated_number_of_monai_unets_as_wide_as_pix2pix():
    """medgan.json: ``num_stages`` (6, as its ``_desc_`` says) MONAI UNet blocks in the same Cascade class as
    ipA-MedGAN's MultiResUNets, each block with the pix2pix U-Net's channels (2 x quick.json's filters)."""
    parser = _quick_parser("medgan", "square")
    config = ConfigParser.load_config_file(str(BUNDLE / "configs" / "medgan.json"))
    assert config["num_stages"] == 6 and "6 MONAI UNet blocks" in config["_desc_"]
    generator = parser.get_parsed_content("generator")
    assert isinstance(generator, scripts.multiresunet.Cascade) and len(generator.stages) == 6
    unets = [stage[0] for stage in generator.stages]
    assert all(isinstance(u, monai.networks.nets.UNet) for u in unets)
    filters = parser.get_parsed_content("filters")
    assert filters == [8, 16, 32, 64, 128]  # quick.json
    pix2pix = _quick_parser("pix2pix", "square").get_parsed_content("network_def")
    assert all(list(u.channels) == list(pix2pix.channels) == [16, 32, 64, 128, 256] for u in unets)
    assert list(parser.get_parsed_content("discriminators")) == ["patch", "global"]  # ipA-MedGAN's


def test_only_the_gated_conv_generator_receives_the_mask():
    """Two masks that give the same masked image (they differ only where the image is 0): the gated generator's
    output changes, in training and evaluation input, so the mask reaches it; the blind generators' inputs are
    identical, so the other models still never see the mask."""
    image = torch.rand(1, 1, 64, 64)
    image[:, :, 40:56, 40:56] = 0
    mask_a, mask_b = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    mask_a[:, :, 8:24, 8:24] = 1
    mask_b[:, :, 8:24, 8:24] = 1
    mask_b[:, :, 40:56, 40:56] = 1
    for model, sees_mask in (
        ("gated_conv", True),
        ("pix2pix", False),
        ("medgan", False),
        ("ipa_medgan", False),
    ):
        parser = _quick_parser(model, "arbitrary")
        a, b = (_generator_batch(image, m) for m in (mask_a, mask_b))
        generator = parser.get_parsed_content("generator").eval()
        train_input = parser.get_parsed_content("train#trainer#generator_input")
        prepare = parser.get_parsed_content("validate#prepare_batch")
        for inputs_a, inputs_b in (
            (train_input(a), train_input(b)),
            (_evaluator_input(prepare, a), _evaluator_input(prepare, b)),
        ):
            assert (not torch.equal(torch.cat(inputs_a, 1), torch.cat(inputs_b, 1))) == sees_mask, model
            if sees_mask:
                with torch.no_grad():
                    assert not torch.allclose(generator(*inputs_a), generator(*inputs_b))


@pytest.mark.slow  # 35-110 s on the shared 2-core machine
def test_two_gan_iterations_update_all_three_networks_and_resume_restores_them(tmp_path):
    parser = _workflow(tmp_path)
    before = _snapshot(parser)
    parser.get_parsed_content("initialize")  # attaches the checkpoint saver, as `monai.bundle run` does first
    parser.get_parsed_content("training")  # the alias of `run`: 2 iterations
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    after = _snapshot(parser)
    for name in before:
        assert _changed(before[name], after[name]), f"{name} was not updated"
    output = trainer.state.output[0]  # decollated: one dict per image
    assert {"g_rec_valid", "g_rec_hole", "g_rec_style", "g_adv_patch_adv", "g_adv_patch_percep"} <= set(
        output
    )
    assert {"g_adv_global", "d_patch", "d_global"} <= set(output)

    checkpoint = sorted(tmp_path.glob("checkpoint_epoch=*.pt"))[-1]
    fresh = _workflow(tmp_path / "fresh")
    fresh_trainer = fresh.get_parsed_content("train#trainer")
    assert _changed(_snapshot(fresh)["generator"], after["generator"])
    CheckpointLoader(load_path=str(checkpoint), load_dict=fresh_trainer.checkpoint_dict())(fresh_trainer)
    restored = _snapshot(fresh)
    for name in after:
        for key in after[name]:
            torch.testing.assert_close(restored[name][key], after[name][key])
    assert fresh_trainer.state.epoch == 1 and fresh_trainer.state.iteration == 2
    g_state = fresh.get_parsed_content("train#g_optimizer").state_dict()["state"]
    assert g_state and all(int(s["step"]) == 2 for s in g_state.values())


@pytest.mark.slow  # about 60-120 s on the shared 2-core machine
def test_generator_overfits_four_slices_and_its_output_is_not_constant(tmp_path):
    """120 GAN iterations on 4 slices with the bundle's own losses, weights and optimisers (quick.json widths,
    64x64): the whole-image L1 of the output falls well below that of the untrained generator and of the best
    constant image (the median), and the eval-mode output (running batch-norm statistics) is no longer the flat
    grey image that an under-trained generator gives."""
    iterations, n = 120, 4
    torch.manual_seed(0)  # the generator's initial weights, whatever ran before in this process
    parser = _workflow(
        tmp_path,
        batch_size=n,
        max_epochs=iterations,
        filters=[8, 16, 32, 64, 128],
        d_patch_channels=8,
        **{
            "train#handlers": [],
            "train#dataset#data": f"$@train#datalist[:{n}]",
            "validate#split": "training",
            "validate#dataset#data": f"$@validate#datalist[:{n}]",
        },
    )
    parser.get_parsed_content("scripts")
    dataset = parser.get_parsed_content("validate#dataset")  # the training slices with fixed bank squares
    x = torch.stack([torch.as_tensor(dataset[i]["masked_image"]) for i in range(n)]).float()
    y = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(n)]).float()
    generator = parser.get_parsed_content("generator")

    def l1(train_mode: bool) -> tuple[float, float]:
        generator.train(train_mode)
        with torch.no_grad():
            out = generator(x)
        return float((out - y).abs().mean()), float(out.std())

    torch.manual_seed(0)
    initial, _ = l1(True)
    parser.get_parsed_content("train#trainer").run()
    trained, _ = l1(True)
    trained_eval, eval_std = l1(False)
    best_constant = float((y - y.median()).abs().mean())
    assert trained < 0.75 * initial and trained < 0.8 * best_constant, (initial, trained, best_constant)
    assert eval_std > 0.25 * float(y.std()), (eval_std, float(y.std()))
    assert trained_eval < best_constant, (trained_eval, best_constant)


@pytest.mark.slow  # two torchrun processes: about 30-70 s on the shared 2-core machine
def test_multi_gpu_config_keeps_all_three_networks_in_sync_across_ranks(tmp_path):
    """multi_gpu_train.json under torchrun (2 CPU processes, gloo), different slices per rank, 2 iterations.

    The generator step runs both DDP-wrapped discriminators with their parameters frozen (requires_grad off);
    if that broke DDP's gradient all-reduce, the ranks' weights would drift apart. Every parameter of the
    generator and of both discriminators must be identical on the two ranks (batch-norm running statistics are
    per rank by design: ``broadcast_buffers=False``)."""
    from harness import config_list, run_bundle

    save = (
        "$torch.save({n: {k: v.detach() for k, v in m.named_parameters()} for n, m in "
        "(('generator', @generator), ('d_patch', @d_patch), ('d_global', @d_global))}, "
        "@output_dir + f'/params_rank{dist.get_rank()}.pt')"
    )
    override = tmp_path / "save_params.json"
    train = ConfigParser.load_config_file(str(BUNDLE / "configs" / "train.json"))
    override.write_text(json.dumps({"run": [*train["run"], save]}), encoding="utf-8")
    configs = [BUNDLE / "configs" / c for c in ("train.json", "quick.json", "multi_gpu_train.json")]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    args = [
        "run",
        "training",
        "--config_file",
        config_list(*configs, override),
        "--bundle_root",
        str(BUNDLE),
        "--output_dir",
        str(tmp_path),
        "--max_epochs",
        "2",
        "--batch_size",
        "2",
        "--train#dataset#data",
        "$@train#datalist[:4]",
        "--validate#dataset#data",
        "$@validate#datalist[:2]",
    ]
    run_bundle(args, cwd=tmp_path, launcher=launcher)
    ranks = [torch.load(tmp_path / f"params_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for network in ("generator", "d_patch", "d_global"):
        assert ranks[0][network].keys() == ranks[1][network].keys()
        for name, value in ranks[0][network].items():
            torch.testing.assert_close(
                ranks[1][network][name], value, rtol=0, atol=0, msg=f"{network}.{name}"
            )
