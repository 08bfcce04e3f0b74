"""Bad input gives a clear error naming the file, or a correct answer, never a silent wrong one (issue #16).

One parametrised matrix: the bundles' inference routes (the five inference.json, and the "fill my own hole"
routes: inference.json + fill.json) x the bad-input cases. Each case runs the route's own inference
preprocessing (the configs' ``preprocessing``, in process) on files written here and asserts the exception type
and the words of its message; cases that do not error run the inference and check the answer.
``python tests/test_bad_input.py`` writes docs/robustness.md from the same parameter list.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO  # noqa: E402

BUNDLES = REPO / "bundles"
DOC = REPO / "docs" / "robustness.md"

# route -> (spatial dims, mask key or None, extra config merged for the mask cases, extra config always merged);
# a route is a bundle's inference.json, or "<bundle> + <config>" for inference.json + that config
LAYOUT = {
    "autoinpainting_tumor_segmentation": (2, "brain", None, None),
    "autoinpainting_tumor_segmentation + fill.json": (2, "mask", None, "fill.json"),
    "blind_lesion_inpainting_3d": (3, "label", "inference_nonblind.json", None),
    "ipa_medgan": (2, None, None, None),
    "ipa_medgan + fill.json": (2, "mask", None, "fill.json"),
    "mask_optimized_object_removal": (2, "hint", None, None),
    "shape_aware_mask_inpainting": (2, "mask", None, None),
}


def bundle_of(route: str) -> str:
    return route.split(" + ")[0]

CASES = (
    "wrong dimensionality",
    "wrong channel count",
    "NaN",
    "Inf",
    "all-zero image",
    "empty mask",
    "all-ones mask",
    "geometry mismatch",
    "missing file",
    "truncated file",
)
MASK_CASES = {"empty mask", "all-ones mask", "geometry mismatch"}
NO_MASK = "n/a: this route takes no mask from the user (blind inpainting; the bundle's fill.json route takes one)"

# (bundle, case) -> expected outcome: (exception type, words of the message) or a string: what happens instead
_2D_DIMS = (ValueError, "expected a 2D channel-first image (C, H, W)")
EXPECTED: dict[tuple[str, str], tuple[type, str] | str] = {}
for _bundle, (_dims, _mask, _, _) in LAYOUT.items():
    for _case in CASES:
        if _case in MASK_CASES and _mask is None:
            EXPECTED[_bundle, _case] = NO_MASK
    EXPECTED[_bundle, "wrong dimensionality"] = (
        (ValueError, "this bundle expects a 3-D volume (C, X, Y, Z) (channel first), got shape (1, 32, 32)")
        if _dims == 3
        else _2D_DIMS
    )
    EXPECTED[_bundle, "wrong channel count"] = (ValueError, "this bundle expects 1 channel(s), got 3")
    EXPECTED[_bundle, "NaN"] = (ValueError, "the image contains NaN values")
    EXPECTED[_bundle, "Inf"] = (ValueError, "the image contains Inf values")
    EXPECTED[_bundle, "all-zero image"] = (
        ValueError,
        "the image is constant (every value 0): nothing to inpaint",
    )
    EXPECTED[_bundle, "missing file"] = (FileNotFoundError, "input file not found: ")
    EXPECTED[_bundle, "truncated file"] = (ValueError, "truncated or corrupt gzip file")
    if _mask is not None:
        EXPECTED[_bundle, "empty mask"] = (
            ValueError,
            "the mask is empty (no non-zero voxel): nothing to inpaint",
        )
        EXPECTED[_bundle, "all-ones mask"] = (
            ValueError,
            "the mask covers the whole image (all ones): nothing to inpaint from",
        )
        EXPECTED[_bundle, "geometry mismatch"] = (
            ValueError,
            "the mask's geometry differs from the image",
        )
# where a route's answer differs from the rule above
AUTO, BLIND, SHAPE = "autoinpainting_tumor_segmentation", "blind_lesion_inpainting_3d", "shape_aware_mask_inpainting"
EXPECTED.update(
    {
        (AUTO, "wrong dimensionality"): (
            ValueError,
            "this bundle expects a 2-D slice (C, H, W) (channel first), got shape (1, 64, 64, 8)",
        ),
        (BLIND, "empty mask"): (
            ValueError,
            "the mask is empty (no non-zero voxel): nothing to inpaint; for a lesion-free subject set "
            "allow_empty_mask true",
        ),
        (SHAPE, "wrong dimensionality"): (ValueError, "this 2D model needs one slice"),
        (AUTO, "all-zero image"): "runs: empty segmentation, and a warning 'skipped slice <file>: the image is constant'",
        (AUTO, "all-ones mask"): "runs: an all-ones organ-of-interest mask is valid (the whole image is the organ)",
    }
)
PARAMS = [(bundle, case) for bundle in LAYOUT for case in CASES]


def _save(path: Path, array: np.ndarray, spacing: float = 1.0) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([spacing, spacing, spacing, 1.0])), str(path))
    return str(path)


def _image(dims: int) -> np.ndarray:
    """A smooth non-constant test image: a bright disk/ball on a dark background, with texture."""
    n = 32 if dims == 3 else 64
    grid = np.meshgrid(*[np.linspace(-1, 1, n)] * dims, indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grid))
    rng = np.random.default_rng(0)
    return ((radius < 0.7) * (100.0 + 20 * grid[0]) + rng.normal(0, 1, radius.shape)).astype(np.float32)


def _mask(dims: int, value: float | None = None) -> np.ndarray:
    n = 32 if dims == 3 else 64
    if value is not None:
        return np.full((n,) * dims, value, np.float32)
    mask = np.zeros((n,) * dims, np.float32)
    mask[tuple(slice(n // 2 - 4, n // 2 + 4) for _ in range(dims))] = 1
    return mask


def make_entry(bundle: str, case: str, folder: Path) -> dict:
    """The datalist entry of ``case`` for ``bundle``, its files written in ``folder``."""
    dims, mask_key, _, _ = LAYOUT[bundle]
    image = _image(dims)
    spacing = 1.0
    if case == "wrong dimensionality":
        image = image[..., 0] if dims == 3 else np.repeat(image[..., None], 8, axis=-1)
    elif case == "wrong channel count" and dims == 2:  # an RGB picture: PNG, read channel-last
        from PIL import Image

        rgb = np.stack([np.clip(image, 0, 255).astype(np.uint8)] * 3, axis=-1)
        Image.fromarray(rgb).save(folder / "image.png")
    elif case == "wrong channel count":  # a 3-channel NIfTI (5th dim)
        image = np.stack([image] * 3, axis=-1)[:, :, :, None]
    elif case == "NaN":
        image[3, 3] = np.nan
    elif case == "Inf":
        image[3, 3] = np.inf
    elif case == "all-zero image":
        image = np.zeros_like(image)
    entry = {"image": _save(folder / "image.nii.gz", image)}
    if case == "wrong channel count" and dims == 2:
        entry["image"] = str(folder / "image.png")
    if case == "missing file":
        entry["image"] = str(folder / "no_such_image.nii.gz")
    if case == "truncated file":
        raw = gzip.compress(nib.Nifti1Image(image, np.eye(4)).to_bytes())
        (folder / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
        entry["image"] = str(folder / "cut.nii.gz")
    if mask_key is not None:
        mask = {"empty mask": _mask(dims, 0.0), "all-ones mask": _mask(dims, 1.0)}.get(case, _mask(dims))
        spacing = 2.0 if case == "geometry mismatch" else 1.0
        entry[mask_key] = _save(folder / "mask.nii.gz", mask, spacing)
    return entry


def preprocessing(bundle: str, case: str):
    """The route's inference ``preprocessing`` (merged with the non-blind config for the 3-D mask cases)."""
    from monai.bundle import ConfigParser

    folder = BUNDLES / bundle_of(bundle) / "configs"
    _, _, mask_extra, extra = LAYOUT[bundle]
    configs = [folder / "inference.json"] + ([folder / extra] if extra else [])
    if mask_extra and case in MASK_CASES:
        configs.append(folder / mask_extra)
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    parser.update({"bundle_root": str(BUNDLES / bundle_of(bundle))})
    return parser.get_parsed_content("preprocessing")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (MONAI's Compose wraps each transform's error in a RuntimeError)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@pytest.mark.parametrize(("bundle", "case"), PARAMS, ids=[f"{b}-{c.replace(' ', '_')}" for b, c in PARAMS])
