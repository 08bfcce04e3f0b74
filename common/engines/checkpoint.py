"""Checkpoint helpers: an atomic ``CheckpointSaver`` and a checkpointable random-number-generator state."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import numpy as np
import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver", "RNGState"]


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


class RNGState:
    """The torch (CPU and CUDA), numpy and python global RNG states as a checkpointable object.

    Put it in a checkpoint's ``save_dict`` so a resumed run draws the same random numbers (dropout,
    in-loop augmentation) as an uninterrupted one. Only tensors and plain values are stored, so MONAI's
    ``CheckpointLoader`` (``weights_only=True``) reads it.
    """

    def state_dict(self) -> dict:
        _, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos),
            "numpy_has_gauss": int(has_gauss),
            "numpy_cached_gaussian": float(cached),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        keys = state["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached_gaussian"])
        )
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
