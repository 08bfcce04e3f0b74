"""T1 preprocessing to the MNI grid and back (common/transforms/preprocessing.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from common.data import MNI_AFFINE, MNI_SHAPE
from common.transforms.preprocessing import (
    MNIPreprocessd,
    MNIToNatived,
    StandardiseIntensityd,
    _ras_matrix,
    check_t1_like,
    head_mask,
    n4_bias_field,
    n4_correct,
    nlm_denoise,
    noise_sigma,
    register_to_mni,
    resample_to_mni,
    standardise_intensity,
    to_native,
)


def ball_phantom(size: int = 32, radius: float = 11.0) -> np.ndarray:
    """A bright ball (100) with a darker core (50) in a zero background."""
    grid = np.indices((size,) * 3) - (size - 1) / 2
    distance = np.sqrt((grid**2).sum(0))
    return np.where(distance < radius, np.where(distance < radius / 2, 50.0, 100.0), 0.0).astype(np.float32)


def mni_phantom(rng: np.random.Generator) -> np.ndarray:
    """A random-valued volume on the MNI grid (smooth enough not to matter, exact values checked)."""
    return rng.random(MNI_SHAPE, dtype=np.float32)


def test_head_mask_and_standardisation_of_a_phantom():
    phantom = ball_phantom()
    mask = head_mask(phantom)
    inside = np.sqrt(((np.indices(phantom.shape) - 15.5) ** 2).sum(0)) < 11
    np.testing.assert_array_equal(mask, inside)  # the dark core is filled in, background excluded
    scaled, mean = standardise_intensity(phantom)
    assert mean == pytest.approx(phantom[inside].mean(), rel=1e-6)
    assert scaled[inside].mean() == pytest.approx(1.0, rel=1e-6)


def test_bad_volumes_raise_clear_errors():
    with pytest.raises(ValueError, match="constant"):
        head_mask(np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        standardise_intensity(np.full((8, 8, 8), np.nan))
    with pytest.raises(ValueError, match="4D / multi-channel"):
        standardise_intensity(np.zeros((2, 8, 8, 8)))
    with pytest.raises(ValueError, match="empty head"):
        standardise_intensity(ball_phantom(), mask=np.zeros((32, 32, 32), bool))


def test_noise_sigma_of_gaussian_noise_on_a_phantom():
    rng = np.random.default_rng(0)
    uniform_ball = np.minimum(
        ball_phantom(40, 16), 50.0
    )  # one intensity: only noise inside the (eroded) head
    noisy = uniform_ball + rng.normal(0, 4.0, (40, 40, 40)).astype(np.float32)
    assert noise_sigma(noisy) == pytest.approx(4.0, rel=0.1)


def test_nlm_reduces_noise_without_shifting_the_mean():
    rng = np.random.default_rng(1)
    clean = ball_phantom()
    noisy = clean + rng.normal(0, 8.0, clean.shape).astype(np.float32)
    denoised = nlm_denoise(noisy)
    inside = clean == 100
    assert np.abs(denoised - clean)[inside].mean() < 0.5 * np.abs(noisy - clean)[inside].mean()
    assert denoised[inside].mean() == pytest.approx(100.0, abs=2.0)


def test_n4_removes_a_smooth_multiplicative_bias():
    clean = ball_phantom(40, 17)
    x = np.linspace(-1, 1, 40)[:, None, None]
    biased = clean * np.exp(0.3 * x).astype(np.float32)
    corrected = n4_correct(biased, np.eye(4), shrink_factor=2, iterations=(50, 50))
    shell = clean == 100

    def variation(v):
        return v[shell].std() / v[shell].mean()

    assert variation(corrected) < 0.4 * variation(biased)


def test_sitk_transform_to_ras_matrix_maps_points_like_sitk():
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([0.98, -0.1, 0.0, 0.1, 0.99, 0.02, 0.0, -0.03, 1.05])
    transform.SetTranslation([3.0, -2.0, 5.0])
    transform.SetCenter([10.0, 20.0, -5.0])
    ras = _ras_matrix(transform)
    point_ras = np.array([12.0, -40.0, 7.0])
    flip = np.array([-1.0, -1.0, 1.0])
    expected = np.array(transform.TransformPoint((point_ras * flip).tolist())) * flip
    np.testing.assert_allclose(ras[:3, :3] @ point_ras + ras[:3, 3], expected, atol=1e-9)


def flipped_native(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same MNI-space image stored left-right flipped (LAS orientation), with the matching affine."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, MNI_SHAPE[0] - 1
    return volume[::-1].copy(), MNI_AFFINE @ flip


def test_resampling_to_mni_reorients_and_back_is_exact():
    volume = mni_phantom(np.random.default_rng(2))
    native, affine = flipped_native(volume)
    on_grid = resample_to_mni(native, affine)
    np.testing.assert_allclose(on_grid, volume, atol=1e-6)
    np.testing.assert_allclose(to_native(on_grid, affine, native.shape), native, atol=1e-6)


def test_to_native_inverts_a_world_translation():
    """MNI world = native world shifted by (3, -2, 4) mm: resample then invert is exact away from the border."""
    volume = mni_phantom(np.random.default_rng(3))
    shift = np.eye(4)
    shift[:3, 3] = [3, -2, 4]
    on_grid = resample_to_mni(volume, MNI_AFFINE, shift)
    np.testing.assert_allclose(on_grid[:-3, 2:, :-4], volume[3:, :-2, 4:], atol=1e-6)
    back = to_native(on_grid, MNI_AFFINE, MNI_SHAPE, shift)
    np.testing.assert_allclose(back[5:-5, 5:-5, 5:-5], volume[5:-5, 5:-5, 5:-5], atol=1e-6)


def test_check_t1_like_accepts_the_template_and_rejects_inverted_contrast():
    from common.transforms.preprocessing import _template_on_mni_grid

    template, brain = _template_on_mni_grid()
    assert check_t1_like(template) > 0.99
    inverted = np.where(brain, template.max() - template, 0)
    with pytest.raises(ValueError, match="does not look like a T1"):
        check_t1_like(inverted)


def test_check_t1_like_ignores_the_voxels_to_fill():
    """A T1 whose large tumour was voided (zeros) is still a T1: the hole is left out of the correlation."""
    from common.transforms.preprocessing import _template_on_mni_grid

    template, brain = _template_on_mni_grid()
    hole = np.zeros_like(brain)
    hole[40:150, 30:190, 60:140] = True  # most of the brain
    voided = np.where(hole, 0, template)
    with pytest.raises(ValueError, match="does not look like a T1"):
        check_t1_like(voided)
    assert check_t1_like(voided, unknown=hole) > 0.99


def test_mni_preprocess_leaves_out_only_the_unknown_masks_from_the_modality_check():
    """A brain mask among the label keys is resampled, not voided: the check still sees the whole brain (CI
    failure of a brain mask read as 'voxels to fill'), while an ``unknown_keys`` mask is left out."""
    from common.transforms.preprocessing import _template_on_mni_grid

    template, brain = _template_on_mni_grid()
    hole = np.zeros_like(brain)
    hole[40:150, 30:190, 60:140] = True
    affine = torch.from_numpy(MNI_AFFINE.copy())
    data = {
        "image": MetaTensor(torch.from_numpy(np.where(hole, 0, template)[None].astype(np.float32)), affine=affine),
        "brain": MetaTensor(torch.from_numpy(brain[None].astype(np.float32)), affine=affine),
        "hole": MetaTensor(torch.from_numpy(hole[None].astype(np.float32)), affine=affine),
    }
    options = dict(denoise=False, bias_correct=False, register=False, standardise=False)
    with pytest.raises(ValueError, match="does not look like a T1"):
        MNIPreprocessd(["image", "brain", "hole"], label_keys=["brain", "hole"], **options)(data)
    out = MNIPreprocessd(["image", "brain", "hole"], label_keys=["brain", "hole"], unknown_keys="hole", **options)(data)
    np.testing.assert_array_equal(out["brain"][0].numpy() > 0, brain)
    with pytest.raises(ValueError, match="must be among label_keys"):
        MNIPreprocessd(["image", "hole"], unknown_keys="hole")


def test_mni_preprocess_and_back_round_trip_with_metadata():
    volume = mni_phantom(np.random.default_rng(4)) + 1.0
    native, affine = flipped_native(volume)
    image = MetaTensor(
        torch.from_numpy(native[None]), affine=torch.from_numpy(affine), meta={"filename_or_obj": "t1.nii.gz"}
    )
    label = MetaTensor(
        torch.from_numpy((native[None] > 1.5).astype(np.float32)), affine=torch.from_numpy(affine)
    )
    forward = MNIPreprocessd(
        keys=["image", "label"],
        label_keys="label",
        denoise=False,
        bias_correct=False,
        register=False,
        check_modality=False,
    )
    data = forward({"image": image, "label": label})
    scale = data["mni"]["scale"]
    assert scale == pytest.approx(float(volume[head_mask(volume)].mean()), rel=1e-5)
    np.testing.assert_allclose(data["image"][0].numpy() * scale, volume, rtol=1e-5)
    np.testing.assert_array_equal(data["label"][0].numpy(), (volume > 1.5).astype(np.float32))
    np.testing.assert_allclose(data["image"].affine.numpy(), MNI_AFFINE)
    back = MNIToNatived(keys="image")(data)["image"]
    np.testing.assert_allclose(back[0].numpy(), native, rtol=1e-5)
    np.testing.assert_allclose(back.affine.numpy(), affine)
    assert back.meta["filename_or_obj"] == "t1.nii.gz"


def test_mni_preprocess_applies_the_first_keys_scale_to_other_versions():
    """A second version of the T1 (e.g. its lesion-free truth) keeps its ratio to the first one."""
    volume = mni_phantom(np.random.default_rng(6)) + 1.0
    affine = torch.from_numpy(MNI_AFFINE)
    data = {
        "image": MetaTensor(torch.from_numpy(volume[None]), affine=affine),
        "truth": MetaTensor(torch.from_numpy(2 * volume[None]), affine=affine),
    }
    out = MNIPreprocessd(
        keys=["image", "truth"], denoise=False, bias_correct=False, register=False, check_modality=False
    )(data)
    np.testing.assert_allclose(out["truth"].numpy(), 2 * out["image"].numpy(), rtol=1e-5)


def test_mni_preprocess_rejects_a_mask_on_another_grid_and_plain_arrays():
    volume = mni_phantom(np.random.default_rng(5))
    image = MetaTensor(torch.from_numpy(volume[None]), affine=torch.from_numpy(MNI_AFFINE))
    shifted = MNI_AFFINE.copy()
    shifted[0, 3] += 2
    label = MetaTensor(torch.zeros(1, *MNI_SHAPE), affine=torch.from_numpy(shifted))
    forward = MNIPreprocessd(
        keys=["image", "label"],
        label_keys="label",
        denoise=False,
        bias_correct=False,
        register=False,
        check_modality=False,
    )
    with pytest.raises(ValueError, match="different geometry"):
        forward({"image": image, "label": label})
    with pytest.raises(TypeError, match="MetaTensor"):
        forward({"image": volume[None], "label": label})


def test_standardise_intensityd_shares_the_first_keys_scale():
    phantom = ball_phantom()
    data = StandardiseIntensityd(keys=["image", "target"])(
        {"image": phantom[None], "target": 2 * phantom[None]}
    )
    assert data["scale"] == pytest.approx(phantom[phantom > 0].mean(), rel=1e-6)
    np.testing.assert_allclose(data["target"], 2 * data["image"])


@pytest.mark.slow
def test_registration_recovers_a_known_rigid_motion():
    """The template moved by a known rotation + translation is registered back to within 1 mm."""
    from common.transforms.preprocessing import _template_on_mni_grid

    template, _ = _template_on_mni_grid()
    motion = np.eye(4)
    c, s = np.cos(0.1), np.sin(0.1)
    motion[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    motion[:3, 3] = [5, -3, 4]
    affine = motion @ MNI_AFFINE  # same voxels, world moved: native world = motion @ MNI world
    estimated = register_to_mni(template, affine)
    corners = np.array([[x, y, z, 1] for x in (-60, 60) for y in (-80, 60) for z in (-40, 70)]).T
    error = np.linalg.norm((estimated @ corners - motion @ corners)[:3], axis=0)
    assert error.max() < 1.0


@pytest.fixture
def set_itk_threads():
    """SimpleITK's global default thread count setter; the count is restored after the test."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    yield sitk.ProcessObject.SetGlobalDefaultNumberOfThreads
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_registration_is_bit_identical_across_runs_and_thread_counts(set_itk_threads):
    """Same input and seed -> the same matrix, whatever ITK's thread count (a one-level 8 mm registration of
    the template at 4 mm moved by a known translation, a few seconds)."""
    from common.transforms.preprocessing import mni_template

    template, _, template_affine = mni_template()
    shift = np.eye(4)
    shift[:3, 3] = [6, -4, 5]
    affine = shift @ template_affine @ np.diag([4.0, 4.0, 4.0, 1.0])  # native world = shift @ MNI world
    small = template[::4, ::4, ::4]
    estimates = []
    for threads in (1, 2, 2):
        set_itk_threads(threads)
        estimates.append(
            register_to_mni(small, affine, shrink_factors=(8,), smoothing_sigmas=(4.0,), iterations=30)
        )
    for estimate in estimates[1:]:
        np.testing.assert_array_equal(estimate, estimates[0])
    # a real registration (the translation is found), not an identity that would trivially repeat
    np.testing.assert_allclose(estimates[0][:3, 3], shift[:3, 3], atol=2.0)


def test_n4_is_bit_identical_across_thread_counts(set_itk_threads):
    clean = ball_phantom(40, 17)
    biased = clean * np.exp(0.3 * np.linspace(-1, 1, 40)[:, None, None]).astype(np.float32)
    fields = []
    for threads in (1, 4):
        set_itk_threads(threads)
        fields.append(n4_bias_field(biased, np.eye(4), shrink_factor=2, iterations=(20, 20)))
    np.testing.assert_array_equal(fields[1], fields[0])


def test_non_reproducible_registration_settings_are_rejected():
    volume = ball_phantom()
    with pytest.raises(ValueError, match="wall clock"):
        register_to_mni(volume, np.eye(4), seed=0)
    with pytest.raises(ValueError, match="number_of_threads"):
        register_to_mni(volume, np.eye(4), number_of_threads=0)
