"""Real brain T1 for training and benchmarks: the IXI 2 mm set, or any folder of T1 NIfTI files, read into
subject records, tissue masks, skull-stripped volumes, a fixed subject split, and cached MONAI datalists.

Folders :func:`find_subjects` reads:

- the IXI set in ``<repo>/../shared/data/ixi_t1_2mm`` (``$MEDINPAINT_IXI_DIR`` overrides; see its README):
  ``t1/<id>_T1.nii.gz``, DLMUSE parcellations ``dlmuse_seg/<id>_T1_DLMUSE.nii.gz``, ``muse_derived_rois.csv``,
  ``participants.csv`` (``MRID``, ``Age``, ``Sex``);
- any folder of whole-head T1 NIfTI files (``<folder>/t1/`` or the folder itself), e.g. the full-resolution
  IXI T1 release (``IXI002-Guys-0828-T1.nii.gz``): the brain mask then comes from :func:`skull_strip` and
  there are no GM / WM / CSF masks.

Masks from a parcellation join the single ROI ids of derived MUSE ROIs: brain 701 TotalBrain
(``brain_roi=702``: ICV, which adds the CSF), GM 601, WM 604, CSF 600 + 509 (cortical CSF and ventricles).

Split (``ixi_split.json``, kept in the repository): the 4 highest IXI ids of the set are validation and are
never trained on; every other subject trains. A folder holding none of them gets its own 4 highest ids as
validation.

Cache, built like the sample data (staging folder renamed into place, manifest written last)::

    <medinpaint cache>/real-t1-v1-<folder name>-<hash of the source files and options>/
      manifest.json                       source, options, subjects (split, age, sex, brain source, volume)
      datalist_3d.json                    {"training": [...], "validation": [...]}, one entry a subject
      datalist_2d.json                    one entry an axial slice through the brain
      datalist_mni.json                   after build_ixi_mni: volumes on the MNI grid of the 3-D bundle
      subjects/<id>/t1_brain.nii.gz, brain.nii.gz, gm, wm, csf        on the T1's own grid and affine
      subjects/<id>/slices/<id>_z040_t1_brain.nii.gz ...               RAS axial slices, the T1's spacing
      subjects/<id>/mni/t1_brain.nii.gz, brain, ..., registration.json  (build_ixi_mni, per subject)

Datalist keys: ``image`` (skull-stripped T1, float32, scanner units), ``head`` (whole-head T1), ``brain``,
``gm``, ``wm``, ``csf`` (uint8 masks; the last three with a parcellation only), ``subject``; 2-D entries add
``slice_z`` (index on the RAS grid) and ``brain_pixels``. Age and sex are in the records and the manifest.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from .cache import build_cached_folder
from .cohort import MNI_AFFINE
from .sample import _save, default_root
from .skull_stripping import skull_strip

__all__ = [
    "IXI_DIR_ENV",
    "SPLIT_FILE",
    "TISSUE_ROIS",
    "SubjectVolumes",
    "T1Subject",
    "build_ixi_data",
    "build_ixi_mni",
    "default_ixi_dir",
    "find_subjects",
    "fixed_split",
    "ixi_data_dir",
    "load_ixi_datalist",
    "read_derived_rois",
    "read_subject",
    "skull_strip_dice",
    "tissue_masks",
]

IXI_DIR_ENV = "MEDINPAINT_IXI_DIR"
SPLIT_FILE = Path(__file__).with_name("ixi_split.json")
FORMAT_VERSION = 1
#: Mask name -> derived MUSE ROIs whose single ids it joins (``brain`` may be 702 ICV instead).
TISSUE_ROIS = {"brain": (701,), "gm": (601,), "wm": (604,), "csf": (600, 509)}
BRAIN_ROIS = (701, 702)
N_VALIDATION = 4
REGISTRATION_SEED = 1


@dataclasses.dataclass(frozen=True)
class T1Subject:
    """One subject of a T1 folder: its id, files, split, and age / sex when the folder lists them."""

    subject: str
    t1: Path
    parcellation: Path | None
    split: str
    age: float | None = None
    sex: str | None = None


@dataclasses.dataclass
class SubjectVolumes:
    """A subject's arrays on its T1's own grid: ``masks`` holds ``brain`` and, with a parcellation, ``gm``,
    ``wm``, ``csf``; ``brain_source`` says where the brain mask came from: ``parcellation`` or
    ``skull_strip``."""

    t1: np.ndarray
    affine: np.ndarray
    masks: dict[str, np.ndarray]
    brain_source: str

    @property
    def t1_brain(self) -> np.ndarray:
        """The skull-stripped T1: the T1 inside the brain mask, 0 outside."""
        return np.where(self.masks["brain"], self.t1, 0).astype(np.float32)


def default_ixi_dir() -> Path:
    """``$MEDINPAINT_IXI_DIR`` if set, else ``<repository>/../shared/data/ixi_t1_2mm``."""
    env = os.environ.get(IXI_DIR_ENV)
    repository = Path(__file__).resolve().parents[2]
    return Path(env).expanduser() if env else repository.parent / "shared" / "data" / "ixi_t1_2mm"


def fixed_split() -> dict[str, list[str]]:
    """The repository's subject split of the IXI set: ``{"training": [ids], "validation": [ids]}``."""
    split = json.loads(SPLIT_FILE.read_text(encoding="utf-8"))
    return {"training": split["training"], "validation": split["validation"]}


