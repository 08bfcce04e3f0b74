"""Bundle-specific Python of mask_optimized_object_removal (imported by the configs)."""

from . import data, evaluate  # noqa: F401
