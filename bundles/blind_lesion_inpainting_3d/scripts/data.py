"""Datalists of the sample cohort and the MNI preprocessing with the configs' ``preprocessing_options``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from common.transforms.preprocessing import MNIPreprocessd


def cohort_datalist(datalist_file: str | os.PathLike, split: str, keys: Mapping[str, str]) -> list[dict]:
    """The ``split`` entries of a cohort datalist with the keys a config reads, ``keys`` mapping each new name to
    the cohort's (e.g. ``{"image": "image_ms"}``: the lesioned T1 as inference's ``image``)."""
    entries = load_decathlon_datalist(str(datalist_file), False, split)
    return [{new: entry[old] for new, old in keys.items()} for entry in entries]


def mni_preprocessd(
    keys: Sequence[str] | str,
    options: Mapping,
    label_keys: Sequence[str] | str = (),
    unknown_keys: Sequence[str] | str = (),
) -> MNIPreprocessd:
    """``MNIPreprocessd`` of ``keys`` (``label_keys`` among them: nearest-neighbour; ``unknown_keys``: the masks
    of voxels to fill, which the modality check leaves out) with ``options``, the
    configs' ``preprocessing_options`` (denoise, bias_correct, register, standardise, check_modality, seed,
    itk_threads), so every config and script preprocesses alike."""
    return MNIPreprocessd(keys=keys, label_keys=label_keys, unknown_keys=unknown_keys, **options)


def preprocessor(
    keys: Sequence[str], label_keys: Sequence[str], options: Mapping, unknown_keys: Sequence[str] = ()
) -> Compose:
    """Load, channel-first and :func:`mni_preprocessd` of ``keys``."""
    return Compose(
        [
            LoadImaged(keys=list(keys), image_only=True),
            EnsureChannelFirstd(keys=list(keys)),
            mni_preprocessd(list(keys), options, list(label_keys), list(unknown_keys)),
        ]
    )
