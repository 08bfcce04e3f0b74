"""MedGAN's VGG-19 style loss (Armanious et al. 2020), used by ipA-MedGAN.

``common.losses.StyleLoss`` is Liu et al.'s mean-L1 Gram distance on the output and the composite. MedGAN's
style loss (its Eqs. for Gr_j and L_style, which ipA-MedGAN reuses) is a squared Frobenius distance:

    Gr_j(x)[m, n] = 1 / (h_j w_j d_j) * sum_{h, w} F_j(x)[h, w, m] F_j(x)[h, w, n]
    L_style       = sum_j w_j * 1 / (4 d_j^2) * || Gr_j(y) - Gr_j(y_hat) ||_F^2,

for the j-th VGG-19 feature map F_j with d_j channels on an h_j x w_j grid (``common.losses.gram_matrix`` is
exactly Gr_j), computed on the generator's output only (the generator is blind: there is no composite). This is
the formula as MedGAN writes it, implemented literally because the issue asks for the 1/(4 d^2) normalisation.
Note what it means: Gatys et al.'s E_l = 1 / (4 d^2 (hw)^2) * ||F F^T - A||^2 (unnormalised Gram) equals
1/4 * ||Gr - Gr'||^2 with Gram normalised by h w d, so MedGAN's term is Gatys's times a further 1 / d_j^2. The
term is therefore tiny (about 3e-7 for an untrained generator, see the bundle README) and dominated by the
shallowest layer (relu1_1, d = 64: 97 % of it; relu4_1, d = 512, weighs 64x less than under Gatys). The bundle
compensates with ``loss_weights#style``; ``layer_weights = [d_j ** 2]`` gives Gatys's normalisation instead.
It reuses ``common.networks.VGGFeatures`` and so the project's pretrained-weights policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.checks import check_image_pair
from common.losses import gram_matrix
from common.networks import VGGFeatures

__all__ = ["GramStyleLoss", "loss_terms"]


class GramStyleLoss(nn.Module):
    """``forward(output, target, mask=None)``: the MedGAN style loss above, averaged over the batch.

    Args:
        layers: VGG-19 layers (default: Gatys's relu1_1, relu2_1, relu3_1, relu4_1; MedGAN does not list its own).
        layer_weights: w_j, one per layer (default 1 each).
        weights_path, pretrained, input_range, feature_extractor: see :class:`common.networks.VGGFeatures`.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
        layer_weights: Sequence[float] | None = None,
        weights_path: str | None = None,
        pretrained: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        feature_extractor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layer_weights = (
            [1.0] * len(layers) if layer_weights is None else [float(w) for w in layer_weights]
        )
        if len(self.layer_weights) != len(layers):
            raise ValueError(f"{len(layers)} layers but {len(self.layer_weights)} layer_weights.")
        self.features = feature_extractor or VGGFeatures(
            "vgg19", layers, weights_path, pretrained, input_range
        )

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image_pair(output, target)
        if output.ndim != 4:
            raise ValueError(f"the style loss needs 2D (B, C, H, W) images, got shape {tuple(output.shape)}.")
        feats = self.features(torch.cat([output, target.detach()], dim=0))
        loss = output.new_zeros(())
        for weight, f in zip(self.layer_weights, feats):
            gram_out, gram_gt = gram_matrix(f).chunk(2, dim=0)
            depth = f.shape[1]
            loss = loss + weight * ((gram_out - gram_gt) ** 2).sum(dim=(1, 2)).mean() / (4 * depth**2)
        return loss


def loss_terms(output: list[dict]) -> dict:
    """``output_transform`` logging every loss term of the GAN engine's output (``loss``, ``g_*``, ``d_*``; the
    engine stores the batch's terms in each decollated item): how ``loss_terms.json`` sizes the loss weights."""
    return {key: value for key, value in output[0].items() if key == "loss" or key.startswith(("g_", "d_"))}