def _stem(path: Path) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", path.name)


def _subject_id(path: Path) -> str:
    """``IXI132-HH-1415`` from ``IXI132-HH-1415_T1.nii.gz`` or ``IXI132-HH-1415-T1.nii.gz``."""
    return re.sub(r"[-_]T1$", "", _stem(path), flags=re.IGNORECASE)


def _id_order(subject: str) -> tuple[int, str]:
    """Sort key: the IXI number first (``IXI132-...`` -> 132), then the name."""
    match = re.match(r"IXI(\d+)", subject)
    return (int(match.group(1)) if match else -1, subject)


def _read_participants(folder: Path) -> dict[str, tuple[float | None, str | None]]:
    path = folder / "participants.csv"
    if not path.exists():
        return {}
    people = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            subject = row.get("MRID") or row.get("participant_id") or row.get("subject")
            if not subject:
                continue
            try:
                age = float(row.get("Age") or "")
            except ValueError:
                age = None
            people[subject.strip()] = (age, (row.get("Sex") or "").strip() or None)
    return people


def find_subjects(folder: str | Path | None = None) -> list[T1Subject]:
    """Subjects of a T1 folder (default :func:`default_ixi_dir`), sorted by id, each with its split."""
    folder = Path(folder) if folder is not None else default_ixi_dir()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no T1 folder at {folder}: pass the folder of your T1 NIfTI files, or set ${IXI_DIR_ENV} to the "
            "IXI set (ixi_t1_2mm)"
        )
    images = folder / "t1" if (folder / "t1").is_dir() else folder
    files = sorted(p for p in images.iterdir() if p.is_file() and re.search(r"\.nii(\.gz)?$", p.name))
    if not files:
        raise FileNotFoundError(f"no NIfTI files (.nii, .nii.gz) in {images}")
    ids = [_subject_id(path) for path in files]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two files in {images} give the same subject id: {sorted(ids)}")
    validation = set(fixed_split()["validation"]) & set(ids)
    if not validation:
        validation = set(sorted(ids, key=_id_order)[-N_VALIDATION:]) if len(ids) > N_VALIDATION else set()
    people = _read_participants(folder)
    subjects = []
    for subject, path in sorted(zip(ids, files), key=lambda pair: _id_order(pair[0])):
        parcellation = folder / "dlmuse_seg" / f"{_stem(path)}_DLMUSE.nii.gz"
        age, sex = people.get(subject, (None, None))
        subjects.append(
            T1Subject(
                subject=subject,
                t1=path,
                parcellation=parcellation if parcellation.exists() else None,
                split="validation" if subject in validation else "training",
                age=age,
                sex=sex,
            )
        )
    return subjects


def read_derived_rois(folder: str | Path | None = None) -> dict[int, tuple[int, ...]]:
    """``muse_derived_rois.csv`` of a folder: derived ROI id -> the single ROI ids it joins."""
    path = Path(folder if folder is not None else default_ixi_dir()) / "muse_derived_rois.csv"
    table = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.reader(file):
            if row and row[0].strip().isdigit():
                table[int(row[0])] = tuple(int(cell) for cell in row[2:] if cell.strip())
    return table


