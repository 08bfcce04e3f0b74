"""Build, cache and read the embedded sample data: the synthetic MNI cohort as NIfTI volumes, 256x256 axial
slices, and MONAI datalists split by subject.

Layout of one build (``<root>/mni152-cohort-v2-n<N>-seed<S>/``)::

    manifest.json                    parameters, per-subject draws, checksums of every array
    datalist_3d.json                 {"training": [...], "validation": [...], "test": [...]}, one entry a subject
    datalist_2d.json                 same splits, one entry an axial slice
    sub-000/t1.nii.gz ...            182x218x182 volumes on the MNI 1 mm grid
    sub-000/slices/sub-000_z062_t1.nii.gz   256x256 axial slices with their own affine; file names
                                            are unique across subjects (outputs written flat never clash)

Datalist keys (3D and 2D): ``image`` (lesion-free T1), ``image_ms`` / ``label_ms`` (with MS-like lesions and
their mask), ``image_tumour`` / ``label_tumour`` (with a tumour-like mass and its mask), ``brain`` (brain mask),
``subject``; 3D entries add ``gm`` and ``wm`` probability maps, 2D entries add ``slice_z`` and the lesion pixel
counts ``ms_pixels`` / ``tumour_pixels``. Paths are relative to the datalist's folder, as
``monai.data.load_decathlon_datalist`` expects.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .cache import build_cached_folder
from .cohort import MNI_AFFINE, MNI_SHAPE, CohortParameters, Template, load_template, make_subject

FORMAT_VERSION = 2  # 2: slice file names carry the subject
DEFAULT_SUBJECTS = 10
DEFAULT_SEED = 0
SLICE_SIZE = 256
#: Axial slice indices (MNI grid, z = -72 + k) kept for 2D data: from the basal ganglia to the centrum semiovale.
SLICE_INDICES = tuple(range(50, 126, 5))
LOADS = ("small", "medium", "large")
VOLUME_KEYS = {  # datalist key -> file stem
    "image": "t1",
    "image_ms": "t1_ms",
    "label_ms": "ms_mask",
    "image_tumour": "t1_tumour",
    "label_tumour": "tumour_mask",
    "brain": "brain",
    "gm": "gm",
    "wm": "wm",
}
SLICE_KEYS = ("image", "image_ms", "label_ms", "image_tumour", "label_tumour", "brain")
MASK_STEMS = {"ms_mask", "tumour_mask", "brain"}
MB_PER_SUBJECT = 37.3  # the default 10-subject cohort is 373 MB

logger = logging.getLogger(__name__)


class SampleDataError(RuntimeError):
    """The sample data cannot be built or read (unwritable folder, corrupt cache...)."""


def default_root() -> Path:
    """``$MEDINPAINT_DATA`` if set, else ``~/.cache/medinpaint``."""
    env = os.environ.get("MEDINPAINT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medinpaint"


def _check_arguments(n_subjects, seed) -> None:
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise ValueError(f"n_subjects must be an integer, got {n_subjects!r}")
    if n_subjects < 3:
        raise ValueError(
            f"n_subjects must be at least 3 (one subject each for training, validation and test), "
            f"got {n_subjects}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")


def dataset_dir(
    root: str | Path | None = None, n_subjects: int = DEFAULT_SUBJECTS, seed: int = DEFAULT_SEED
) -> Path:
    """Folder of the cohort built with these arguments (it may not exist yet)."""
    _check_arguments(n_subjects, seed)
    return (
        Path(root or default_root()).expanduser()
        / f"mni152-cohort-v{FORMAT_VERSION}-n{n_subjects}-seed{seed}"
    )


def split_subjects(n_subjects: int) -> dict[str, list[int]]:
    """Subject indices of each split: 20% validation, 20% test (at least one each), the rest training.

    Splits are by subject, never by slice, so no anatomy of a test subject is seen in training."""
    n_val = n_test = max(1, round(0.2 * n_subjects))
    n_train = n_subjects - n_val - n_test
    return {
        "training": list(range(n_train)),
        "validation": list(range(n_train, n_train + n_val)),
        "test": list(range(n_train + n_val, n_subjects)),
    }


def array_checksum(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (file checksums would depend on gzip headers)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def slice_affine(k: int) -> np.ndarray:
    """Affine of axial slice ``k`` after padding x to 218 (centred) and resizing 218x218 -> 256x256 with
    half-pixel-aligned bilinear interpolation (``align_corners=False``)."""
    pad = (MNI_SHAPE[1] - MNI_SHAPE[0]) // 2
    spacing = MNI_SHAPE[1] / SLICE_SIZE
    affine = np.eye(4)
    affine[0, 0] = affine[1, 1] = spacing
    x0, y0, z0 = MNI_AFFINE[:3, 3]
    affine[0, 3] = x0 - pad - 0.5 + 0.5 * spacing
    affine[1, 3] = y0 - 0.5 + 0.5 * spacing
    affine[2, 3] = z0 + k
    return affine


def to_slice(volume: np.ndarray, k: int, is_mask: bool) -> np.ndarray:
    """Axial slice ``k`` of an MNI-grid volume as a 256x256 image (masks: bilinear then > 0.5)."""
    pad = (MNI_SHAPE[1] - MNI_SHAPE[0]) // 2
    plane = torch.from_numpy(np.pad(volume[:, :, k].astype(np.float32), ((pad, pad), (0, 0))))
    resized = F.interpolate(
        plane[None, None], size=(SLICE_SIZE, SLICE_SIZE), mode="bilinear", align_corners=False
    )
    resized = resized[0, 0].numpy()
    return (resized > 0.5).astype(np.uint8) if is_mask else np.maximum(resized, 0.0).astype(np.float32)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> str:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return array_checksum(array)


_TEMPLATE: Template | None = None


def _build_subject(out_dir: str, index: int, seed_sequence: np.random.SeedSequence, params: CohortParameters):
    """Make subject ``index`` and write its volumes and slices; returns (entry_3d, entries_2d, info, checksums)."""
    global _TEMPLATE
    torch.set_num_threads(1)
    if _TEMPLATE is None:
        _TEMPLATE = load_template()
    subject = make_subject(
        _TEMPLATE, seed_sequence, LOADS[index % len(LOADS)], (SLICE_INDICES[1], SLICE_INDICES[-2] + 1), params
    )
    name = f"sub-{index:03d}"
    folder = Path(out_dir) / name
    (folder / "slices").mkdir(parents=True)
    checksums, entry = {}, {"subject": name}
    for key, stem in VOLUME_KEYS.items():
        relative = f"{name}/{stem}.nii.gz"
        checksums[relative] = _save(getattr(subject, stem), MNI_AFFINE, folder / f"{stem}.nii.gz")
        entry[key] = relative
    entries_2d = []
    for k in SLICE_INDICES:
        slice_entry = {"subject": name, "slice_z": k}
        for key in SLICE_KEYS:
            stem = VOLUME_KEYS[key]
            file_name = slice_file_name(name, k, stem)
            relative = f"{name}/slices/{file_name}"
            plane = to_slice(getattr(subject, stem), k, stem in MASK_STEMS)
            checksums[relative] = _save(plane, slice_affine(k), folder / "slices" / file_name)
            slice_entry[key] = relative
            if stem in ("ms_mask", "tumour_mask"):
                slice_entry[f"{stem.split('_')[0]}_pixels"] = int(plane.sum())
        entries_2d.append(slice_entry)
    return entry, entries_2d, subject.info, checksums


def _report(message: str) -> None:
    """Log ``message`` at INFO when logging shows it (a bundle run), else print it to stderr: a first build
    writes hundreds of MB for tens of seconds and must not look like a hang."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def _writable_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as err:
        raise SampleDataError(
            f"cannot write sample data under {root}: {err}. Choose a writable folder with "
            f"--root or the MEDINPAINT_DATA environment variable."
        ) from err


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_sample_data(
    root: str | Path | None = None,
    n_subjects: int = DEFAULT_SUBJECTS,
    seed: int = DEFAULT_SEED,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Build the cohort (if it is not built already) and return its folder.

    Idempotent: a complete build (its manifest written last) is reused. The build is atomic
    (:func:`common.data.cache.build_cached_folder`), so an interrupted build never looks complete. A build
    says where it writes, how much, and reports each subject as it is written (:func:`_report`).
    """
    target = dataset_dir(root, n_subjects, seed)
    if _read_manifest(target) is not None and not force:
        return target
    _writable_root(target.parent)
    workers = max(1, min(workers or os.cpu_count() or 1, n_subjects))
    start = time.perf_counter()
    _report(
        f"building the sample data in {target}: {n_subjects} synthetic subjects (seed {seed}) from nilearn's "
        f"MNI152 template, about {round(MB_PER_SUBJECT * n_subjects)} MB, {workers} process(es); "
        "done once, then reused"
    )

    def write(staging: Path) -> None:
        params = CohortParameters()
        streams = np.random.SeedSequence(seed).spawn(n_subjects)
        jobs = [(str(staging), i, streams[i], params) for i in range(n_subjects)]
        results = [None] * n_subjects

        def done(index: int, result, count: int) -> None:
            results[index] = result
            _report(f"sample data: subject {count}/{n_subjects} written ({time.perf_counter() - start:.0f} s)")

        if workers == 1:
            for count, job in enumerate(jobs, 1):
                done(job[1], _build_subject(*job), count)
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_build_subject, *job): job[1] for job in jobs}
                for count, future in enumerate(concurrent.futures.as_completed(futures), 1):
                    done(futures[future], future.result(), count)
        _write_index(staging, results, n_subjects, seed, params)

    folder = build_cached_folder(target, lambda folder: _read_manifest(folder) is not None, write, force)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
    _report(f"sample data ready in {folder} ({size:.0f} MB, {time.perf_counter() - start:.1f} s)")
    return folder


def ensure_sample_data(folder: str | Path) -> str:
    """``folder``, first building the sample cohort when ``folder`` is the default cohort's (the bundles'
    ``dataset_dir`` default): datalists read through it build the cohort on first use, while a user's own
    ``--dataset_dir`` or ``--datalist`` never builds (nor writes) anything."""
    if Path(folder).expanduser().resolve() == dataset_dir().resolve():
        return str(build_sample_data())
    return str(folder)


def _write_index(folder: Path, results, n_subjects: int, seed: int, params: CohortParameters) -> None:
    splits = split_subjects(n_subjects)
    split_of = {i: split for split, indices in splits.items() for i in indices}
    datalists = {"3d": {s: [] for s in splits}, "2d": {s: [] for s in splits}}
    subjects, checksums = [], {}
    for index, (entry, entries_2d, info, sums) in enumerate(results):
        split = split_of[index]
        datalists["3d"][split].append(entry)
        datalists["2d"][split].extend(entries_2d)
        subjects.append({"subject": entry["subject"], "split": split, **info})
        checksums.update(sums)
    for kind, datalist in datalists.items():
        description = {
            "name": "medinpaint synthetic MNI152 cohort",
            "kind": kind,
            "seed": seed,
            "n_subjects": n_subjects,
            "labels": {"0": "background", "1": "lesion"},
        }
        (folder / f"datalist_{kind}.json").write_text(
            json.dumps({**description, **datalist}, indent=1), encoding="utf-8"
        )
    manifest = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "n_subjects": n_subjects,
        "parameters": dataclasses.asdict(params),
        "mni_shape": MNI_SHAPE,
        "slice_size": SLICE_SIZE,
        "slice_indices": SLICE_INDICES,
        "subjects": subjects,
        "checksums": checksums,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def load_datalist(
    kind: str = "2d",
    split: str = "training",
    root: str | Path | None = None,
    n_subjects: int = DEFAULT_SUBJECTS,
    seed: int = DEFAULT_SEED,
) -> list[dict]:
    """Entries of one split with absolute paths, building the cohort first if needed."""
    from monai.data import load_decathlon_datalist

    if kind not in ("2d", "3d"):
        raise ValueError(f"kind must be '2d' or '3d', got {kind!r}")
    folder = build_sample_data(root, n_subjects, seed)
    return load_decathlon_datalist(
        folder / f"datalist_{kind}.json", is_segmentation=False, data_list_key=split
    )


def slice_file_name(subject: str, z: int, stem: str) -> str:
    """``sub-000_z062_t1.nii.gz``: the subject is in the name so slices of different subjects never share one."""
    return f"{subject}_z{z:03d}_{stem}.nii.gz"


def sample_brain_slice(
    subject: int = 0, z: int = 95, key: str = "image", root: str | Path | None = None
) -> np.ndarray:
    """One 256x256 axial slice (float32, scanner units; uint8 for masks) of the default cohort."""
    if z not in SLICE_INDICES:
        raise ValueError(f"z must be one of the stored slices {SLICE_INDICES}, got {z}")
    if key not in SLICE_KEYS:
        raise ValueError(f"key must be one of {SLICE_KEYS}, got {key!r}")
    folder = build_sample_data(root)
    name = f"sub-{subject:03d}"
    path = folder / name / "slices" / slice_file_name(name, z, VOLUME_KEYS[key])
    if not path.exists():
        raise ValueError(f"subject {subject} is not in the default cohort ({DEFAULT_SUBJECTS} subjects)")
    return np.asanyarray(nib.load(path).dataobj)
