"""Checkpoint helpers: an atomic ``CheckpointSaver``, checkpointable RNG states and the training state a run
needs to resume exactly."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable

__all__ = ["AtomicCheckpointSaver", "RNGState", "TrainingState", "random_transforms"]


class _AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` with ``atomic=True`` (write to a temporary file, then ``os.replace``) and MONAI's
    optional fixed file name."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)

    def _save_func(self, checkpoint: Mapping, path, func) -> None:
        """ignite's atomic save (temp file in the same folder, then ``os.replace``) with the temp file fsynced
        before the rename, so a power loss cannot leave an empty file under the final name."""

        def save_and_sync(obj, file, **kwargs) -> None:
            func(obj, file, **kwargs)
            if hasattr(file, "fileno"):
                file.flush()
                os.fsync(file.fileno())

        super()._save_func(checkpoint, path, save_and_sync)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` writing every checkpoint atomically.

    MONAI 1.6.1's saver uses ``DiskSaver(atomic=False)`` (its comment: atomic files were user-only readable,
    which ignite 0.5 fixes by adding group/other read permission), so a run killed while saving can leave a
    truncated checkpoint under the final name. Same arguments as ``CheckpointSaver``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, fixed_name)
        self._earlier_adopted = False

    def interval_completed(self, engine: Engine) -> None:
        if not self._earlier_adopted:
            self._adopt_earlier_checkpoints(
                engine.state.epoch if self.epoch_level else engine.state.iteration
            )
            self._earlier_adopted = True
        super().interval_completed(engine)

    def _adopt_earlier_checkpoints(self, current: int) -> None:
        """Count this saver's files from before ``current`` (a run resumed in the same folder) toward
        ``n_saved``, deleting the oldest beyond it, so the folder keeps the last K across resumes. Files
        numbered ``current`` or later (another, longer run) are left alone; the new run overwrites them."""
        checkpoint = self._interval_checkpoint
        name = "checkpoint" if len(self.save_dict) > 1 else next(iter(self.save_dict))
        stem = f"{checkpoint.filename_prefix}_{name}" if checkpoint.filename_prefix else name
        pattern = re.compile(
            rf"^{re.escape(stem)}_{checkpoint.score_name}=(\d+)\.{re.escape(checkpoint.ext)}$"
        )
        earlier = sorted(
            (int(match.group(1)), path.name)
            for path in Path(self.save_dir).glob(f"{stem}_*")
            if (match := pattern.match(path.name)) and int(match.group(1)) < current
        )
        keep = max(checkpoint.n_saved - 1, 0) if checkpoint.n_saved is not None else len(earlier)
        for _, filename in earlier[: len(earlier) - keep]:
            checkpoint.save_handler.remove(filename)
        checkpoint._saved = [
            Checkpoint.Item(number, filename) for number, filename in earlier[len(earlier) - keep :]
        ]


class RNGState:
    """The torch (CPU and CUDA), numpy and python global RNG states as a checkpointable object.

    Put it in a checkpoint's ``save_dict`` so a resumed run draws the same random numbers (dropout,
    in-loop augmentation) as an uninterrupted one. Only tensors and plain values are stored, so MONAI's
    ``CheckpointLoader`` (``weights_only=True``) reads it.
    """

    def state_dict(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "numpy": _pack_numpy(np.random.get_state()),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(_unpack_numpy(state["numpy"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _pack_numpy(state: tuple) -> dict:
    """A numpy ``RandomState.get_state()`` tuple as tensors and plain values."""
    _, keys, pos, has_gauss, cached = state
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _unpack_numpy(state: dict) -> tuple:
    return (
        "MT19937",
        state["keys"].numpy().astype(np.uint32),
        state["pos"],
        state["has_gauss"],
        state["cached"],
    )


def random_transforms(transforms: Iterable) -> list[Randomizable]:
    """Every MONAI ``Randomizable`` in ``transforms`` (nested ``Compose`` chains and transforms held as
    attributes included), in a fixed depth-first order."""
    found: list[Randomizable] = []
    seen: set[int] = set()
    stack = list(transforms)[::-1]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Randomizable):
            found.append(item)
        children = list(getattr(item, "transforms", None) or ())
        children += (
            [v for v in vars(item).values() if isinstance(v, Randomizable)]
            if hasattr(item, "__dict__")
            else []
        )
        stack.extend(children[::-1])
    return found


class TrainingState:
    """Everything besides networks, optimisers and the engine's counters that a resumed run needs to continue
    exactly as an uninterrupted one; put it in the training checkpoint's ``save_dict``/``load_dict``.

    Kept: the torch/numpy/python global RNGs (:class:`RNGState`), the random state of every random transform
    and mask generator in ``transforms``, the evaluator's best metric and its epoch, and the list of best
    models of each key-metric ``savers`` entry (so a resumed run never overwrites the best model with a worse
    one). Validation draws from the global RNGs too (a DataLoader iterator takes a seed): the evaluator's runs
    are made to leave them as they found them, so the training stream is the same whether or not, and
    whenever, validation ran. Only tensors and plain values are stored (``weights_only`` loading).

    Args:
        transforms: the training (and validation) transform chains.
        evaluator: the validation engine, if any.
        savers: ``CheckpointSaver`` handlers that keep the best model by a key metric.
    """

    def __init__(
        self, transforms: Sequence = (), evaluator: Engine | None = None, savers: Sequence = ()
    ) -> None:
        self.transforms = random_transforms(transforms)
        self.evaluator = evaluator
        self.savers = [s for s in savers if s._key_metric_checkpoint is not None]
        self.global_rngs = RNGState()
        self._outside_validation: dict | None = None
        if evaluator is not None:
            evaluator.add_event_handler(Events.STARTED, self._stash_global_rngs)
            evaluator.add_event_handler(Events.COMPLETED, self._restore_global_rngs)

    def _stash_global_rngs(self, _: Engine) -> None:
        self._outside_validation = self.global_rngs.state_dict()

    def _restore_global_rngs(self, _: Engine) -> None:
        self.global_rngs.load_state_dict(self._outside_validation)

    def state_dict(self) -> dict:
        state = {
            "rng": self.global_rngs.state_dict(),
            "transforms": [_pack_numpy(t.R.get_state()) for t in self.transforms],
            "savers": [s._key_metric_checkpoint.state_dict() for s in self.savers],
        }
        if self.evaluator is not None:
            best = getattr(self.evaluator.state, "best_metric", -1)
            state["best_metric"] = float(best)
            state["best_metric_epoch"] = int(getattr(self.evaluator.state, "best_metric_epoch", -1))
        return state

    def load_state_dict(self, state: dict) -> None:
        if len(state["transforms"]) != len(self.transforms) or len(state["savers"]) != len(self.savers):
            raise ValueError(
                f"the checkpoint's training state has {len(state['transforms'])} random transforms and "
                f"{len(state['savers'])} best-model savers, this run {len(self.transforms)} and {len(self.savers)}: "
                "resume with the configuration that wrote it."
            )
        self.global_rngs.load_state_dict(state["rng"])
        for transform, transform_state in zip(self.transforms, state["transforms"]):
            transform.R.set_state(_unpack_numpy(transform_state))
        for saver, saver_state in zip(self.savers, state["savers"]):
            saver.load_state_dict(saver_state)
        if self.evaluator is not None and "best_metric" in state:
            self.evaluator.state.best_metric = state["best_metric"]
            self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