def tissue_masks(
    parcellation: np.ndarray, derived: dict[int, tuple[int, ...]], brain_roi: int = 701
) -> dict[str, np.ndarray]:
    """Boolean ``brain``, ``gm``, ``wm``, ``csf`` masks of a MUSE parcellation (see :data:`TISSUE_ROIS`)."""
    if brain_roi not in BRAIN_ROIS:
        raise ValueError(f"brain_roi must be 701 (TotalBrain) or 702 (ICV), got {brain_roi!r}")
    rois = {**TISSUE_ROIS, "brain": (brain_roi,)}
    missing = sorted({roi for group in rois.values() for roi in group} - derived.keys())
    if missing:
        raise ValueError(f"the derived-ROI table has no rows for ROIs {missing}")
    return {
        name: np.isin(parcellation, sorted({i for roi in group for i in derived[roi]}))
        for name, group in rois.items()
    }


def read_subject(
    subject: T1Subject, brain_roi: int = 701, derived: dict[int, tuple[int, ...]] | None = None
) -> SubjectVolumes:
    """A subject's T1 and masks: from its parcellation if any, else only the brain, by :func:`skull_strip`."""
    image = nib.load(subject.t1)
    t1 = np.asarray(image.get_fdata(dtype=np.float32))
    if t1.ndim != 3:
        raise ValueError(f"{subject.t1} is not one 3D volume (shape {t1.shape})")
    if subject.parcellation is None:
        brain = skull_strip(t1, nib.affines.voxel_sizes(image.affine))
        return SubjectVolumes(t1, image.affine, {"brain": brain}, "skull_strip")
    labels = nib.load(subject.parcellation)
    if labels.shape != t1.shape or not np.allclose(labels.affine, image.affine, atol=1e-3):
        raise ValueError(f"{subject.parcellation} is not on the grid of {subject.t1}")
    derived = derived if derived is not None else read_derived_rois(subject.parcellation.parent.parent)
    masks = tissue_masks(np.asarray(labels.dataobj), derived, brain_roi)
    return SubjectVolumes(t1, image.affine, masks, "parcellation")


def _to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The array reordered to the closest RAS axes and its affine (as ``nibabel.as_closest_canonical``)."""
    orientation = nib.orientations.io_orientation(affine)
    return (
        nib.orientations.apply_orientation(array, orientation),
        affine @ nib.orientations.inv_ornt_aff(orientation, array.shape),
    )


def _prepare_subject(
    out_dir: str, subject: T1Subject, derived: dict | None, brain_roi: int, min_brain_fraction: float
) -> tuple[dict, list[dict], dict]:
    """Write one subject's volumes and slices; returns (3-D entry, 2-D entries, manifest info)."""
    volumes = read_subject(subject, brain_roi, derived)
    name = subject.subject
    folder = Path(out_dir) / "subjects" / name
    (folder / "slices").mkdir(parents=True)
    arrays = {"image": ("t1_brain", volumes.t1_brain)} | {
        key: (key, mask.astype(np.uint8)) for key, mask in volumes.masks.items()
    }
    entry = {"subject": name, "head": str(subject.t1.resolve())}
    for key, (stem, array) in arrays.items():
        _save(array, volumes.affine, folder / f"{stem}.nii.gz")
        entry[key] = f"subjects/{name}/{stem}.nii.gz"
    arrays["head"] = ("t1", volumes.t1)
    ras = {key: (stem, *_to_ras(array, volumes.affine)) for key, (stem, array) in arrays.items()}
    brain_area = ras["brain"][1].sum(axis=(0, 1))
    entries_2d = []
    for z in np.flatnonzero(brain_area >= min_brain_fraction * brain_area.max()):
        slice_entry = {"subject": name, "slice_z": int(z), "brain_pixels": int(brain_area[z])}
        for key, (stem, array, affine) in ras.items():
            file_name = f"{name}_z{z:03d}_{stem}.nii.gz"
            _save(
                np.ascontiguousarray(array[:, :, z]), affine @ _translation(z), folder / "slices" / file_name
            )
            slice_entry[key] = f"subjects/{name}/slices/{file_name}"
        entries_2d.append(slice_entry)
    info = {
        "subject": name,
        "split": subject.split,
        "age": subject.age,
        "sex": subject.sex,
        "brain_source": volumes.brain_source,
        "brain_ml": float(
            volumes.masks["brain"].sum() * np.prod(nib.affines.voxel_sizes(volumes.affine)) / 1000
        ),
        "shape": list(volumes.t1.shape),
        "slices": len(entries_2d),
    }
    return entry, entries_2d, info


def _translation(z: int) -> np.ndarray:
    """Voxel-space shift to slice ``z``: a 2-D slice's affine is the volume's times this."""
    shift = np.eye(4)
    shift[2, 3] = z
    return shift


