"""Bundle-specific code of `blind_lesion_inpainting_3d`, loaded by the configs as ``scripts`` through
``common.bundle_scripts.load_bundle_scripts(@bundle_root)``."""

from . import abnormal_wm, blind_data, data, evaluation, ixi_lesions, lesion_bank, losses, networks, tissue  # noqa: F401
