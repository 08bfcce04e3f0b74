"""A seeded synthetic brain cohort built from nilearn's MNI152 2009a template.

Every bundle runs out of the box on this data. Each subject is the real ICBM 2009a T1 (with its GM/WM
probability maps), which ships inside nilearn, put through what makes real scans differ:

* a small random affine (rotation, scaling) and a smooth random elastic deformation,
* a smooth multiplicative bias field,
* a scanner intensity scale, and Rician or Gaussian noise (zero outside the brain: the template is
  brain-extracted, so the cohort looks like skull-stripped data),

resampled onto the 182x218x182 MNI 1 mm grid that the 3D lesion-inpainting paper uses. Every subject is kept
three times: lesion-free, with MS-like white-matter lesions and with a tumour-like mass, each with its
ground-truth mask, so the lesion-free truth of every lesioned image is known. Lesions are painted on the
noise-free image, before the bias field and the noise, and the three versions share one noise realisation:
their difference is the lesion alone.

Randomness comes only from ``numpy.random.SeedSequence(seed).spawn(n_subjects)``: one independent stream per
subject, so the same seed gives the same files whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: The MNI152 1 mm grid used by FSL and by the 3D blind-inpainting paper, stored RAS (x = -91 + i).
MNI_SHAPE = (182, 218, 182)
MNI_AFFINE = np.array(
    [[1.0, 0.0, 0.0, -91.0], [0.0, 1.0, 0.0, -126.0], [0.0, 0.0, 1.0, -72.0], [0.0, 0.0, 0.0, 1.0]]
)

#: MS lesion loads (total lesion volume in mL) drawn for the small / medium / large categories.
MS_LOADS_ML = {"small": (1.0, 4.0), "medium": (5.0, 12.0), "large": (15.0, 30.0)}


@dataclasses.dataclass(frozen=True)
class CohortParameters:
    """Ranges the subjects are drawn from. Defaults aim at typical 1.5/3 T T1 scans after skull stripping."""

    rotation_deg: float = 3.0  #: max absolute rotation about each axis
    scaling: float = 0.04  #: max relative isotropic scaling
    elastic_mm: float = 3.0  #: standard deviation of the elastic displacement, in mm
    bias_strength: float = 0.15  #: standard deviation of the log bias field
    intensity_scale: tuple[float, float] = (600.0, 1400.0)  #: scanner units of white matter
    noise_fraction: tuple[float, float] = (0.01, 0.04)  #: noise sigma as a fraction of the WM intensity
    ms_lesion_ratio: tuple[float, float] = (0.45, 0.75)  #: lesion / normal-appearing WM intensity
    ms_radius_mm: tuple[float, float] = (1.5, 6.0)  #: semi-axis range of one MS lesion
    tumour_radius_mm: tuple[float, float] = (8.0, 18.0)  #: mean radius of a tumour-like mass
    tumour_bright_ratio: tuple[float, float] = (1.2, 1.5)  #: mass / white-matter intensity when bright
    tumour_dark_ratio: tuple[float, float] = (0.3, 0.6)  #: mass / white-matter intensity when dark
    tumour_depth_mm: float = 8.0  #: minimum distance of the mass centre from the brain surface


@dataclasses.dataclass
class Template:
    """The ICBM 2009a template (T1 scaled to 0..1, GM, WM, brain mask) on its own 1 mm grid."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def load_template() -> Template:
    """Load nilearn's bundled MNI152 2009a T1, GM, WM and brain mask (no download: they ship with nilearn)."""
    from nilearn import datasets

    images = {
        "t1": datasets.load_mni152_template(resolution=1),
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "brain": datasets.load_mni152_brain_mask(resolution=1),
    }
    arrays = {k: np.asarray(v.get_fdata(), dtype=np.float32) for k, v in images.items()}
    return Template(**arrays, affine=np.asarray(images["t1"].affine, dtype=np.float64))


