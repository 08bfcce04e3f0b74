"""PET/CT preprocessing of the autoinpainting paper, and organ-of-interest (OOI) masks.

Steps (Astaraki et al.), each a function here:

1. PET to SUV (:func:`suv_factor`, :func:`read_pet_suv`): body-weight SUV = activity (Bq/ml) x weight (g) /
   decayed dose (Bq), from the DICOM header (pydicom): ``PatientWeight``, ``Units`` (must be BQML),
   ``DecayCorrection``, and in ``RadiopharmaceuticalInformationSequence[0]`` ``RadionuclideTotalDose``,
   ``RadionuclideHalfLife`` and ``RadiopharmaceuticalStartTime`` (or ``...StartDateTime``). The dose is decayed
   from injection to the acquisition time (``AcquisitionTime``; ``time_reference="series"`` uses
   ``SeriesTime``, QIBA's choice for ``DecayCorrection`` START). With ``DecayCorrection`` ADMIN the image is
   already decay-corrected to the injection and the dose is not decayed. A missing field raises ``ValueError``
   naming it.
2. PET resampled onto the CT grid with a 3rd-order B-spline (:func:`resample_to_reference`, SimpleITK).
3. CT clamped to a HU window (:data:`CT_WINDOWS`: lung [-1000, 500], head and neck [-200, 200]) and SUV to
   [0, 12] (:data:`SUV_RANGE`), both scaled to [0, 1] (:func:`window_to_unit`, MONAI ``ScaleIntensityRange``).
4. Axial slices resized to 512x512 (:func:`axial_slices`, configurable).
5. OOI: given by the user, else a fallback (:class:`OrganOfInterestd`): :func:`lung_field_mask` for CT (HU
   threshold and morphology) or :func:`foreground_mask` (Otsu) for other images such as brain MRI.

:func:`prepare_pet_ct_subject` chains the steps for one subject (CT DICOM series or NIfTI, PET DICOM series,
optional OOI and tumour masks) and writes NIfTI slices plus a decathlon datalist; ``prepare_pet_ct.py`` is its
command line.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, load_decathlon_properties
from monai.transforms import FillHoles, KeepLargestConnectedComponent, MapTransform, ScaleIntensityRange
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = [
    "CT_WINDOWS",
    "SUV_RANGE",
    "OOI_FALLBACKS",
    "suv_factor",
    "read_pet_suv",
    "resample_to_reference",
    "window_to_unit",
    "axial_slices",
    "lung_field_mask",
    "foreground_mask",
    "OrganOfInterestd",
    "read_volume",
    "prepare_pet_ct_subject",
    "datalist_channels",
]

#: CT windows (HU) of the paper.
CT_WINDOWS = {"lung": (-1000.0, 500.0), "head_and_neck": (-200.0, 200.0)}
#: SUV clamp range of the paper.
SUV_RANGE = (0.0, 12.0)
OOI_FALLBACKS = ("foreground", "lung", None)
#: image channels written by :func:`prepare_pet_ct_subject` for each modality choice.
MODALITY_CHANNELS = {"ct": ("ct",), "pet": ("pet",), "pet_ct": ("ct", "pet")}
#: datalist splits; training and validation keep healthy slices only.
SPLITS = ("training", "validation", "test")


def _dicom_time_seconds(value: str, field: str) -> float:
    """Seconds since midnight of a DICOM TM value (HHMMSS.FFFFFF, parts optional)."""
    text = str(value).strip()
    try:
        hours = int(text[0:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError as error:
        raise ValueError(f"DICOM field {field} is not a valid time (HHMMSS.FFFFFF): {value!r}") from error
    return hours * 3600 + minutes * 60 + seconds


def _dicom_datetime(value: str, field: str) -> datetime.datetime:
    """A DICOM DT value (YYYYMMDDHHMMSS.FFFFFF, timezone ignored) as a naive datetime."""
    text = str(value).strip().split("+")[0].split("-")[0]
    try:
        day = datetime.datetime.strptime(text[:8], "%Y%m%d")
    except ValueError as error:
        raise ValueError(f"DICOM field {field} is not a valid date-time: {value!r}") from error
    return day + datetime.timedelta(seconds=_dicom_time_seconds(text[8:] or "000000", field))


def _required(dataset, keyword: str, where: str = "the PET header"):
    value = getattr(dataset, keyword, None)
    if value is None or value == "":
        raise ValueError(f"cannot compute SUV: {where} lacks {keyword}, which SUV conversion needs.")
    return value


def suv_factor(dataset, time_reference: str = "acquisition") -> float:
    """Factor turning a PET image in Bq/ml into body-weight SUV (g/ml), from a pydicom ``Dataset``.

    ``time_reference``: ``"acquisition"`` (``AcquisitionTime``/``AcquisitionDateTime``) or ``"series"``
    (``SeriesTime``/``SeriesDate``). Raises ``ValueError`` naming any missing or invalid field.
    """
    if time_reference not in ("acquisition", "series"):
        raise ValueError(f"time_reference must be 'acquisition' or 'series', got {time_reference!r}.")
    units = str(_required(dataset, "Units")).upper()
    if units != "BQML":
        raise ValueError(f"cannot compute SUV: PET Units are {units!r}, expected 'BQML' (activity in Bq/ml).")
    weight = float(_required(dataset, "PatientWeight"))
    if weight <= 0:
        raise ValueError(f"cannot compute SUV: PatientWeight must be positive (kg), got {weight}.")
    sequence = _required(dataset, "RadiopharmaceuticalInformationSequence")
    if len(sequence) == 0:
        raise ValueError("cannot compute SUV: RadiopharmaceuticalInformationSequence is empty.")
    info = sequence[0]
    where = "RadiopharmaceuticalInformationSequence[0]"
    dose = float(_required(info, "RadionuclideTotalDose", where))
    half_life = float(_required(info, "RadionuclideHalfLife", where))
    if dose <= 0 or half_life <= 0:
        raise ValueError(
            f"cannot compute SUV: RadionuclideTotalDose ({dose}) and RadionuclideHalfLife ({half_life}) must be > 0."
        )
    decay_correction = str(_required(dataset, "DecayCorrection")).upper()
    if decay_correction == "ADMIN":
        return weight * 1000.0 / dose
    decay = _decay_seconds(dataset, info, time_reference)
    return weight * 1000.0 / (dose * 2.0 ** (-decay / half_life))


def _decay_seconds(dataset, info, time_reference: str) -> float:
    """Seconds from injection to the reference time (full date-times when both are present, else times of day,
    adding a day when the scan time is earlier than the injection: a scan past midnight)."""
    prefix = "Acquisition" if time_reference == "acquisition" else "Series"
    start_dt = getattr(info, "RadiopharmaceuticalStartDateTime", None)
    scan_dt = getattr(dataset, f"{prefix}DateTime", None) if prefix == "Acquisition" else None
    if (
        scan_dt is None
        and getattr(dataset, f"{prefix}Date", None)
        and getattr(dataset, f"{prefix}Time", None)
    ):
        scan_dt = f"{getattr(dataset, f'{prefix}Date')}{getattr(dataset, f'{prefix}Time')}"
    if start_dt and scan_dt:
        delta = _dicom_datetime(scan_dt, f"{prefix}DateTime") - _dicom_datetime(
            start_dt, "RadiopharmaceuticalStartDateTime"
        )
        return delta.total_seconds()
    start_time = getattr(info, "RadiopharmaceuticalStartTime", None) or (start_dt and str(start_dt)[8:])
    if not start_time:
        raise ValueError(
            "cannot compute SUV: RadiopharmaceuticalInformationSequence[0] lacks RadiopharmaceuticalStartTime "
            "(and RadiopharmaceuticalStartDateTime), the injection time."
        )
    scan_time = _required(dataset, f"{prefix}Time")
    decay = _dicom_time_seconds(scan_time, f"{prefix}Time") - _dicom_time_seconds(
        start_time, "RadiopharmaceuticalStartTime"
    )
    return decay + 86400.0 if decay < 0 else decay


def read_pet_suv(folder: str | Path, time_reference: str = "acquisition") -> sitk.Image:
    """Read a PET DICOM series (SimpleITK/GDCM applies the rescale slope/intercept: Bq/ml) and convert it to
    SUV with the first file's header (:func:`suv_factor`). Needs pydicom."""
    try:
        import pydicom
    except ImportError as error:  # pragma: no cover - pydicom is a dependency of this module's users
        raise ImportError("reading SUV from DICOM headers needs pydicom: pip install pydicom") from error
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    if not files:
        raise FileNotFoundError(f"no DICOM series found in {folder}.")
    factor = suv_factor(pydicom.dcmread(files[0], stop_before_pixels=True), time_reference)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return sitk.Cast(reader.Execute(), sitk.sitkFloat32) * factor


