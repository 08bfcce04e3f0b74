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
