"""The bundle's datalists: the slice records of a MONAI (Decathlon-style) datalist JSON."""

from __future__ import annotations

from collections.abc import Sequence

from monai.data import load_decathlon_datalist

from .masks import with_mask_index

__all__ = ["slice_entries"]


def slice_entries(
    datalist_file: str,
    split: str,
    keys: Sequence[str] = ("image", "subject", "slice_z"),
    mask_index: bool = False,
) -> list[dict]:
    """The ``split`` list of ``datalist_file`` (image paths made absolute), each entry cut down to ``keys``: the
    sample cohort's entries also name lesion and tumour images this bundle never reads. A key an entry lacks
    is left out, so a user's datalist needs only ``image``.

    With ``mask_index``, entry i also gets ``mask_index = i``, which picks the fixed bank mask it is scored
    with (:class:`.masks.FixedBankMaskd`).
    """
    entries = [
        {key: entry[key] for key in keys if key in entry}
        for entry in load_decathlon_datalist(datalist_file, False, split)
    ]
    return with_mask_index(entries) if mask_index else entries
