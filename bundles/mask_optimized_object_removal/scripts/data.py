"""Bundle-specific data pieces: copy-paste datalists of the sample cohort, pseudo tissue classes, 2D DICOM input.

The segmentation map of the paper (COCO-stuff-like scene labels from PanopticFPN) becomes, for brain MRI, a
tissue map: background outside the brain and three intensity classes inside it (multi-Otsu thresholds of the
object-free image: roughly CSF, grey matter, white matter). It is computed from the data, not annotated, so a
user's own images need no labels beyond the object masks.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import load_decathlon_datalist
from monai.transforms import MapTransform, Randomizable
from skimage.filters import threshold_multiotsu, threshold_otsu

from .copy_paste import DEFAULT_MEDICAL_OBJECTS, copy_paste_datalist, object_components

__all__ = [
    "RandomMaskInsteadOfObjectd",
    "RequireHintd",
    "TissueClassesd",
    "copy_paste_pairs",
    "evenly_spaced",
    "inference_datalist",
    "tissue_classes",
]


def copy_paste_pairs(
    dataset_dir: str,
    split: str,
    seed: int | None,
    limit: int | None = None,
    min_object_pixels: int = 16,
    min_brain_pixels: int = 0,
) -> list[dict]:
    """Copy-paste pairs of a split of the sample cohort's 2D datalist (lesions/masses of one subject on other
    subjects' healthy slices at the same level; ``seed`` fixes pairs and pasting for validation/test).

    A source qualifies by its largest connected object (>= ``min_object_pixels``, what ``RandCopyPasted``
    can cut), not by the label's total pixel count: scattered MS lesions may sum past it with no single
    lesion that large. ``limit``: that many pairs, evenly spaced over the list. ``min_brain_pixels``: only
    slices whose ``brain_pixels`` reach it (entries without the count are kept), so that large objects fit
    inside the brain of the target."""
    entries = load_decathlon_datalist(f"{dataset_dir}/datalist_2d.json", False, split, base_dir=dataset_dir)
    entries = [e for e in entries if e.get("brain_pixels", min_brain_pixels) >= min_brain_pixels]
    for entry in entries:
        for _, label_key, count_key in DEFAULT_MEDICAL_OBJECTS:
            if entry.get(count_key, 0) >= min_object_pixels:
                label = np.asanyarray(nib.load(entry[label_key]).dataobj)
                components = object_components(np.squeeze(label))
                entry[count_key] = int(components[0].sum()) if components else 0
    pairs = copy_paste_datalist(entries, seed=seed, min_object_pixels=min_object_pixels)
    # evenly spaced over the list (ordered by subject and level), so N pairs span the subjects, not the first one
    return [pairs[i] for i in evenly_spaced(len(pairs), limit)] if limit else pairs


def evenly_spaced(length: int, count: int) -> list[int]:
    """``min(count, length)`` distinct indices of a list of ``length`` items, evenly spaced from first to last."""
    return [int(i) for i in np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))]


def inference_datalist(dataset_dir: str, split: str = "test") -> list[dict]:
    """Slices that hold a tumour: the image with it and its label as the rough ``hint`` mask to remove it."""
    entries = load_decathlon_datalist(f"{dataset_dir}/datalist_2d.json", False, split, base_dir=dataset_dir)
    return [
        {"image": e["image_tumour"], "hint": e["label_tumour"]} for e in entries if e["tumour_pixels"] >= 16
    ]


class RequireHintd(MapTransform):
    """Fail with what to give when the hint mask is missing: the pipeline removes the segment the hint points
    at, and guessing a hint (say, the largest segment) would silently remove the wrong object."""

    def __init__(self, keys: KeysCollection = "hint") -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        missing = [key for key in self.keys if data.get(key) is None or (isinstance(data[key], str) and not data[key])]
        if missing:
            raise ValueError(
                f"no hint mask under {missing} (keys given: {sorted(map(str, data))}): give the path of a mask image "
                "in the image's geometry, non-zero on the object to remove (a rough mask or one clicked pixel), "
                "as 'hint' beside 'image' (datalist entry, or MONAI Label request parameter; see docs/README.md)"
            )
        return dict(data)


def tissue_classes(image: np.ndarray, region: np.ndarray | None = None, classes: int = 3) -> np.ndarray:
    """(H, W) int map: 0 outside ``region`` (default: above the Otsu threshold of the image), 1..classes by
    the multi-Otsu thresholds of the region's intensities (dark to bright)."""
    grey = np.asarray(image, np.float64).mean(axis=0) if image.ndim == 3 else np.asarray(image, np.float64)
    inside = grey > threshold_otsu(grey) if region is None else np.asarray(region).reshape(grey.shape) > 0
    out = np.zeros(grey.shape, np.int64)
    values = grey[inside]
    if values.size < classes or np.unique(values).size < classes:
        out[inside] = 1
        return out
    out[inside] = 1 + np.digitize(values, threshold_multiotsu(values, classes=classes))
    return out


class TissueClassesd(MapTransform):
    """Write the tissue class map ``(1, H, W)`` of ``keys`` (first key) under ``classes_key`` and its one-hot
    ``(1 + classes, H, W)`` under ``onehot_key`` (see :func:`tissue_classes`)."""

    def __init__(self, keys: KeysCollection, region_key: str | None = "region", classes: int = 3,
                 classes_key: str = "classes", onehot_key: str | None = "segmap") -> None:  # fmt: skip
        super().__init__(keys)
        self.region_key, self.classes = region_key, int(classes)
        self.classes_key, self.onehot_key = classes_key, onehot_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        image = d[self.keys[0]]
        region = d[self.region_key] if self.region_key else None
        region_np = None if region is None else np.asarray(torch.as_tensor(region).cpu())
        labels = torch.from_numpy(
            tissue_classes(np.asarray(torch.as_tensor(image).cpu()), region_np, self.classes)
        )
        d[self.classes_key] = labels[None].float()
        if self.onehot_key:
            d[self.onehot_key] = (
                torch.nn.functional.one_hot(labels, self.classes + 1).permute(2, 0, 1).float()
            )
        return d


INPAINTER_MASKS = ("object", "random")


class RandomMaskInsteadOfObjectd(Randomizable, MapTransform):
    """Table II's baseline: train the inpainters on random masks instead of object masks.

    With ``inpainter_masks="random"`` the object-free image becomes the input (``image``, its edges and tissue
    map) and ``mask_transform`` (e.g. ``common.transforms.FreeFormMaskd(keys="clean", masked_key=None)``)
    draws the hole; with ``"object"`` (the paper's training) samples pass unchanged. Randomizable, so that a
    ``Compose`` (and MONAI's data loader through it) seeds the wrapped mask generator.
    """

    def __init__(self, mask_transform, inpainter_masks: str = "random") -> None:
        super().__init__(keys="clean")
        if inpainter_masks not in INPAINTER_MASKS:
            raise ValueError(f"inpainter_masks must be one of {INPAINTER_MASKS}, got {inpainter_masks!r}.")
        self.mask_transform, self.enabled = mask_transform, inpainter_masks == "random"

    def set_random_state(self, seed=None, state=None):
        self.mask_transform.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:  # the wrapped mask transform draws its own numbers
        pass

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if not self.enabled:
            return d
        d = dict(self.mask_transform(d))
        d["mask"] = torch.as_tensor(d["mask"]).float()
        d["image"], d["edge_input"], d["segmap_input"] = d["clean"], d["edge"], d["segmap"]
        return d

