"""Stage-2 (blind) training data: lesioned volumes paired with the stage-1 (non-blind) fill of their lesions (the
paper: real MS scans have no lesion-free truth), or, for synthetic lesions painted into healthy scans, with that
lesion-free truth; plus healthy volumes paired with themselves so that the network learns when not to inpaint."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from common.data import MNI_AFFINE
from common.engines import read_state_dict

from .data import preprocessor

logger = logging.getLogger(__name__)
FILL_VALUE = -1.0


def load_stage(
    network_def: torch.nn.Module, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """A copy of ``network_def`` holding one stage's weights (``checkpoint``), in eval mode on ``device``."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist: train that stage first")
    network = copy.deepcopy(network_def)
    network.load_state_dict(read_state_dict(checkpoint, map_location="cpu"))
    return network.to(device).eval()


@torch.no_grad()
def predict(
    network: torch.nn.Module, volume: torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Whole-volume forward pass of a (1, X, Y, Z) volume in eval mode; returns (1, X, Y, Z) on the CPU."""
    network.eval()
    return network(torch.as_tensor(volume, dtype=torch.float32)[None].to(device))[0].cpu()


def fill_lesions(
    network: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, device="cpu"
) -> torch.Tensor:
    """Non-blind fill: lesion voxels set to -1, network output inside the mask, the image elsewhere."""
    holes = torch.as_tensor(mask) > 0
    filled = predict(network, torch.where(holes, torch.tensor(FILL_VALUE), torch.as_tensor(image)), device)
    return torch.where(holes, filled, torch.as_tensor(image))


def build_blind_datalist(
    datalist: Sequence[dict],
    network_def: torch.nn.Module,
    checkpoint: str,
    output_dir: str,
    preprocessing: dict,
    device: str | torch.device = "cpu",
    lesioned_key: str = "image_ms",
    lesion_key: str = "label_ms",
    healthy_key: str = "image",
    target: str = "fill",
) -> list[dict]:
    """Blind training pairs ``[{"image": lesioned T1, "label": its stage-1 fill}, {"image": healthy T1, "label":
    itself}, ...]``.

    The fills come from a copy of ``network_def`` with the stage-1 weights ``checkpoint``. Targets are written to
    ``output_dir/blind_targets`` already preprocessed (MNI grid, standardised, the network's space), so the blind
    training loads them as they are while its inputs go through the same deterministic ``preprocessing``
    (MNIPreprocessd options) as here.

    ``target``: ``"fill"`` (the paper) pairs a lesioned volume with the stage-1 fill of its lesions; ``"healthy"``
    pairs it with the lesion-free ``healthy_key`` volume, for lesions painted into healthy scans (IXI): the truth a
    CPU-trained stage 1 only approximates (no stage-1 weights are needed then).
    """
    if not datalist:
        raise ValueError("empty datalist: no lesioned volume to build blind targets from")
    if target not in ("fill", "healthy"):
        raise ValueError(f"target must be 'fill' or 'healthy', got {target!r}")
    network = load_stage(network_def, checkpoint, device) if target == "fill" else None
    folder = Path(output_dir) / "blind_targets"
    folder.mkdir(parents=True, exist_ok=True)
    prepare_lesioned = preprocessor([lesioned_key, lesion_key], [lesion_key], preprocessing, [lesion_key])
    prepare_healthy = preprocessor([healthy_key], [], preprocessing)
    # tag the entries with the stage-1 weights, so that a PersistentDataset cache keyed by the entry is not
    # reused after stage 1 is retrained (the target files keep their names)
    version = f"{Path(checkpoint).resolve()}:{os.path.getmtime(checkpoint)}" if network is not None else "healthy"
    blind = []
    for entry in datalist:
        subject = Path(str(entry.get("subject", "case"))).name  # load_decathlon_datalist makes it a path
        healthy_path = folder / f"{subject}_healthy_mni.nii.gz"
        _save_mni(prepare_healthy({healthy_key: entry[healthy_key]})[healthy_key], healthy_path)
        fill_path = healthy_path
        if network is not None:
            data = prepare_lesioned({lesioned_key: entry[lesioned_key], lesion_key: entry[lesion_key]})
            fill = fill_lesions(network, data[lesioned_key], data[lesion_key], device)
            fill_path = folder / f"{subject}_fill_mni.nii.gz"
            _save_mni(fill, fill_path)
        blind.append({"image": entry[lesioned_key], "label": str(fill_path), "stage1": version})
        blind.append({"image": entry[healthy_key], "label": str(healthy_path), "stage1": version})
    logger.info("wrote targets for %d lesioned volumes (%s) and their healthy twins to %s", len(datalist), target, folder)
    return blind


def _save_mni(volume: torch.Tensor, path: Path) -> None:
    """Write a (1, X, Y, Z) MNI-grid volume as NIfTI with the MNI affine."""
    nib.save(nib.Nifti1Image(np.asarray(volume[0], dtype=np.float32), MNI_AFFINE), path)
