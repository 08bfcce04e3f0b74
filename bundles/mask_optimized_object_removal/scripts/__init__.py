"""Bundle-specific Python of mask_optimized_object_removal (imported by the configs)."""

from . import binning, copy_paste, data, engines, evaluate, fast_inference, losses, networks  # noqa: F401
