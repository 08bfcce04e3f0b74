"""The conditional inpainting-GAN engine shared by the shape-aware/CTSDG, ipA-MedGAN and object-removal bundles.

MONAI's ``GanTrainer`` feeds the generator random latents and ``AdversarialTrainer`` has one discriminator
that sees the generator's *input* as the real sample. Inpainting GANs condition the generator on the masked
image and train K discriminators on different inputs (image, edge map, ...), so this engine subclasses
``monai.engines.Trainer`` (hence MONAI/ignite events and handlers work unchanged) with that loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.engines.workflow import Workflow
from monai.utils.enums import CommonKeys as Keys
from torch import nn

from ..checks import check_keys
from ..losses.wrappers import select_output
from ..masking import MaskedInput, composite
from .batch import prepare_inpainting_batch

__all__ = ["DiscriminatorInput", "InpaintingGanTrainer", "detach_outputs"]


def detach_outputs(pred):
    """Detach a tensor, or every tensor of a tuple/list/dict of generator outputs."""
    if isinstance(pred, torch.Tensor):
        return pred.detach()
    if isinstance(pred, dict):
        return {k: detach_outputs(v) for k, v in pred.items()}
    if isinstance(pred, (list, tuple)):
        return type(pred)(detach_outputs(v) for v in pred)
    return pred


class DiscriminatorInput:
    """Build a discriminator's real or fake input from the batch and the generator outputs.

    real = ``batch[real_key]``; fake = generator output ``output_key`` (see :func:`select_output`), or the
    composite (output in the hole, real elsewhere) with ``composite=True``. ``condition_keys`` batch entries
    (e.g. the mask, a grey image) are concatenated after it along channels, as in a conditional GAN.

    Examples: the image discriminator ``DiscriminatorInput()``; CTSDG's edge discriminator
    ``DiscriminatorInput(real_key="edge", output_key="edge", condition_keys=["gray"])``.
    """

    def __init__(
        self,
        real_key: str = "image",
        output_key: int | str | None = None,
        composite: bool = False,
        condition_keys: Sequence[str] = (),
        mask_key: str = "mask",
    ) -> None:
        self.real_key, self.output_key, self.composite = real_key, output_key, composite
        self.condition_keys, self.mask_key = list(condition_keys), mask_key

    def __call__(self, batch: dict, pred, real: bool) -> torch.Tensor:
        x = batch[self.real_key]
        if not real:
            fake = select_output(pred, self.output_key)
            x = composite(fake, x, batch[self.mask_key]) if self.composite else fake
        if not self.condition_keys:
            return x
        return torch.cat([x, *[batch[k].to(x.dtype) for k in self.condition_keys]], dim=1)


def _as_dict(name: str, value) -> dict[str, torch.Tensor]:
    """A loss value (tensor or dict of named terms) as a dict of named terms."""
    if isinstance(value, Mapping):
        return {f"{name}_{k}": v for k, v in value.items()}
    return {name: value}


def _to_mapping(value, names: Sequence[str] | None, what: str) -> dict:
    """Accept a dict, a list (named "0", "1", ... or ``names``) or None."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        keys = list(names) if names is not None else [str(i) for i in range(len(value))]
        if len(keys) != len(value):
            raise ValueError(f"{what}: {len(value)} items for {len(keys)} discriminators.")
        return dict(zip(keys, value))
    raise TypeError(f"{what} must be a dict or a list, got {type(value).__name__}.")


