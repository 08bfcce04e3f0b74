"""Score ``inference.json``'s outputs on the sample test tumours against the tumour-free slices.

The sample cohort has, for every slice with a tumour, the same slice without it (``image``), so inference
on the default datalist can be scored: PSNR over the whole slice and inside the tumour label, for the output
and for the input returned unchanged (the do-nothing baseline), all scaled to [0, 1] by the 0.5/99.5
percentiles like the bundle's preprocessing::

    python bundles/mask_optimized_object_removal/scripts/inference_check.py /tmp/mor_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import ScaleIntensityRangePercentiles

import common.data


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    error = (a - b) ** 2
    return float(10 * np.log10(1.0 / (error[where] if where is not None else error).mean()))


def score(output_dir: str | Path, dataset_dir: str | None = None, postfix: str = "pred") -> dict[str, float]:
    """Mean PSNRs (dB) of the outputs and of the unchanged inputs, whole slice and tumour region."""
    root = Path(dataset_dir or common.data.build_sample_data())
    entries = load_decathlon_datalist(f"{root}/datalist_2d.json", False, "test", base_dir=str(root))
    scale = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)

    def load(path: str) -> np.ndarray:
        return np.asarray(scale(np.asarray(nib.load(path).dataobj, np.float32)[None]))[0]

    rows = []
    for entry in (e for e in entries if e["tumour_pixels"] >= 16):
        name = Path(entry["image_tumour"]).relative_to(root)
        output = Path(output_dir) / name.parent / name.name.replace(".nii.gz", f"_{postfix}.nii.gz")
        if not output.is_file():
            raise FileNotFoundError(
                f"{output} is missing: run inference.json with --output_dir {output_dir}."
            )
        pred, inp, clean = (
            np.squeeze(nib.load(output).get_fdata()),
            load(entry["image_tumour"]),
            load(entry["image"]),
        )
        tumour = np.asarray(nib.load(entry["label_tumour"]).dataobj) > 0
        rows.append(
            [_psnr(pred, clean), _psnr(inp, clean), _psnr(pred, clean, tumour), _psnr(inp, clean, tumour)]
        )
    means = np.mean(rows, axis=0)
    keys = ("psnr_output", "psnr_input", "psnr_tumour_output", "psnr_tumour_input")
    return {"slices": len(rows), **dict(zip(keys, map(float, means)))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    print(score(parser.parse_args().output_dir))
