"""Command line for the paper's PET/CT preprocessing of one subject (``pet_ct.prepare_pet_ct_subject``).

CT (DICOM series folder or NIfTI, HU) + PET (DICOM series folder; SUV from its headers) [+ organ-of-interest
mask] [+ tumour mask] -> PET on the CT grid (cubic B-spline), CT window of the site, SUV [0, 12], axial slices
resized to ``--size`` in [0, 1], written as NIfTI slices and added to ``<output_dir>/datalist.json``, which
``configs/pet_ct.json`` reads. Run once per subject, from the bundle folder::

    python -m scripts.prepare_pet_ct --ct CT_DIR --pet PET_DIR --ooi lungs.nii.gz --subject P001 \\
        --split training --site lung --output_dir /data/petct_slices
"""

from __future__ import annotations

import argparse
import json

from .pet_ct import CT_WINDOWS, MODALITY_CHANNELS, SPLITS, SUV_RANGE, prepare_pet_ct_subject


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description="PET/CT -> [0, 1] axial NIfTI slices + decathlon datalist.")
    parser.add_argument("--ct", required=True, help="CT DICOM series folder or NIfTI file (HU)")
    parser.add_argument(
        "--pet", default=None, help="PET DICOM series folder (Bq/ml with the SUV header fields); omit for CT alone "
        "(--modality ct)"
    )
    parser.add_argument("--output_dir", required=True, help="slices go to <output_dir>/<subject>/")
    parser.add_argument("--subject", required=True, help="subject id (folder name); re-running replaces it")
    parser.add_argument(
        "--split", choices=SPLITS, default="training", help="training/validation: healthy slices"
    )
    parser.add_argument("--site", choices=tuple(CT_WINDOWS), default="lung", help="CT window")
    parser.add_argument(
        "--ooi", default=None, help="organ-of-interest mask (NIfTI/DICOM), else a CT fallback"
    )
    parser.add_argument("--ooi_fallback", choices=("lung", "foreground"), default=None)
    parser.add_argument(
        "--label", default=None, help="tumour mask: test evaluation; left out of healthy splits"
    )
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("X", "Y"))
    parser.add_argument("--modality", choices=tuple(MODALITY_CHANNELS), default="pet_ct")
    parser.add_argument("--suv_range", type=float, nargs=2, default=SUV_RANGE, metavar=("LOW", "HIGH"))
    parser.add_argument("--time_reference", choices=("acquisition", "series"), default="acquisition")
    args = parser.parse_args(argv)
    entries = prepare_pet_ct_subject(
        args.ct,
        args.pet,
        args.output_dir,
        args.subject,
        split=args.split,
        site=args.site,
        ooi=args.ooi,
        label=args.label,
        size=args.size,
        modality=args.modality,
        suv_range=args.suv_range,
        ooi_fallback=args.ooi_fallback,
        time_reference=args.time_reference,
    )
    print(json.dumps({"subject": args.subject, "split": args.split, "slices": len(entries)}))
    return entries


if __name__ == "__main__":
    main()
