"""Atomic builds of cached folders (the sample cohort, the lesion-mask bank, mask banks).

Several processes may build the same folder at once (torchrun ranks, parallel tests), and a build may be
interrupted; a half-written folder must never look complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_cached_folder"]


def build_cached_folder(
    target: str | os.PathLike,
    is_complete: Callable[[Path], bool],
    write: Callable[[Path], object],
    force: bool = False,
) -> Path:
    """Return ``target``, first building it unless ``is_complete(target)`` (or ``force``).

    ``write(staging)`` fills a temporary folder beside ``target``, which then replaces it with one rename.
    When another process completes ``target`` meanwhile, its folder is kept and the staging copy discarded.
    """
    target = Path(target)
    if not force and is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        if not force and is_complete(target):
            return target
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(staging, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
