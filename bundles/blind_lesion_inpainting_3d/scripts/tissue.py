"""GM/WM/CSF classification by a 3-class Gaussian mixture of intensities inside the brain mask.

Stands in for SPM12 (not available) in the paper's tissue-robustness test: scikit-learn's ``GaussianMixture``
fitted on the standardised intensities for a fixed number of EM steps from a fixed start (means at the
10th/50th/90th percentiles, equal weights and variances), classes ordered by mean: CSF < GM < WM on T1.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

CSF, GM, WM = 1, 2, 3


def gmm_tissue_classes(
    volume: np.ndarray, brain: np.ndarray, iterations: int = 50, max_samples: int = 200_000, seed: int = 0
) -> np.ndarray:
    """Label map (0 outside ``brain``, 1 CSF, 2 GM, 3 WM) of a T1 by a 1D 3-Gaussian mixture fitted in the brain
    with ``iterations`` EM steps on at most ``max_samples`` voxels drawn with ``seed``."""
    volume = np.asarray(volume, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    if volume.shape != brain.shape:
        raise ValueError(f"volume {volume.shape} and brain mask {brain.shape} differ in shape")
    if not brain.any():
        raise ValueError("empty brain mask: nothing to classify")
    values = volume[brain][:, None]
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= max_samples else rng.choice(values, max_samples, replace=False)
    mixture = GaussianMixture(
        n_components=3,
        weights_init=np.full(3, 1 / 3),
        means_init=np.percentile(sample, [10, 50, 90])[:, None],
        precisions_init=np.full((3, 1, 1), 1 / (sample.var() / 9 + 1e-12)),
        max_iter=iterations,
        tol=0,  # always run `iterations` steps: the measured tissue Dice values are those of this fit
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 is never "converged"
        mixture.fit(sample)
    rank = np.argsort(np.argsort(mixture.means_[:, 0]))  # component -> its position by mean
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[brain] = rank[mixture.predict(values)] + 1
    return labels
