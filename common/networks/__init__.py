"""networks shared by the medinpaint bundles."""

# the spectral-norm patch discriminator of CTSDG and EdgeConnect
from .discriminators import SpectralNormPatchDiscriminator  # noqa: F401
from .gated_unet import CONV_TYPES, GatedConv2d, GatedUNet, PartialConv2d  # noqa: E402, F401
from .vgg import (  # noqa: F401
    LPIPS_CHECKPOINT,
    VGG_CHECKPOINTS,
    LPIPSNetwork,
    VGGFeatures,
    resolve_pretrained_file,
    vgg_layer_names,
)
