"""T1 preprocessing to the MNI 1 mm grid and back, as in the 3D blind lesion inpainting paper (Manjón et al.).

Pipeline for a subject's T1 in native space (every step optional):

1. non-local means denoising (``skimage.restoration.denoise_nl_means``, noise level from ``estimate_sigma``);
2. N4 inhomogeneity correction (SimpleITK ``N4BiasFieldCorrectionImageFilter``) inside the head;
3. affine registration to the MNI152 2009a T1 template that ships with nilearn (SimpleITK, Mattes mutual
   information, multi-resolution), giving the world-space map ``mni_to_native`` (4x4, RAS mm);
4. trilinear resampling onto the 182x218x182 MNI 1 mm grid (``common.data.MNI_AFFINE``) with
   ``scipy.ndimage.affine_transform``;
5. intensity standardisation: division by the mean intensity inside the head.

:func:`to_native` / :class:`MNIToNatived` put a result back on the subject's own grid and header. All geometry is
handled through world (RAS) coordinates, so any orientation or voxel size is resampled, never rejected.
SimpleITK works in LPS: ``LPS = diag(-1, -1, 1) RAS``.

Reproducibility: the same input and seed give bit-identical output. SimpleITK's seed 0 means "seed from the
wall clock", so registration seeds must be positive; and SimpleITK filters run with ``number_of_threads=1`` by
default, because Mattes mutual information sums its histogram in thread-timing order (run-to-run differences)
and N4's B-spline fit sums per-thread partial results (results that change with the machine's core count).
Pass ``number_of_threads=None`` for ITK's default (all cores) where speed matters more than reproducibility.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import FillHoles, KeepLargestConnectedComponent, MapTransform
from monai.utils import convert_to_numpy
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.restoration import denoise_nl_means

from common.data import MNI_AFFINE, MNI_SHAPE

__all__ = [
    "MNIPreprocessd",
    "MNIToNatived",
    "StandardiseIntensityd",
    "check_t1_like",
    "head_mask",
    "mni_template",
    "n4_bias_field",
    "n4_correct",
    "nlm_denoise",
    "noise_sigma",
    "register_to_mni",
    "resample_to_mni",
    "standardise_intensity",
    "to_native",
]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _check_volume(volume: Any, name: str = "image") -> np.ndarray:
    """A 3D float array without NaNs, from a (1, X, Y, Z) or (X, Y, Z) array/tensor; clear errors otherwise."""
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3:
        raise ValueError(
            f"{name} must be one 3D volume, (X, Y, Z) or (1, X, Y, Z), got shape {volume.shape} "
            "(4D / multi-channel input is not a single T1)"
        )
    volume = volume.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        found = [w for w, bad in (("NaN", np.isnan(volume).any()), ("Inf", np.isinf(volume).any())) if bad]
        raise ValueError(f"{name} contains {' and '.join(found)} values")
    return volume


def head_mask(volume: np.ndarray) -> np.ndarray:
    """Head (or brain, for skull-stripped input) mask: above Otsu's threshold, largest face-connected component
    (MONAI ``KeepLargestConnectedComponent``), closed, holes filled (MONAI ``FillHoles``)."""
    volume = _check_volume(volume)
    if np.ptp(volume) <= 0:
        raise ValueError("the image is constant: no head can be found (empty brain/head mask)")
    foreground = (volume > threshold_otsu(volume)).astype(np.uint8)[None]
    if not foreground.any():
        raise ValueError("empty head mask: no voxel above Otsu's threshold")
    largest = KeepLargestConnectedComponent(applied_labels=[1], connectivity=1)(foreground)
    closed = ndimage.binary_closing(convert_to_numpy(largest)[0] > 0, iterations=2).astype(np.uint8)[None]
    return convert_to_numpy(FillHoles(applied_labels=[1], connectivity=1)(closed))[0] > 0


def standardise_intensity(volume: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``volume / mean(volume[mask])`` and that mean (``mask``: the head, by default :func:`head_mask`)."""
    volume = _check_volume(volume)
    mask = head_mask(volume) if mask is None else np.asarray(mask, dtype=bool).reshape(volume.shape)
    if not mask.any():
        raise ValueError("empty head/brain mask: cannot standardise intensities")
    mean = float(volume[mask].mean())
    if mean <= 0:
        raise ValueError(f"mean intensity inside the head is {mean}, expected a positive T1 signal")
    return volume / mean, mean


