"""Embedded sample data (a synthetic cohort from nilearn's MNI152 template) and readers.

Build it with ``python -m common.data build``; bundles call :func:`build_sample_data` /
:func:`load_datalist` so it is made on first use.
"""

from .cohort import MNI_AFFINE, MNI_SHAPE, CohortParameters, load_template, make_subject
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
    load_datalist,
    sample_brain_slice,
    split_subjects,
)

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SUBJECTS",
    "MNI_AFFINE",
    "MNI_SHAPE",
    "SLICE_INDICES",
    "SLICE_SIZE",
    "CohortParameters",
    "SampleDataError",
    "build_sample_data",
    "dataset_dir",
    "default_root",
    "load_datalist",
    "load_template",
    "make_subject",
    "sample_brain_slice",
    "split_subjects",
    "write_overview",
]
