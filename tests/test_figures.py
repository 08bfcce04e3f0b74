"""common.figures: one PNG row of panels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from common.figures import save_panel_row


def test_panel_row_writes_one_png_sized_by_the_panels(tmp_path):
    """Three panels of 2.4 x 2.8 inches at 110 dpi: a 792 x 308 pixel PNG, in a folder created for it."""
    image = np.random.default_rng(0).random((20, 30))
    panels = [("a", image, "gray", (0, 1)), ("b", image > 0.5, "gray", None), ("c", image, "magma", (0, 0.5))]
    path = save_panel_row(tmp_path / "new" / "row.png", panels, "title")
    with Image.open(path) as png:
        assert png.size == (round(3 * 2.4 * 110), round(2.8 * 110))
