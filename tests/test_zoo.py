"""Model-zoo packing: what goes into the zip, the weights' checksums, refusals, and a packed bundle running
outside the repository."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from harness import REPO, SCHEMA
from monai.bundle import ConfigParser

import common.zoo as zoo

PACKED_BUNDLE = REPO / "bundles" / "shape_aware_mask_inpainting"  # the cheapest bundle at inference


def fake_bundle(root, version="0.2.0", changelog=("0.2.0", "0.1.0")):
    bundle = root / "toy_bundle"
    for name in ("configs", "models", "scripts/__pycache__", "eval", "runs/run1", "docs"):
        (bundle / name).mkdir(parents=True, exist_ok=True)
    meta = {"version": version, "changelog": {v: "change" for v in changelog}}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    for name in ("LICENSE", "configs/inference.json", "docs/README.md", "scripts/__init__.py"):
        (bundle / name).write_text("{}", encoding="utf-8")
    for name in ("scripts/__pycache__/x.cpython-311.pyc", "eval/out_pred.nii.gz", "runs/run1/events.out"):
        (bundle / name).write_bytes(b"output")
    torch.save(torch.nn.Linear(2, 1).state_dict(), bundle / "models" / "model.pt")
    torch.save(torch.nn.Linear(3, 1).state_dict(), bundle / "models" / "model_variant.pt")
    return bundle


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zip_holds_the_bundle_folder_without_outputs_and_with_weight_checksums(tmp_path):
    bundle = fake_bundle(tmp_path)
    target = zoo.pack(bundle, tmp_path / "dist")
    assert target.name == "toy_bundle_v0.2.0.zip"
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        manifest = yaml.safe_load(archive.read("toy_bundle/large_files.yml"))
    assert names == [
        "toy_bundle/LICENSE",
        "toy_bundle/MANIFEST.sha256",
        "toy_bundle/configs/inference.json",
        "toy_bundle/configs/metadata.json",
        "toy_bundle/docs/README.md",
        "toy_bundle/large_files.yml",
        "toy_bundle/models/model.pt",
        "toy_bundle/models/model_variant.pt",
        "toy_bundle/scripts/__init__.py",
    ]
    assert manifest == {
        "large_files": [
            {"path": f"models/{name}", "url": "", "hash_val": sha256_of(bundle / "models" / name), "hash_type": "sha256"}
            for name in ("model.pt", "model_variant.pt")
        ]
    }
    assert zoo.pack(bundle, tmp_path / "again").read_bytes() == target.read_bytes(), "packing is reproducible"
    assert zoo.verify(target) == []


def test_manifest_lists_the_sha256_of_every_other_file_in_the_zip(tmp_path):
    """MANIFEST.sha256 (``sha256sum`` format) covers every file of the zip but itself, not only models/."""
    target = zoo.pack(fake_bundle(tmp_path), tmp_path / "dist")
    with zipfile.ZipFile(target) as archive:
        files = {n.removeprefix("toy_bundle/"): archive.read(n) for n in archive.namelist()}
    lines = files.pop("MANIFEST.sha256").decode().splitlines()
    assert lines == [f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in sorted(files.items())]
    assert [line.split("  ")[1] for line in lines] == [
        "LICENSE",
        "configs/inference.json",
        "configs/metadata.json",
        "docs/README.md",
        "large_files.yml",
        "models/model.pt",
        "models/model_variant.pt",
        "scripts/__init__.py",
    ]


def rewrite_zip(source, target, change):
    """Copy the zip ``source`` to ``target`` with ``change(files)`` applied to {name: bytes}."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


