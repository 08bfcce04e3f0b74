"""GM/WM/CSF classification by a 3-class Gaussian mixture of intensities inside the brain mask.

Stands in for SPM12 (not available) in the paper's tissue-robustness test. The mixture is fitted with EM on
the standardised intensities (initialised at the 10th/50th/90th percentiles) and classes are ordered by mean:
CSF < GM < WM on T1. scikit-learn is not a dependency, so the 1D EM (a few lines) is written here.
"""

from __future__ import annotations

import numpy as np

CSF, GM, WM = 1, 2, 3


def gmm_tissue_classes(
    volume: np.ndarray, brain: np.ndarray, iterations: int = 50, max_samples: int = 200_000, seed: int = 0
) -> np.ndarray:
    """Label map (0 outside ``brain``, 1 CSF, 2 GM, 3 WM) of a T1 by a 1D 3-Gaussian mixture fitted in the brain."""
    volume = np.asarray(volume, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    if volume.shape != brain.shape:
        raise ValueError(f"volume {volume.shape} and brain mask {brain.shape} differ in shape")
    if not brain.any():
        raise ValueError("empty brain mask: nothing to classify")
    values = volume[brain]
    rng = np.random.default_rng(seed)
    sample = values if values.size <= max_samples else rng.choice(values, max_samples, replace=False)
    means = np.percentile(sample, [10, 50, 90])
    variances = np.full(3, sample.var() / 9 + 1e-12)
    weights = np.full(3, 1 / 3)
    for _ in range(iterations):
        log_p = (
            np.log(weights)
            - 0.5 * np.log(2 * np.pi * variances)
            - (sample[:, None] - means) ** 2 / (2 * variances)
        )
        log_p -= log_p.max(axis=1, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(axis=1, keepdims=True)
        counts = resp.sum(axis=0) + 1e-12
        weights = counts / counts.sum()
        means = (resp * sample[:, None]).sum(axis=0) / counts
        variances = (resp * (sample[:, None] - means) ** 2).sum(axis=0) / counts + 1e-12
    order = np.argsort(means)
    means, variances, weights = means[order], variances[order], weights[order]
    log_p = (
        np.log(weights)
        - 0.5 * np.log(2 * np.pi * variances)
        - (values[:, None] - means) ** 2 / (2 * variances)
    )
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[brain] = np.argmax(log_p, axis=1) + 1
    return labels
