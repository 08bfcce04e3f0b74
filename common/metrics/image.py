"""Image-quality metrics for inpainting, on the whole image or restricted to a region of interest (RoI).

Every metric is a MONAI ``CumulativeIterationMetric``: call it per batch, ``aggregate()`` over the dataset
(``reduction`` as in MONAI, NaNs ignored), usable in evaluators through ``monai.handlers.IgniteMetricHandler``.

RoI rule (``roi`` argument), with mask 1 = hole:

- ``"image"``: every pixel;
- ``"hole"``: only pixels with mask 1;
- ``"bbox"``: every pixel of the axis-aligned bounding box of the hole (per image).

Pixel-wise metrics (MSE, MAE, PSNR, Pearson) average over the RoI's pixels and channels. Windowed
metrics (SSIM, UQI) average their local map over the windows lying *entirely* inside the RoI, so pixels
outside the RoI never influence the value; for ``"bbox"`` this equals cropping the box and computing the
metric on the crop. An RoI without a single full window raises ValueError.

The mask reaches a metric as ``metric(y_pred, y, mask=mask)``, or by name inside ``y``: the inpainting target
``{"image": ground truth, "mask": mask}`` (:func:`common.masking.inpainting_target`, or a decollated list of
them), which is how it travels through ``IgniteMetricHandler``'s ``(y_pred, y)`` interface: the ``label`` of
:class:`common.engines.InpaintingBatchPreparer`, or :func:`from_engine_with_mask` for engine outputs that keep
the mask under its own key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from monai.metrics.regression import compute_ssim_and_cs
from monai.utils import MetricReduction, ensure_tuple_rep

from ..checks import check_binary_mask, check_image_pair
from ..masking import inpainting_target, split_inpainting_target
from .base import ReducedMetric

__all__ = [
    "ROI_MODES",
    "roi_region",
    "from_engine_with_mask",
    "RoIImageMetric",
    "MSEMetric",
    "MAEMetric",
    "PSNRMetric",
    "PearsonMetric",
    "SSIMMetric",
    "UQIMetric",
]

ROI_MODES = ("image", "hole", "bbox")


def roi_region(mask: torch.Tensor, roi: str) -> torch.Tensor:
    """Binary (B, 1, *S) region for an RoI mode, from a (B, 1, *S) hole mask; raises on an empty RoI."""
    if roi not in ROI_MODES:
        raise ValueError(f"roi must be one of {ROI_MODES}, got {roi!r}.")
    if roi == "image":
        return torch.ones_like(mask)
    if mask.shape[1] != 1:
        raise ValueError(f"RoI metrics need a 1-channel mask, got shape {tuple(mask.shape)}.")
    check_binary_mask(mask)
    flat = mask.reshape(mask.shape[0], -1)
    empty = (flat.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"empty RoI: the mask of batch item(s) {empty} has no hole pixel.")
    if roi == "hole":
        return mask
    region = torch.zeros_like(mask)
    for b in range(mask.shape[0]):
        coords = mask[b, 0].nonzero()
        lo, hi = coords.min(dim=0).values, coords.max(dim=0).values
        region[(b, 0, *[slice(int(a), int(z) + 1) for a, z in zip(lo, hi)])] = 1
    return region


def from_engine_with_mask(
    pred_key: str = "pred", label_key: str = "label", mask_key: str = "mask"
) -> Callable[[dict | list], tuple]:
    """``output_transform`` for ``IgniteMetricHandler`` on an engine output that keeps the mask under its own
    key (:class:`common.engines.InpaintingGanTrainer`): ``(pred, {"image": label, "mask": mask})``.

    Works on a batched output dict or on MONAI's decollated list of per-image dicts. With
    :class:`common.engines.InpaintingBatchPreparer` the ``label`` already is that target: use MONAI's
    ``from_engine(["pred", "label"])``.
    """

    def _transform(output):
        if isinstance(output, dict):
            return output[pred_key], inpainting_target(output[label_key], output[mask_key])
        return [o[pred_key] for o in output], [inpainting_target(o[label_key], o[mask_key]) for o in output]

    return _transform


def _roi_mean(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-image mean of (B, C, *S) ``values`` over the region's pixels and all channels: (B, 1)."""
    weights = region.expand_as(values)
    dims = tuple(range(1, values.ndim))
    return ((values * weights).sum(dim=dims) / weights.sum(dim=dims))[:, None]


