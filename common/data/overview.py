"""A PNG overview of a built cohort: for a few subjects, the lesion-free slice, the MS-like and tumour-like
versions with their masks outlined, and the GM/WM maps."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np


def write_overview(folder: str | Path, png: str | Path, n_rows: int = 4, z: int = 95) -> Path:
    """Write ``png`` showing ``n_rows`` subjects of the cohort in ``folder`` at axial slice ``z`` (the tumour
    column at the slice through the mass centre)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder, png = Path(folder), Path(png)
    subjects = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["subjects"][:n_rows]
    columns = ("lesion-free T1", "MS-like lesions", "tumour-like mass", "GM map", "WM map")
    fig, axes = plt.subplots(
        len(subjects), len(columns), figsize=(3 * len(columns), 3.3 * len(subjects)), squeeze=False
    )

    def plane(name: str, stem: str, k: int = z) -> np.ndarray:
        return np.rot90(np.asanyarray(nib.load(folder / name / f"{stem}.nii.gz").dataobj)[:, :, k])

    for row, info in zip(axes, subjects):
        name = info["subject"]
        t1 = plane(name, "t1")
        vmax = float(np.percentile(t1[t1 > 0], 99.5))
        tumour_z = info["tumour"]["centre_voxel"][2]  # the mass is shown through its centre
        panels = [
            (t1, None),
            (plane(name, "t1_ms"), plane(name, "ms_mask")),
            (plane(name, "t1_tumour", tumour_z), plane(name, "tumour_mask", tumour_z)),
            (plane(name, "gm"), None),
            (plane(name, "wm"), None),
        ]
        for col, (ax, (image, mask)) in enumerate(zip(row, panels)):
            ax.imshow(image, cmap="gray", vmin=0, vmax=vmax if col < 3 else 1)
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors="red", linewidths=0.7)
            ax.set_axis_off()
        ms, tumour = info["ms"], info["tumour"]
        row[0].set_title(f"{name} ({info['split']}), {info['noise']} noise", fontsize=8)
        row[1].set_title(f"MS load {ms['load']}: {ms['volume_ml']:.1f} mL", fontsize=8)
        row[2].set_title(
            f"{'bright' if tumour['bright'] else 'dark'} mass {tumour['volume_ml']:.1f} mL (z {tumour_z})",
            fontsize=8,
        )
    for ax, title in zip(axes[-1], columns):
        ax.set_xlabel(title)
    fig.suptitle(f"medinpaint sample cohort ({folder.name}), axial z index {z}; red: ground-truth masks")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
