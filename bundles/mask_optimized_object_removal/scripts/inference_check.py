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
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import ScaleIntensityRangePercentiles

import common.data
from common.metrics import PSNRMetric


def score(output_dir: str | Path, dataset_dir: str | None = None, postfix: str = "pred") -> dict[str, float]:
    """Mean PSNRs (dB) of the outputs and of the unchanged inputs, whole slice and tumour region."""
    root = Path(dataset_dir or common.data.build_sample_data())
    entries = load_decathlon_datalist(f"{root}/datalist_2d.json", False, "test", base_dir=str(root))
    scale = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)

    def load(path: str) -> torch.Tensor:
        return torch.as_tensor(scale(np.asarray(nib.load(path).dataobj, np.float32)[None]))[None]

    psnr, psnr_tumour = PSNRMetric(), PSNRMetric(roi="hole")
    rows = []
    for entry in (e for e in entries if e["tumour_pixels"] >= 16):
        name = Path(entry["image_tumour"]).relative_to(root)
        output = Path(output_dir) / name.parent / name.name.replace(".nii.gz", f"_{postfix}.nii.gz")
        if not output.is_file():
            raise FileNotFoundError(
                f"{output} is missing: run inference.json with --output_dir {output_dir}."
            )
        inp, clean = load(entry["image_tumour"]), load(entry["image"])
        pred = torch.as_tensor(np.asarray(nib.load(output).dataobj, np.float32)).reshape(clean.shape)
        tumour = torch.as_tensor(np.asarray(nib.load(entry["label_tumour"]).dataobj) > 0).reshape(clean.shape)
        hole = tumour.float()
        rows.append([float(psnr(pred, clean)), float(psnr(inp, clean)),
                     float(psnr_tumour(pred, clean, mask=hole)), float(psnr_tumour(inp, clean, mask=hole))])  # fmt: skip
    means = np.mean(rows, axis=0)
    keys = ("psnr_output", "psnr_input", "psnr_tumour_output", "psnr_tumour_input")
    return {"slices": len(rows), **dict(zip(keys, map(float, means)))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    print(score(parser.parse_args().output_dir))
