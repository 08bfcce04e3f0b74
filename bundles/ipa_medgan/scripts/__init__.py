"""Bundle-specific code of `ipa_medgan` (imported by the configs as ``scripts``, with the bundle root on
``sys.path`` as in the MONAI model zoo)."""

from . import evaluation, losses, masks, networks, transforms  # noqa: F401
