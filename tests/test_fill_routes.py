"""The "fill my own hole" routes (issue #17): ``configs/fill.json`` merged after ``inference.json`` of
``autoinpainting_tumor_segmentation`` and ``ipa_medgan`` (and shape_aware_mask_inpainting's ``inference.json``, its
route for a user's mask, in the model-grid tests) takes a user's ``{"image", "mask"}`` (mask 1 = hole) and
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
#: bundles whose fill route puts the slice on the model's grid (ToModelGridd): orientation and spacing of the
#: input do not change the answer
MODEL_GRID_BUNDLES = ("autoinpainting_tumor_segmentation", "ipa_medgan", "shape_aware_mask_inpainting")
#: each bundle's route for a user's own mask: its configs and the postfix of the file it writes
ROUTES = {
    "autoinpainting_tumor_segmentation": (("inference.json", "fill.json"), "filled"),
    "ipa_medgan": (("inference.json", "fill.json"), "filled"),
    "shape_aware_mask_inpainting": (("inference.json",), "inpainted"),
}
AFFINE = np.array([[0.9, 0, 0, -40.0], [0, 1.1, 0, -52.0], [0, 0, 3.0, 12.0], [0, 0, 0, 1]])
SHAPE = (96, 80)
HOLE = (slice(30, 52), slice(24, 46))


def flipped_first_axis(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with its first axis reversed (e.g. LAS instead of RAS): same world positions."""
    flipped = affine.copy()
    flipped[:, 0] = -affine[:, 0]
    flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (array.shape[0] - 1)
    return array[::-1].copy(), flipped


def write_image(path: Path, flip: bool = False) -> Path:
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float32)
    ramp = 200 + 1000 * (0.6 * y / (SHAPE[0] - 1) + 0.4 * x / (SHAPE[1] - 1)) + 150 * np.sin(x / 5.0) * np.cos(y / 7.0)
    ramp, affine = flipped_first_axis(ramp, AFFINE) if flip else (ramp, AFFINE)
    nib.save(nib.Nifti1Image(ramp.astype(np.float32), affine), str(path))
    return path


def write_mask(path: Path, hole=HOLE, affine: np.ndarray = AFFINE, flip: bool = False) -> Path:
    mask = np.zeros(SHAPE, np.uint8)
    mask[hole] = 1
    mask, affine = flipped_first_axis(mask, affine) if flip else (mask, affine)
    nib.save(nib.Nifti1Image(mask, affine), str(path))
    return path


def fill_command(bundle: Path, image: Path, mask: Path, output: Path) -> list[str]:
    configs = config_list(*(bundle / "configs" / c for c in ROUTES[bundle.name][0]))
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


@pytest.mark.parametrize("name", MODEL_GRID_BUNDLES)
def test_fill_route_answer_does_not_depend_on_the_slice_orientation(name, tmp_path):
    """The same slice stored LAS instead of RAS gives the same fill at the same world positions (the model sees
    its training orientation), written back in the input's own orientation."""
    bundle = REPO / "bundles" / name
    outputs = []
    for flip in (False, True):
        image = write_image(tmp_path / f"ramp{int(flip)}.nii.gz", flip=flip)
        mask = write_mask(tmp_path / f"ramp{int(flip)}_hole.nii.gz", flip=flip)
        result = run_cli(fill_command(bundle, image, mask, tmp_path / "out"))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
        written = nib.load(str(tmp_path / "out" / f"ramp{int(flip)}_{ROUTES[name][1]}.nii.gz"))
        np.testing.assert_allclose(written.affine, nib.load(str(image)).affine, atol=1e-5)
        outputs.append(written.get_fdata(dtype=np.float32))
    hole = np.zeros(SHAPE, bool)
    hole[HOLE] = True
    unflipped = outputs[1][::-1]
    assert np.abs(outputs[0][hole] - outputs[0][hole].mean()).max() > 1.0, "the fill is flat: nothing compared"
    np.testing.assert_allclose(unflipped, outputs[0], atol=1e-3 * (outputs[0].max() - outputs[0].min()))


@pytest.mark.parametrize("name", MODEL_GRID_BUNDLES)
def test_every_route_uses_the_grid_its_weights_were_trained_on(name):
    """metadata.json ``model_grids`` records the grid of each shipped weights file; every route that loads one
    puts slices on that grid (config id ``model_grid``)."""
    import json

    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / name
    grids = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))["model_grids"]
    checked = 0
    for weights, grid in ((k, v) for k, v in grids.items() if not k.startswith("_")):
        assert (bundle / weights).is_file(), weights
        for route in grid["routes"]:
            parser = ConfigParser()
            parser.read_config([str(bundle / c.strip()) for c in route.split("+")])
            parser.update({"bundle_root": str(bundle)})
            assert Path(parser.get_parsed_content("checkpoint")).name == Path(weights).name, route
            assert parser.get_parsed_content("model_grid") == {"spacing": grid["spacing"], "axcodes": grid["axcodes"]}
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("name", MODEL_GRID_BUNDLES)
def test_fill_route_shows_the_model_its_training_grid(name, tmp_path):
    """Whatever the input's spacing (here 0.9 x 1.1 mm, stored LAS), the network input is on the fill route's
    model grid (spacing, RAS axes): the field of view is kept (96 x 0.9 mm -> 43-44 pixels of 2 mm)."""
    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / name
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in ROUTES[name][0]])
    parser.update({"bundle_root": str(bundle)})
    grid = parser.get_parsed_content("model_grid")
    image = write_image(tmp_path / "ramp.nii.gz", flip=True)
    mask = write_mask(tmp_path / "ramp_hole.nii.gz", flip=True)
    preprocessing = parser.get_parsed_content("preprocessing")
    preprocessing.transforms = preprocessing.transforms[
        : 1 + next(i for i, t in enumerate(preprocessing.transforms) if type(t).__name__ == "ToModelGridd")
    ]  # what the model grid gives (a bundle may resize to its network's size after it)
    seen = preprocessing({"image": str(image), "mask": str(mask)})["image"]
    affine = np.asarray(seen.affine)
    np.testing.assert_allclose(np.abs(np.diag(affine)[:2]), grid["spacing"], atol=1e-6)
    assert np.diag(affine)[0] > 0 and np.diag(affine)[1] > 0, affine  # R and A increase along the axes
    for pixels, size, spacing, target in zip(seen.shape[-2:], SHAPE, (0.9, 1.1), grid["spacing"]):
        assert abs(pixels * target - size * spacing) <= target, (tuple(seen.shape), SHAPE)
