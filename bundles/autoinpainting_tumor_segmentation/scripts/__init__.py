"""Code of autoinpainting_tumor_segmentation: the sliding-circle search and its inferer, PET/CT preprocessing and
organ-of-interest masks, segmentation evaluation, AE/VAE baselines, comparison tables. The network (GatedUNet),
losses, masks and metrics are shared and live in common/."""

from . import autoinpainting, evaluation, pet_ct  # noqa: F401
