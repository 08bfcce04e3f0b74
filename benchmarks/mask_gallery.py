"""Gallery of every mask generator on a brain slice: writes docs/figures/masks_gallery.png.

Run: ``python benchmarks/mask_gallery.py [OUT.png]``. Each panel shows the masked image (holes set to the fill
value, shown black) with the holes tinted red and outlined in yellow. The slice is nilearn's MNI152 template (see
``benchmarks/masks.py``); seeds are fixed so the figure is reproducible.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from masks import sample_slice  # noqa: E402  (benchmarks/masks.py, next to this script)
from skimage.segmentation import find_boundaries  # noqa: E402

from common.transforms import (  # noqa: E402
    FreeFormMaskd,
    IrregularMaskd,
    LargeSquareMaskd,
    LesionMaskd,
    MaskBankd,
    MultiSquareMaskd,
    PseudoSegmentMaskd,
    SlidingCircleMasksd,
    SquareMaskd,
    compute_pseudo_segments,
    sliding_circle_masks,
    write_mask_bank,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "masks_gallery.png"


def show(axis, masked: np.ndarray, holes: np.ndarray, title: str) -> None:
    """Masked image in grey (fill values clipped to black), holes tinted red and outlined in yellow."""
    axis.imshow(np.clip(masked, 0, 1), cmap="gray", vmin=0, vmax=1)
    axis.imshow(np.ma.masked_where(~holes, holes), cmap="autumn", alpha=0.3, interpolation="none")
    if holes.any():
        axis.contour(holes.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
    axis.set_title(f"{title}\nholes {holes.mean():.1%}", fontsize=9)
    axis.axis("off")


def main(out: Path = DEFAULT_OUT) -> Path:
    image = sample_slice()
    data = {"image": image[None]}
    lesion = np.zeros_like(data["image"], dtype=np.int64)
    lesion[0, 150:162, 95:112] = 1
    lesion[0, 100:108, 150:160] = 1
    with tempfile.TemporaryDirectory() as bank_dir:
        write_mask_bank(bank_dir, count=10)
        panels = [
            ("square 64x64 (ipA-MedGAN)", SquareMaskd("image")),
            ("large square 20-60%", LargeSquareMaskd("image")),
            ("multi-square 16 x 16x16", MultiSquareMaskd("image")),
            ("irregular 25-30% (autoinpainting)", IrregularMaskd("image")),
            ("free-form strokes (DeepFill v2)", FreeFormMaskd("image")),
            ("mask bank 1.36-5.46% (ipA-MedGAN)", MaskBankd("image", bank_dir)),
            ("pseudo-segments OPS, m=4-8", PseudoSegmentMaskd("image", num_segments=(4, 8))),
            (
                "pseudo-segments IBR, square, m=4-8",
                PseudoSegmentMaskd("image", position="ibr", shape="square", num_segments=(4, 8)),
            ),
            (
                "pseudo-segments Random, bank shape",
                PseudoSegmentMaskd("image", position="random", shape="irregular", bank_dir=bank_dir),
            ),
            ("lesion mask, dilation 2, fill -1", LesionMaskd("image", dilation=2)),
        ]
        figure, axes = plt.subplots(3, 4, figsize=(13, 10.5))
        for seed, (axis, (title, transform)) in enumerate(zip(axes.flat, panels, strict=False)):
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed)
            result = transform({**data, "label": lesion})
            show(axis, result["masked_image"][0], result["mask"][0] > 0, title)

    organ = (image > 0.1)[None]
    circles = SlidingCircleMasksd("image", ooi_key="ooi")({**data, "ooi": organ})
    _, centres = sliding_circle_masks(organ[0])
    shown = np.argmin(np.abs(centres - np.array(image.shape) / 2).sum(1))
    show(axes.flat[10], circles["masked_image"][shown, 0], circles["mask"][shown, 0] > 0, "")
    axes.flat[10].plot(centres[:, 1], centres[:, 0], ".", color="cyan", markersize=2)
    axes.flat[10].set_title(
        f"sliding circles r=27 s=15: {len(centres)} masks\n(one shown, cyan = all centres)", fontsize=9
    )

    segments = compute_pseudo_segments(image)
    axes.flat[11].imshow(image, cmap="gray")
    axes.flat[11].imshow(
        np.ma.masked_where(~find_boundaries(segments), segments), cmap="autumn", interpolation="none"
    )
    axes.flat[11].set_title(
        f"pseudo-segments: {segments.max() + 1}\n(Felzenszwalb + merge tau=10)", fontsize=9
    )
    axes.flat[11].axis("off")

    figure.suptitle("medinpaint mask generators (1 = hole, outlined; masked image shown)", fontsize=12)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


if __name__ == "__main__":
    print(f"wrote {main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)}")
