"""All five bundles run in one Python process, one after another, each through its own ``scripts`` package, and
their shipped weights give the same outputs as the saved references (see reference_outputs.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from harness import find_bundles
from reference_outputs import REFERENCE_DIR, inference_outputs

from common.bundle_scripts import scripts_module_name


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_all_bundles_share_one_process_and_reproduce_their_reference_outputs(tmp_path):
    bundles = find_bundles()
    assert len(bundles) == 5
    for bundle in bundles:
        produced = inference_outputs(bundle, tmp_path / bundle.name)
        if "@scripts" in (bundle / "configs" / "inference.json").read_text(encoding="utf-8"):
            assert sys.modules[scripts_module_name(bundle)].__file__.startswith(str(bundle / "scripts"))
        reference = np.load(REFERENCE_DIR / f"{bundle.name}.npz")
        # matched by file name: moving outputs into sub-folders does not hide a change of values
        expected = {Path(name).name: reference[name] for name in reference.files}
        produced = {Path(name).name: array for name, array in produced.items()}
        assert sorted(produced) == sorted(expected), bundle.name
        for name, array in expected.items():
            assert produced[name].shape == array.shape, name
            np.testing.assert_allclose(produced[name], array, rtol=0, atol=1e-5, err_msg=f"{bundle.name}: {name}")
    assert "scripts" not in sys.modules  # no bundle claimed the shared top-level name
