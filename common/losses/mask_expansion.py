"""Mask-expansion loss: a boundary loss whose signed distance map is shifted by alpha (phi - alpha)."""

from __future__ import annotations

import torch
from monai.losses import BoundaryLoss

from .utils import check_binary_mask, check_finite

__all__ = ["MaskExpansionLoss"]


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