def _pool_map(function: Callable, jobs: Sequence[tuple], workers: int | None) -> list:
    """``[function(*job) for job in jobs]`` in ``workers`` spawned processes (default: CPU count)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        return [function(*job) for job in jobs]
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return list(pool.map(function, *zip(*jobs)))


def _source_files(folder: Path, subjects: Iterable[T1Subject]) -> list[Path]:
    files = [f for s in subjects for f in (s.t1, s.parcellation) if f is not None]
    return files + [
        folder / n for n in ("muse_derived_rois.csv", "participants.csv") if (folder / n).exists()
    ]


def ixi_data_dir(
    folder: str | Path | None = None,
    root: str | Path | None = None,
    brain_roi: int = 701,
    min_brain_fraction: float = 0.3,
) -> Path:
    """Cache folder of :func:`build_ixi_data` for these arguments (it may not exist yet). Its name hashes the
    source files' names and contents, the options and the split: any change makes a new build, while a copy of the
    same files (a re-mounted or re-downloaded folder, new modification times) finds the existing cache."""
    folder = Path(folder) if folder is not None else default_ixi_dir()
    subjects = find_subjects(folder)
    digest = hashlib.sha256(
        json.dumps(
            [
                FORMAT_VERSION,
                str(folder.resolve()),
                brain_roi,
                min_brain_fraction,
                SPLIT_FILE.read_text("utf-8"),
            ]
        ).encode()
    )
    for path in _source_files(folder, subjects):
        digest.update(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}".encode())
    root = Path(root).expanduser() if root is not None else default_root()
    return root / f"real-t1-v{FORMAT_VERSION}-{folder.resolve().name}-{digest.hexdigest()[:12]}"


def build_ixi_data(
    folder: str | Path | None = None,
    root: str | Path | None = None,
    brain_roi: int = 701,
    min_brain_fraction: float = 0.3,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Write skull-stripped volumes, masks, 2-D slices and datalists of a T1 folder to the cache; returns the
    build folder.

    ``min_brain_fraction``: an axial slice is kept when its brain area is at least this fraction of the
    subject's largest. A complete build (manifest present) is reused unless ``force``.
    """
    folder = Path(folder) if folder is not None else default_ixi_dir()
    target = ixi_data_dir(folder, root, brain_roi, min_brain_fraction)

    def write(staging: Path) -> None:
        subjects = find_subjects(folder)
        derived = read_derived_rois(folder) if any(s.parcellation for s in subjects) else None
        jobs = [(str(staging), s, derived, brain_roi, min_brain_fraction) for s in subjects]
        results = _pool_map(_prepare_subject, jobs, workers)
        options = {"brain_roi": brain_roi, "min_brain_fraction": min_brain_fraction}
        _write_index(staging, folder, subjects, results, options)

    return build_cached_folder(target, lambda build: (build / "manifest.json").exists(), write, force)


def _write_index(
    staging: Path, folder: Path, subjects: list[T1Subject], results: list, options: dict
) -> None:
    datalists: dict[str, dict[str, list]] = {
        kind: {"training": [], "validation": []} for kind in ("3d", "2d")
    }
    for subject, (entry, entries_2d, _) in zip(subjects, results):
        datalists["3d"][subject.split].append(entry)
        datalists["2d"][subject.split].extend(entries_2d)
    for kind, datalist in datalists.items():
        description = {"name": f"real T1 from {folder.resolve().name}", "kind": kind, "source": str(folder)}
        _write_json(staging / f"datalist_{kind}.json", {**description, **datalist})
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": str(folder.resolve()),
        "options": options,
        "subjects": [info for _, _, info in results],
    }
    _write_json(staging / "manifest.json", manifest)


def _write_json(path: Path, content: dict) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(content, indent=1), encoding="utf-8")
    os.replace(partial, path)


