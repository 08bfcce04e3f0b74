"""Lesion masks for non-blind lesion filling (2D and 3D): from label images, and a bank of synthetic MS masks.

The hole is where the label image holds a lesion (any non-zero label, or the given ``label_values``),
optionally dilated by a ball of ``dilation`` voxels to cover the lesion's partial-volume rim. The masked image
sets hole voxels to ``fill_value``, by default -1 as in the 3D lesion-filling paper (below every normalised
intensity). Mask convention: 1 = hole, 0 = known.

The lesion-mask bank stands in for the 3D paper's 500 real MS lesion masks of small / medium / large load: masks
drawn by the synthetic cohort's MS-lesion generator (``common.data.cohort``) inside the MNI white matter, kept only
when their realised load (mL) falls in their class's range, seeded, and cached as NIfTI files on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage
from skimage.morphology import ball, disk

from common.data.cache import build_cached_folder
from common.data.cohort import MS_LOADS_ML
from common.transforms.masks import MaskTransformd

__all__ = [
    "AppendDifferenceWeightd",
    "LESION_LOADS_ML",
    "LesionMaskd",
    "build_lesion_bank",
    "lesion_bank_paths",
    "lesion_mask",
    "synthetic_lesion_masks",
]

#: lesion-load classes of the bank (total lesion volume in mL): the ones the cohort's MS-lesion generator draws
LESION_LOADS_ML = MS_LOADS_ML
BANK_FORMAT_VERSION = 1


def lesion_mask(
    label: np.ndarray, label_values: Sequence[int] | None = None, dilation: int = 0
) -> np.ndarray:
    """Boolean hole map of a spatial (2D/3D) label array: its lesion voxels, dilated by a ball of ``dilation``."""
    label = np.asarray(label)
    if label.ndim not in (2, 3):
        raise ValueError(f"label must be a 2D or 3D spatial array, got shape {label.shape}")
    if dilation < 0:
        raise ValueError(f"dilation must be >= 0 voxels, got {dilation}")
    holes = label != 0 if label_values is None else np.isin(label, list(label_values))
    if dilation > 0 and holes.any():
        footprint = disk(dilation) if label.ndim == 2 else ball(dilation)
        holes = ndimage.binary_dilation(holes, structure=footprint)
    return holes


class LesionMaskd(MaskTransformd):
    """Mask the lesions of the label image under ``label_key`` (shape ``(1, *spatial)``, same spatial size as the images).

    Raises ValueError when the label holds no lesion unless ``allow_empty`` (then the mask is all zeros, for
    lesion-free subjects that are still to be passed through). Deterministic, so not a random transform.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        label_values: Sequence[int] | None = None,
        dilation: int = 0,
        fill_value: float = -1.0,
        allow_empty: bool = False,
        mask_key: str = "mask",
        masked_key: str | Sequence[str] | None = "masked_image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, mask_key, masked_key, fill_value, allow_missing_keys)
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0 voxels, got {dilation}")
        self.label_key = label_key
        self.label_values = None if label_values is None else [int(v) for v in label_values]
        self.dilation = int(dilation)
        self.allow_empty = allow_empty

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        label = self.single_channel_map(d, self.label_key, "label")
        holes = lesion_mask(label[0], self.label_values, self.dilation)
        if not holes.any() and not self.allow_empty:
            raise ValueError(
                f"label under {self.label_key!r} holds no lesion (values {self.label_values or 'non-zero'}); "
                "pass allow_empty=True to let lesion-free images through with an empty mask"
            )
        return self.write_outputs(d, holes, allow_empty=self.allow_empty)


def _class_counts(n_masks: int) -> dict[str, int]:
    """``n_masks`` split over the load classes as evenly as possible (the first classes take the remainder)."""
    if (
        isinstance(n_masks, bool)
        or not isinstance(n_masks, (int, np.integer))
        or n_masks < len(LESION_LOADS_ML)
    ):
        raise ValueError(
            f"n_masks must be an integer >= {len(LESION_LOADS_ML)} (one per load class), got {n_masks!r}"
        )
    base, extra = divmod(int(n_masks), len(LESION_LOADS_ML))
    return {load: base + (i < extra) for i, load in enumerate(LESION_LOADS_ML)}


def synthetic_lesion_masks(
    wm: np.ndarray, brain: np.ndarray, n_masks: int, seed: int = 0, max_tries: int = 20
) -> Iterator[tuple[str, np.ndarray]]:
    """``n_masks`` boolean MS-like lesion masks inside ``wm`` (probability map, lesions where > 0.5 and in
    ``brain``), split evenly over the small / medium / large classes of :data:`LESION_LOADS_ML`.

    Each mask comes from the cohort's lesion generator with its own ``SeedSequence(seed)`` stream and is redrawn
    (up to ``max_tries``) until its realised load (1 voxel = 1 mm^3) lies in its class's range, so the classes do
    not overlap. Yields ``(load class, mask)`` grouped by class (one mask in memory at a time).
    """
    from common.data.cohort import CohortParameters, _paint_ms_lesions  # the cohort's own generator

    wm = np.asarray(wm, dtype=np.float32)
    brain = np.asarray(brain, dtype=bool)
    if wm.ndim != 3 or wm.shape != brain.shape:
        raise ValueError(f"wm {wm.shape} and brain {brain.shape} must be one 3D grid")
    if not np.any(wm > 0.9):
        raise ValueError("the WM map has no voxel above 0.9: no place for lesions")
    counts = _class_counts(n_masks)
    streams = iter(np.random.SeedSequence(seed).spawn(int(n_masks)))
    blank = np.zeros(wm.shape, dtype=np.float32)
    params = CohortParameters()
    for load, count in counts.items():
        low, high = LESION_LOADS_ML[load]
        for _ in range(count):
            rng = np.random.default_rng(next(streams))
            for _ in range(max_tries):
                _, mask, info = _paint_ms_lesions(blank, wm, brain, rng, params, load)
                if low <= info["volume_ml"] <= high:
                    break
            else:
                raise RuntimeError(
                    f"no {load} mask with a load in [{low}, {high}] mL after {max_tries} tries: the WM "
                    f"({np.count_nonzero(wm > 0.5) / 1000:.1f} mL) is too small for this class"
                )
            yield load, mask


