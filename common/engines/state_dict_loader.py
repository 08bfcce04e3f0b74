"""``StateDictLoader``: load a bundle's ``models/model.pt`` into its inference network, or fail clearly.

MONAI's ``CheckpointLoader`` disabled with ``"$not os.path.exists(...)"`` silently runs random weights when the
file is missing, and its shape-mismatch error does not say what to do. This handler refuses both, unless the
config opts into random weights (``allow_random_weights``, for smoke tests of a bundle without weights).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

import torch
from ignite.engine import Engine, Events

__all__ = ["StateDictLoader", "UnreadableCheckpointError", "exit_on_bad_checkpoint", "read_state_dict"]

PAPER_WIDTH_OVERRIDE = "configs/inference_paper_width.json"
DEFAULT_HINT = (
    "Get weights by training the bundle (its docs/README.md gives the training command, e.g. "
    "`python -m monai.bundle run training --config_file configs/train.json`) and saving the inference "
    "network's state dict there, or restore the shipped demo weights models/model.pt (from the repository or "
    "the packed bundle zip)."
)


class UnreadableCheckpointError(ValueError):
    """A weights file that exists but is not a readable state dict (garbage bytes, pickled objects, ...)."""


@contextlib.contextmanager
def exit_on_bad_checkpoint() -> Iterator[None]:
    """Turn a missing or unreadable checkpoint into ``SystemExit`` with ONE line naming the path.

    MONAI's bundle CLI wraps every exception in "Failed to evaluate ConfigExpression", so the cause (and the
    path) is buried in the traceback; ``SystemExit`` passes through it and is what stderr ends with.
    """
    try:
        yield
    except (FileNotFoundError, UnreadableCheckpointError) as error:
        raise SystemExit(" ".join(str(error).split())) from error


def read_state_dict(path: str | os.PathLike, map_location=None) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (a bare state dict, or ``{"model": state_dict, ...}`` as MONAI checkpoints hold),
    read with ``torch.load(weights_only=True)`` so no pickled code runs."""
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError or RuntimeError for non-weights content
        raise UnreadableCheckpointError(
            f"{path} cannot be read with torch.load(weights_only=True) ({error}); save the network's state dict "
            f"only: torch.save(network.state_dict(), path)"
        ) from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):  # a MONAI training checkpoint
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UnreadableCheckpointError(
            f"{path} is not a state dict (a mapping of names to tensors, or {{'model': state_dict}}); "
            f"save it with torch.save(network.state_dict(), path)"
        )
    return dict(loaded)


def architecture_mismatch(network_state: Mapping, checkpoint_state: Mapping) -> list[str]:
    """Lines describing keys missing from, unexpected in, or shaped differently in the checkpoint."""
    missing = [k for k in network_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in network_state]
    reshaped = [
        f"{k}: checkpoint {tuple(checkpoint_state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in network_state.items()
        if k in checkpoint_state and tuple(checkpoint_state[k].shape) != tuple(v.shape)
    ]
    lines = []
    for label, items in (("shape differs", reshaped), ("missing", missing), ("unexpected", unexpected)):
        if items:
            lines.append(f"{len(items)} {label}, e.g. {', '.join(items[:3])}")
    return lines


class StateDictLoader:
    """Ignite handler loading a state dict into ``network`` when the engine starts (as ``CheckpointLoader``).

    Args:
        load_path: the weights file (a bare state dict or ``{"model": state_dict}``).
        network: the module to load into (``DataParallel``/``DDP`` wrappers are unwrapped).
        map_location: passed to ``torch.load``.
        allow_random_weights: when the file is missing, warn and keep the network's random initialisation
            instead of raising (outputs are then meaningless; for smoke tests only).
        hint: how to get the weights, appended to the missing-file error.
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        network: torch.nn.Module,
        map_location=None,
        allow_random_weights: bool = False,
        hint: str = DEFAULT_HINT,
    ) -> None:
        self.load_path = str(load_path)
        self.network = network
        self.map_location = map_location
        self.allow_random_weights = bool(allow_random_weights)
        self.hint = hint
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        """Load as the engine starts; a missing or unreadable file ends the run with one line naming it."""
        with exit_on_bad_checkpoint():
            self.load()

    def load(self) -> bool:
        """Load the weights; ``False`` when the file is missing and random weights are allowed."""
        if not os.path.isfile(self.load_path):
            if self.allow_random_weights:
                self.logger.warning(
                    f"{self.load_path} not found: running with RANDOM weights (allow_random_weights=true); "
                    f"outputs are meaningless."
                )
                return False
            raise FileNotFoundError(
                f"No network weights at {self.load_path}. {self.hint} To run with random weights anyway "
                f"(smoke test only), pass --allow_random_weights true."
            )
        state = read_state_dict(self.load_path, self.map_location)
        network = self.network
        if isinstance(network, torch.nn.DataParallel | torch.nn.parallel.DistributedDataParallel):
            network = network.module
        mismatch = architecture_mismatch(network.state_dict(), state)
        if mismatch:
            raise ValueError(
                f"{self.load_path} was trained with a different architecture than this config's network_def "
                f"({'; '.join(mismatch)}). inference.json builds the demo (quick.json) width; for weights trained "
                f"at the paper's width (train.json alone) add {PAPER_WIDTH_OVERRIDE}: --config_file "
                f"\"['configs/inference.json','{PAPER_WIDTH_OVERRIDE}']\" (and drop it for demo-width "
                f"weights), or set the width ids (channels, filters, ...) to the values the weights were "
                f"trained with."
            )
        network.load_state_dict(state, strict=True)
        self.logger.info(f"loaded weights from {self.load_path}")
        return True
