"""Random lesion masks drawn from a bank of real lesion masks on the MNI grid (non-blind training, stage 1).

The paper fills healthy volumes with lesion masks taken from a bank of 500 MS cases (small, medium, large
loads) registered to MNI space; here the bank is any list of lesion-mask NIfTI files on the image's grid (the
bundle uses the ``label_ms`` masks of the training subjects). ``common.transforms`` has 2D mask banks only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
from monai.config import KeysCollection

from common.transforms.masks import RandomMaskd


class LesionBankMaskd(RandomMaskd):
    """Draw one lesion mask uniformly from ``bank`` (NIfTI paths) and write ``mask_key`` (1 = hole) and the
    image with its hole voxels set to ``fill_value`` (-1, below every standardised intensity, as in the paper).

    The mask file must have the image's spatial shape (ValueError otherwise) and hold a lesion. Masks are read
    on each draw, so a bank of hundreds of volumes costs no memory.
    """

    spatial_dims = (3,)

    def __init__(
        self,
        keys: KeysCollection,
        bank: Sequence[str],
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        fill_value: float = -1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, mask_key, masked_key, fill_value, allow_missing_keys)
        self.bank = [str(path) for path in bank]
        if not self.bank:
            raise ValueError("the lesion-mask bank is empty: give at least one lesion-mask NIfTI path")

    def generate(self, spatial_shape: tuple[int, ...], data: Mapping[Hashable, Any]) -> np.ndarray:
        path = self.bank[self.R.randint(len(self.bank))]
        holes = np.asanyarray(nib.load(path).dataobj) > 0
        if holes.shape != spatial_shape:
            raise ValueError(
                f"lesion mask {path} has shape {holes.shape} but the image is {spatial_shape}: bank masks must "
                "be on the image's (MNI) grid"
            )
        if not holes.any():
            raise ValueError(f"lesion mask {path} holds no lesion")
        return holes