def default_bank_dir(n_masks: int, seed: int, root: str | os.PathLike | None = None) -> Path:
    """Cache folder of a bank (under the sample-data root, ``$MEDINPAINT_DATA`` or ``~/.cache/medinpaint``)."""
    from common.data import default_root

    return (
        Path(root or default_root()).expanduser()
        / f"lesion-bank-v{BANK_FORMAT_VERSION}-n{n_masks}-seed{seed}"
    )


def build_lesion_bank(
    n_masks: int = 500, seed: int = 0, folder: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Build (once) the MNI-grid lesion-mask bank and return its folder: ``<class>_<index>.nii.gz`` (uint8,
    1 = lesion, MNI affine) and ``bank.json`` (class, path, load in mL of every mask; written last).

    Masks lie inside the MNI152 2009a white matter (probability > 0.5, inside the brain mask) resampled onto the
    182x218x182 grid. A complete bank is reused; the build is atomic
    (:func:`common.data.cache.build_cached_folder`), so an interrupted build never looks complete and concurrent
    ones (DDP ranks) agree. ~0.6 s per mask on one core.
    """
    from common.data import MNI_AFFINE, load_template
    from common.transforms.preprocessing import resample_to_mni

    def write(staging: Path) -> None:
        template = load_template()
        wm = resample_to_mni(template.wm, template.affine)
        brain = resample_to_mni(template.brain.astype(np.float32), template.affine, order=0) > 0.5
        entries = []
        for index, (load, mask) in enumerate(synthetic_lesion_masks(wm, brain, n_masks, seed)):
            name = f"{load}_{index:03d}.nii.gz"
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), MNI_AFFINE), staging / name)
            entries.append({"load": load, "file": name, "volume_ml": float(mask.sum()) / 1000.0})
        manifest = {
            "version": BANK_FORMAT_VERSION,
            "seed": seed,
            "loads_ml": LESION_LOADS_ML,
            "masks": entries,
        }
        (staging / "bank.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    target = Path(folder) if folder else default_bank_dir(n_masks, seed)
    return build_cached_folder(target, lambda bank: (bank / "bank.json").is_file(), write, force)


def lesion_bank_paths(
    n_masks: int = 500, seed: int = 0, folder: str | os.PathLike | None = None
) -> list[str]:
    """Paths of the bank's mask files, building the bank on first use (see :func:`build_lesion_bank`)."""
    target = build_lesion_bank(n_masks, seed, folder)
    manifest = json.loads((target / "bank.json").read_text(encoding="utf-8"))
    return [str(target / entry["file"]) for entry in manifest["masks"]]


class AppendDifferenceWeightd(MapTransform):
    """Append a per-voxel loss weight to each target under ``keys``: ``1 + weight`` where the target differs from
    the input under ``reference_key`` by more than ``threshold``, 1 elsewhere (the last channel; the target's own
    channels are unchanged).

    Why: a lesion or hole is 0.01-1 % of a volume, so a plain voxel-mean loss is nearly minimised by the identity
    and a short run never learns to change the lesion (the blind 3-D bundle on IXI, see its README). Up-weighting
    the voxels the network must change (they are known at training time: the lesions were painted in, the holes
    cut out) is class balancing for regression. Losses read the channel with ``weight_channel=True``
    (``InpaintingDeepSupervisionLoss``). Apply after every spatial augmentation so the weight stays aligned.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        reference_key: str = "image",
        threshold: float = 0.05,
        weight: float = 100.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if threshold < 0 or weight < 0:
            raise ValueError(f"threshold and weight must be >= 0, got threshold={threshold}, weight={weight}")
        self.reference_key, self.threshold, self.weight = reference_key, float(threshold), float(weight)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        reference = torch.as_tensor(d[self.reference_key])
        for key in self.key_iterator(d):
            target = torch.as_tensor(d[key])
            if tuple(target.shape) != tuple(reference.shape):
                raise ValueError(
                    f"{key!r} {tuple(target.shape)} and {self.reference_key!r} {tuple(reference.shape)} differ in "
                    "shape: the difference weight needs the target and its input on the same grid."
                )
            differs = (target - reference).abs().amax(dim=0, keepdim=True) > self.threshold
            d[key] = torch.cat([target, 1.0 + self.weight * differs.to(target.dtype)], dim=0)  # MetaTensor: meta kept
        return d
