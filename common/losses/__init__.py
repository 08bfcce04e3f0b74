"""losses shared by the medinpaint bundles."""

from .adversarial import (
    ADVERSARIAL_CRITERIA,
    DiscriminatorAdversarialLoss,
    DiscriminatorPerceptualLoss,
    DiscriminatorStyleLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
    discriminator_features,
    discriminator_logits,
)
from .perceptual import FeatureLoss, PerceptualLoss, StyleLoss, gram_matrix
from .reconstruction import HoleL1Loss, LaplacianPyramidLoss, MaskedL1Loss, TotalVariationLoss, ValidL1Loss
from .weighted_sum import BUILTIN_LOSSES, WeightedSumLoss
from .wrappers import MaskAwareLoss, OutputLoss, select_output

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "BUILTIN_LOSSES",
    "DiscriminatorAdversarialLoss",
    "DiscriminatorPerceptualLoss",
    "DiscriminatorStyleLoss",
    "FeatureLoss",
    "FeatureMatchingLoss",
    "GeneratorAdversarialLoss",
    "HoleL1Loss",
    "LaplacianPyramidLoss",
    "MaskAwareLoss",
    "MaskedL1Loss",
    "OutputLoss",
    "PerceptualLoss",
    "StyleLoss",
    "TotalVariationLoss",
    "ValidL1Loss",
    "WeightedSumLoss",
    "discriminator_features",
    "discriminator_logits",
    "gram_matrix",
    "select_output",
]
