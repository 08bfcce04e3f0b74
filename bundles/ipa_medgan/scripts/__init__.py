"""Code of the `ipa_medgan` bundle only: the cascaded MultiResUNet generator, discriminators, style loss, mask
banks, intensity transforms and the Table I report. The configs load it with
``common.bundle_scripts.load_bundle_scripts(@bundle_root)`` and reach it as ``@scripts.<module>.<name>``."""

from . import data, evaluation, losses, masks, multiresunet, networks, transforms  # noqa: F401