def resample_to_reference(image: sitk.Image, reference: sitk.Image, order: int = 3) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid (identity transform, physical coordinates) with a B-spline
    of ``order`` (3 = cubic, the paper's PET-to-CT step; 1 = linear, 0 = nearest); outside values 0."""
    interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}
    if order not in interpolators:
        raise ValueError(f"order must be 0, 1 or 3, got {order}.")
    if image.GetDimension() != reference.GetDimension():
        raise ValueError(
            f"image is {image.GetDimension()}D and reference {reference.GetDimension()}D; both must match."
        )
    return sitk.Resample(image, reference, sitk.Transform(), interpolators[order], 0.0, sitk.sitkFloat32)


def window_to_unit(array, window: Sequence[float] | str) -> Any:
    """Clamp to ``window`` (HU or SUV range, or a name in :data:`CT_WINDOWS`) and scale to [0, 1]."""
    low, high = CT_WINDOWS[window] if isinstance(window, str) else window
    if not high > low:
        raise ValueError(f"window must be (low, high) with high > low, got {window!r}.")
    return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(array)


def axial_slices(volume: np.ndarray, size: Sequence[int] = (512, 512), order: int = 1) -> np.ndarray:
    """(X, Y, Z) volume -> (Z, size[0], size[1]) axial slices resized with interpolation ``order`` (1 for
    images, 0 for masks); pixel areas aligned, edges extended (not blended with zeros)."""
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) volume, got shape {volume.shape}.")
    zoom = (size[0] / volume.shape[0], size[1] / volume.shape[1], 1.0)
    return np.moveaxis(ndimage.zoom(volume, zoom, order=order, grid_mode=True, mode="nearest"), -1, 0)


