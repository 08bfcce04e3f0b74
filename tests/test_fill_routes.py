"""The "fill my own hole" routes (issue #17): ``configs/fill.json`` merged after ``inference.json`` of
``autoinpainting_tumor_segmentation`` and ``ipa_medgan`` takes a user's ``{"image", "mask"}`` (mask 1 = hole) and
writes ``<name>_filled.nii.gz``: the fill composited into the original image, in its units and geometry.

Each bundle's CLI runs on a smooth 2-D ramp (not square, not unit spacing, intensities 200-1200) with a hand-made
square hole; a mask on another grid stops the CLI naming the mask file; an empty or all-ones mask stops the
preprocessing (in process) naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from harness import REPO, config_list

FILL_BUNDLES = ("autoinpainting_tumor_segmentation", "ipa_medgan")
AFFINE = np.array([[0.9, 0, 0, -40.0], [0, 1.1, 0, -52.0], [0, 0, 3.0, 12.0], [0, 0, 0, 1]])
SHAPE = (96, 80)
HOLE = (slice(30, 52), slice(24, 46))


def write_image(path: Path) -> Path:
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float32)
    ramp = 200 + 1000 * (0.6 * y / (SHAPE[0] - 1) + 0.4 * x / (SHAPE[1] - 1))
    nib.save(nib.Nifti1Image(ramp.astype(np.float32), AFFINE), str(path))
    return path


def write_mask(path: Path, hole=HOLE, affine: np.ndarray = AFFINE) -> Path:
    mask = np.zeros(SHAPE, np.uint8)
    mask[hole] = 1
    nib.save(nib.Nifti1Image(mask, affine), str(path))
    return path


def fill_command(bundle: Path, image: Path, mask: Path, output: Path) -> list[str]:
    configs = config_list(bundle / "configs" / "inference.json", bundle / "configs" / "fill.json")
    datalist = f"[{{'image': '{image}', 'mask': '{mask}'}}]"
    return ["run", "--config_file", configs, "--bundle_root", str(bundle), "--datalist", datalist,
            "--output_dir", str(output)]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=REPO, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=600, env=env)


@pytest.mark.parametrize("name", FILL_BUNDLES)
def test_fill_route_composites_the_fill_into_the_original_image(name, tmp_path):
    bundle = REPO / "bundles" / name
    image, mask = write_image(tmp_path / "ramp.nii.gz"), write_mask(tmp_path / "ramp_hole.nii.gz")
    result = run_cli(fill_command(bundle, image, mask, tmp_path / "out"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    written = tmp_path / "out" / "ramp_filled.nii.gz"
    assert written.is_file(), sorted(p.name for p in (tmp_path / "out").rglob("*"))
    source, output = nib.load(str(image)), nib.load(str(written))
    assert output.shape == source.shape
    np.testing.assert_allclose(output.affine, source.affine, atol=1e-5)
    before, after = source.get_fdata(dtype=np.float32), output.get_fdata(dtype=np.float32)
    hole = np.zeros(SHAPE, bool)
    hole[HOLE] = True
    assert np.array_equal(after[~hole], before[~hole]), "a known pixel changed"
    fill = after[hole]
    assert np.isfinite(fill).all()
    assert before.min() <= fill.min() and fill.max() <= before.max(), (
        f"fill in [{fill.min()}, {fill.max()}], input in [{before.min()}, {before.max()}]: not in input units"
    )


@pytest.mark.parametrize("name", FILL_BUNDLES)
def test_fill_route_stops_on_a_mask_of_another_geometry_naming_it(name, tmp_path):
    bundle = REPO / "bundles" / name
    shifted = AFFINE.copy()
    shifted[:3, 3] += (5.0, -3.0, 0.0)
    image = write_image(tmp_path / "ramp.nii.gz")
    mask = write_mask(tmp_path / "shifted_hole.nii.gz", affine=shifted)
    result = run_cli(fill_command(bundle, image, mask, tmp_path / "out"))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert str(mask) in text and "geometry differs" in text, text[-4000:]
    assert not list((tmp_path / "out").rglob("*_filled.nii.gz"))


@pytest.mark.parametrize("name", FILL_BUNDLES)
@pytest.mark.parametrize("hole, words", [((slice(0, 0), slice(0, 0)), "mask is empty"),
                                         ((slice(None), slice(None)), "covers the whole image")],
                         ids=["empty", "all-ones"])
def test_fill_route_refuses_an_empty_or_full_mask(name, hole, words, tmp_path):
    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / name
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "fill.json")])
    parser.update({"bundle_root": str(bundle)})
    preprocessing = parser.get_parsed_content("preprocessing")
    image, mask = write_image(tmp_path / "ramp.nii.gz"), write_mask(tmp_path / "bad_hole.nii.gz", hole=hole)
    with pytest.raises(RuntimeError) as error:  # MONAI's Compose wraps the check's ValueError
        preprocessing({"image": str(image), "mask": str(mask)})
    cause = error.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, ValueError) and str(mask) in str(cause) and words in str(cause), repr(cause)
