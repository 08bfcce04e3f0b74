"""Embedded sample data (a synthetic cohort from nilearn's MNI152 template) and readers.

Build it with ``python -m common.data build``; bundles call :func:`build_sample_data` /
:func:`load_datalist` so it is made on first use.
"""

from .cohort import MNI_AFFINE, MNI_SHAPE, CohortParameters, load_template, make_subject
from .ixi import T1Subject, build_ixi_data, build_ixi_mni, find_subjects, load_ixi_datalist
from .overview import write_overview
from .sample import (
    DEFAULT_SEED,
    DEFAULT_SUBJECTS,
    SLICE_INDICES,
    SLICE_SIZE,
    SampleDataError,
    build_sample_data,
    dataset_dir,
    default_root,
    ensure_sample_data,
    load_datalist,
    sample_brain_slice,
    split_subjects,
)
from .skull_stripping import skull_strip

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SUBJECTS",
    "MNI_AFFINE",
    "MNI_SHAPE",
    "SLICE_INDICES",
    "SLICE_SIZE",
    "CohortParameters",
    "SampleDataError",
    "T1Subject",
    "build_ixi_data",
    "build_ixi_mni",
    "build_ixi_tumour_data",
    "build_ixi_tumour_splits",
    "build_sample_data",
    "dataset_dir",
    "default_root",
    "ensure_sample_data",
    "find_subjects",
    "ixi_tumour_dir",
    "load_ixi_datalist",
    "load_datalist",
    "load_template",
    "make_subject",
    "sample_brain_slice",
    "skull_strip",
    "split_subjects",
    "write_overview",
]


def __getattr__(name: str):
    """``build_ixi_tumour_data`` / ``build_ixi_tumour_splits`` / ``ixi_tumour_dir`` load on first use, so that
    ``python -m common.data.ixi_tumours`` does not import its own module twice."""
    if name in ("build_ixi_tumour_data", "build_ixi_tumour_splits", "ixi_tumour_dir"):
        from . import ixi_tumours

        return getattr(ixi_tumours, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
