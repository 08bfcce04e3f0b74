"""networks shared by the medinpaint bundles."""

# the CTSDG inpainter (shape-aware mask inpainting); its partial convolutions come from gated_unet
from .ctsdg import CTSDG, CTSDGInpainter, SpectralNormPatchDiscriminator  # noqa: E402, F401

# EdgeConnect-style inpainters and the segmentation + inpainting object-removal pipeline
from .edge_connect import (  # noqa: F401, E402
    EdgeConnectGenerator,
    EdgeConnectInpainter,
    ObjectRemovalPipeline,
    batch_canny_edges,
    propose_segments,
    select_segments,
    spectral_norm_patch_discriminator,
)
from .gated_unet import CONV_TYPES, GatedConv2d, GatedUNet, PartialConv2d  # noqa: E402, F401
from .multiresunet import (  # noqa: F401
    CascadedMultiResUNet,
    MultiResBlock,
    MultiResUNet,
    ResPath,
    multires_block_channels,
)
from .unet3d_s2d import SpaceToDepthUNet3D, count_parameters, depth_to_space, space_to_depth  # noqa: E402, F401
from .vgg import (  # noqa: F401
    LPIPS_CHECKPOINT,
    VGG_CHECKPOINTS,
    LPIPSNetwork,
    VGGFeatures,
    resolve_pretrained_file,
    vgg_layer_names,
)
