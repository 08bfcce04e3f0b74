"""Intensity scaling to [0, 1] that can be undone on the prediction (now in ``common.transforms.intensity``,
shared with the other bundles' fill routes; kept here under the names the configs use)."""

from __future__ import annotations

from common.transforms.intensity import PercentileScaled, RestoreIntensityd

__all__ = ["PercentileScaled", "RestoreIntensityd"]
