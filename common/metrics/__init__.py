"""metrics shared by the medinpaint bundles."""

from .base import ReducedMetric
from .image import (
    ROI_MODES,
    MAEMetric,
    MSEMetric,
    PearsonMetric,
    PSNRMetric,
    RoIImageMetric,
    SSIMMetric,
    UQIMetric,
    from_engine_with_mask,
    roi_region,
)
from .lpips import LPIPSMetric
from .segmentation import OVERLAP_METRICS, BestThresholdDiceMetric, BinaryOverlapMetric

__all__ = [
    "OVERLAP_METRICS",
    "ROI_MODES",
    "BestThresholdDiceMetric",
    "BinaryOverlapMetric",
    "LPIPSMetric",
    "MAEMetric",
    "MSEMetric",
    "PSNRMetric",
    "PearsonMetric",
    "ReducedMetric",
    "RoIImageMetric",
    "SSIMMetric",
    "UQIMetric",
    "from_engine_with_mask",
    "roi_region",
]
