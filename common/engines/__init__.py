"""engines shared by the medinpaint bundles."""

from .batch import INPUT_MODES, InpaintingBatchPreparer, MaskedInput, prepare_inpainting_batch
from .checkpoint import AtomicCheckpointSaver, RNGState
from .distributed import release_ddp
from .gan_trainer import DiscriminatorInput, InpaintingGanTrainer, detach_outputs
from .output_names import RelativeOutputName
from .state_dict_loader import StateDictLoader, read_state_dict
from .tensorboard import TensorBoardPanels

__all__ = [
    "INPUT_MODES",
    "AtomicCheckpointSaver",
    "DiscriminatorInput",
    "InpaintingBatchPreparer",
    "InpaintingGanTrainer",
    "MaskedInput",
    "RNGState",
    "RelativeOutputName",
    "StateDictLoader",
    "TensorBoardPanels",
    "detach_outputs",
    "prepare_inpainting_batch",
    "read_state_dict",
    "release_ddp",
]

# autoinpainting: sliding-circle search for unsupervised tumour segmentation
from .autoinpainting import (  # noqa: E402
    AutoInpainter,
    AutoInpaintingInferer,
    SliceResult,
    residual_volume,
    segment_residual,
)

__all__ += [
    "AutoInpainter",
    "AutoInpaintingInferer",
    "SliceResult",
    "residual_volume",
    "segment_residual",
]

# object removal (segmenter + EdgeConnect inpainters) on the shared GAN engine
from .object_removal import (  # noqa: E402, F401
    HoleNormalisedL1Loss,
    InpainterInput,
    NormalisedMaskExpansionLoss,
    PipelineBatchPreparer,
    PipelineInput,
    SegmenterLoss,
)
