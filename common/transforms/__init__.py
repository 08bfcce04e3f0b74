"""transforms shared by the medinpaint bundles."""

# mask generators (1 = hole, 0 = known); each module's __all__ lists what it exports
from common.transforms.lesion_masks import *  # noqa: F403
from common.transforms.masks import *  # noqa: F403
from common.transforms.pseudo_segments import *  # noqa: F403
