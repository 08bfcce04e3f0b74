"""``TensorBoardPanels``: image panels of one validation sample (network input channels, target, prediction).

MONAI's ``TensorBoardImageHandler`` takes its "input" from the data batch, but an inpainting network's input
(masked image, mask, edge map, ...) is built by the batch preparer and only appears in the evaluator's output
under ``image``; this handler draws every channel of the chosen output keys, 3D volumes by their middle slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from monai.handlers import TensorBoardHandler

__all__ = ["TensorBoardPanels"]


def _item(value, index: int):
    """Sample ``index`` of a batched tensor, or of every tensor of a dict of them."""
    return {k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index]


class TensorBoardPanels(TensorBoardHandler):
    """Write ``<tag>/<key>_<channel>`` grey-level images of sample ``index`` at the end of each evaluator run.

    Args:
        summary_writer: an existing ``SummaryWriter``; or ``log_dir`` to create one.
        log_dir: TensorBoard folder when no writer is given.
        keys: keys of the (decollated or batched) evaluator output to draw; each channel is a panel, and each
            entry of a dict value (the inpainting target ``label``: ``image``, ``mask``) a ``<key>_<entry>``
            panel set.
        index: which sample of the last batch.
        max_channels: at most this many channels per key.
        tag: prefix of the image tags.
    """

    def __init__(
        self,
        summary_writer=None,
        log_dir: str = "./runs",
        keys: Sequence[str] = ("image", "label", "pred"),
        index: int = 0,
        max_channels: int = 4,
        tag: str = "val",
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.keys = tuple(keys)
        self.index = index
        self.max_channels = max_channels
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def sample(self, output) -> dict:
        """The ``index``-th sample of a decollated (list of dicts) or batched (dict of tensors) output."""
        if isinstance(output, Sequence):
            return output[self.index]
        drawable = {key: value for key, value in output.items() if isinstance(value, (dict, torch.Tensor))}
        return {key: _item(value, self.index) for key, value in drawable.items()}

    def __call__(self, engine: Engine) -> None:
        sample = self.sample(engine.state.output)
        missing = [key for key in self.keys if key not in sample]
        if missing:
            raise KeyError(f"TensorBoardPanels: the evaluator output has no {missing}; it has {sorted(sample)}")
        panels = {}
        for key in self.keys:
            value = sample[key]
            entries = value if isinstance(value, dict) else {None: value}
            panels.update({key if k is None else f"{key}_{k}": v for k, v in entries.items()})
        for key, value in panels.items():
            value = torch.as_tensor(value).detach().float().cpu()
            for channel in range(min(value.shape[0], self.max_channels)):
                plane = value[channel]
                while plane.dim() > 2:  # 3D: the middle slice of the last axis
                    plane = plane[..., plane.shape[-1] // 2]
                low, high = plane.min(), plane.max()
                plane = (plane - low) / (high - low) if high > low else torch.zeros_like(plane)
                self._writer.add_image(f"{self.tag}/{key}_{channel}", plane[None], engine.state.epoch)
        self._writer.flush()
