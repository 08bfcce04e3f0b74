"""losses shared by the medinpaint bundles."""

from .adversarial import (
    ADVERSARIAL_CRITERIA,
    DiscriminatorAdversarialLoss,
    DiscriminatorPerceptualLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
    discriminator_features,
    discriminator_logits,
)
from .deep_supervision import InpaintingDeepSupervisionLoss, space_to_depth_target
from .mask_expansion import MaskExpansionLoss
from .perceptual import FeatureLoss, PerceptualLoss, StyleLoss, gram_matrix
from .reconstruction import HoleL1Loss, LaplacianPyramidLoss, MaskedL1Loss, TotalVariationLoss, ValidL1Loss
from .utils import composite, pack_mask, unpack_mask
from .weighted_sum import BUILTIN_LOSSES, WeightedSumLoss
from .wrappers import MaskAwareLoss, OutputLoss, select_output

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "BUILTIN_LOSSES",
    "DiscriminatorAdversarialLoss",
    "DiscriminatorPerceptualLoss",
    "FeatureLoss",
    "FeatureMatchingLoss",
    "GeneratorAdversarialLoss",
    "HoleL1Loss",
    "InpaintingDeepSupervisionLoss",
    "LaplacianPyramidLoss",
    "MaskAwareLoss",
    "MaskExpansionLoss",
    "MaskedL1Loss",
    "OutputLoss",
    "PerceptualLoss",
    "StyleLoss",
    "TotalVariationLoss",
    "ValidL1Loss",
    "WeightedSumLoss",
    "composite",
    "discriminator_features",
    "discriminator_logits",
    "gram_matrix",
    "pack_mask",
    "select_output",
    "space_to_depth_target",
    "unpack_mask",
]