def _window_inside_roi(
    y: torch.Tensor, region: torch.Tensor, size: int, metric: str
) -> tuple[tuple[int, ...], torch.Tensor]:
    """The cubic window of side ``size`` for ``y``'s spatial dims and the (B, 1, *S') indicator of the 'valid'
    window positions whose window lies entirely inside the region."""
    window = ensure_tuple_rep(size, y.ndim - 2)
    if any(s < w for s, w in zip(y.shape[2:], window)):
        raise ValueError(f"image {tuple(y.shape[2:])} smaller than the {metric} window {window}.")
    pool = F.avg_pool2d if region.ndim == 4 else F.avg_pool3d
    inside = pool(region.double(), kernel_size=window, stride=1) > 1 - 1e-9
    if not inside.reshape(region.shape[0], -1).any(dim=1).all():
        raise ValueError(f"the RoI of some image holds no full {window} window; use a larger RoI or window.")
    return window, inside


class RoIImageMetric(ReducedMetric):
    """Base of the image metrics: input checks, the mask by name, RoI, reduction (see the module docstring).

    Subclasses implement ``_compute_roi(y_pred, y, region) -> (B, 1)``.
    """

    def __init__(
        self,
        roi: str = "image",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        if roi not in ROI_MODES:
            raise ValueError(f"roi must be one of {ROI_MODES}, got {roi!r}.")
        self.roi = roi

    def __call__(self, y_pred, y=None, mask=None):  # type: ignore[override]
        """``y``: the ground truth (tensor or list) with ``mask`` (same form) when the RoI needs it, or the
        inpainting target(s) ``{"image", "mask"}`` carrying both."""
        if isinstance(y, Mapping) or (isinstance(y, (list, tuple)) and y and isinstance(y[0], Mapping)):
            if mask is not None:
                raise ValueError("pass the mask either inside the inpainting target y or as mask=, not both.")
            y, mask = split_inpainting_target(y)
        return super().__call__(y_pred, y, mask=mask)

    def _compute_list(self, y_pred, y=None, mask=None):  # type: ignore[override]
        """Per-item computation of channel-first lists (MONAI's passes one ``mask`` to every item)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} needs a ground truth `y`.")
        masks = [None] * len(y_pred) if mask is None else [m.detach()[None] for m in mask]
        values = [self._compute_tensor(p.detach()[None], t.detach()[None], m) for p, t, m in zip(y_pred, y, masks)]
        return torch.cat(values)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, mask=None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError(f"{type(self).__name__} needs a ground truth `y`.")
        check_image_pair(y_pred, y, names=("y_pred", "y"))
        if mask is None:
            if self.roi != "image":
                raise ValueError(
                    f"roi={self.roi!r} needs the mask: pass mask=... or the inpainting target "
                    f"{{'image', 'mask'}} as y."
                )
            mask = torch.ones_like(y[:, :1])
        region = roi_region(mask.to(y.dtype), self.roi)
        return self._compute_roi(
            y_pred.to(torch.float64), y.to(torch.float64), region.to(torch.float64)
        ).float()

    def _compute_roi(self, y_pred: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _RescaledErrorMetric(RoIImageMetric):
    """(report_range / data_range)^power * mean(|y_pred - y|^power) over the RoI: the error on a stated
    intensity scale (inputs in [0, ``data_range``] read as [0, ``report_range``])."""

    power = 1

    def __init__(self, data_range: float, report_range: float, roi: str = "image", **kwargs) -> None:
        super().__init__(roi, **kwargs)
        self.scale = float(report_range) / float(data_range)

    def _compute_roi(self, y_pred, y, region):
        return self.scale**self.power * _roi_mean(torch.abs(y_pred - y) ** self.power, region)


class MSEMetric(_RescaledErrorMetric):
    """Mean squared error over the RoI on the 0-``report_range`` scale (default 255: the papers report MSE
    on 0-255), i.e. (report_range / data_range)^2 * mean((y_pred - y)^2)."""

    power = 2

    def __init__(self, data_range: float = 1.0, report_range: float = 255.0, roi: str = "image", **kwargs):
        super().__init__(data_range, report_range, roi, **kwargs)


class MAEMetric(_RescaledErrorMetric):
    """Mean absolute error over the RoI, rescaled by report_range / data_range (default 1: input scale)."""

    def __init__(self, data_range: float = 1.0, report_range: float = 1.0, roi: str = "image", **kwargs):
        super().__init__(data_range, report_range, roi, **kwargs)


class PSNRMetric(RoIImageMetric):
    """PSNR = 10 log10(max_val^2 / MSE) with the MSE over the RoI (dB; inf for identical images).

    On the whole image it equals ``monai.metrics.PSNRMetric`` (checked in the tests); MONAI's has no RoI.
    ``max_val=None`` takes each ground-truth image's own maximum (over the whole image), as papers on
    standardised MRI do where no fixed intensity range exists.
    """

    def __init__(self, max_val: float | None = 1.0, roi: str = "image", **kwargs) -> None:
        super().__init__(roi, **kwargs)
        self.max_val = None if max_val is None else float(max_val)

    def _compute_roi(self, y_pred, y, region):
        mse = _roi_mean((y_pred - y) ** 2, region)
        max_val = self.max_val if self.max_val is not None else y.flatten(1).amax(dim=1, keepdim=True)
        return 10.0 * torch.log10(max_val**2 / mse)


class PearsonMetric(RoIImageMetric):
    """Pearson correlation between prediction and ground truth over the RoI's pixels (channels pooled).

    NaN (ignored by the reduction) when either image is constant on the RoI.
    """

    def _compute_roi(self, y_pred, y, region):
        dx = y_pred - _roi_mean(y_pred, region).view(-1, *[1] * (y.ndim - 1))
        dy = y - _roi_mean(y, region).view(-1, *[1] * (y.ndim - 1))
        cov, var_x, var_y = (_roi_mean(a * b, region) for a, b in ((dx, dy), (dx, dx), (dy, dy)))
        denominator = torch.sqrt(var_x * var_y)
        return torch.where(denominator > 0, cov / denominator, torch.full_like(cov, float("nan")))


class SSIMMetric(RoIImageMetric):
    """SSIM (Wang et al. 2004) using MONAI's ``compute_ssim_and_cs`` map (2D or 3D, inferred from the input).

    Defaults follow MONAI / the paper: Gaussian 11-wide window, sigma 1.5, K1 0.01, K2 0.03. The map is
    averaged over the windows inside the RoI (module docstring); on the whole image this equals
    ``monai.metrics.SSIMMetric``.
    """

    def __init__(
        self,
        data_range: float = 1.0,
        kernel_type: str = "gaussian",
        win_size: int = 11,
        kernel_sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        roi: str = "image",
        **kwargs,
    ) -> None:
        super().__init__(roi, **kwargs)
        self.data_range, self.kernel_type, self.win_size = float(data_range), kernel_type, int(win_size)
        self.kernel_sigma, self.k1, self.k2 = float(kernel_sigma), float(k1), float(k2)

    def _compute_roi(self, y_pred, y, region):
        spatial = y.ndim - 2
        window, inside = _window_inside_roi(y, region, self.win_size, "SSIM")
        ssim_map, _ = compute_ssim_and_cs(
            y_pred,
            y,
            spatial_dims=spatial,
            kernel_size=window,
            kernel_sigma=ensure_tuple_rep(self.kernel_sigma, spatial),
            data_range=self.data_range,
            kernel_type=self.kernel_type,
            k1=self.k1,
            k2=self.k2,
        )
        return _roi_mean(ssim_map.double(), inside.double())


class UQIMetric(RoIImageMetric):
    """Universal quality index Q (Wang & Bovik 2002), the sliding-window form of the paper's code.

    Q is computed in every ``window`` x ``window`` (default 8x8, stride 1, uniform weights) window,
    Q_w = 4 cov(x,y) mean(x) mean(y) / ((var(x) + var(y)) (mean(x)^2 + mean(y)^2)), then averaged over
    windows (and channels). Degenerate windows follow the reference code: Q_w = 2 mean(x) mean(y) /
    (mean(x)^2 + mean(y)^2) when both windows are flat, and 1 when the means' denominator is 0.
    2D and 3D (cubic windows).
    """

    def __init__(self, window: int = 8, roi: str = "image", eps: float = 1e-12, **kwargs) -> None:
        super().__init__(roi, **kwargs)
        self.window = int(window)
        self.eps = float(eps)

    def _compute_roi(self, y_pred, y, region):
        spatial = y.ndim - 2
        window, inside = _window_inside_roi(y, region, self.window, "UQI")
        pool = F.avg_pool2d if spatial == 2 else F.avg_pool3d
        mx, my = pool(y_pred, window, stride=1), pool(y, window, stride=1)
        var_x = pool(y_pred * y_pred, window, stride=1) - mx * mx
        var_y = pool(y * y, window, stride=1) - my * my
        cov = pool(y_pred * y, window, stride=1) - mx * my
        var_sum, mean_sq = var_x + var_y, mx * mx + my * my
        scale = pool(y_pred.abs() + y.abs(), window, stride=1) ** 2 + self.eps
        flat = var_sum <= self.eps * scale
        dark = mean_sq <= self.eps
        q = torch.ones_like(mx)
        q = torch.where(flat & ~dark, 2 * mx * my / mean_sq.clamp_min(self.eps), q)
        regular = ~flat & ~dark
        q = torch.where(regular, 4 * cov * mx * my / (var_sum * mean_sq).clamp_min(self.eps**2), q)
        return _roi_mean(q, inside.double())
