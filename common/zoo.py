"""Model-zoo packing: check a bundle against the zoo's rules and write it as ``<name>_v<version>.zip``.

``python -m common.zoo pack bundles/<name> --output dist`` (console script ``medinpaint-pack``) refuses a bundle
that fails the checks (missing files, version absent from the changelog, a file over the zoo's 25 MB limit,
weights not loadable with ``torch.load(weights_only=True)``), then writes a zip holding the bundle folder at its
root, without caches or run outputs, plus ``large_files.yml``: MONAI's large-file manifest (``path``,
``hash_val``, ``hash_type: sha256``) for every file under ``models/``, so ``python -m common.zoo verify`` (or
``python -m monai.bundle download_large_files --bundle_path <bundle>``, which skips files whose hash matches)
checks the unpacked weights.
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

__all__ = ["MAX_FILE_BYTES", "ZOO_REQUIRED_FILES", "pack", "packed_files", "verify", "zoo_problems"]

ZOO_REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "models/model.pt")
MAX_FILE_BYTES = 25_000_000  # the zoo's per-file limit (25 MB)
EXCLUDED_DIRS = {"__pycache__", "eval", "runs", ".pytest_cache", ".ipynb_checkpoints"}
MANIFEST = "large_files.yml"
HASH_TYPE = "sha256"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packed_files(bundle: Path) -> list[Path]:
    """The bundle's files (relative paths) that go into the zip: no caches, run outputs or hidden files."""
    bundle = Path(bundle)
    files = []
    for path in sorted(bundle.rglob("*")):
        relative = path.relative_to(bundle)
        if not path.is_file() or path.suffix == ".pyc" or relative.as_posix() == MANIFEST:
            continue
        if any(part in EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        files.append(relative)
    return files


def zoo_problems(bundle: Path, schema: Path | None = None) -> list[str]:
    """Why the model zoo would reject ``bundle`` (empty when it passes)."""
    bundle = Path(bundle)
    problems = [f"missing {name}" for name in ZOO_REQUIRED_FILES if not (bundle / name).is_file()]
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
    entries = [(f"{bundle.name}/{name.as_posix()}", (bundle / name).read_bytes()) for name in files]
    entries.append((f"{bundle.name}/{MANIFEST}", yaml.safe_dump(manifest, sort_keys=False).encode("utf-8")))
    with tempfile.NamedTemporaryFile(dir=output, suffix=".zip.part", delete=False) as partial:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname, data in sorted(entries):
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    os.replace(partial.name, target)
    return target


def verify(bundle: Path, schema: Path | None = None) -> list[str]:
    """Zoo problems of a bundle folder (or of the bundle inside a packed zip), plus weights whose sha256 does
    not match ``large_files.yml`` when the bundle has one."""
    bundle = Path(bundle)
    if bundle.suffix == ".zip":
        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(bundle) as archive:
            roots = {name.split("/")[0] for name in archive.namelist()}
            if len(roots) != 1:
                return [f"{bundle} must hold one bundle folder at its root, found {sorted(roots)}"]
            archive.extractall(folder)
            return verify(Path(folder) / roots.pop(), schema)
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
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medinpaint-pack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack_parser = commands.add_parser("pack", help="check a bundle and write <name>_v<version>.zip")
    pack_parser.add_argument("bundle", type=Path)
    pack_parser.add_argument("--output", type=Path, required=True, help="folder for the zip")
    verify_parser = commands.add_parser("verify", help="check a bundle folder or zip (and its weights' sha256)")
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
