"""Packaging: setup.cfg's ``install_requires`` covers every third-party module ``common/`` imports (and,
slow, a fresh venv with ``pip install .`` alone imports ``common`` and runs a bundle), and each bundle's
``metadata.json`` lists in ``required_packages_version`` the packages it really imports, at
requirements.txt's versions."""

import ast
import configparser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from harness import REPO, find_bundles
from monai.bundle import ConfigParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from common.data import default_root

COMMON = REPO / "common"
# metadata.json has fields of its own for these three (monai_version, pytorch_version, numpy_version)
OWN_FIELDS = {"monai", "torch", "numpy"}
# Backends that MONAI and ignite import lazily, so no import statement shows them: a name in a bundle's
# configs, its scripts or the common modules it uses implies the distributions.
IMPLIED = {
    "TensorBoard": (
        "tensorboard",
    ),  # TensorBoardStatsHandler, common.engines.TensorBoardPanels: SummaryWriter
    "ProgressBar": ("tqdm",),
    "LoadImage": ("nibabel", "itk"),  # NIfTI through nibabel, DICOM series through ITK
    "SaveImage": ("nibabel",),
}
DISTRIBUTIONS = importlib.metadata.packages_distributions()


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    return parser


def install_requires() -> dict[str, Requirement]:
    lines = setup_cfg()["options"]["install_requires"].strip().splitlines()
    requirements = [Requirement(line.strip()) for line in lines if line.strip()]
    return {canonicalize_name(r.name): r for r in requirements}


def pins() -> dict[str, tuple[str, str]]:
    """requirements.txt: canonical name -> (name as written, exact version)."""
    pinned = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = (name, version)
    return pinned


def distribution(module: str) -> str:
    """The canonical name of the installed distribution that provides top-level ``module``."""
    if module == "common":
        return "medinpaint"
    names = [canonicalize_name(d) for d in DISTRIBUTIONS.get(module, [])]
    assert names, f"no installed distribution provides the module {module!r}"
    return next((n for n in names if n in pins()), names[0])


