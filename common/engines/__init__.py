"""engines shared by the medinpaint bundles."""

from .batch import InpaintingBatchPreparer, prepare_inpainting_batch
from .checkpoint import AtomicCheckpointSaver, RNGState, TrainingState, random_transforms
from .distributed import release_ddp
from .gan_trainer import DiscriminatorInput, InpaintingGanTrainer, detach_outputs
from .output_names import RelativeOutputName
from .state_dict_loader import (
    StateDictLoader,
    UnreadableCheckpointError,
    exit_on_bad_checkpoint,
    read_state_dict,
)
from .tensorboard import TensorBoardPanels

__all__ = [
    "AtomicCheckpointSaver",
    "DiscriminatorInput",
    "InpaintingBatchPreparer",
    "InpaintingGanTrainer",
    "RNGState",
    "RelativeOutputName",
    "StateDictLoader",
    "TensorBoardPanels",
    "TrainingState",
    "UnreadableCheckpointError",
    "detach_outputs",
    "exit_on_bad_checkpoint",
    "prepare_inpainting_batch",
    "random_transforms",
    "read_state_dict",
    "release_ddp",
]
