"""Model-zoo packing: check a bundle against the zoo's rules and write it as ``<name>_v<version>.zip``.

``python -m common.zoo pack bundles/<name> --output dist`` (console script ``medinpaint-pack``) refuses a bundle
that fails the checks (missing files, version absent from the changelog, a file over the zoo's 25 MB limit,
weights not loadable with ``torch.load(weights_only=True)``), then writes a zip holding the bundle folder at its
root, without caches or run outputs, plus two checksum files:

- ``large_files.yml``: MONAI's large-file manifest (``path``, ``url``, ``hash_val``, ``hash_type: sha256``)
  for every file under ``models/``, so ``python -m monai.bundle download_large_files --bundle_path <bundle>``
  (which skips files whose hash matches) accepts the unpacked weights;
- ``MANIFEST.sha256``: the sha256 of every other file in the zip (configs, scripts, docs, weights,
  ``large_files.yml``) in ``sha256sum`` format, so ``python -m common.zoo verify`` (or ``sha256sum -c
  MANIFEST.sha256`` in the bundle folder) catches any altered, missing or added file, not only weights.

A symlink that points outside the bundle (or nowhere) is refused: the zip never holds content from outside the
bundle folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

__all__ = [
    "CHECKSUMS",
    "MAX_FILE_BYTES",
    "ZOO_REQUIRED_FILES",
    "checksum_problems",
    "pack",
    "packed_files",
    "symlink_problems",
    "verify",
    "zoo_problems",
]

ZOO_REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "models/model.pt")
MAX_FILE_BYTES = 25_000_000  # the zoo's per-file limit (25 MB)
EXCLUDED_DIRS = {"__pycache__", "eval", "runs", ".pytest_cache", ".ipynb_checkpoints"}
MANIFEST = "large_files.yml"
CHECKSUMS = "MANIFEST.sha256"  # not "large_files*": download_large_files reads every file named so
HASH_TYPE = "sha256"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(bundle: Path):
    """(relative path, is a folder) of every entry of ``bundle`` that packing considers, symlinks not
    followed: no caches, run outputs or hidden files."""
    for folder, dirs, files in os.walk(bundle, followlinks=False):
        here = Path(folder).relative_to(bundle)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in dirs:
            yield here / name, True
        for name in sorted(files):
            if not name.startswith(".") and not name.endswith(".pyc"):
                yield here / name, False


def symlink_problems(bundle: Path) -> list[str]:
    """Symlinks in ``bundle`` that point outside it or nowhere: packing would copy content from outside the
    bundle (or fail), so they are refused."""
    bundle = Path(bundle)
    root = bundle.resolve()
    problems = []
    for relative, _ in _walk(bundle):
        path = bundle / relative
        if not path.is_symlink():
            continue
        target = path.resolve()
        if not target.exists():
            problems.append(f"{relative.as_posix()} is a broken symlink (to {os.readlink(path)})")
        elif not target.is_relative_to(root):
            problems.append(
                f"{relative.as_posix()} is a symlink to {target}, outside the bundle: copy the file into the "
                "bundle or remove the link"
            )
    return problems


def packed_files(bundle: Path) -> list[Path]:
    """The bundle's files (relative paths) that go into the zip: no caches, run outputs or hidden files, no
    checksum files (pack writes them), and no symlink whose target lies outside the bundle; symlinked folders
    are not entered (what they point to inside the bundle is packed where it lies)."""
    bundle = Path(bundle)
    root = bundle.resolve()
    files = []
    for relative, is_dir in _walk(bundle):
        path = bundle / relative
        if is_dir or relative.as_posix() in (MANIFEST, CHECKSUMS) or not path.is_file():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            continue
        files.append(relative)
    return sorted(files)


def zoo_problems(bundle: Path, schema: Path | None = None) -> list[str]:
    """Why the model zoo would reject ``bundle`` (empty when it passes)."""
    bundle = Path(bundle)
    problems = [f"missing {name}" for name in ZOO_REQUIRED_FILES if not (bundle / name).is_file()]
    problems += symlink_problems(bundle)
    meta_file = bundle / "configs" / "metadata.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if str(meta.get("version")) not in meta.get("changelog", {}):
            problems.append(f"metadata.json version {meta.get('version')!r} is not in its changelog")
        if schema is not None:
            from monai.bundle import verify_metadata

            try:
                verify_metadata(meta_file=str(meta_file), filepath=str(schema))
            except Exception as error:
                problems.append(f"metadata.json fails the schema {schema}: {error}")
    for relative in packed_files(bundle):
        size = (bundle / relative).stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(f"{relative} is {size / 1e6:.1f} MB, over the zoo's {MAX_FILE_BYTES / 1e6:.0f} MB limit")
    weights = bundle / "models" / "model.pt"
    if weights.is_file():
        from common.engines.state_dict_loader import read_state_dict

        try:
            read_state_dict(weights, map_location="cpu")
        except ValueError as error:
            problems.append(str(error))
    return problems


def _version(bundle: Path) -> str:
    return str(json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"])


def pack(bundle: Path, output: Path, schema: Path | None = None) -> Path:
    """Write ``<output>/<bundle name>_v<version>.zip`` (byte-reproducible: sorted entries, fixed timestamps)."""
    bundle = Path(bundle).resolve()
    problems = zoo_problems(bundle, schema)
    if problems:
        raise ValueError(f"{bundle.name} does not pass the zoo checks: " + "; ".join(problems))
    files = packed_files(bundle)
    manifest = {
        "large_files": [
            {"path": name.as_posix(), "url": "", "hash_val": sha256(bundle / name), "hash_type": HASH_TYPE}
            for name in files
            if name.parts[0] == "models"
        ]
    }
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{bundle.name}_v{_version(bundle)}.zip"
    contents = {name.as_posix(): (bundle / name).read_bytes() for name in files}
    contents[MANIFEST] = yaml.safe_dump(manifest, sort_keys=False).encode("utf-8")
    checksums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(contents.items())
    )
    contents[CHECKSUMS] = checksums.encode("utf-8")
    entries = [(f"{bundle.name}/{name}", data) for name, data in contents.items()]
    with tempfile.NamedTemporaryFile(dir=output, suffix=".zip.part", delete=False) as partial:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname, data in sorted(entries):
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    os.replace(partial.name, target)
    return target


def checksum_problems(bundle: Path, files: list[str]) -> list[str]:
    """Files of ``files`` (relative posix paths) missing from ``MANIFEST.sha256`` or whose sha256 differs, and
    files it lists that are missing."""
    listed = {}
    for line in (bundle / CHECKSUMS).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = []
    for name in sorted(set(files) | set(listed)):
        if name == CHECKSUMS:
            continue
        if name not in listed:
            problems.append(f"{name} is not listed in {CHECKSUMS}")
        elif name not in files or not (bundle / name).is_file():
            problems.append(f"{name} listed in {CHECKSUMS} is missing")
        elif sha256(bundle / name) != listed[name]:
            problems.append(f"{name}: sha256 does not match {CHECKSUMS}")
    return problems


def verify(bundle: Path, schema: Path | None = None) -> list[str]:
    """Zoo problems of a bundle folder or of the bundle inside a packed zip, plus checksum mismatches:
    weights against ``large_files.yml``, and every file against ``MANIFEST.sha256`` (a zip must have one:
    every file in the archive is checked, hidden or not; a folder is checked when it has one, over the files
    pack would pack)."""
    bundle = Path(bundle)
    if bundle.suffix == ".zip":
        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(bundle) as archive:
            roots = {name.split("/")[0] for name in archive.namelist()}
            if len(roots) != 1:
                return [f"{bundle} must hold one bundle folder at its root, found {sorted(roots)}"]
            root = roots.pop()
            archive.extractall(folder)
            unpacked = Path(folder) / root
            names = [name.partition("/")[2] for name in archive.namelist() if not name.endswith("/")]
            if not (unpacked / CHECKSUMS).is_file():
                missing = f"{bundle} holds no {root}/{CHECKSUMS}: its files cannot be checked"
                return verify(unpacked, schema) + [missing]
            return _verify_folder(unpacked, schema, names)
    files = [name.as_posix() for name in packed_files(bundle)] + [MANIFEST] * (bundle / MANIFEST).is_file()
    return _verify_folder(bundle, schema, files if (bundle / CHECKSUMS).is_file() else None)


def _verify_folder(bundle: Path, schema: Path | None, files: list[str] | None) -> list[str]:
    """Zoo problems, ``large_files.yml`` mismatches and, when ``files`` is given, ``MANIFEST.sha256`` ones."""
    problems = zoo_problems(bundle, schema)
    manifest = bundle / MANIFEST
    if manifest.is_file():
        for entry in yaml.safe_load(manifest.read_text(encoding="utf-8"))["large_files"]:
            path = bundle / entry["path"]
            if entry.get("hash_type", HASH_TYPE) != HASH_TYPE:
                problems.append(f"{entry['path']}: unsupported hash_type {entry['hash_type']!r}")
            elif not path.is_file():
                problems.append(f"{entry['path']} listed in {MANIFEST} is missing")
            elif sha256(path) != entry["hash_val"]:
                problems.append(f"{entry['path']}: sha256 does not match {MANIFEST}")
    if files is not None:
        problems += checksum_problems(bundle, files)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medinpaint-pack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack_parser = commands.add_parser("pack", help="check a bundle and write <name>_v<version>.zip")
    pack_parser.add_argument("bundle", type=Path)
    pack_parser.add_argument("--output", type=Path, required=True, help="folder for the zip")
    verify_parser = commands.add_parser("verify", help="check a bundle folder or zip and every file's sha256")
    verify_parser.add_argument("bundle", type=Path)
    for sub in (pack_parser, verify_parser):
        sub.add_argument("--schema", type=Path, help="metadata schema file for verify_metadata (offline)")
    args = parser.parse_args(argv)
    if args.command == "pack":
        try:
            print(pack(args.bundle, args.output, args.schema))
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        return 0
    problems = verify(args.bundle, args.schema)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.bundle}: passes the zoo checks")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
