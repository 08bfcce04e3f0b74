"""transforms shared by the medinpaint bundles."""

# copy-paste paired data for object removal (image with object, image without, object mask)
from common.transforms.copy_paste import *  # noqa: F403

# Canny edge maps (CTSDG structure input)
from common.transforms.edges import *  # noqa: F403

# mask generators (1 = hole, 0 = known); each module's __all__ lists what it exports
from common.transforms.lesion_masks import *  # noqa: F403
from common.transforms.masks import *  # noqa: F403

# the network input of one sample (masked image, mask, extras), as the training batch preparer builds it
from common.transforms.network_input import *  # noqa: F403

# PET/CT preprocessing (SUV, B-spline resampling, windows) and organ-of-interest masks (autoinpainting)
from common.transforms.pet_ct import *  # noqa: F403

# T1 preprocessing to the MNI grid and back (3D blind lesion inpainting)
from common.transforms.preprocessing import *  # noqa: F403
from common.transforms.pseudo_segments import *  # noqa: F403

# one-slice DICOM/NIfTI reads to 2D
from common.transforms.slices import *  # noqa: F403