def _without_channel(transform, mask: np.ndarray) -> np.ndarray:
    """Apply a channel-first MONAI transform to a mask that has no channel axis. The connected-component
    transforms below use face connectivity (``connectivity=1``), scipy.ndimage's default."""
    return np.asarray(transform(mask[None]))[0]


def lung_field_mask(
    ct_hu: np.ndarray, air_threshold: float = -400.0, closing_radius: int = 3, min_fraction: float = 0.001
) -> np.ndarray:
    """Lung fields of a CT in HU (2D slice, or 3D (X, Y, Z) volume with Z axial), the fallback OOI when none is
    given.

    Rule: voxels below ``air_threshold`` HU; remove the air connected to the in-plane (X, Y) image border
    (outside the body; not the first and last axial slices, which may cut through the lungs); keep the two largest remaining components (the lungs; trachea and bowel gas are smaller); close
    with a ball of ``closing_radius`` voxels and fill holes (vessels and nodules inside the lungs, so a tumour
    abutting the lung wall stays inside the OOI). Components under ``min_fraction`` of the image are dropped.
    """
    ct_hu = np.asarray(ct_hu, dtype=np.float32)
    if ct_hu.ndim not in (2, 3) or not np.isfinite(ct_hu).all():
        raise ValueError(f"expected a finite 2D or 3D CT in HU, got shape {ct_hu.shape}.")
    air = ct_hu < air_threshold
    labels, _ = ndimage.label(air)
    border = np.unique(np.concatenate([np.take(labels, [0, -1], axis=a).ravel() for a in (0, 1)]))
    inside = air & ~np.isin(labels, border[border > 0])
    lungs = _without_channel(KeepLargestConnectedComponent(num_components=2, connectivity=1), inside)
    labels, found = ndimage.label(lungs)
    if found:
        sizes = np.bincount(labels.ravel())
        lungs = np.isin(labels, np.nonzero(sizes[1:] >= min_fraction * ct_hu.size)[0] + 1)
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(ct_hu.ndim, 1), closing_radius)
    closed = ndimage.binary_closing(np.pad(lungs, closing_radius), ball)
    closed = closed[tuple(slice(closing_radius, -closing_radius) for _ in range(ct_hu.ndim))]
    return _without_channel(FillHoles(connectivity=1), closed)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Otsu foreground, largest component, holes filled: the fallback OOI for non-CT images (e.g. brain MRI)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3) or not np.isfinite(image).all():
        raise ValueError(f"expected a finite 2D or 3D image, got shape {image.shape}.")
    if image.max() == image.min():
        raise ValueError("cannot find a foreground in a constant image.")
    largest = _without_channel(KeepLargestConnectedComponent(connectivity=1), image > threshold_otsu(image))
    return _without_channel(FillHoles(connectivity=1), largest)