def test_bad_input(bundle, case, tmp_path, capfd):
    expected = EXPECTED.get((bundle, case))
    assert expected is not None, f"no expectation for {bundle} x {case}"
    if isinstance(expected, str) and expected.startswith("n/a"):
        pytest.skip(expected)
    entry = make_entry(bundle, case, tmp_path)
    if bundle == "autoinpainting_tumor_segmentation" and case == "all-zero image":
        from harness import run_inference_in_process

        run_inference_in_process(
            BUNDLES / bundle, tmp_path / "out", [entry]
        )  # logs via the bundle's logging.conf
        outputs = sorted((tmp_path / "out").rglob("*_pred.nii.gz"))
        assert len(outputs) == 1 and not np.asarray(nib.load(outputs[0]).dataobj).any()
        printed = "".join(capfd.readouterr())
        assert (
            f"skipped slice {entry['image']}: the image is constant, so its segmentation is empty" in printed
        )
        return
    transform = preprocessing(bundle, case)
    if isinstance(expected, str):
        out = transform(entry)
        assert float(np.asarray(out["ooi"]).min()) == 1.0
        return
    kind, words = expected
    with pytest.raises(Exception) as info:
        transform(entry)
    cause = root_cause(info.value)
    assert isinstance(cause, kind), f"{type(cause).__name__}: {cause}"
    assert words in str(cause)
    if case in ("missing file", "truncated file"):
        assert entry["image"] in str(cause)
    if case == "geometry mismatch":
        assert entry[LAYOUT[bundle][1]] in str(cause) and "spacing [2.0, 2.0, 2.0] vs [1.0, 1.0, 1.0]" in str(
            cause
        )
        assert "resample_mask_to_image" in str(cause)


