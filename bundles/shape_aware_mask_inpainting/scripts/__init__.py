"""Bundle-specific code of shape_aware_mask_inpainting (shared logic lives in the ``common`` package)."""

from . import evaluation, networks, transforms

__all__ = ["evaluation", "networks", "transforms"]