class OrganOfInterestd(MapTransform):
    """Write the organ-of-interest mask ``(1, *spatial)`` under ``ooi_key``: the user's mask under
    ``source_key`` (binarised, > 0) when present, else ``fallback`` computed from the first channel of the
    image under ``keys``: ``"lung"`` (:func:`lung_field_mask`, image in HU: run before intensity scaling),
    ``"foreground"`` (:func:`foreground_mask`) or None (raise ``KeyError``). An empty OOI raises ``ValueError``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str | None = "ooi",
        ooi_key: str = "ooi",
        fallback: str | None = "foreground",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if fallback not in OOI_FALLBACKS:
            raise ValueError(f"fallback must be one of {OOI_FALLBACKS}, got {fallback!r}.")
        self.source_key, self.ooi_key, self.fallback = source_key, ooi_key, fallback

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        key = self.first_key(d)
        image = d[key]
        source = d.get(self.source_key) if self.source_key is not None else None
        if source is not None and not isinstance(source, str):
            if tuple(source.shape[-image.ndim + 1 :]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"OOI {self.source_key!r} has shape {tuple(source.shape)}, image {key!r} {tuple(image.shape)}."
                )
            mask = np.asarray(source).reshape(1, *image.shape[1:]) > 0
        elif self.fallback is None:
            raise KeyError(f"no organ-of-interest mask under {self.source_key!r} and no fallback configured.")
        else:
            channel = np.asarray(image[0], dtype=np.float32)
            mask = (lung_field_mask(channel) if self.fallback == "lung" else foreground_mask(channel))[None]
        if not mask.any():
            raise ValueError(f"the organ-of-interest mask of {key!r} is empty.")
        out = torch.as_tensor(mask.astype(np.float32))
        if isinstance(image, MetaTensor):
            out = MetaTensor(out)
            out.copy_meta_from(image)
        d[self.ooi_key] = out
        return d


def read_volume(path: str | Path) -> sitk.Image:
    """A 3D image from a DICOM series folder (SimpleITK/GDCM applies rescale slope/intercept: HU for CT) or an
    image file (NIfTI, ...)."""
    path = Path(path)
    if path.is_dir():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise FileNotFoundError(f"no DICOM series found in {path}.")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        image = reader.Execute()
    elif path.is_file():
        image = sitk.ReadImage(str(path))
    else:
        raise FileNotFoundError(f"{path} is neither a DICOM series folder nor an image file.")
    if image.GetDimension() != 3:
        raise ValueError(f"{path} is {image.GetDimension()}D; a 3D volume is expected.")
    return sitk.Cast(image, sitk.sitkFloat32)


def _xyz(image: sitk.Image) -> np.ndarray:
    """SimpleITK (z, y, x) array as (x, y, z), the index order of :func:`axial_slices`."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def _mask_on_grid(
    path: str | Path, reference: sitk.Image, name: str, allow_empty: bool = False
) -> np.ndarray:
    """A binary mask (> 0) on ``reference``'s grid: used as is when its grid matches, else resampled (nearest).
    Empty raises ``ValueError`` unless ``allow_empty`` (a tumour mask of a healthy subject)."""
    mask = read_volume(path)
    same_grid = mask.GetSize() == reference.GetSize() and np.allclose(
        mask.GetOrigin() + mask.GetSpacing() + mask.GetDirection(),
        reference.GetOrigin() + reference.GetSpacing() + reference.GetDirection(),
        atol=1e-3,
    )
    if not same_grid:
        mask = resample_to_reference(mask, reference, order=0)
    out = _xyz(mask) > 0
    if not (allow_empty or out.any()):
        raise ValueError(f"the {name} mask {path} is empty on the CT grid.")
    return out