@pytest.mark.parametrize(
    "change, problems",
    [
        (
            lambda f: f.update({"toy_bundle/configs/inference.json": b'{"network_def": "$evil()"}'}),
            ["configs/inference.json: sha256 does not match MANIFEST.sha256"],
        ),
        (
            lambda f: f.update({"toy_bundle/scripts/extra.py": b"import os", "toy_bundle/.hidden": b"x"}),
            [".hidden is not listed in MANIFEST.sha256", "scripts/extra.py is not listed in MANIFEST.sha256"],
        ),
        (
            lambda f: f.pop("toy_bundle/docs/README.md"),
            ["docs/README.md listed in MANIFEST.sha256 is missing"],
        ),
        (
            lambda f: f.pop("toy_bundle/MANIFEST.sha256"),
            ["{zip} holds no toy_bundle/MANIFEST.sha256: its files cannot be checked"],
        ),
    ],
    ids=["altered_config", "added_files", "removed_doc", "no_manifest"],
)
def test_verify_checks_every_file_of_the_zip_not_only_the_weights(tmp_path, change, problems):
    target = zoo.pack(fake_bundle(tmp_path), tmp_path / "dist")
    changed = rewrite_zip(target, tmp_path / "changed.zip", change)
    assert zoo.verify(changed) == [p.format(zip=changed) for p in problems]
    assert zoo.main(["verify", str(changed)]) == 1


def test_verify_checks_every_file_of_an_unpacked_bundle(tmp_path):
    bundle = fake_bundle(tmp_path)
    with zipfile.ZipFile(zoo.pack(bundle, tmp_path / "dist")) as archive:
        archive.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / "toy_bundle"
    (unpacked / "docs" / "README.md").write_text("changed", encoding="utf-8")
    (unpacked / "configs" / "extra.json").write_text("{}", encoding="utf-8")
    assert zoo.verify(unpacked) == [
        "configs/extra.json is not listed in MANIFEST.sha256",
        "docs/README.md: sha256 does not match MANIFEST.sha256",
    ]


def test_download_large_files_accepts_the_unpacked_weights(tmp_path):
    """MONAI's ``download_large_files`` reads large_files.yml (not MANIFEST.sha256) and, the hashes matching,
    downloads nothing."""
    with zipfile.ZipFile(zoo.pack(fake_bundle(tmp_path), tmp_path / "dist")) as archive:
        archive.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / "toy_bundle"
    command = [sys.executable, "-m", "monai.bundle", "download_large_files", "--bundle_path", str(unpacked)]
    result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped downloading" in result.stdout + result.stderr


