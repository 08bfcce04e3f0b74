"""transforms shared by the medinpaint bundles."""

# Canny edge maps (CTSDG structure input)
from common.transforms.edges import *  # noqa: F403

# inference input checks: missing/truncated files, dims, channels, NaN/Inf, masks, geometry
from common.transforms.input_checks import *  # noqa: F403

# invertible percentile scaling; a fill composited back into the user's image
from common.transforms.intensity import *  # noqa: F403

# mask generators (1 = hole, 0 = known); each module's __all__ lists what it exports
from common.transforms.lesion_masks import *  # noqa: F403
from common.transforms.masks import *  # noqa: F403

# T1 preprocessing to the MNI grid and back (3D blind lesion inpainting)
from common.transforms.preprocessing import *  # noqa: F403
from common.transforms.pseudo_segments import *  # noqa: F403

# one-slice DICOM/NIfTI reads to 2D
from common.transforms.slices import *  # noqa: F403
