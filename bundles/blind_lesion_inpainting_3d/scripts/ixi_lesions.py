"""Real healthy IXI T1 volumes on the MNI grid with synthetic MS-like lesions from the lesion-mask bank (issues
#17/#18): every subject's healthy ``image`` and its lesioned twin (``image_ms``, ``label_ms``), as the sample
cohort's datalist has them, already through the bundle's MNI preprocessing.

Preprocessing once here, not in each stage: NLM and N4 cost ~40 CPU s per volume, and the two stages would
otherwise run them ~5 times per subject (stage-1 cache, stage-2 targets, stage-2 cache, validation)."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from common.data import MNI_AFFINE, default_root
from common.data.cache import build_cached_folder
from common.data.cohort import CohortParameters

from .data import preprocessor

FORMAT_VERSION = 1
#: lesion / normal-appearing WM intensity, the cohort's MS-lesion range
LESION_RATIO = CohortParameters().ms_lesion_ratio
#: partial-volume blur of the lesion edge in voxels (the 2 mm acquisition on the 1 mm grid)
EDGE_SIGMA = 0.85
#: smallest lesion load kept after clipping a bank mask to the subject's WM (voxels = mm^3)
MIN_LESION_VOXELS = 100


def paint_lesion(t1: np.ndarray, lesion: np.ndarray, ratio: float) -> np.ndarray:
    """``t1`` darkened to ``ratio`` of itself inside ``lesion`` (T1-hypointense), with a soft edge inside the
    lesion only, so every changed voxel is a lesion voxel."""
    soft = ndimage.gaussian_filter(lesion.astype(np.float32), EDGE_SIGMA) * lesion
    return (t1 * (1.0 - (1.0 - ratio) * soft)).astype(np.float32)


def draw_lesion(
    subject: str, wm: np.ndarray, bank: Sequence[str], seed: int, tries: int = 20
) -> tuple[np.ndarray, float, str]:
    """A bank mask clipped to the subject's WM and a lesion/WM intensity ratio, seeded by ``seed`` and the subject
    id (independent of the subject's position in any list). Returns (lesion, ratio, bank file)."""
    rng = np.random.default_rng([seed, zlib.crc32(subject.encode())])
    for _ in range(tries):
        path = bank[int(rng.integers(len(bank)))]
        lesion = (np.asanyarray(nib.load(path).dataobj) > 0) & wm
        if lesion.sum() >= MIN_LESION_VOXELS:
            return lesion, float(rng.uniform(*LESION_RATIO)), path
    raise ValueError(
        f"no bank mask leaves {MIN_LESION_VOXELS} lesion voxels in the WM of {subject} in {tries} draws"
    )


def lesioned_ixi_dir(
    training: Sequence[dict],
    validation: Sequence[dict],
    bank: Sequence[str],
    preprocessing: dict,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> str:
    """Folder (built once, atomically) holding ``datalist_3d.json``: the subjects of the ``training`` /
    ``validation`` MNI entries of :func:`common.data.load_ixi_datalist` (``kind='mni'``), in their split, with
    ``image`` (healthy T1), ``image_ms`` (the T1 with one bank lesion painted in), ``label_ms`` (that lesion) and
    ``brain``, all through ``MNIPreprocessd`` with ``preprocessing`` (the lesioned T1 first: its N4 field and
    scale also apply to the healthy one, as in the cohort's validation).

    The folder name hashes the entries, the bank, the options and the seed: a new registration builds anew.
    """
    if not bank:
        raise ValueError("the lesion-mask bank is empty")
    splits = {"training": list(training), "validation": list(validation)}
    key = json.dumps([FORMAT_VERSION, seed, splits, [str(p) for p in bank], preprocessing], sort_keys=True)
    root = Path(root).expanduser() if root is not None else default_root()
    target = root / f"ixi-lesions-v{FORMAT_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    files = {"image_ms": "t1_ms", "image": "t1", "label_ms": "label_ms", "brain": "brain"}
    prepare = preprocessor(list(files), ["label_ms", "brain"], preprocessing, ["label_ms"])

    def write(staging: Path) -> None:
        lesions, datalist = {}, {}
        for split, entries in splits.items():
            datalist[split] = []
            for entry in entries:
                name = Path(str(entry["subject"])).name
                t1 = np.asarray(nib.load(entry["image"]).get_fdata(dtype=np.float32))
                wm = np.asarray(nib.load(entry["wm"]).dataobj) > 0
                lesion, ratio, source = draw_lesion(name, wm, bank, seed)
                folder = staging / "subjects" / name
                folder.mkdir(parents=True)
                painted = {"image_ms": paint_lesion(t1, lesion, ratio), "label_ms": lesion.astype(np.uint8)}
                for key, array in painted.items():
                    nib.save(nib.Nifti1Image(array, MNI_AFFINE), folder / f"native_{files[key]}.nii.gz")
                data = prepare(
                    {k: str(folder / f"native_{files[k]}.nii.gz") for k in painted}
                    | {k: entry[k] for k in ("image", "brain")}
                )
                record = {"subject": name}
                for key, stem in files.items():
                    dtype = np.uint8 if key in ("label_ms", "brain") else np.float32
                    nib.save(
                        nib.Nifti1Image(np.asarray(data[key][0], dtype=dtype), MNI_AFFINE),
                        folder / f"{stem}.nii.gz",
                    )
                    record[key] = str(target / "subjects" / name / f"{stem}.nii.gz")
                for key in painted:
                    (folder / f"native_{files[key]}.nii.gz").unlink()
                datalist[split].append(record)
                lesions[name] = {
                    "split": split,
                    "bank_mask": source,
                    "ratio": ratio,
                    "volume_ml": float(lesion.sum()) / 1e3,
                    "scale": float(data["mni"]["scale"]),
                }
        (staging / "lesions.json").write_text(json.dumps(lesions, indent=1), encoding="utf-8")
        (staging / "datalist_3d.json").write_text(json.dumps(datalist, indent=1), encoding="utf-8")  # last

    build_cached_folder(target, lambda folder: (folder / "datalist_3d.json").is_file(), write)
    return str(target)