def _register_subject(build: str, entry: dict) -> dict:
    """Register one subject's skull-stripped T1 to the MNI template and write its volumes on the MNI grid
    (``subjects/<id>/mni/``, built once, atomically); returns its MNI datalist entry."""
    from common.transforms.preprocessing import check_t1_like, register_to_mni, resample_to_mni

    name = entry["subject"]
    keys = [key for key in ("image", *TISSUE_ROIS) if key in entry]

    def write(staging: Path) -> None:
        images = {key: nib.load(Path(build) / entry[key]) for key in keys}
        affine = images["image"].affine
        t1_brain = np.asarray(images["image"].get_fdata(dtype=np.float32))
        mni_to_native = register_to_mni(t1_brain, affine, seed=REGISTRATION_SEED, number_of_threads=1)
        moved = resample_to_mni(t1_brain, affine, mni_to_native)
        record = {"mni_to_native": mni_to_native.tolist(), "t1_template_correlation": check_t1_like(moved)}
        _save(moved.astype(np.float32), MNI_AFFINE, staging / "t1_brain.nii.gz")
        for key in keys[1:]:
            mask = np.asarray(images[key].dataobj, dtype=np.float32)
            moved_mask = resample_to_mni(mask, affine, mni_to_native, order=0).astype(np.uint8)
            _save(moved_mask, MNI_AFFINE, staging / f"{key}.nii.gz")
        _write_json(staging / "registration.json", record)

    target = Path(build) / "subjects" / name / "mni"
    build_cached_folder(target, lambda folder: (folder / "registration.json").exists(), write)
    return {"subject": name} | {
        key: f"subjects/{name}/mni/{'t1_brain' if key == 'image' else key}.nii.gz" for key in keys
    }


def build_ixi_mni(
    folder: str | Path | None = None,
    root: str | Path | None = None,
    brain_roi: int = 701,
    workers: int | None = None,
) -> Path:
    """Register every subject of :func:`build_ixi_data`'s build to the MNI template of the 3-D bundle and
    write ``datalist_mni.json``; returns the build folder.

    Per subject: SimpleITK affine registration of the skull-stripped T1 to nilearn's MNI152 2009a brain
    (:func:`common.transforms.preprocessing.register_to_mni`, seeded, one ITK thread: reproducible), then the
    T1 (trilinear) and masks (nearest) on the 182x218x182 MNI 1 mm grid. Intensities stay in scanner units
    (denoising, N4 and standardisation are the bundle's preprocessing). Registered subjects are cached and
    reused; ``registration.json`` keeps ``mni_to_native`` (RAS mm) and the correlation with the T1 template.
    """
    build = build_ixi_data(folder, root, brain_roi, workers=workers)
    datalist = json.loads((build / "datalist_3d.json").read_text(encoding="utf-8"))
    mni = dict(datalist)
    for split in ("training", "validation"):
        mni[split] = _pool_map(_register_subject, [(str(build), e) for e in datalist[split]], workers)
    _write_json(build / "datalist_mni.json", {**mni, "kind": "mni"})
    return build


def load_ixi_datalist(
    kind: str = "2d",
    split: str = "training",
    folder: str | Path | None = None,
    root: str | Path | None = None,
    brain_roi: int = 701,
    workers: int | None = None,
) -> list[dict]:
    """Entries of one split (``training`` / ``validation``) with absolute paths, building the cache first if
    needed; ``kind``: ``2d`` (axial slices), ``3d`` (the T1's own grid) or ``mni`` (registered to MNI)."""
    from monai.data import load_decathlon_datalist

    if kind not in ("2d", "3d", "mni"):
        raise ValueError(f"kind must be '2d', '3d' or 'mni', got {kind!r}")
    if split not in ("training", "validation"):
        raise ValueError(f"split must be 'training' or 'validation', got {split!r}")
    build = (
        build_ixi_mni(folder, root, brain_roi, workers)
        if kind == "mni"
        else build_ixi_data(folder, root, brain_roi, workers=workers)
    )
    return load_decathlon_datalist(
        build / f"datalist_{kind}.json", is_segmentation=False, data_list_key=split
    )


def _skull_strip_dice(subject: T1Subject, brain_roi: int) -> float:
    import torch
    from monai.metrics import compute_dice

    reference = read_subject(subject, brain_roi).masks["brain"]
    image = nib.load(subject.t1)
    mask = skull_strip(image.get_fdata(dtype=np.float32), nib.affines.voxel_sizes(image.affine))
    mask, reference = (torch.from_numpy(m)[None, None] for m in (mask, reference))
    return float(compute_dice(mask, reference, include_background=True))


def skull_strip_dice(
    folder: str | Path | None = None, brain_roi: int = 701, workers: int | None = None
) -> dict[str, float]:
    """Dice of :func:`skull_strip` against the parcellation's brain mask, for every subject that has one."""
    subjects = [s for s in find_subjects(folder) if s.parcellation is not None]
    if not subjects:
        raise ValueError("no subject of this folder has a parcellation to compare the skull stripping with")
    scores = _pool_map(_skull_strip_dice, [(s, brain_roi) for s in subjects], workers)
    return {s.subject: score for s, score in zip(subjects, scores)}
