"""engines shared by the medinpaint bundles."""

from .batch import INPUT_MODES, InpaintingBatchPreparer, MaskedInput, prepare_inpainting_batch
from .checkpoint import AtomicCheckpointSaver, RNGState
from .gan_trainer import DiscriminatorInput, InpaintingGanTrainer, detach_outputs

__all__ = [
    "INPUT_MODES",
    "AtomicCheckpointSaver",
    "DiscriminatorInput",
    "InpaintingBatchPreparer",
    "InpaintingGanTrainer",
    "MaskedInput",
    "RNGState",
    "detach_outputs",
    "prepare_inpainting_batch",
]

# autoinpainting: sliding-circle search for unsupervised tumour segmentation
from .autoinpainting import (  # noqa: E402
    AutoInpainter,
    AutoInpaintingInferer,
    SliceResult,
    residual_volume,
    segment_residual,
)

__all__ += ["AutoInpainter", "AutoInpaintingInferer", "SliceResult", "residual_volume", "segment_residual"]

# object removal (segmenter + EdgeConnect inpainters) on the shared GAN engine
from .object_removal import (  # noqa: E402, F401
    HoleNormalisedL1Loss,
    InpainterInput,
    NormalisedMaskExpansionLoss,
    PipelineBatchPreparer,
    PipelineInput,
    SegmenterLoss,
)
