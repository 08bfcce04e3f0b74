"""Saved outputs of each bundle's shipped weights, so a refactor can prove it changed no answer.

``python tests/reference_outputs.py`` runs every bundle's ``inference.json`` on the first entry of its default
datalist (the sample cohort, seed 0), all in one process, and writes ``tests/data/reference_outputs/<bundle>.npz``;
``test_reference_outputs.py`` does the same and compares within 1e-5 of each output's range. Regenerate only when a change is
meant to change the answers (new weights, a fixed bug), and say so in the commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, find_bundles, run_inference_in_process  # noqa: E402

REFERENCE_DIR = REPO / "tests" / "data" / "reference_outputs"
VOLUME_STRIDE = 3  # 3-D outputs are stored every 3rd voxel: small files, still thousands of checked voxels


def first_datalist_entry(bundle: Path) -> dict:
    """The first record of ``inference.json``'s default ``datalist`` (the sample cohort's first test case)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle)})
    return dict(parser.get_parsed_content("datalist")[0])


def inference_outputs(bundle: Path, output_dir: Path) -> dict[str, np.ndarray]:
    """Run ``bundle``'s inference on its first default datalist entry; every NIfTI it writes, by relative path."""
    run_inference_in_process(bundle, output_dir, [first_datalist_entry(bundle)])
    arrays = {}
    for path in sorted(output_dir.rglob("*.nii*")):
        data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
        if data.ndim == 3 and min(data.shape) > 1:
            data = data[::VOLUME_STRIDE, ::VOLUME_STRIDE, ::VOLUME_STRIDE]
        arrays[path.relative_to(output_dir).as_posix()] = data
    if not arrays:
        raise AssertionError(f"{bundle.name}: inference wrote no NIfTI file under {output_dir}")
    return arrays


def compare_with_reference(bundle: Path, produced: dict[str, np.ndarray]) -> None:
    """Assert ``produced`` (from :func:`inference_outputs`) equals the saved reference within 1e-5 of its range, matching
    files by name (moving outputs into sub-folders does not hide a change of values)."""
    reference = np.load(REFERENCE_DIR / f"{bundle.name}.npz")
    expected = {Path(name).name: reference[name] for name in reference.files}
    produced = {Path(name).name: array for name, array in produced.items()}
    assert sorted(produced) == sorted(expected), f"{bundle.name}: {sorted(produced)} != {sorted(expected)}"
    for name, array in expected.items():
        assert produced[name].shape == array.shape, f"{bundle.name}: {name}"
        # float32 sums differ with the CPU's vector width: 1e-5 of the output's range (at least 1e-5)
        tolerance = 1e-5 * max(1.0, float(np.ptp(array)))
        np.testing.assert_allclose(produced[name], array, rtol=0, atol=tolerance, err_msg=f"{bundle.name}: {name}")


def main(argv: list[str] | None = None) -> None:
    """Regenerate every reference (``--only NAME...``: those bundles'), or with ``--check NAME...`` compare those
    bundles with theirs."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", nargs="+", metavar="BUNDLE", help="compare these bundles, write nothing")
    parser.add_argument("--only", nargs="+", metavar="BUNDLE", help="regenerate only these bundles' references")
    args = parser.parse_args(argv)
    if args.check:
        for bundle in find_bundles():
            if bundle.name in args.check:
                with tempfile.TemporaryDirectory() as tmp:
                    compare_with_reference(bundle, inference_outputs(bundle, Path(tmp)))
                print(f"{bundle.name}: same outputs as the reference")
        return
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    for bundle in find_bundles():
        if args.only and bundle.name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            arrays = inference_outputs(bundle, Path(tmp))
        np.savez_compressed(REFERENCE_DIR / f"{bundle.name}.npz", **arrays)
        print(bundle.name, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main()
