"""Perceptual and style losses on frozen VGG features, for the output and the composite image (2D).

Liu et al. (2018) definitions, with composite = output in the hole and ground truth elsewhere:

- perceptual: sum over layers p and images I in {output, composite} of mean|psi_p(I) - psi_p(gt)|
  (L1 divided by the element count of the layer's feature map);
- style: the same with Gram matrices K_p = psi_p^T psi_p / (C_p H_p W_p), i.e. mean|K_p(I) - K_p(gt)|
  (L1 over the C_p x C_p Gram entries divided by C_p^2).

MONAI's ``PerceptualLoss`` downloads its networks from the internet and has no composite/style terms, so
these use :class:`common.networks.vgg.VGGFeatures`, which follows the project's pretrained-weights policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_inpainting_inputs
from ..masking import composite
from ..networks.vgg import VGGFeatures

__all__ = ["gram_matrix", "FeatureLoss", "PerceptualLoss", "StyleLoss"]

FeatureSet = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) features normalised by C*H*W: (N, C, C)."""
    if features.ndim != 4:
        raise ValueError(f"gram_matrix needs (N, C, H, W) features, got shape {tuple(features.shape)}.")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class FeatureLoss(nn.Module):
    """Base of the VGG-feature losses: holds the extractor and the output/composite switches.

    Args:
        feature_extractor: a module mapping (B, C, H, W) images to a list of feature maps; None builds a
            :class:`VGGFeatures` from the remaining arguments.
        arch, layers, weights_path, pretrained, input_range: passed to :class:`VGGFeatures`.
        include_output: add the term for the raw output.
        include_composite: add the term for the composite image.
    """

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        arch: str = "vgg16",
        layers: Sequence[str | int] = ("pool1", "pool2", "pool3"),
        weights_path: str | None = None,
        pretrained: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        include_output: bool = True,
        include_composite: bool = True,
    ) -> None:
        super().__init__()
        if not (include_output or include_composite):
            raise ValueError("at least one of include_output / include_composite must be True.")
        if feature_extractor is None:
            feature_extractor = VGGFeatures(arch, layers, weights_path, pretrained, input_range)
        self.feature_extractor = feature_extractor
        self.include_output = include_output
        self.include_composite = include_composite

    def features(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> FeatureSet:
        """Per-layer features of (output, composite, target), from one batched forward pass."""
        check_inpainting_inputs(output, target, mask, spatial_dims=(2,))
        target = target.detach()
        stacked = torch.cat([output, composite(output, target, mask), target], dim=0)
        per_layer = [f.chunk(3, dim=0) for f in self.feature_extractor(stacked)]
        f_out, f_comp, f_gt = ([layer[i] for layer in per_layer] for i in range(3))
        return f_out, f_comp, f_gt

    def layer_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_from_features(self, f_out, f_comp, f_gt) -> torch.Tensor:
        """Sum over layers of the chosen images' distances to the ground truth."""
        sources = ([f_out] if self.include_output else []) + ([f_comp] if self.include_composite else [])
        loss = f_gt[0].new_zeros(())
        for feats in sources:
            for a, b in zip(feats, f_gt):
                loss = loss + self.layer_distance(a, b)
        return loss

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss_from_features(*self.features(output, target, mask))


class PerceptualLoss(FeatureLoss):
    """Perceptual L1 (per-layer mean) for output and composite, see the module docstring."""

    def layer_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.mean(torch.abs(a - b))


class StyleLoss(FeatureLoss):
    """Style L1 between Gram matrices normalised by C*H*W, for output and composite."""

    def layer_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.mean(torch.abs(gram_matrix(a) - gram_matrix(b)))