@dataclasses.dataclass
class Subject:
    """One synthetic subject on the MNI grid. Intensities in scanner units; masks uint8; maps float32."""

    t1: np.ndarray
    t1_ms: np.ndarray
    ms_mask: np.ndarray
    t1_tumour: np.ndarray
    tumour_mask: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    info: dict


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], coarse: tuple[int, ...], channels: int = 1
):
    """Unit-variance smooth random field(s) on ``shape``: Gaussian noise on a coarse grid, cubic- then
    trilinear-upsampled (cheap, and smooth at the scale of the coarse grid)."""
    noise = rng.standard_normal((channels, *coarse)).astype(np.float32)
    mid = tuple(4 * c for c in coarse)
    noise = np.stack([ndimage.zoom(c, [m / c_ for m, c_ in zip(mid, coarse)], order=3) for c in noise])
    field = F.interpolate(torch.from_numpy(noise)[None], size=shape, mode="trilinear", align_corners=True)[0]
    field = field.numpy()
    return field / max(float(field.std()), 1e-6)


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrix from three Euler angles (x, y, z)."""
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _warp_template(template: Template, rng: np.random.Generator, params: CohortParameters):
    """Resample T1, GM, WM and brain mask onto the MNI grid through a random affine + elastic deformation.

    For each target voxel: world point p (MNI affine) -> p' = A p + d(p) -> template voxel via the template's
    inverse affine; sampled trilinearly with ``torch.nn.functional.grid_sample`` (all four maps in one pass).
    """
    shape = MNI_SHAPE
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3)
    world = ijk @ torch.from_numpy(MNI_AFFINE[:3, :3].T).float() + torch.from_numpy(MNI_AFFINE[:3, 3]).float()

    angles = np.deg2rad(rng.uniform(-params.rotation_deg, params.rotation_deg, 3))
    scale = 1.0 + rng.uniform(-params.scaling, params.scaling)
    linear = torch.from_numpy(scale * _rotation(angles)).float()
    displacement = _smooth_noise(rng, shape, (6, 7, 6), channels=3) * params.elastic_mm
    moved = world @ linear.T + torch.from_numpy(np.moveaxis(displacement, 0, -1))

    inverse = np.linalg.inv(template.affine)
    src = moved @ torch.from_numpy(inverse[:3, :3].T).float() + torch.from_numpy(inverse[:3, 3]).float()
    src_shape = torch.tensor(template.t1.shape, dtype=torch.float32)
    normalised = 2.0 * src / (src_shape - 1.0) - 1.0
    # grid_sample wants (x, y, z) = (last, middle, first) input dims; our volumes are indexed (i, j, k).
    grid = normalised.flip(-1)[None]
    stacked = torch.from_numpy(np.stack([template.t1, template.gm, template.wm, template.brain]))[None]
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[
        0
    ].numpy()
    info = {"rotation_deg": np.rad2deg(angles).round(3).tolist(), "scale": round(float(scale), 4)}
    return warped[0], warped[1], warped[2], warped[3] > 0.5, info


def _ellipsoid_blob(rng, centre, radii, noise_amplitude, shape):
    """A blobby ellipsoid (random orientation, surface perturbed by smooth noise) as a soft 0..1 map, computed
    in a bounding box; returns (slices, soft_map)."""
    margin = int(np.ceil(max(radii) * (1.0 + noise_amplitude) + 3))
    lo = [max(0, int(c) - margin) for c in centre]
    hi = [min(s, int(c) + margin + 1) for c, s in zip(centre, shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)], indexing="ij")
    offsets = np.stack(grids, axis=-1).astype(np.float32)
    local = offsets @ _rotation(rng.uniform(0, 2 * np.pi, 3)).astype(np.float32)
    level = np.sqrt(np.sum((local / np.asarray(radii, dtype=np.float32)) ** 2, axis=-1))
    box_shape = tuple(b - a for a, b in zip(lo, hi))
    coarse = tuple(max(2, s // 6) for s in box_shape)
    level = level + noise_amplitude * _smooth_noise(rng, box_shape, coarse)[0]
    soft = np.clip(1.5 - level, 0.0, 1.0)  # 1 inside, a ~0.5 voxel-wide ramp at level 1, 0 outside
    return box, ndimage.gaussian_filter(soft, 0.6)


def _paint_ms_lesions(clean, wm, brain, rng, params: CohortParameters, load: str):
    """T1-hypointense MS-like lesions inside white matter until the drawn lesion load (mL) is reached.

    Returns the lesioned image, the binary mask (soft map > 0.5, restricted to WM probability > 0.5) and info.
    """
    target_ml = float(rng.uniform(*MS_LOADS_ML[load]))
    deep_wm = np.argwhere(wm > 0.9)
    in_wm = (wm > 0.5) & brain
    soft_total = np.zeros_like(clean)
    darkening = np.zeros_like(clean)
    n_lesions = 0
    for _ in range(500):  # bounded: a lesion adds at least a few voxels, large loads need ~100 lesions
        if np.count_nonzero((soft_total > 0.5) & in_wm) / 1000.0 >= target_ml:
            break
        centre = deep_wm[rng.integers(len(deep_wm))]
        radii = np.exp(rng.uniform(*np.log(params.ms_radius_mm), 3))
        box, soft = _ellipsoid_blob(rng, centre, radii, 0.25, clean.shape)
        soft = soft * in_wm[box]
        ratio = rng.uniform(*params.ms_lesion_ratio)
        stronger = soft > soft_total[box]
        darkening[box] = np.where(stronger, soft * (1.0 - ratio), darkening[box])
        soft_total[box] = np.maximum(soft_total[box], soft)
        n_lesions += 1
    mask = (soft_total > 0.5) & in_wm
    darkening *= ndimage.binary_dilation(mask, iterations=3)  # no sub-threshold lesion without a label
    info = {
        "load": load,
        "target_ml": round(target_ml, 3),
        "volume_ml": float(mask.sum()) / 1000.0,
        "lesions": n_lesions,
    }
    return clean * (1.0 - darkening), mask, info


def _paint_tumour(clean, gm, wm, brain, rng, params: CohortParameters, z_range: tuple[int, int]):
    """One irregular tumour-like mass, bright or dark relative to white matter with a heterogeneous texture,
    centred in tissue at least ``tumour_depth_mm`` inside the brain."""
    tissue = (gm + wm > 0.8) & (ndimage.distance_transform_edt(brain) >= params.tumour_depth_mm)
    candidates = np.argwhere(tissue)
    candidates = candidates[(candidates[:, 2] >= z_range[0]) & (candidates[:, 2] < z_range[1])]
    centre = candidates[rng.integers(len(candidates))]
    radius = rng.uniform(*params.tumour_radius_mm)
    radii = radius * rng.uniform(0.75, 1.25, 3)
    box, soft = _ellipsoid_blob(rng, centre, radii, 0.35, clean.shape)
    soft = soft * brain[box]
    soft *= ndimage.binary_dilation(soft > 0.5, iterations=3)  # the labelled mass is the only change
    bright = bool(rng.random() < 0.5)
    ratio = rng.uniform(*(params.tumour_bright_ratio if bright else params.tumour_dark_ratio))
    texture = 1.0 + 0.12 * _smooth_noise(rng, soft.shape, tuple(max(2, s // 5) for s in soft.shape))[0]
    level = float(np.median(clean[wm > 0.9])) * ratio * texture
    out = clean.copy()
    out[box] = clean[box] * (1.0 - soft) + level * soft
    mask = np.zeros(clean.shape, dtype=bool)
    mask[box] = (soft > 0.5) & brain[box]
    info = {
        "bright": bright,
        "ratio": round(float(ratio), 3),
        "radius_mm": round(float(radius), 2),
        "centre_voxel": centre.tolist(),
        "volume_ml": float(mask.sum()) / 1000.0,
    }
    return out, mask, info


def _add_noise(image, brain, sigma, rician, rng):
    """Rician (magnitude of complex Gaussian) or Gaussian noise, zeroed outside the brain mask."""
    n1 = rng.standard_normal(image.shape, dtype=np.float32) * sigma
    if rician:
        n2 = rng.standard_normal(image.shape, dtype=np.float32) * sigma
        noisy = np.sqrt((image + n1) ** 2 + n2**2)
    else:
        noisy = np.maximum(image + n1, 0.0)
    return noisy * brain


def make_subject(
    template: Template,
    seed_sequence: np.random.SeedSequence,
    load: str,
    z_range: tuple[int, int],
    params: CohortParameters = CohortParameters(),
) -> Subject:
    """Draw one subject: warped anatomy, bias, scale, lesions (MS-like with the given load, one tumour whose
    centre lies in axial slices ``z_range``) and a noise realisation shared by all three versions."""
    rng = np.random.default_rng(seed_sequence)
    t1, gm, wm, brain, info = _warp_template(template, rng, params)
    t1_ms, ms_mask, ms_info = _paint_ms_lesions(t1, wm, brain, rng, params, load)
    t1_tumour, tumour_mask, tumour_info = _paint_tumour(t1, gm, wm, brain, rng, params, z_range)

    bias = np.exp(params.bias_strength * _smooth_noise(rng, MNI_SHAPE, (3, 3, 3))[0])
    wm_level = float(np.median(t1[wm > 0.9]))
    scale = rng.uniform(*params.intensity_scale) / wm_level
    sigma = rng.uniform(*params.noise_fraction) * wm_level * scale
    rician = bool(rng.random() < 0.5)
    noise_state = rng.bit_generator.state  # one noise realisation for the three versions
    versions = []
    for image in (t1, t1_ms, t1_tumour):
        rng.bit_generator.state = noise_state
        versions.append(_add_noise(image * bias * scale, brain, sigma, rician, rng).astype(np.float32))
    info.update(
        ms=ms_info,
        tumour=tumour_info,
        noise="rician" if rician else "gaussian",
        noise_sigma=round(float(sigma), 3),
        intensity_scale=round(float(scale), 3),
    )
    return Subject(
        t1=versions[0],
        t1_ms=versions[1],
        ms_mask=ms_mask.astype(np.uint8),
        t1_tumour=versions[2],
        tumour_mask=tumour_mask.astype(np.uint8),
        gm=(gm * brain).astype(np.float32),
        wm=(wm * brain).astype(np.float32),
        brain=brain.astype(np.uint8),
        info=info,
    )
