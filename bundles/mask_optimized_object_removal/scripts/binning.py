"""Results binned by mask ratio (hole pixels / image pixels), as in the object-removal paper."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from monai.metrics import CumulativeIterationMetric

from common.checks import check_binary_mask
from common.masking import split_inpainting_target

__all__ = ["MaskRatioBinnedMetric"]


class MaskRatioBinnedMetric(CumulativeIterationMetric):
    """Wrap a per-image metric and report its mean per mask-ratio bin.

    A bin is the half-open interval (lo, hi] of consecutive ``bin_edges`` (default 0-10, 10-20, 20-30,
    30-40 %). Images whose ratio falls in no bin are left out of every bin (a warning says how many).
    ``aggregate()`` returns a tensor with one mean per bin (NaN for an empty bin); :meth:`as_dict` labels them.

    The mask arrives like for :class:`common.metrics.RoIImageMetric`: ``mask=`` keyword or inside the
    inpainting target ``y = {"image", "mask"}``; it is passed on to the wrapped metric as ``metric(y_pred, y, mask=mask)`` (metrics that
    do not use it ignore the keyword).

    Args:
        metric: a metric returning one value per image, e.g. ``PSNRMetric(roi="hole")``.
        bin_edges: increasing ratios in [0, 1].
    """

    def __init__(
        self, metric: CumulativeIterationMetric, bin_edges: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4)
    ) -> None:
        self.metric = metric  # set before super().__init__(), which calls reset()
        super().__init__()
        edges = [float(e) for e in bin_edges]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0 or edges[-1] > 1:
            raise ValueError(f"bin_edges must be >= 2 increasing ratios in [0, 1], got {bin_edges!r}.")
        self.bin_edges = edges
        self.bin_labels = [f"{round(100 * a)}-{round(100 * b)}%" for a, b in zip(edges, edges[1:])]

    def __call__(self, y_pred, y=None, mask=None):  # type: ignore[override]
        if isinstance(y, Mapping):
            y, mask = split_inpainting_target(y)
        if mask is None:
            raise ValueError(
                "MaskRatioBinnedMetric needs the mask: pass mask=... or the inpainting target {'image', 'mask'}."
            )
        check_binary_mask(mask)
        values = self.metric(y_pred, y, mask=mask)
        ratios = mask.float().reshape(mask.shape[0], -1).mean(dim=1, keepdim=True)
        self.extend(values.reshape(-1, 1).float(), ratios.to(values.device))
        return values

    def _compute_tensor(self, y_pred, y=None, **kwargs):  # pragma: no cover - __call__ is overridden
        raise NotImplementedError

    def reset(self) -> None:
        super().reset()
        self.metric.reset()

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        buffers = self.get_buffer()
        if not isinstance(buffers, list) or not isinstance(buffers[0], torch.Tensor):
            raise ValueError(
                "MaskRatioBinnedMetric: nothing to aggregate, call the metric on some data first."
            )
        values, ratios = (b.flatten() for b in buffers)
        means, binned = [], torch.zeros_like(ratios, dtype=torch.bool)
        for lo, hi in zip(self.bin_edges, self.bin_edges[1:]):
            inside = (ratios > lo) & (ratios <= hi) & ~torch.isnan(values)
            binned |= (ratios > lo) & (ratios <= hi)
            means.append(values[inside].mean() if inside.any() else values.new_tensor(float("nan")))
        if not binned.all():
            warnings.warn(
                f"{int((~binned).sum())} image(s) have a mask ratio outside {self.bin_edges}; left out.",
                stacklevel=2,
            )
        return torch.stack(means)

    def as_dict(self) -> dict[str, float]:
        """``{"0-10%": mean, ...}`` of :meth:`aggregate`."""
        return dict(zip(self.bin_labels, self.aggregate().tolist()))