@contextlib.contextmanager
def _frozen(modules: Iterable[nn.Module]):
    """Stop gradients into ``modules``' parameters (the discriminators during the generator step)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class InpaintingGanTrainer(Trainer):
    """Conditional inpainting GAN: one generator (one or several outputs), K discriminators.

    One iteration: prepare the batch dict (image, mask, extras), run the generator once on
    ``generator_input(batch)``, then (``discriminator_first=True``, pix2pix order) update every discriminator
    on real vs detached fake inputs and update the generator with its loss plus each discriminator's
    generator-side adversarial loss, or the other way round.

    Losses (any callables, composed in the config):
        - ``g_loss_function(pred, batch)`` -> tensor or dict of named terms (e.g. :class:`common.losses.OutputLoss`
          around :class:`common.losses.WeightedSumLoss`); a dict of such callables is also accepted;
        - ``g_adversarial_losses[name](fake_out, real_out)`` per discriminator, e.g. a
          :class:`common.losses.WeightedSumLoss` of ``GeneratorAdversarialLoss`` and ``FeatureMatchingLoss``;
          ``real_out`` is computed (without gradients) only if the loss's ``requires_real`` is true;
        - ``d_loss_functions[name](real_out, fake_out)``, e.g. :class:`common.losses.DiscriminatorAdversarialLoss`.

    ``engine.state.output`` holds ``image``, ``label`` (= image), ``mask``, ``pred`` (the primary output,
    detached), ``loss`` (total generator loss), one ``g_<term>`` per generator term and ``d_<name>`` per
    discriminator, all detached.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, iteration_update, postprocessing,
            key_train_metric, additional_metrics, metric_cmp_fn, train_handlers, amp, event_names,
            event_to_attr, decollate, optim_set_to_none, to_kwargs, amp_kwargs: as in ``SupervisedTrainer``.
        generator, g_optimizer: the generator and its optimiser (the optimisers' learning rates are used as
            configured: the engine never changes them).
        g_loss_function: the generator's non-adversarial loss (see above).
        discriminators, d_optimizers, d_inputs, g_adversarial_losses, d_loss_functions: dicts keyed by
            discriminator name (lists are named "0", "1", ...); ``d_inputs`` defaults to
            :class:`DiscriminatorInput` () for every discriminator.
        generator_input: ``batch -> positional args`` of the generator (tensor, tuple, or dict of kwargs);
            default :class:`common.masking.MaskedInput` ("concat": masked image and mask).
        image_key, mask_key: batch keys.
        output_key: the generator's primary output (``pred``), see :func:`common.losses.select_output`.
        g_clip_grad_norm, d_clip_grad_norm: max gradient norm (None: no clipping).
        discriminator_first: update discriminators before the generator (default) or after.
        prepare_batch: ``(batchdata, device, non_blocking, **kwargs) -> batch dict``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        generator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        g_loss_function: Callable | Mapping[str, Callable],
        discriminators: Mapping[str, nn.Module] | Sequence[nn.Module] | None = None,
        d_optimizers: Mapping[str, torch.optim.Optimizer] | Sequence[torch.optim.Optimizer] | None = None,
        d_inputs: Mapping[str, Callable] | Sequence[Callable] | None = None,
        g_adversarial_losses: Mapping[str, Callable] | Sequence[Callable] | None = None,
        d_loss_functions: Mapping[str, Callable] | Sequence[Callable] | None = None,
        generator_input: Callable | None = None,
        image_key: str = "image",
        mask_key: str = "mask",
        output_key: int | str | None = None,
        g_clip_grad_norm: float | None = None,
        d_clip_grad_norm: float | None = None,
        discriminator_first: bool = True,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = prepare_inpainting_batch,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.generator = generator
        self.g_optimizer = g_optimizer
        self.g_loss_function = g_loss_function
        self.discriminators = _to_mapping(discriminators, None, "discriminators")
        names = list(self.discriminators)
        self.d_optimizers = _to_mapping(d_optimizers, names, "d_optimizers")
        self.d_inputs = _to_mapping(d_inputs, names, "d_inputs")
        self.g_adversarial_losses = _to_mapping(g_adversarial_losses, names, "g_adversarial_losses")
        self.d_loss_functions = _to_mapping(d_loss_functions, names, "d_loss_functions")
        for what, mapping in (
            ("d_optimizers", self.d_optimizers),
            ("g_adversarial_losses", self.g_adversarial_losses),
            ("d_loss_functions", self.d_loss_functions),
        ):
            if set(mapping) != set(names):
                raise ValueError(
                    f"{what} keys {sorted(mapping)} must match the discriminators {sorted(names)}."
                )
        unknown_inputs = set(self.d_inputs) - set(names)
        if unknown_inputs:
            raise ValueError(
                f"d_inputs for unknown discriminators {sorted(unknown_inputs)}; have {sorted(names)}."
            )
        for name in names:
            self.d_inputs.setdefault(name, DiscriminatorInput(real_key=image_key, mask_key=mask_key))
        self.generator_input = generator_input or MaskedInput(image_key=image_key, mask_key=mask_key)
        self.image_key, self.mask_key, self.output_key = image_key, mask_key, output_key
        self.g_clip_grad_norm, self.d_clip_grad_norm = g_clip_grad_norm, d_clip_grad_norm
        self.discriminator_first = discriminator_first
        self.optim_set_to_none = optim_set_to_none
        device_type = self.state.device.type if isinstance(self.state.device, torch.device) else "cpu"
        self.g_scaler = torch.amp.GradScaler(device_type, enabled=amp)
        self.d_scalers = {name: torch.amp.GradScaler(device_type, enabled=amp) for name in names}

    def run(self) -> None:  # type: ignore[override]
        """Run training (resuming from a loaded state). Skips ``Trainer.run``, which only creates a CUDA
        ``GradScaler`` this engine does not use (it keeps one scaler per optimiser)."""
        Workflow.run(self)

    def checkpoint_dict(self) -> dict:
        """The engine's own stateful objects, for ``CheckpointSaver``/``CheckpointLoader``.

        Keys: ``trainer`` (iteration/epoch), ``generator``, ``g_optimizer``, ``discriminator_<name>``,
        ``d_optimizer_<name>``, and ``g_scaler`` / ``d_scaler_<name>`` (with AMP);
        add a :class:`common.engines.TrainingState` for the RNGs, random transforms and best-metric tracking.
        """
        out: dict = {"trainer": self, "generator": self.generator, "g_optimizer": self.g_optimizer}
        for name in self.discriminators:
            out[f"discriminator_{name}"] = self.discriminators[name]
            out[f"d_optimizer_{name}"] = self.d_optimizers[name]
        if self.amp:
            out["g_scaler"] = self.g_scaler
            out.update({f"d_scaler_{name}": scaler for name, scaler in self.d_scalers.items()})
        return out

    def _autocast(self):
        return torch.autocast(self.state.device.type, enabled=self.amp, **self.amp_kwargs)

    def _step(self, loss: torch.Tensor, optimizer, scaler, module: nn.Module, clip: float | None) -> None:
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()

    def _run_generator(self, batch: dict):
        inputs = self.generator_input(batch)
        if isinstance(inputs, Mapping):
            return self.generator(**inputs)
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)
        return self.generator(*inputs)

    def _train_discriminators(self, batch: dict, pred) -> dict[str, torch.Tensor]:
        fake_pred = detach_outputs(pred)
        losses = {}
        for name, discriminator in self.discriminators.items():
            optimizer, build = self.d_optimizers[name], self.d_inputs[name]
            optimizer.zero_grad(set_to_none=self.optim_set_to_none)
            with self._autocast():
                real_out = discriminator(build(batch, fake_pred, real=True))
                fake_out = discriminator(build(batch, fake_pred, real=False))
                loss = self.d_loss_functions[name](real_out, fake_out)
            self._step(loss, optimizer, self.d_scalers[name], discriminator, self.d_clip_grad_norm)
            losses[f"d_{name}"] = loss.detach()
        return losses

    def _train_generator(self, engine: InpaintingGanTrainer, batch: dict, pred) -> dict[str, torch.Tensor]:
        self.g_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        with _frozen(self.discriminators.values()), self._autocast():
            if isinstance(self.g_loss_function, Mapping):
                terms = {}
                for key, fn in self.g_loss_function.items():
                    terms.update(_as_dict(key, fn(pred, batch)))
            else:
                terms = _as_dict("rec", self.g_loss_function(pred, batch))
            for name, discriminator in self.discriminators.items():
                build, adversarial = self.d_inputs[name], self.g_adversarial_losses[name]
                fake_out = discriminator(build(batch, pred, real=False))
                real_out = None
                if getattr(adversarial, "requires_real", True):
                    with torch.no_grad():
                        real_out = discriminator(build(batch, pred, real=True))
                terms.update(_as_dict(f"adv_{name}", adversarial(fake_out, real_out)))
            total = torch.stack([t.float() for t in terms.values()]).sum()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        self._step(total, self.g_optimizer, self.g_scaler, self.generator, self.g_clip_grad_norm)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        out = {f"g_{k}": v.detach() for k, v in terms.items()}
        out[Keys.LOSS] = total.detach()
        return out

    def _iteration(self, engine: InpaintingGanTrainer, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        check_keys(batch, (self.image_key, self.mask_key), "the batch")
        self.generator.train()
        for discriminator in self.discriminators.values():
            discriminator.train()
        with self._autocast():
            pred = self._run_generator(batch)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        image = batch[self.image_key]
        engine.state.output = {
            Keys.IMAGE: image,
            Keys.LABEL: image,
            self.mask_key: batch[self.mask_key],
            Keys.PRED: select_output(pred, self.output_key).detach(),
        }
        if self.discriminator_first:
            engine.state.output.update(self._train_discriminators(batch, pred))
            engine.state.output.update(self._train_generator(engine, batch, pred))
        else:
            engine.state.output.update(self._train_generator(engine, batch, pred))
            engine.state.output.update(self._train_discriminators(batch, pred))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
