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
"""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ScaleIntensityRange
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
]

#: CT windows (HU) of the paper.
CT_WINDOWS = {"lung": (-1000.0, 500.0), "head_and_neck": (-200.0, 200.0)}
#: SUV clamp range of the paper.
SUV_RANGE = (0.0, 12.0)
OOI_FALLBACKS = ("foreground", "lung", None)


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
    images, 0 for masks)."""
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) volume, got shape {volume.shape}.")
    zoom = (size[0] / volume.shape[0], size[1] / volume.shape[1], 1.0)
    return np.moveaxis(ndimage.zoom(volume, zoom, order=order, grid_mode=True, mode="grid-constant"), -1, 0)


def _largest_components(mask: np.ndarray, count: int) -> np.ndarray:
    labels, found = ndimage.label(mask)
    if found == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(-sizes)[:count] + 1
    return np.isin(labels, keep)


def lung_field_mask(
    ct_hu: np.ndarray, air_threshold: float = -400.0, closing_radius: int = 3, min_fraction: float = 0.001
) -> np.ndarray:
    """Lung fields of a CT in HU (2D slice or 3D volume), the fallback OOI when none is given.

    Rule: voxels below ``air_threshold`` HU; remove the air connected to the image border (outside the
    body); keep the two largest remaining components (the lungs; trachea and bowel gas are smaller); close
    with a ball of ``closing_radius`` voxels and fill holes (vessels and nodules inside the lungs, so a tumour
    abutting the lung wall stays inside the OOI). Components under ``min_fraction`` of the image are dropped.
    """
    ct_hu = np.asarray(ct_hu, dtype=np.float32)
    if ct_hu.ndim not in (2, 3) or not np.isfinite(ct_hu).all():
        raise ValueError(f"expected a finite 2D or 3D CT in HU, got shape {ct_hu.shape}.")
    air = ct_hu < air_threshold
    labels, _ = ndimage.label(air)
    border = np.unique(np.concatenate([np.take(labels, [0, -1], axis=a).ravel() for a in range(ct_hu.ndim)]))
    inside = air & ~np.isin(labels, border[border > 0])
    lungs = _largest_components(inside, 2)
    labels, found = ndimage.label(lungs)
    if found:
        sizes = np.bincount(labels.ravel())
        lungs = np.isin(labels, np.nonzero(sizes[1:] >= min_fraction * ct_hu.size)[0] + 1)
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(ct_hu.ndim, 1), closing_radius)
    closed = ndimage.binary_closing(np.pad(lungs, closing_radius), ball)
    closed = closed[tuple(slice(closing_radius, -closing_radius) for _ in range(ct_hu.ndim))]
    return ndimage.binary_fill_holes(closed)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Otsu foreground, largest component, holes filled: the fallback OOI for non-CT images (e.g. brain MRI)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3) or not np.isfinite(image).all():
        raise ValueError(f"expected a finite 2D or 3D image, got shape {image.shape}.")
    if image.max() == image.min():
        raise ValueError("cannot find a foreground in a constant image.")
    return ndimage.binary_fill_holes(_largest_components(image > threshold_otsu(image), 1))


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
