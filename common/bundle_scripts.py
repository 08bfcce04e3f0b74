"""Import a bundle's ``scripts`` package under a name of its own, so any number of bundles share one process.

Every bundle keeps the model-zoo layout (``<bundle>/scripts/`` next to ``configs/``), and ``python -m
monai.bundle`` would import each as the top-level module ``scripts``: the second bundle loaded in a process
(MONAI Label, a notebook, our tests) would then get the first one's module. A bundle's configs therefore load
their package with ``"scripts": "$common.bundle_scripts.load_bundle_scripts(@bundle_root)"`` and reach its
contents as ``@scripts.<module>.<name>``; inside the package, modules import each other relatively.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_bundle_scripts", "scripts_module_name"]

PREFIX = "medinpaint_bundle_"


def scripts_module_name(bundle_root: str | Path) -> str:
    """The module name a bundle's package gets: ``medinpaint_bundle_<folder name>``."""
    return PREFIX + re.sub(r"\W", "_", Path(bundle_root).resolve().name)


def _loaded_from(module: ModuleType) -> Path | None:
    origin = getattr(module, "__file__", None)
    return Path(origin).resolve().parent if origin else None


def load_bundle_scripts(bundle_root: str | Path) -> ModuleType:
    """Import ``<bundle_root>/scripts`` as a package named after the bundle folder (once per folder).

    A second copy of a bundle at another path (an unpacked zoo archive beside the repository's) gets the name
    with a hash of its path appended, so the two never mix.

    Raises:
        FileNotFoundError: ``bundle_root`` has no ``scripts/__init__.py``.
    """
    root = Path(bundle_root).resolve()
    package_dir = root / "scripts"
    init = package_dir / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(
            f"bundle root {root} has no scripts/__init__.py: pass --bundle_root <the bundle folder> "
            f"(the one holding configs/ and scripts/)."
        )
    name = scripts_module_name(root)
    existing = sys.modules.get(name)
    if existing is not None and _loaded_from(existing) != package_dir:
        name = f"{name}_{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
        existing = sys.modules.get(name)
    if existing is not None:
        return existing
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(package_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        raise
    return module