def _slice_affine(reference: sitk.Image, size: Sequence[int], z: int) -> np.ndarray:
    """RAS affine (NIfTI/MONAI convention) of axial slice ``z`` of ``reference`` resized to ``size`` (pixel
    areas aligned as in ``scipy.ndimage.zoom(grid_mode=True)``)."""
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    scale = np.array([reference.GetSize()[0] / size[0], reference.GetSize()[1] / size[1], 1.0])
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing * scale)
    # new pixel i covers the old continuous index (i + 0.5) * scale - 0.5
    lps[:3, 3] = np.asarray(reference.GetOrigin()) + direction @ (
        spacing * (np.array([0.0, 0.0, z]) + 0.5 * scale - 0.5)
    )
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _save_slice(path: Path, channels: Sequence[np.ndarray], affine: np.ndarray, dtype) -> None:
    """(X, Y) planes -> a 2D NIfTI (X, Y) as the sample slices, or for several channels (X, Y, 1, C) (MONAI
    reads it as (C, X, Y, 1); ``DropTrailingSingletond`` makes it (C, X, Y))."""
    data = np.stack(channels, axis=-1)[:, :, None] if len(channels) > 1 else channels[0]
    nib.save(nib.Nifti1Image(data.astype(dtype), affine), str(path))


