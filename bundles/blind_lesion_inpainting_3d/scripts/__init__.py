"""Bundle-specific code of `blind_lesion_inpainting_3d` (imported by the configs as ``scripts``, with the bundle
root on ``sys.path`` as in the MONAI model zoo)."""

from . import abnormal_wm, blind_data, evaluation, lesion_bank, metrics, tissue  # noqa: F401