def imported_modules(tree: ast.AST, package: str = "") -> set[str]:
    """Dotted names of every module ``tree`` imports (relative imports resolved against ``package``, skipped
    without one), including ``from X import Y`` as both ``X`` and ``X.Y`` (Y may be a submodule)."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and not package:
                continue  # relative: inside the package being scanned
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in modules if m}


def third_party(modules) -> set[str]:
    tops = {m.split(".")[0] for m in modules}
    return {m for m in tops if m not in sys.stdlib_module_names and m not in ("common", "scripts")}


def common_file(module: str):
    """The file of ``common.x.y`` (module or package), or None (an attribute, not a module)."""
    path = REPO.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def common_closure(modules) -> set:
    """Files of the ``common`` modules named in ``modules``, their parent packages and everything they import
    from ``common``, transitively."""
    todo, files = [m for m in modules if m == "common" or m.startswith("common.")], set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for k in range(1, len(parts) + 1):
            file = common_file(".".join(parts[:k]))
            if file is None or file in files:
                continue
            files.add(file)
            name = ".".join(parts[:k])
            package = name if file.name == "__init__.py" else name.rpartition(".")[0]
            todo += [
                m
                for m in imported_modules(ast.parse(file.read_text(encoding="utf-8")), package)
                if m == "common" or m.startswith("common.")
            ]
    return files


def config_modules(text: str) -> set[str]:
    """Modules a config imports: ``$import X``, ``$from X import``, dotted ``_target_`` and ``common.x``
    references in expressions."""
    modules = set(re.findall(r"\$import ([\w.]+)", text)) | set(re.findall(r"\$from ([\w.]+) import", text))
    modules |= {t for t in re.findall(r'"_target_":\s*"([A-Za-z_][\w.]*)"', text) if "." in t}
    modules |= set(re.findall(r"\bcommon(?:\.\w+)+", text))
    return modules


def implied(texts) -> set[str]:
    words = set()
    for text in texts:
        words |= set(re.findall(r"\w+", text))
    return {d for key, dists in IMPLIED.items() if any(key in word for word in words) for d in dists}


def bundle_requirements(bundle) -> set[str]:
    """Canonical names of the distributions ``bundle`` needs: its scripts' imports, its configs' modules, what
    the common modules it uses import, the lazily imported backends of what it uses, and medinpaint itself."""
    scripts = sorted((bundle / "scripts").rglob("*.py"))
    configs = [p.read_text(encoding="utf-8") for p in sorted((bundle / "configs").glob("*.json"))]
    modules = set().union(*(config_modules(text) for text in configs))
    for file in scripts:
        modules |= imported_modules(ast.parse(file.read_text(encoding="utf-8")), "scripts")
    closure = common_closure(modules)
    for file in closure:
        modules |= imported_modules(ast.parse(file.read_text(encoding="utf-8")))
    sources = configs + [f.read_text(encoding="utf-8") for f in [*scripts, *closure]]
    needed = {distribution(m) for m in third_party(modules)} | implied(sources) | {"medinpaint"}
    return needed - OWN_FIELDS


def test_install_requires_covers_every_third_party_module_common_imports():
    modules = set()
    for file in sorted(COMMON.rglob("*.py")):
        modules |= imported_modules(ast.parse(file.read_text(encoding="utf-8")))
    modules = third_party(modules)
    assert {"torch", "monai", "numpy", "nilearn", "skimage", "ignite"} <= modules  # the scan sees them
    declared = install_requires()
    missing = sorted(f"{m} ({distribution(m)})" for m in modules if distribution(m) not in declared)
    assert missing == [], f"setup.cfg install_requires lacks what common/ imports: {missing}"


def test_install_requires_are_compatible_ranges_around_the_pinned_versions():
    """Each requirement admits requirements.txt's exact version and stops before the next major (minor for
    0.x and MONAI) release."""
    pinned = pins()
    for name, requirement in install_requires().items():
        assert name in pinned, f"{requirement} is not pinned in requirements.txt"
        version = Version(pinned[name][1])
        assert requirement.specifier.contains(version), f"{requirement} excludes the tested {version}"
        assert not requirement.specifier.contains(f"{version.major + 1}.0"), (
            f"{requirement} has no upper bound"
        )


@pytest.mark.parametrize("bundle", find_bundles(), ids=lambda b: b.name)
def test_metadata_lists_the_packages_the_bundle_imports_at_the_pinned_versions(bundle):
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    listed = {
        canonicalize_name(name): (name, version)
        for name, version in meta["required_packages_version"].items()
    }
    needed = bundle_requirements(bundle)
    missing, extra = sorted(needed - set(listed)), sorted(set(listed) - needed)
    assert sorted(listed) == sorted(needed), (
        f"required_packages_version: missing {missing}, not imported {extra}"
    )
    expected = {**pins(), "medinpaint": ("medinpaint", setup_cfg()["metadata"]["version"])}
    assert {n: listed[n] for n in sorted(listed)} == {n: expected[n] for n in sorted(listed)}


@pytest.mark.slow
def test_pip_install_alone_gives_a_package_that_imports_and_runs_a_bundle(tmp_path):
    """A fresh venv (no system site-packages), ``pip install`` of a copy of the package's files, then from
    outside the repository: every ``common`` module imports, ``medinpaint-pack`` answers, and a bundle's
    inference runs on one image. requirements.txt is passed as constraints only (it adds no package, so a
    dependency missing from install_requires still fails here): pip then takes the tested versions, the CPU
    torch wheel on disk included, from wherever its configuration points (wheel cache, local folders,
    offline) instead of resolving the newest CUDA build."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    shutil.copytree(COMMON, source / "common", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")

    def run(*args, timeout=600):
        result = subprocess.run(
            [*args], cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout
        )
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    assert subprocess.run([python, "-c", "import pytest"], cwd=tmp_path, env=env).returncode != 0, "not fresh"
    constraints = str(REPO / "requirements.txt")
    run(python, "-m", "pip", "install", "--no-input", "--quiet", "-c", constraints, str(source), timeout=1800)
    imported = run(
        python,
        "-c",
        "import importlib, pkgutil, common; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(common.__path__, 'common.')]; "
        "print(common.__file__)",
    )
    assert imported.stdout.strip().startswith(str(venv)), imported.stdout
    run(str(venv / "bin" / "medinpaint-pack"), "--help")

    bundle = REPO / "bundles" / "shape_aware_mask_inpainting"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    # the config's own datalist (an expression or a _target_), narrowed to its first entry
    first = tmp_path / "first_image.json"
    first.write_text(json.dumps({"full_datalist": parser["datalist"], "datalist": "$@full_datalist[:1]"}))
    env["MEDINPAINT_DATA"] = str(default_root())  # the sample data already built: not rebuilt
    configs = json.dumps([str(bundle / "configs" / "inference.json"), str(first)])
    output = ["--output_dir", str(tmp_path / "out")]
    run(python, "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(bundle), *output)
    assert len(list((tmp_path / "out").rglob("*.nii.gz"))) == 1
