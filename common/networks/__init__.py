"""networks shared by the medinpaint bundles."""

from .vgg import (  # noqa: F401
    LPIPS_CHECKPOINT,
    VGG_CHECKPOINTS,
    LPIPSNetwork,
    VGGFeatures,
    resolve_pretrained_file,
    vgg_layer_names,
)
