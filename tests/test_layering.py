"""The layers of ``common``: every import points down, and nothing in ``common`` imports a bundle.

checks, data, figures, reproduction <- masking <- networks, transforms <- losses, metrics <- engines <- zoo, bundle_scripts <-
bundle_config (the bundle tooling).
A package may import itself and any package of a lower level, never one of its own level or above (so
``networks`` and ``transforms`` stay independent, as do ``losses`` and ``metrics``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[1] / "common"
LEVELS = {
    "checks": 0,
    "data": 0,
    "figures": 0,
    "reproduction": 0,
    "masking": 1,
    "networks": 2,
    "transforms": 2,
    "losses": 3,
    "metrics": 3,
    "engines": 4,
    "zoo": 5,
    "bundle_scripts": 5,
    "bundle_config": 6,
}


def imported_modules(path: Path, root: Path = COMMON) -> list[str]:
    """Dotted names of every module ``path`` imports (relative imports resolved against its package)."""
    package = ["common", *path.relative_to(root).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module)
                continue
            base = package[: len(package) - node.level + 1]
            if node.module:
                names.append(".".join([*base, node.module]))
            else:
                names += [".".join([*base, alias.name]) for alias in node.names]
    return names


def part_of_common(path: Path, root: Path = COMMON) -> str:
    """The top-level part of ``common`` that ``path`` belongs to (``engines``, ``checks``...)."""
    return path.relative_to(root).with_suffix("").parts[0]


def layering_violations(path: Path, root: Path = COMMON) -> list[str]:
    """Every import of ``path`` into a bundle, an unknown part of ``common``, or a level not below its own."""
    own, problems = part_of_common(path, root), []
    for name in imported_modules(path, root):
        parts = name.split(".")
        if parts[0] in ("bundles", "scripts"):
            problems.append(f"{name}: a bundle module")
        elif parts[0] == "common" and len(parts) > 1 and parts[1] != own:
            if parts[1] not in LEVELS:
                problems.append(f"{name}: not a known part of common (add it to LEVELS)")
            elif LEVELS[parts[1]] >= LEVELS[own]:
                problems.append(f"{name}: level {LEVELS[parts[1]]}, not below {own}'s {LEVELS[own]}")
    return problems


MODULES = sorted(p for p in COMMON.rglob("*.py") if part_of_common(p) != "__init__")
# Known exceptions, each with its reason; an entry here is a debt to pay, not a rule.
EXCEPTIONS = {
    ("data/ixi.py", "common.transforms.preprocessing"): "the MNI datalist of real scans reuses the 3-D "
    "registration (lazy import); move build_ixi_mni above transforms",
    ("data/ixi_tumours.py", "common.transforms.masks"): "the synthetic tumours of the IXI validation set are "
    "transforms.masks.smooth_blob_mask blobs (lazy import); move ixi_tumours above transforms",
}


def test_every_part_of_common_has_a_level():
    unplaced = sorted({part_of_common(p) for p in MODULES} - set(LEVELS))
    assert not unplaced, f"add {unplaced} to LEVELS (and to this module's docstring)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(COMMON).as_posix())
def test_imports_point_down_and_never_into_a_bundle(path):
    where = path.relative_to(COMMON).as_posix()
    problems = [p for p in layering_violations(path) if (where, p.split(":")[0]) not in EXCEPTIONS]
    assert problems == [], f"{where} imports upwards or into a bundle"


def test_the_check_catches_upward_sideways_and_bundle_imports(tmp_path):
    module = tmp_path / "common" / "losses" / "fake.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from ..engines import x\nfrom .. import checks\nfrom . import weighted_sum\nimport common.metrics\n"
        "from common.masking import composite\nimport bundles.ipa_medgan\n",
        encoding="utf-8",
    )
    assert imported_modules(module, tmp_path / "common") == [
        "common.engines",
        "common.checks",
        "common.losses.weighted_sum",
        "common.metrics",
        "common.masking",
        "bundles.ipa_medgan",
    ]
    assert [v.split(":")[0] for v in layering_violations(module, tmp_path / "common")] == [
        "common.engines",
        "common.metrics",
        "bundles.ipa_medgan",
    ]