def noise_sigma(volume: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust Gaussian noise level from the residual ``r = v - mean(6 neighbours)`` inside the (eroded) head.

    For white noise ``var(r) = sigma^2 (1 + 1/6)``; the residual cancels linear anatomy and the median absolute
    deviation (x 1.4826) ignores edges. Written here because ``skimage.restoration.estimate_sigma`` needs
    PyWavelets, which is not a dependency.
    """
    volume = _check_volume(volume)
    mask = head_mask(volume) if mask is None else np.asarray(mask, dtype=bool)
    mask = ndimage.binary_erosion(mask, iterations=2)
    if not mask.any():
        raise ValueError("empty head mask: cannot estimate the noise level")
    kernel = np.zeros((3, 3, 3), dtype=np.float32)
    kernel[1, 1, :] = kernel[1, :, 1] = kernel[:, 1, 1] = -1.0 / 6.0
    kernel[1, 1, 1] = 1.0
    residual = ndimage.convolve(volume, kernel)[mask]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))) / np.sqrt(7.0 / 6.0))


def nlm_denoise(
    volume: np.ndarray, patch_size: int = 3, patch_distance: int = 3, h_factor: float = 0.8
) -> np.ndarray:
    """Non-local means (skimage, fast mode) with ``h = h_factor * sigma``, sigma from :func:`noise_sigma`
    (skimage's documented recommendation for ``fast_mode`` is h of about 0.8 sigma).

    Only the bounding box of the head (plus the patch search margin) is denoised; the air around it is
    returned unchanged, which halves the time on a skull-stripped MNI volume.
    """
    volume = _check_volume(volume)
    mask = head_mask(volume)
    sigma = noise_sigma(volume, mask)
    if sigma == 0:
        return volume.copy()
    margin = patch_size + patch_distance
    corners = np.argwhere(mask)
    box = tuple(
        slice(max(0, lo - margin), min(size, hi + margin + 1))
        for lo, hi, size in zip(corners.min(0), corners.max(0), volume.shape)
    )
    denoised = volume.copy()
    denoised[box] = denoise_nl_means(
        volume[box],
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h_factor * sigma,
        sigma=sigma,
        fast_mode=True,
    )
    return denoised


@contextmanager
def _itk_threads(number_of_threads: int | None) -> Iterator[None]:
    """ITK's global default thread count set to ``number_of_threads`` inside the block (None: left as is).

    Global, not per filter: N4 and the registration build internal filters (B-spline fitting, pyramid) that
    take the global default, whatever the outer filter's ``SetNumberOfThreads`` says.
    """
    if number_of_threads is None:
        yield
        return
    if isinstance(number_of_threads, bool) or not isinstance(number_of_threads, int) or number_of_threads < 1:
        raise ValueError(f"number_of_threads must be a positive int or None, got {number_of_threads!r}")
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(number_of_threads)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _to_sitk(volume: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image (LPS geometry) of an (X, Y, Z) array with a RAS voxel-to-world ``affine``."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def n4_bias_field(
    volume: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    shrink_factor: int = 4,
    iterations: Sequence[int] = (50, 50, 50, 50),
    number_of_threads: int | None = 1,
) -> np.ndarray:
    """Multiplicative bias field of a volume by N4 (SimpleITK), fitted on a ``shrink_factor``-downsampled image
    inside ``mask`` (default :func:`head_mask`) and evaluated at full resolution. ``number_of_threads``: N4's
    threads (1: the same result on every machine; None: ITK's default)."""
    volume = _check_volume(volume)
    mask = head_mask(volume) if mask is None else np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("empty head mask: N4 needs voxels to fit the bias field on")
    image = _to_sitk(np.maximum(volume, 0) + 1e-3, affine)  # N4 works on the log of positive intensities
    mask_image = _to_sitk(mask.astype(np.uint8), affine)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    with _itk_threads(number_of_threads):
        small = sitk.Shrink(image, [shrink_factor] * 3)
        small_mask = sitk.Shrink(mask_image, [shrink_factor] * 3)
        corrector.Execute(small, small_mask)
        log_field = corrector.GetLogBiasFieldAsImage(image)
    return np.exp(sitk.GetArrayFromImage(log_field).transpose(2, 1, 0)).astype(np.float32)


def n4_correct(volume: np.ndarray, affine: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``volume`` divided by its :func:`n4_bias_field` (keyword arguments passed on)."""
    volume = _check_volume(volume)
    return (volume / n4_bias_field(volume, affine, **kwargs)).astype(np.float32)


@lru_cache(maxsize=1)
def mni_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's MNI152 2009a T1 (brain-extracted, 0..1), its brain mask, and their affine (no download)."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    brain = datasets.load_mni152_brain_mask(resolution=1)
    return np.asarray(t1.get_fdata(), np.float32), np.asarray(brain.get_fdata()) > 0.5, np.asarray(t1.affine)


def register_to_mni(
    volume: np.ndarray,
    affine: np.ndarray,
    shrink_factors: Sequence[int] = (4, 2),
    smoothing_sigmas: Sequence[float] = (2.0, 1.0),
    iterations: int = 100,
    sampling_fraction: float = 0.2,
    seed: int = 1,
    number_of_threads: int | None = 1,
) -> np.ndarray:
    """Affine registration of a T1 to the MNI template; returns ``mni_to_native`` (4x4, RAS world mm -> mm).

    Mattes mutual information (robust to scanner intensities and to a skull that the template lacks),
    initialised by aligning centres of mass, regular-step gradient descent over the multi-resolution pyramid.
    ``seed`` (positive) fixes the random metric samples; ``number_of_threads=1`` makes the metric's sums run in
    one order, so that a seed gives bit-identical results (None: ITK's default threads, not reproducible).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 1:
        raise ValueError(
            f"seed must be a positive int, got {seed!r} (SimpleITK treats seed 0 as 'seed from the wall clock', "
            "which makes the registration differ between runs)"
        )
    volume = _check_volume(volume)
    with _itk_threads(number_of_threads):
        return _register(
            volume, affine, shrink_factors, smoothing_sigmas, iterations, sampling_fraction, int(seed)
        )


def _register(
    volume: np.ndarray,
    affine: np.ndarray,
    shrink_factors: Sequence[int],
    smoothing_sigmas: Sequence[float],
    iterations: int,
    sampling_fraction: float,
    seed: int,
) -> np.ndarray:
    template, _, template_affine = mni_template()
    fixed = _to_sitk(template, template_affine)
    moving = _to_sitk(volume, affine)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling_fraction, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_sigmas])
    method.SetInitialTransform(initial, inPlace=False)
    transform = method.Execute(fixed, moving)
    return _ras_matrix(transform)


def _ras_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK (composite of) affine transform(s) mapping fixed -> moving points."""
    matrix = np.eye(4)
    composite = sitk.CompositeTransform(transform)
    for index in range(composite.GetNumberOfTransforms()):
        affine = sitk.AffineTransform(composite.GetNthTransform(index))
        a = np.array(affine.GetMatrix()).reshape(3, 3)
        centre, translation = np.array(affine.GetCenter()), np.array(affine.GetTranslation())
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = a, translation + centre - a @ centre
        matrix = matrix @ step  # composite transforms apply the last-added transform first
    return _RAS_TO_LPS @ matrix @ _RAS_TO_LPS


def resample_to_mni(
    volume: np.ndarray, affine: np.ndarray, mni_to_native: np.ndarray | None = None, order: int = 1
) -> np.ndarray:
    """Resample a native volume onto the 182x218x182 MNI grid (identity world map when ``mni_to_native`` is None)."""
    volume = _check_volume(volume)
    world = np.eye(4) if mni_to_native is None else np.asarray(mni_to_native, dtype=np.float64)
    voxel_map = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ world @ MNI_AFFINE
    return ndimage.affine_transform(volume, voxel_map, output_shape=MNI_SHAPE, order=order, mode="constant")


def to_native(
    volume_mni: np.ndarray,
    native_affine: np.ndarray,
    native_shape: Sequence[int],
    mni_to_native: np.ndarray | None = None,
    order: int = 1,
) -> np.ndarray:
    """Inverse of :func:`resample_to_mni`: an MNI-grid volume resampled onto the subject's own grid."""
    volume_mni = _check_volume(volume_mni, "MNI-grid volume")
    if volume_mni.shape != MNI_SHAPE:
        raise ValueError(f"expected a volume on the {MNI_SHAPE} MNI grid, got {volume_mni.shape}")
    world = np.eye(4) if mni_to_native is None else np.asarray(mni_to_native, dtype=np.float64)
    voxel_map = np.linalg.inv(MNI_AFFINE) @ np.linalg.inv(world) @ np.asarray(native_affine, dtype=np.float64)
    shape = tuple(int(s) for s in native_shape)
    return ndimage.affine_transform(volume_mni, voxel_map, output_shape=shape, order=order, mode="constant")


@lru_cache(maxsize=1)
def _template_on_mni_grid() -> tuple[np.ndarray, np.ndarray]:
    template, brain, template_affine = mni_template()
    template_on_grid = resample_to_mni(template, template_affine)
    return template_on_grid, resample_to_mni(brain.astype(np.float32), template_affine, order=0) > 0.5


def check_t1_like(volume_mni: np.ndarray, min_correlation: float = 0.3, unknown: np.ndarray | None = None) -> float:
    """Pearson correlation with the MNI T1 template inside its brain mask; ValueError below ``min_correlation``.

    A T1 registered to MNI correlates strongly with the T1 template (WM bright, CSF dark); a T2 or FLAIR
    (inverted CSF contrast) or a failed registration does not. ``unknown`` (MNI grid, True = a hole or lesion to
    fill) is left out: a T1 whose tumour was voided is still a T1.
    """
    volume_mni = _check_volume(volume_mni, "MNI-grid volume")
    template_on_grid, brain_on_grid = _template_on_mni_grid()
    if unknown is not None:
        brain_on_grid = brain_on_grid & ~np.asarray(unknown, bool)
    values = volume_mni[brain_on_grid]
    if np.ptp(values) == 0:
        raise ValueError("the image is constant inside the MNI brain mask: not a T1 (or registration failed)")
    correlation = float(np.corrcoef(values, template_on_grid[brain_on_grid])[0, 1])
    if correlation < min_correlation:
        raise ValueError(
            f"the image does not look like a T1 registered to MNI: correlation {correlation:.2f} with the "
            f"MNI T1 template inside the brain (expected >= {min_correlation}); check the modality and the "
            "registration"
        )
    return correlation


def _affine_of(image: Any) -> np.ndarray:
    if not isinstance(image, MetaTensor):
        raise TypeError(
            f"expected a MetaTensor with its affine (e.g. from LoadImaged), got {type(image).__name__}"
        )
    return np.asarray(image.affine.detach().cpu().numpy(), dtype=np.float64)


class MNIPreprocessd(MapTransform):
    """Map the T1 under ``keys`` to the MNI 1 mm grid (denoise, N4, register, resample, standardise).

    Writes the MNI-grid volume (a ``MetaTensor`` with ``MNI_AFFINE``) in place and, under ``info_key``, what
    :class:`MNIToNatived` needs to go back: ``native`` (the input image, header included), ``mni_to_native``,
    ``scale`` (the mean that intensities were divided by) and, with ``bias_correct``, ``bias_field`` (N4's
    multiplicative field on the native grid). With ``register=False`` the input is assumed to be
    in MNI space already (any grid/orientation: it is still resampled). ``check_modality`` rejects non-T1 input.
    The first key drives N4, registration and standardisation; further keys must be on its grid and follow
    with the same bias field, world transform and scale (e.g. the lesion-free version of a lesioned T1, so that
    both stay comparable), each denoised on its own; keys in ``label_keys`` (masks) are only resampled, with
    nearest-neighbour interpolation; the True voxels of ``unknown_keys`` (masks of what is to be filled, e.g. a
    voided lesion, never a brain mask) are left out of the modality check. ``seed`` (registration samples) and ``itk_threads`` (N4 and registration;
    1 for bit-identical results, None for ITK's default) make the output reproducible.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        unknown_keys: KeysCollection = (),
        denoise: bool = True,
        bias_correct: bool = True,
        register: bool = True,
        standardise: bool = True,
        check_modality: bool = True,
        info_key: str = "mni",
        seed: int = 1,
        itk_threads: int | None = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        self.unknown_keys = (unknown_keys,) if isinstance(unknown_keys, str) else tuple(unknown_keys)
        if not set(self.unknown_keys) <= set(self.label_keys):
            raise ValueError(f"unknown_keys {self.unknown_keys} must be among label_keys {self.label_keys}")
        self.denoise, self.bias_correct, self.register = denoise, bias_correct, register
        self.standardise, self.check_modality = standardise, check_modality
        self.info_key, self.seed, self.itk_threads = info_key, seed, itk_threads

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            raise ValueError(f"none of the keys {self.keys} is in the data")
        reference = d[keys[0]]
        affine = _affine_of(reference)
        volume = _check_volume(reference, f"data[{keys[0]!r}]")
        for key in keys[1:]:
            if _check_volume(d[key], f"data[{key!r}]").shape != volume.shape or not np.allclose(
                _affine_of(d[key]), affine, atol=1e-3
            ):
                raise ValueError(
                    f"data[{key!r}] has a different geometry (shape/affine) from data[{keys[0]!r}]; "
                    "a lesion mask (or another version of the T1) must be on the T1's grid"
                )
        if self.denoise:
            volume = nlm_denoise(volume)
        field = (
            n4_bias_field(volume, affine, number_of_threads=self.itk_threads) if self.bias_correct else None
        )
        if field is not None:
            volume = volume / field
        mni_to_native = (
            register_to_mni(volume, affine, seed=self.seed, number_of_threads=self.itk_threads)
            if self.register
            else np.eye(4)
        )
        scale = 1.0
        for key in keys:
            if key == keys[0]:
                moved = resample_to_mni(volume, affine, mni_to_native)
                if self.check_modality:
                    holes = [
                        resample_to_mni(_check_volume(d[k]), affine, mni_to_native, order=0) > 0
                        for k in self.unknown_keys
                        if k in d
                    ]
                    check_t1_like(moved, unknown=np.logical_or.reduce(holes) if holes else None)
                if self.standardise:
                    moved, scale = standardise_intensity(moved)
            elif key in self.label_keys:
                moved = resample_to_mni(_check_volume(d[key]), affine, mni_to_native, order=0)
            else:
                other = _check_volume(d[key])
                other = nlm_denoise(other) if self.denoise else other
                other = other / field if field is not None else other
                moved = resample_to_mni(other, affine, mni_to_native) / scale
            d[key] = MetaTensor(
                torch.from_numpy(np.ascontiguousarray(moved[None], dtype=np.float32)),
                affine=torch.from_numpy(MNI_AFFINE.copy()),
            )
        d[self.info_key] = {"native": reference, "mni_to_native": mni_to_native, "scale": scale}
        if field is not None:
            # MNIToNatived multiplies it back: without it a result comes back in bias-corrected units, not the
            # input's (N4's field is not normalised to 1: mean ~0.66 inside the brain on IXI T1s)
            d[self.info_key]["bias_field"] = field
        return d


class MNIToNatived(MapTransform):
    """Put MNI-grid results under ``keys`` back into the subject's space, header and intensity units, using the
    ``info_key`` entry written by :class:`MNIPreprocessd` (``rescale``: times ``scale`` and, where N4 ran, times
    its ``bias_field``, the exact inverse of the forward intensity mapping). The output carries a copy of the
    input's metadata, so ``SaveImaged`` writes it with the input's geometry and file name."""

    def __init__(
        self,
        keys: KeysCollection,
        info_key: str = "mni",
        rescale: bool = True,
        order: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.info_key, self.rescale, self.order = info_key, rescale, order

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        info = d[self.info_key]
        native = info["native"]
        native_affine = _affine_of(native)
        mni_to_native = np.asarray(info["mni_to_native"], dtype=np.float64).reshape(4, 4)
        scale = float(np.asarray(info["scale"]).reshape(-1)[0]) if self.rescale else 1.0
        field = info.get("bias_field") if self.rescale else None
        if field is not None:
            field = convert_to_numpy(field).astype(np.float32).reshape(tuple(native.shape[1:]))
        for key in self.key_iterator(d):
            back = to_native(d[key], native_affine, native.shape[1:], mni_to_native, self.order) * scale
            if field is not None:
                back = back * field
            d[key] = MetaTensor(
                torch.from_numpy(np.ascontiguousarray(back[None], dtype=np.float32)),
                meta=copy.deepcopy(dict(native.meta)),
            )
        return d


class StandardiseIntensityd(MapTransform):
    """Divide every image under ``keys`` by the mean of ``keys[0]`` inside its head mask (or inside the mask
    under ``mask_key``), so that an input and its target share one scale; the mean goes to ``scale_key``."""

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = None,
        scale_key: str = "scale",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key, self.scale_key = mask_key, scale_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            raise ValueError(f"none of the keys {self.keys} is in the data")
        mask = (
            None if self.mask_key is None else _check_volume(d[self.mask_key], f"data[{self.mask_key!r}]") > 0
        )
        _, scale = standardise_intensity(_check_volume(d[keys[0]], f"data[{keys[0]!r}]"), mask)
        for key in keys:
            _check_volume(d[key], f"data[{key!r}]")
            d[key] = d[key] / scale
        d[self.scale_key] = scale
        return d
