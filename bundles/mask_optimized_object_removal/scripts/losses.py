"""The object-removal paper's losses that ``common.losses`` does not have (Shimosato & Ukita):

- :class:`MaskExpansionLoss`: a boundary loss whose signed distance map is shifted by alpha (in pixels), and
  :class:`NormalisedMaskExpansionLoss`, the paper's form: the distance normalised to [-1, 1], alpha in those
  units (0.03);
- :class:`HoleNormalisedL1Loss`: EdgeConnect's L1 divided by the mask's share of the image;
- :class:`SegmenterLoss`: Dice + cross-entropy on the object channel and the segmentation-map channels.
"""

from __future__ import annotations

import torch
from monai.losses import BoundaryLoss, DiceCELoss
from torch import nn

from common.checks import check_binary_mask, check_finite

__all__ = ["HoleNormalisedL1Loss", "MaskExpansionLoss", "NormalisedMaskExpansionLoss", "SegmenterLoss"]


class MaskExpansionLoss(BoundaryLoss):
    """Boundary loss (Kervadec et al. 2019) with the signed distance shifted: mean(p * (phi - alpha)).

    phi is MONAI's signed distance of the target mask (``BoundaryLoss.compute_distance_map``, MONAI 1.6.1:
    <= 0 inside the mask, 0 on its inner boundary, the Euclidean distance in pixels outside). Minimising
    ``p * (phi - alpha)`` rewards predicted probability wherever phi < alpha, i.e. inside the mask *and* in a
    band of ~alpha pixels around it, so the predicted mask expands the target by alpha.

    Args:
        alpha: expansion in pixels (from the paper's config; no default on purpose).
        sigmoid: apply a sigmoid to the prediction (pass logits); otherwise probabilities are expected.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` as in MONAI.

    The target must be binary, non-empty and not all ones (a boundary must exist); the prediction and
    target are (B, N, H, W[, D]).
    """

    def __init__(self, alpha: float, sigmoid: bool = False, reduction: str = "mean") -> None:
        super().__init__(sigmoid=sigmoid, reduction=reduction)
        self.alpha = float(alpha)

    @torch.no_grad()
    def compute_distance_map(self, target: torch.Tensor) -> torch.Tensor:
        return super().compute_distance_map(target) - self.alpha

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape != target.shape:
            raise ValueError(
                f"input and target shapes differ: {tuple(input.shape)} vs {tuple(target.shape)}."
            )
        check_finite("input", input)
        check_binary_mask(target, "target")
        flat = target.reshape(target.shape[0] * target.shape[1], -1)
        if not (flat.any(dim=1).all() and (~flat.bool()).any(dim=1).all()):
            raise ValueError(
                "every target mask must have both hole and known pixels (no empty or all-ones mask)."
            )
        return super().forward(input, target)


class NormalisedMaskExpansionLoss(MaskExpansionLoss):
    """Mask expansion loss of Shimosato & Ukita: mean(p * (phi / max|phi| - alpha)).

    phi is MONAI's signed distance of the true mask (<= 0 inside, pixels outside), divided per image by its
    largest magnitude so that it lies in [-1, 1], then shifted by ``alpha`` (the paper: 0.03). Probability is
    rewarded inside the mask and in a band of ``alpha * max|phi|`` pixels around it, so the predicted mask grows
    just beyond the object; the band scales with the image (about 5 px for a central object on 256x256).
    """

    def __init__(self, alpha: float = 0.03, sigmoid: bool = False, reduction: str = "mean") -> None:
        super().__init__(alpha=alpha, sigmoid=sigmoid, reduction=reduction)

    @torch.no_grad()
    def compute_distance_map(self, target: torch.Tensor) -> torch.Tensor:
        phi = BoundaryLoss.compute_distance_map(self, target)
        scale = phi.abs().flatten(2).amax(dim=2).clamp_min(1e-6)
        return phi / scale.reshape(*scale.shape, *([1] * (phi.ndim - 2))) - self.alpha


class HoleNormalisedL1Loss(nn.Module):
    """EdgeConnect's L1: mean |output - target| over all elements divided by the mean of the mask.

    Equals sum |output - target| / (C * #hole pixels): on a composite it is the mean error per hole pixel,
    whatever the object's size. The mask (B, 1 or C, H, W) must be binary and not empty.
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if output.shape != target.shape:
            raise ValueError(
                f"output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}."
            )
        check_binary_mask(mask)
        hole = mask.float().mean()
        if hole == 0:
            raise ValueError("the mask is empty: no hole to normalise the L1 by.")
        return torch.mean(torch.abs(output - target.detach())) / hole


class SegmenterLoss(nn.Module):
    """Segmenter loss on (B, 1 + K, H, W) logits: sigmoid Dice + BCE on channel 0 (object) and softmax
    Dice + CE on channels 1..K (segmentation map), weighted ``object_weight`` and ``segmap_weight``.

    The target is (B, 2, H, W): the object mask and the class index map (0..K-1).
    """

    def __init__(self, object_weight: float = 1.0, segmap_weight: float = 1.0) -> None:
        super().__init__()
        self.object_weight, self.segmap_weight = float(object_weight), float(segmap_weight)
        self.object_loss = DiceCELoss(sigmoid=True)
        self.segmap_loss = DiceCELoss(softmax=True, to_onehot_y=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] < 3:
            raise ValueError(f"logits must be (B, 1 + K, H, W) with K >= 2, got {tuple(logits.shape)}.")
        if target.shape[0] != logits.shape[0] or target.shape[1] != 2 or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"target must be (B, 2, H, W) (object mask, class index) matching {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}."
            )
        classes = target[:, 1:]
        if classes.min() < 0 or classes.max() > logits.shape[1] - 2:
            raise ValueError(f"class indices must be in 0..{logits.shape[1] - 2}.")
        check_binary_mask(target[:, :1], "object mask")
        terms = self.object_weight * self.object_loss(logits[:, :1], target[:, :1].float())
        return terms + self.segmap_weight * self.segmap_loss(logits[:, 1:], classes.long())
