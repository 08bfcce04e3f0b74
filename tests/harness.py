"""Helpers of the bundle harness: find bundles, run the bundle CLI, write DICOM series from NIfTI.

See docs/bundle_conventions.md for what a bundle must provide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "meta_schema.json"
OVERRIDE_CONFIGS = ("quick.json", "evaluate.json", "multi_gpu_train.json")
REQUIRED_FILES = (
    "LICENSE",
    "configs/metadata.json",
    "configs/train.json",
    "configs/quick.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
)
TRAIN_IDS = (
    "bundle_root",
    "output_dir",
    "dataset_dir",
    "device",
    "network_def",
    "network",
    "inferer",
    "train#datalist",
    "train#dataset",
    "train#dataloader",
    "train#trainer",
    "train#trainer#max_epochs",
    "train#handlers",
    "validate#datalist",
    "validate#dataset",
    "validate#evaluator",
    "validate#handlers",
    "val_interval",
    "progress_bar",
    "tensorboard_dir",
    "initialize",
    "run",
    "training",
    "finalize",
)
INFERENCE_IDS = (
    "bundle_root",
    "output_dir",
    "device",
    "network_def",
    "network",
    "datalist",
    "preprocessing",
    "postprocessing",
    "inferer",
    "evaluator",
    "allow_random_weights",
    "initialize",
    "run",
    "finalize",
)


PAPER_WIDTH_OVERRIDE = "inference_paper_width.json"


def random_weights_overrides(bundle: Path) -> list[str]:
    """CLI overrides letting inference run on random weights, ONLY while ``models/model.pt`` is not shipped yet
    (so once it is, every inference test exercises the shipped weights)."""
    return [] if (bundle / "models" / "model.pt").is_file() else ["--allow_random_weights", "true"]


def state_dict_shapes(bundle: Path, *configs: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of ``network_def`` built from ``configs`` merged in order (on the meta
    device: no memory is allocated, so paper-width networks are cheap to compare)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle)})
    with torch.device("meta"):
        network = parser.get_parsed_content("network_def")
    return {name: tuple(value.shape) for name, value in network.state_dict().items()}


def tensorboard_tags(log_dir: Path) -> tuple[set[str], set[str]]:
    """(scalar tags, image tags) of every TensorBoard event file under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, images = set(), set()
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 1})
        accumulator.Reload()
        scalars.update(accumulator.Tags()["scalars"])
        images.update(accumulator.Tags()["images"])
    return scalars, images


def load_module(path: Path, name: str):
    """A script that is not a package module (``benchmarks/*.py``, ``tools/*.py``), imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_bundles(root: Path = REPO / "bundles") -> list[Path]:
    """Every folder of ``bundles/`` that has a ``configs`` folder: new bundles are picked up automatically."""
    return sorted(p for p in root.iterdir() if (p / "configs").is_dir()) if root.is_dir() else []


def config_list(*paths: Path) -> str:
    """The ``--config_file`` argument that merges several configs, in order."""
    return json.dumps([str(p) for p in paths])


def run_bundle(args: list[str], cwd: Path, timeout: int = 600, launcher: list[str] | None = None):
    """Run ``python -m monai.bundle ARGS`` (or under ``launcher``, e.g. torchrun) and fail loudly on error."""
    command = (launcher or [sys.executable, "-m"]) + ["monai.bundle", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}"
            f"\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def write_dicom_series(image_path: Path, folder: Path, modality: str = "MR") -> Path:
    """Write a NIfTI image as a DICOM series (int16, one file per axial slice) in ``folder``.

    A 2D image becomes a one-slice series. Orientation, spacing and per-slice position are set in the DICOM
    tags, so MONAI's ITK reader recovers the image's geometry from the series.
    """
    image = sitk.ReadImage(str(image_path))
    if image.GetDimension() == 2:  # keep the slice's position along z, which a 2-D read drops
        import nibabel as nib

        image = sitk.JoinSeries(image, float(nib.load(str(image_path)).affine[2, 3]), 1.0)
    image = sitk.Cast(sitk.Round(image), sitk.sitkInt16)
    folder.mkdir(parents=True, exist_ok=True)
    direction = image.GetDirection()
    uid_root = "1.2.826.0.1.3680043.8.498"
    series_uid = f"{uid_root}.{zlib.crc32(str(image_path).encode())}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        tags = {
            "0008|0060": modality,
            "0020|000d": f"{series_uid}.1",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 2}",
            "0020|0013": str(k + 1),
            "0020|0037": "\\".join(str(v) for v in (*direction[0:7:3], *direction[1:8:3])),
            "0020|0032": "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": str(image.GetSpacing()[2]),
        }
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:04d}.dcm"))
        writer.Execute(plane)
    return folder


def spatial_geometry(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """(spatial shape, affine) of an image as MONAI's ``LoadImage`` reads it (trailing singleton dims dropped,
    as 2D bundles do with a one-slice DICOM)."""
    from monai.transforms import LoadImage

    image = LoadImage(image_only=True)(str(path))
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape, np.asarray(image.affine)


def run_inference_in_process(bundle: Path, output_dir: Path, datalist: list[dict] | None = None) -> None:
    """Run ``bundle``'s ``inference.json`` in this process (as MONAI Label or a notebook would), optionally on
    ``datalist`` instead of its default one."""
    from monai.bundle import ConfigWorkflow

    overrides = {"bundle_root": str(bundle), "output_dir": str(output_dir)}
    if datalist is not None:
        overrides["datalist"] = datalist
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"), workflow_type="infer", **overrides
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def block_mask(shape, rows, cols):
    """A rectangular hole (1 inside ``rows`` x ``cols`` of the last two dims) of ``shape``."""
    import torch

    mask = torch.zeros(shape)
    mask[..., rows[0] : rows[1], cols[0] : cols[1]] = 1
    return mask
