"""The inpainting-GAN engine (exact resume, handlers, options) and SupervisedTrainer with the mask-aware loss."""

import glob
import os

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    CheckpointLoader,
    CheckpointSaver,
    IgniteMetricHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.engines import (
    AtomicCheckpointSaver,
    DiscriminatorInput,
    InpaintingBatchPreparer,
    InpaintingGanTrainer,
    RNGState,
    TrainingState,
)
from common.losses import (
    DiscriminatorAdversarialLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
    HoleL1Loss,
    MaskAwareLoss,
    OutputLoss,
    WeightedSumLoss,
)
from common.masking import MaskedInput
from common.metrics import PSNRMetric

EPOCH_LENGTH = 3


class TinyGenerator(nn.Module):
    """Two outputs (image, edge) and dropout, so resuming must also restore the RNG state."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(4, 2, 3, padding=1)
        )

    def forward(self, x):
        out = self.body(x)
        return torch.sigmoid(out[:, :1]), out[:, 1:]


class FirstOutput(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *args):
        return self.net(*args)[0]


def make_batches(n=EPOCH_LENGTH):
    g = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(n):
        image = torch.rand(2, 1, 16, 16, generator=g)
        mask = torch.zeros(2, 1, 16, 16)
        mask[:, :, 4:12, 3:10] = 1
        batches.append({"image": image, "mask": mask, "edge": (image > 0.5).float()})
    return batches


def build(seed, amp=False, max_epochs=2):
    torch.manual_seed(seed)
    generator = TinyGenerator()
    discriminators = {
        "image": PatchDiscriminator(
            spatial_dims=2, num_layers_d=2, channels=4, in_channels=2, out_channels=1
        ),
        "edge": nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3)),
    }
    g_adversarial = {
        "image": WeightedSumLoss(
            {"adv": 0.1, "fm": 1.0},
            losses={"adv": GeneratorAdversarialLoss("bce"), "fm": FeatureMatchingLoss()},
        ),
        "edge": GeneratorAdversarialLoss("hinge"),
    }
    return InpaintingGanTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=make_batches(),
        epoch_length=EPOCH_LENGTH,
        generator=generator,
        g_optimizer=torch.optim.Adam(generator.parameters(), lr=1e-2),
        g_loss_function={
            "image": OutputLoss(WeightedSumLoss({"valid": 1, "hole": 6, "tv": 0.1}, return_terms=True)),
            "edge": OutputLoss(nn.L1Loss(), output_key=1, target_key="edge", mask_key=None),
        },
        discriminators=discriminators,
        d_optimizers={k: torch.optim.Adam(d.parameters(), lr=0.5e-2) for k, d in discriminators.items()},
        d_inputs={
            "image": DiscriminatorInput(composite=True, condition_keys=["mask"]),
            "edge": DiscriminatorInput(real_key="edge", output_key=1),
        },
        g_adversarial_losses=g_adversarial,
        d_loss_functions={
            "image": DiscriminatorAdversarialLoss("bce"),
            "edge": DiscriminatorAdversarialLoss("hinge"),
        },
        g_clip_grad_norm=1.0,
        d_clip_grad_norm=1.0,
        amp=amp,
    )


def weights(trainer):
    nets = [trainer.generator, *trainer.discriminators.values()]
    return [p.detach().clone() for net in nets for p in net.parameters()]


def checkpoint_dict(trainer, save_rng_state):
    return {**trainer.checkpoint_dict(), "rng": RNGState()} if save_rng_state else trainer.checkpoint_dict()


def run_killed_and_resumed(tmp_path, kill_at, save_rng_state=True):
    killed = build(seed=0)
    AtomicCheckpointSaver(
        str(tmp_path), checkpoint_dict(killed, save_rng_state), save_interval=kill_at, epoch_level=False, n_saved=1
    ).attach(killed)
    killed.add_event_handler(Events.ITERATION_COMPLETED(once=kill_at), lambda e: e.terminate())
    torch.manual_seed(123)
    killed.run()
    assert killed.state.iteration == kill_at
    (path,) = glob.glob(os.path.join(tmp_path, "*.pt"))
    resumed = build(seed=99)  # fresh objects, different init
    CheckpointLoader(load_path=path, load_dict=checkpoint_dict(resumed, save_rng_state)).attach(resumed)
    torch.manual_seed(555)  # overwritten by the restored RNG state
    resumed.run()
    assert resumed.state.iteration == 2 * EPOCH_LENGTH
    return resumed


def test_killed_run_resumes_exactly(tmp_path):
    uninterrupted = build(seed=0)
    torch.manual_seed(123)
    uninterrupted.run()
    resumed = run_killed_and_resumed(tmp_path, kill_at=EPOCH_LENGTH)
    expected = weights(uninterrupted)
    assert all(torch.equal(a, b) for a, b in zip(expected, weights(resumed)))
    # the checkpoint really carries the RNG: without it dropout draws differ and so do the weights
    without_rng = run_killed_and_resumed(tmp_path / "no_rng", kill_at=EPOCH_LENGTH, save_rng_state=False)
    assert not all(torch.equal(a, b) for a, b in zip(expected, weights(without_rng)))


def test_checkpoint_dict_and_configured_learning_rates():
    trainer = build(seed=0)
    assert set(trainer.checkpoint_dict()) == {
        "trainer",
        "generator",
        "g_optimizer",
        "discriminator_image",
        "d_optimizer_image",
        "discriminator_edge",
        "d_optimizer_edge",
    }
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.g_optimizer, step_size=1, gamma=0.1)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: scheduler.step())
    trainer.state.max_epochs, trainer.state.epoch_length = 1, 2
    trainer.run()
    # each optimiser keeps the lr it was given: the generator's scheduler does not reach the discriminators
    assert trainer.g_optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert all(o.param_groups[0]["lr"] == 0.5e-2 for o in trainer.d_optimizers.values())
    output = trainer.state.output[0]  # decollated
    for key in (
        "loss",
        "g_image_valid",
        "g_image_hole",
        "g_edge",
        "g_adv_image",
        "g_adv_edge",
        "d_image",
        "d_edge",
    ):
        assert key in output and torch.isfinite(torch.as_tensor(output[key])).all()


def test_handlers_stats_tensorboard_validation(tmp_path):
    trainer = build(seed=0, max_epochs=2)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=make_batches(1),
        network=FirstOutput(trainer.generator),
        prepare_batch=InpaintingBatchPreparer(),
        key_val_metric={
            "psnr_hole": IgniteMetricHandler(
                PSNRMetric(roi="hole"), output_transform=from_engine(["pred", "label"])
            )
        },
    )
    logged = []
    stats = StatsHandler(
        name="gan", output_transform=from_engine(["loss"], first=True), iteration_print_logger=logged.append
    )
    stats.attach(trainer)
    TensorBoardStatsHandler(log_dir=str(tmp_path), output_transform=from_engine(["loss"], first=True)).attach(
        trainer
    )
    ValidationHandler(validator=evaluator, interval=1).attach(trainer)
    trainer.run()
    assert len(logged) == 2 * EPOCH_LENGTH
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    psnr = evaluator.state.metrics["psnr_hole"]
    assert 0 < psnr < 60 and evaluator.state.best_metric_epoch in (1, 2)


def test_amp_run_and_scalers_in_checkpoint():
    trainer = build(seed=0, amp=True, max_epochs=1)
    trainer.run()
    assert {"g_scaler", "d_scaler_image", "d_scaler_edge"} <= set(trainer.checkpoint_dict())
    assert all(torch.isfinite(p).all() for p in weights(trainer))


def test_bad_configuration_and_batches():
    generator = TinyGenerator()
    with pytest.raises(ValueError, match="d_optimizers keys"):
        InpaintingGanTrainer(
            "cpu",
            1,
            make_batches(),
            generator,
            torch.optim.SGD(generator.parameters(), 0.1),
            HoleL1Loss(),
            discriminators={"a": nn.Conv2d(1, 1, 1)},
            d_optimizers={},
            g_adversarial_losses={"a": None},
            d_loss_functions={"a": None},
        )
    trainer = InpaintingGanTrainer(
        "cpu",
        1,
        [{"image": torch.rand(1, 1, 8, 8)}],
        generator,
        torch.optim.SGD(generator.parameters(), 0.1),
        OutputLoss(HoleL1Loss()),
    )
    with pytest.raises(KeyError, match="mask"):
        trainer.run()


@pytest.mark.parametrize("saver_class", [AtomicCheckpointSaver, CheckpointSaver])
def test_atomic_checkpoint_leaves_no_partial_file(tmp_path, monkeypatch, saver_class):
    trainer = build(seed=0, max_epochs=1)
    saver_class(str(tmp_path), trainer.checkpoint_dict(), save_interval=1, epoch_level=False).attach(trainer)

    def crash_while_writing(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):  # non-atomic savers write straight to the final path
            with open(f, "wb") as handle:
                handle.write(b"partial")
        else:
            f.write(b"partial")
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(torch, "save", crash_while_writing)
    with pytest.raises(RuntimeError, match="killed while saving"):
        trainer.run()
    if saver_class is AtomicCheckpointSaver:
        assert os.listdir(tmp_path) == []  # the temporary file was removed, no truncated checkpoint
    else:
        assert len(os.listdir(tmp_path)) == 1  # MONAI 1.6.1's saver (atomic=False) leaves a truncated file


def test_supervised_trainer_with_mask_aware_loss():
    """The supervised bundles use MONAI's SupervisedTrainer: the preparer's label is {"image", "mask"}."""
    torch.manual_seed(0)
    net = nn.Conv2d(2, 1, 3, padding=1)
    batches = make_batches()
    seen = []
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=batches,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0),  # frozen, so the logged loss can be recomputed
        loss_function=MaskAwareLoss(HoleL1Loss()),
        prepare_batch=InpaintingBatchPreparer(),
        decollate=False,
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output["loss"].item())
    )
    trainer.run()
    for batch, loss in zip(batches, seen):
        image, mask = batch["image"], batch["mask"]
        expected = HoleL1Loss()(net(torch.cat([image * (1 - mask), mask], dim=1)), image, mask)
        assert loss == pytest.approx(expected.item(), rel=1e-6)


def test_masked_input_modes():
    batch = make_batches(1)[0]
    image, mask = batch["image"], batch["mask"]
    (concat,) = MaskedInput()(batch)
    assert torch.equal(concat, torch.cat([image * (1 - mask), mask], dim=1))
    masked, m = MaskedInput(mode="separate", fill_value=1.0)(batch)
    assert torch.equal(masked[mask.bool()], torch.ones(int(mask.sum()))) and torch.equal(m, mask)
    inputs, label, args, kwargs = InpaintingBatchPreparer(mode="separate", extra_keys=["edge"])(batch)
    assert sorted(label) == ["image", "mask"] and torch.equal(label["image"], image)
    assert torch.equal(label["mask"], mask) and len(args) == 2 and torch.equal(args[1], batch["edge"])
    with pytest.raises(ValueError, match="binary"):
        MaskedInput()({"image": image, "mask": mask * 0.5})


def test_release_ddp_drops_what_holds_the_process_group(tmp_path):
    """What multi_gpu_train.json's finalize relies on: the DDP attributes holding the process group exist
    and are gone afterwards, so destroy_process_group frees the group while the interpreter is alive."""
    import torch.distributed as dist

    from common.engines import release_ddp

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 1))
        assert {"reducer", "logger"} <= set(vars(ddp))
        release_ddp(ddp, torch.nn.Linear(1, 1))
        assert not {"reducer", "logger"} & set(vars(ddp))
    finally:
        dist.destroy_process_group()


def build_supervised(seed, tmp_path, max_epochs=3, keep_training_state=True):
    """A SupervisedTrainer whose randomness comes from everywhere a bundle's does: a random transform (its own
    ``R``), a shuffling loader, dropout (torch), validation with a random transform, a best-model saver."""
    from monai.data import DataLoader, Dataset
    from monai.handlers import MeanSquaredError, ValidationHandler, from_engine
    from monai.transforms import Compose, RandGaussianNoised, RandSpatialCropd

    torch.manual_seed(seed)
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.Conv2d(4, 1, 3, padding=1))
    g = torch.Generator().manual_seed(0)
    items = [{"image": torch.rand(1, 12, 12, generator=g), "label": torch.rand(1, 8, 8, generator=g)} for _ in range(6)]
    train_transform = Compose([RandGaussianNoised(keys="image", prob=1.0, std=0.2), RandSpatialCropd("image", (8, 8))])
    val_transform = Compose([RandSpatialCropd("image", (8, 8))])
    train_transform.set_random_state(seed=seed)
    val_transform.set_random_state(seed=seed)
    val_loader = DataLoader(Dataset(items[:2], val_transform), batch_size=1, shuffle=False, num_workers=0)
    best_saver = AtomicCheckpointSaver(
        str(tmp_path), {"model": network}, save_key_metric=True, key_metric_filename="best.pt",
        key_metric_negative_sign=True,
    )
    evaluator = SupervisedEvaluator(
        device="cpu", val_data_loader=val_loader, network=network,
        key_val_metric={"val_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))},
        metric_cmp_fn=lambda current, best: current < best if best != -1 else True, val_handlers=[best_saver],
    )
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=max_epochs,
        train_data_loader=DataLoader(Dataset(items, train_transform), batch_size=2, shuffle=True, num_workers=0),
        network=network, optimizer=torch.optim.Adam(network.parameters(), lr=1e-2), loss_function=nn.L1Loss(),
        train_handlers=[ValidationHandler(validator=evaluator, interval=1)],
    )
    save_dict = {"trainer": trainer, "model": network, "optimizer": trainer.optimizer}
    if keep_training_state:
        save_dict["training_state"] = TrainingState([train_transform, val_transform], evaluator, [best_saver])
    AtomicCheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=2).attach(trainer)
    return trainer, evaluator, save_dict


def resumed_supervised_run(tmp_path, keep_training_state=True):
    """Killed after epoch 1 (its checkpoint written), then resumed from it with freshly built objects."""
    killed, _, _ = build_supervised(0, tmp_path, keep_training_state=keep_training_state)
    killed.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda e: e.terminate())
    killed.run()
    resumed, evaluator, save_dict = build_supervised(7, tmp_path, keep_training_state=keep_training_state)
    CheckpointLoader(load_path=str(tmp_path / "checkpoint_epoch=1.pt"), load_dict=save_dict).attach(resumed)
    resumed.run()
    return resumed, evaluator


def test_training_state_makes_a_resumed_supervised_run_exact(tmp_path):
    straight, straight_evaluator, _ = build_supervised(0, tmp_path / "straight")
    straight.run()
    resumed, resumed_evaluator = resumed_supervised_run(tmp_path / "resumed")
    assert resumed.state.epoch == 3
    expected = list(straight.network.parameters())
    assert all(torch.equal(a, b) for a, b in zip(expected, resumed.network.parameters()))
    # best-metric tracking continued: same best value and epoch, same best model on disk
    assert resumed_evaluator.state.best_metric == straight_evaluator.state.best_metric
    assert resumed_evaluator.state.best_metric_epoch == straight_evaluator.state.best_metric_epoch
    best = [torch.load(p / "best.pt", weights_only=True) for p in (tmp_path / "straight", tmp_path / "resumed")]
    assert all(torch.equal(best[0][k], best[1][k]) for k in best[0])
    # keep_last still holds across the resume: epochs 2 and 3 only
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"
    ]
    # and the test can fail: without the training state the resumed weights differ
    unstated, _ = resumed_supervised_run(tmp_path / "without", keep_training_state=False)
    assert not all(torch.equal(a, b) for a, b in zip(expected, unstated.network.parameters()))


def test_validation_leaves_the_global_rngs_as_it_found_them(tmp_path):
    trainer, evaluator, save_dict = build_supervised(0, tmp_path)
    before = torch.get_rng_state()
    evaluator.run()
    assert torch.equal(before, torch.get_rng_state())
    assert "training_state" in save_dict


def test_training_state_refuses_a_checkpoint_from_another_pipeline(tmp_path):
    from monai.transforms import Compose, RandGaussianNoised

    two = TrainingState([Compose([RandGaussianNoised("image"), RandGaussianNoised("image")])])
    one = TrainingState([RandGaussianNoised("image")])
    with pytest.raises(ValueError, match=r"has 5 random transforms .* this run 2 and 0"):
        one.load_state_dict(two.state_dict())
