"""Figures the docs show: one PNG row of image panels (input, mask, output, residual, truth...)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["save_panel_row"]


def save_panel_row(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray, str | None, tuple[float, float] | None]],
    title: str = "",
    width: float = 2.4,
    height: float = 2.8,
    fontsize: int = 8,
    dpi: int = 110,
) -> Path:
    """Write ``panels`` — ``(name, 2-D array or RGB image, colour map or None, (vmin, vmax) or None)`` — side by
    side as one PNG, each rotated 90 degrees (RAS slices shown with anterior up), under ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (name, data, cmap, limits) in zip(axes[0], panels):
        shown = {} if limits is None else {"vmin": limits[0], "vmax": limits[1]}
        ax.imshow(np.rot90(np.asarray(data)), cmap=cmap, **shown)
        ax.set_title(name, fontsize=fontsize)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