def test_pack_refuses_symlinks_out_of_the_bundle_and_never_packs_their_content(tmp_path):
    bundle = fake_bundle(tmp_path)
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside content", encoding="utf-8")
    (bundle / "docs" / "secret.txt").symlink_to(outside / "secret.txt")
    (bundle / "docs" / "folder").symlink_to(outside / "folder", target_is_directory=True)
    (bundle / "docs" / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    (bundle / "docs" / "licence_copy").symlink_to(bundle / "LICENSE")  # inside the bundle: packed
    with pytest.raises(ValueError) as error:
        zoo.pack(bundle, tmp_path / "dist")
    assert str(error.value) == (
        "toy_bundle does not pass the zoo checks: "
        f"docs/folder is a symlink to {outside / 'folder'}, outside the bundle: copy the file into the "
        f"bundle or remove the link; docs/dangling.txt is a broken symlink (to {tmp_path / 'nowhere.txt'}); "
        f"docs/secret.txt is a symlink to {outside / 'secret.txt'}, outside the bundle: copy the file into "
        "the bundle or remove the link"
    )
    assert "docs/secret.txt" not in [p.as_posix() for p in zoo.packed_files(bundle)]
    for name in ("secret.txt", "folder", "dangling.txt"):
        (bundle / "docs" / name).unlink()
    with zipfile.ZipFile(zoo.pack(bundle, tmp_path / "dist")) as archive:
        assert archive.read("toy_bundle/docs/licence_copy") == (bundle / "LICENSE").read_bytes()


def test_verify_catches_altered_weights(tmp_path):
    bundle = fake_bundle(tmp_path)
    with zipfile.ZipFile(zoo.pack(bundle, tmp_path / "dist")) as archive:
        archive.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / "toy_bundle"
    assert zoo.verify(unpacked) == []
    torch.save(torch.nn.Linear(2, 1).state_dict(), unpacked / "models" / "model.pt")
    assert zoo.verify(unpacked) == [
        "models/model.pt: sha256 does not match large_files.yml",
        "models/model.pt: sha256 does not match MANIFEST.sha256",
    ]


@pytest.mark.parametrize(
    "breakage, problem",
    [
        ("no_weights", "missing models/model.pt"),
        ("no_license", "missing LICENSE"),
        ("version", "version '0.3.0' is not in its changelog"),
        ("too_big", "models/model.pt is 0.0 MB, over the zoo's 0 MB limit"),
        ("pickled_module", "cannot be read with torch.load(weights_only=True)"),
    ],
)
def test_pack_refuses_a_bundle_failing_the_zoo_checks(tmp_path, monkeypatch, breakage, problem):
    bundle = fake_bundle(tmp_path, version="0.3.0" if breakage == "version" else "0.2.0")
    if breakage == "no_weights":
        (bundle / "models" / "model.pt").unlink()
    elif breakage == "no_license":
        (bundle / "LICENSE").unlink()
    elif breakage == "too_big":
        monkeypatch.setattr(zoo, "MAX_FILE_BYTES", 100)
    elif breakage == "pickled_module":
        torch.save(torch.nn.Linear(2, 1), bundle / "models" / "model.pt")
    with pytest.raises(ValueError, match="does not pass the zoo checks") as error:
        zoo.pack(bundle, tmp_path / "dist")
    assert problem in str(error.value)
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())
    assert zoo.main(["verify", str(bundle)]) == 1


def test_packed_bundle_runs_its_inference_outside_the_repository(tmp_path):
    """Pack with the CLI, unzip into tmp_path, check the weights' sha256, run inference with cwd=tmp_path and no
    repository path on PYTHONPATH: the bundle needs only the pip-installed ``common``."""
    source = PACKED_BUNDLE
    if not (source / "models" / "model.pt").is_file():  # until the demo weights are shipped: a stand-in
        source = tmp_path / "source" / PACKED_BUNDLE.name
        shutil.copytree(PACKED_BUNDLE, source, ignore=shutil.ignore_patterns("__pycache__", "eval", "runs"))
        parser = ConfigParser()
        parser.read_config(str(source / "configs" / "inference.json"))
        parser.update({"bundle_root": str(source)})
        torch.save(parser.get_parsed_content("network_def").state_dict(), source / "models" / "model.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "common.zoo", "pack", str(source), "--output", str(tmp_path / "dist")]
    packed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", check=True)
    target = tmp_path / "dist" / packed.stdout.strip().split(os.sep)[-1]
    with zipfile.ZipFile(target) as archive:
        archive.extractall(tmp_path / "unpacked")
    bundle = tmp_path / "unpacked" / PACKED_BUNDLE.name
    assert zoo.verify(bundle, SCHEMA) == []

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle)})
    first = dict(parser.get_parsed_content("datalist")[0])
    override = tmp_path / "one_image.json"
    override.write_text(json.dumps({"datalist": [first]}), encoding="utf-8")
    configs = json.dumps([f"{PACKED_BUNDLE.name}/configs/inference.json", str(override)])
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs]
    command += ["--bundle_root", PACKED_BUNDLE.name, "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=tmp_path / "unpacked", env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert result.returncode == 0, result.stderr[-4000:]
    stem = first["image"].split("/")[-1].removesuffix(".nii.gz")
    assert list((tmp_path / "out").rglob(f"{stem}_inpainted.nii.gz")), "the unpacked bundle wrote no output"
    assert "RANDOM weights" not in result.stderr + result.stdout
