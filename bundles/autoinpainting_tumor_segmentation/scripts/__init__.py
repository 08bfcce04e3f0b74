"""Bundle-specific code of autoinpainting_tumor_segmentation: segmentation evaluation, AE/VAE baselines,
comparison tables. Shared logic lives in common/ (network, search pipeline, PET/CT preprocessing)."""

from . import evaluation  # noqa: F401