def prepare_pet_ct_subject(
    ct: str | Path,
    pet: str | Path | None,
    output_dir: str | Path,
    subject: str,
    split: str = "training",
    site: str = "lung",
    ooi: str | Path | None = None,
    label: str | Path | None = None,
    size: Sequence[int] = (512, 512),
    modality: str = "pet_ct",
    suv_range: Sequence[float] = SUV_RANGE,
    ooi_fallback: str | None = None,
    time_reference: str = "acquisition",
) -> list[dict]:
    """Preprocess one PET/CT subject as in the paper and add its slices to ``output_dir/datalist.json``.

    CT: DICOM series folder or image file (HU), windowed with :data:`CT_WINDOWS` ``[site]``. PET: DICOM series
    folder, converted to SUV from its headers (:func:`read_pet_suv`), resampled onto the CT grid with a cubic
    B-spline and clamped to ``suv_range``. Both scaled to [0, 1]; axial slices resized to ``size``. ``ooi``
    (organ of interest) and ``label`` (tumour) masks are image files on any grid (resampled nearest onto the
    CT when it differs); without ``ooi``, ``ooi_fallback`` (default: ``"lung"`` for site lung, else
    ``"foreground"``) is computed from the CT in HU. Only slices that contain the OOI are written. For the
    ``training`` and ``validation`` splits (healthy slices for the inpainting network) slices with a tumour
    label are left out; ``test`` keeps every OOI slice. CT alone: ``pet`` None with ``modality="ct"``.

    Writes ``<subject>/z###_image.nii.gz`` (channels of ``modality``: ``ct``, ``pet`` or ``pet_ct`` = CT
    then PET), ``z###_ooi.nii.gz`` and, with a label, ``z###_label.nii.gz``; the datalist entries are
    ``{"subject", "slice_z", "image", "ooi"[, "label", "tumour_pixels"]}``, paths relative to ``output_dir``.
    A subject already in the datalist is replaced. Returns the new entries.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if site not in CT_WINDOWS:
        raise ValueError(f"site must be one of {tuple(CT_WINDOWS)}, got {site!r}.")
    if modality not in MODALITY_CHANNELS:
        raise ValueError(f"modality must be one of {tuple(MODALITY_CHANNELS)}, got {modality!r}.")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers, got {size!r}.")
    if not subject or Path(subject).name != subject:
        raise ValueError(f"subject must be a plain name (it becomes a folder), got {subject!r}.")
    ooi_fallback = ooi_fallback or ("lung" if site == "lung" else "foreground")
    if pet is None and "pet" in MODALITY_CHANNELS[modality]:
        raise ValueError(f"modality {modality!r} needs a PET series; for CT alone use modality 'ct'.")
    if pet is not None and not Path(pet).is_dir():
        raise ValueError(f"PET must be a DICOM series folder (SUV needs its headers), got {pet}.")

    ct_image = read_volume(ct)
    ct_hu = _xyz(ct_image)
    if ooi is not None:
        ooi_mask = _mask_on_grid(ooi, ct_image, "organ-of-interest")
    elif ooi_fallback == "lung":
        ooi_mask = lung_field_mask(ct_hu)
    elif ooi_fallback == "foreground":
        ooi_mask = foreground_mask(ct_hu)
    else:
        raise ValueError(
            f"ooi_fallback must be 'lung' or 'foreground' when no OOI is given, got {ooi_fallback!r}."
        )
    label_mask = _mask_on_grid(label, ct_image, "tumour", allow_empty=True) if label is not None else None

    planes = {"ct": axial_slices(np.asarray(window_to_unit(ct_hu, site)), size)}
    if "pet" in MODALITY_CHANNELS[modality]:
        suv_on_ct = resample_to_reference(read_pet_suv(pet, time_reference), ct_image, order=3)
        planes["pet"] = axial_slices(np.asarray(window_to_unit(_xyz(suv_on_ct), suv_range)), size)
    ooi_planes = axial_slices(ooi_mask, size, order=0) > 0.5
    label_planes = axial_slices(label_mask, size, order=0) > 0.5 if label_mask is not None else None

    output_dir = Path(output_dir)
    (output_dir / subject).mkdir(parents=True, exist_ok=True)
    entries = []
    for z in range(ooi_planes.shape[0]):
        tumour_pixels = int(label_planes[z].sum()) if label_planes is not None else None
        if not ooi_planes[z].any() or (split != "test" and tumour_pixels):
            continue
        affine = _slice_affine(ct_image, size, z)
        entry = {"subject": subject, "slice_z": z}
        for key, planes_z, dtype in (
            ("image", [np.clip(planes[c][z], 0.0, 1.0) for c in MODALITY_CHANNELS[modality]], np.float32),
            ("ooi", [ooi_planes[z]], np.uint8),
            ("label", [label_planes[z]] if label_planes is not None else None, np.uint8),
        ):
            if planes_z is None:
                continue
            relative = f"{subject}/z{z:03d}_{key}.nii.gz"
            _save_slice(output_dir / relative, planes_z, affine, dtype)
            entry[key] = relative
        if tumour_pixels is not None:
            entry["tumour_pixels"] = tumour_pixels
        entries.append(entry)
    if not entries:
        raise ValueError(f"no slice of {subject} to write: the OOI is empty or every OOI slice has a tumour.")
    _update_datalist(output_dir / "datalist.json", subject, split, entries, modality)
    return entries


def datalist_channels(datalist_file: str | Path) -> int:
    """Image channels of the slices listed in a datalist written by :func:`prepare_pet_ct_subject` (its
    ``channels`` property: 2 for ``pet_ct``, 1 for ``ct`` or ``pet``), the network's input width."""
    return len(load_decathlon_properties(datalist_file, "channels")["channels"])


def _update_datalist(path: Path, subject: str, split: str, entries: list[dict], modality: str) -> None:
    """Replace ``subject``'s entries in the decathlon datalist at ``path`` (created when absent), atomically."""
    datalist = {s: [] for s in SPLITS}
    if path.exists():
        datalist.update(json.loads(path.read_text(encoding="utf-8")))
    if datalist.setdefault("modality", modality) != modality:
        raise ValueError(
            f"{path} holds {datalist['modality']!r} slices; this subject was asked as {modality!r}."
        )
    datalist["channels"] = list(MODALITY_CHANNELS[modality])
    for s in SPLITS:
        datalist[s] = [e for e in datalist.get(s, []) if e["subject"] != subject]
    datalist[split] += entries
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    os.replace(staging, path)
