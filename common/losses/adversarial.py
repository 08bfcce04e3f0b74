"""Adversarial, feature-matching and discriminator-feature perceptual losses.

Discriminator output convention (MONAI's): a tensor of logits; or a list/tuple of tensors as returned by
``monai.networks.nets.PatchDiscriminator`` (intermediate features first, logits last); or the pair
``(list of logits, list of feature lists)`` of ``MultiScalePatchDiscriminator``. Logits never go through
an activation before these losses.

Criteria: ``"bce"`` (non-saturating cGAN: the generator maximises log D(fake)), ``"least_squares"``
(LSGAN) and ``"hinge"`` (Lim & Ye / SAGAN). LSGAN reuses ``monai.losses.PatchAdversarialLoss``
(``no_activation_leastsq=True``). BCE and hinge are written here because MONAI's versions differ: its BCE
applies a sigmoid then ``BCELoss``, which autocast refuses on CUDA (we use ``binary_cross_entropy_with_logits``),
and its hinge squashes logits with tanh (we use the standard unbounded hinge).

Generator-side losses are called ``loss(fake_out, real_out)`` and discriminator-side ones
``loss(real_out, fake_out)``; ``requires_real`` tells the engine whether ``real_out`` is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from torch import nn

from .perceptual import gram_matrix

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "discriminator_logits",
    "discriminator_features",
    "GeneratorAdversarialLoss",
    "DiscriminatorAdversarialLoss",
    "FeatureMatchingLoss",
    "DiscriminatorPerceptualLoss",
    "DiscriminatorStyleLoss",
]

ADVERSARIAL_CRITERIA = ("bce", "least_squares", "hinge")


def _is_multiscale(d_out) -> bool:
    return isinstance(d_out, (list, tuple)) and len(d_out) == 2 and isinstance(d_out[0], (list, tuple))


def discriminator_logits(d_out) -> list[torch.Tensor]:
    """The logits map(s) of a discriminator output (one per scale)."""
    if isinstance(d_out, torch.Tensor):
        return [d_out]
    if _is_multiscale(d_out):
        return [o if isinstance(o, torch.Tensor) else o[-1] for o in d_out[0]]
    if isinstance(d_out, (list, tuple)) and d_out and all(isinstance(o, torch.Tensor) for o in d_out):
        return [d_out[-1]]
    raise TypeError(
        f"unrecognised discriminator output of type {type(d_out).__name__}; see the module docstring."
    )


def discriminator_features(d_out) -> list[torch.Tensor]:
    """Intermediate feature maps of a discriminator output (all scales concatenated), logits excluded."""
    if _is_multiscale(d_out):
        return [f for scale in d_out[1] for f in scale[:-1]]
    if isinstance(d_out, (list, tuple)) and all(isinstance(o, torch.Tensor) for o in d_out):
        return list(d_out[:-1])
    raise TypeError(
        "feature losses need intermediate discriminator features: a list (features..., logits) as returned by "
        f"monai's PatchDiscriminator, got {type(d_out).__name__}."
    )


def _check_criterion(criterion: str) -> str:
    if criterion not in ADVERSARIAL_CRITERIA:
        raise ValueError(f"criterion must be one of {ADVERSARIAL_CRITERIA}, got {criterion!r}.")
    return criterion


class _AdversarialBase(nn.Module):
    def __init__(self, criterion: str = "bce") -> None:
        super().__init__()
        self.criterion = _check_criterion(criterion)
        self._lsgan = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    def _term(
        self, logits: list[torch.Tensor], target_is_real: bool, for_discriminator: bool
    ) -> torch.Tensor:
        """Mean over scales of the criterion for logits that should look real/fake."""
        if self.criterion == "least_squares":
            return self._lsgan(
                list(logits), target_is_real=target_is_real, for_discriminator=for_discriminator
            )
        values = []
        for x in logits:
            if self.criterion == "bce":
                values.append(
                    F.binary_cross_entropy_with_logits(x, torch.full_like(x, float(target_is_real)))
                )
            elif for_discriminator:
                values.append(F.relu(1 - x).mean() if target_is_real else F.relu(1 + x).mean())
            else:
                values.append(-x.mean())
        return torch.stack(values).mean()


class GeneratorAdversarialLoss(_AdversarialBase):
    """Generator side: make D(fake) look real. ``forward(fake_out, real_out=None)``."""

    requires_real = False

    def forward(self, fake_out, real_out=None) -> torch.Tensor:
        return self._term(discriminator_logits(fake_out), target_is_real=True, for_discriminator=False)


class DiscriminatorAdversarialLoss(_AdversarialBase):
    """Discriminator side: real -> real, fake -> fake, averaged: 0.5 * (L(real) + L(fake)).

    ``forward(real_out, fake_out)``; ``fake_out`` must come from a detached generator output.
    """

    def forward(self, real_out, fake_out) -> torch.Tensor:
        real = self._term(discriminator_logits(real_out), target_is_real=True, for_discriminator=True)
        fake = self._term(discriminator_logits(fake_out), target_is_real=False, for_discriminator=True)
        return 0.5 * (real + fake)


class FeatureMatchingLoss(nn.Module):
    """L1 between discriminator features of fake and real inputs (pix2pixHD): sum_i w_i mean|D_i(fake) - D_i(real)|.

    The real features are detached: the loss trains the generator only. ``forward(fake_out, real_out)``.

    Args:
        layers: indices into the intermediate feature list (see :func:`discriminator_features`); None = all.
        layer_weights: one weight per used layer; None = 1 / number of layers (a mean over layers).
    """

    requires_real = True

    def __init__(
        self, layers: Sequence[int] | None = None, layer_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.layers = None if layers is None else list(layers)
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        if (
            self.layers is not None
            and self.layer_weights is not None
            and len(self.layers) != len(self.layer_weights)
        ):
            raise ValueError(f"{len(self.layers)} layers but {len(self.layer_weights)} layer_weights.")

    def forward(self, fake_out, real_out) -> torch.Tensor:
        fake_feats, real_feats = discriminator_features(fake_out), discriminator_features(real_out)
        if len(fake_feats) != len(real_feats):
            raise ValueError(
                f"fake and real outputs have {len(fake_feats)} vs {len(real_feats)} feature maps."
            )
        layers = list(range(len(fake_feats))) if self.layers is None else self.layers
        if not layers or max(layers) >= len(fake_feats):
            raise ValueError(
                f"layers {layers} not available: the discriminator gives {len(fake_feats)} feature maps."
            )
        weights = [1.0 / len(layers)] * len(layers) if self.layer_weights is None else self.layer_weights
        if len(weights) != len(layers):
            raise ValueError(f"{len(layers)} layers but {len(weights)} layer_weights.")
        loss = fake_feats[0].new_zeros(())
        for weight, i in zip(weights, layers):
            loss = loss + weight * self.layer_distance(fake_feats[i], real_feats[i].detach())
        return loss

    def layer_distance(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Distance of one layer's features: mean L1."""
        return torch.mean(torch.abs(fake - real))


class DiscriminatorStyleLoss(FeatureMatchingLoss):
    """Style loss on discriminator features: mean L1 between the Gram matrices (normalised by C*H*W) of the
    discriminator's intermediate activations of fake and real, over the same layers as the feature matching.

    Shimosato & Ukita's style term (their Eq. 6 reuses the feature-matching activations): unlike a VGG style
    loss it needs no pretrained network. Arguments as :class:`FeatureMatchingLoss`; 2-D features only.
    """

    def layer_distance(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return torch.mean(torch.abs(gram_matrix(fake) - gram_matrix(real)))


class DiscriminatorPerceptualLoss(FeatureMatchingLoss):
    """ipA-MedGAN / MedGAN perceptual loss: sum over 4 discriminator layers of mean L1, weights 1 by default.

    Same computation as :class:`FeatureMatchingLoss`, with the paper's defaults: the first four
    intermediate layers of the patch discriminator, summed (lambda_pi = 1).
    """

    def __init__(
        self,
        layers: Sequence[int] | None = (0, 1, 2, 3),
        layer_weights: Sequence[float] | None = (1.0, 1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(layers, layer_weights)