@pytest.mark.parametrize("bundle", [b for b, layout in LAYOUT.items() if layout[1] is not None])
def test_advised_options_are_config_ids(bundle):
    """Every option an error message advises (``resample_mask_to_image``) is a config id of the bundle."""
    import json

    folder = BUNDLES / bundle_of(bundle) / "configs"
    configs = [folder / "inference.json"] + [folder / c for c in LAYOUT[bundle][2:] if c]
    ids = set().union(*(json.loads(c.read_text()) for c in configs))
    assert "resample_mask_to_image" in ids
    if bundle == "blind_lesion_inpainting_3d":
        assert "allow_empty_mask" in ids


def test_geometry_mismatch_resampled_when_configured(tmp_path):
    """With ``resample_mask_to_image`` true the mask is resampled (nearest) onto the image grid and used."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from common.transforms import CheckInputd

    entry = make_entry("shape_aware_mask_inpainting", "geometry mismatch", tmp_path)
    load = Compose([LoadImaged(["image", "mask"], image_only=True), EnsureChannelFirstd(["image", "mask"])])
    out = CheckInputd("image", 2, 1, "mask", resample_mask_to_image=True)(load(entry))
    assert tuple(out["mask"].shape) == tuple(out["image"].shape)
    assert np.allclose(np.asarray(out["mask"].affine), np.asarray(out["image"].affine))
    assert set(np.unique(np.asarray(out["mask"]))) <= {0.0, 1.0}


def robustness_markdown() -> str:
    """docs/robustness.md, generated from the parameter list above."""
    lines = [
        "# Robustness: what each bundle does with bad input",
        "",
        "Generated by `python tests/test_bad_input.py` from the parameter list of `tests/test_bad_input.py`",
        "(do not edit by hand; `test_robustness_doc_is_current` fails when it is stale). Each row is a test:",
        "the exception the bundle's inference preprocessing raises and words of its message, or what happens.",
        "",
        "| bundle (route) | case | outcome |",
        "| --- | --- | --- |",
    ]
    for bundle, case in PARAMS:
        expected = EXPECTED[bundle, case]
        outcome = expected if isinstance(expected, str) else f'`{expected[0].__name__}`: "{expected[1]}"'
        lines.append(f"| {bundle} | {case} | {outcome.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def test_robustness_doc_is_current():
    assert DOC.read_text() == robustness_markdown(), "run: python tests/test_bad_input.py"


if __name__ == "__main__":
    DOC.write_text(robustness_markdown())
    print(f"wrote {DOC}")
