"""Each bundle's shipped weights give the same outputs as the saved references (see reference_outputs.py)."""

from pathlib import Path

import numpy as np
import pytest
from harness import find_bundles
from reference_outputs import REFERENCE_DIR, inference_outputs


@pytest.mark.parametrize("bundle", find_bundles(), ids=lambda p: p.name)
def test_shipped_weights_reproduce_the_reference_outputs(bundle, tmp_path):
    reference = np.load(REFERENCE_DIR / f"{bundle.name}.npz")
    # Outputs are matched by file name: a change of output sub-folders does not hide a change of values.
    expected = {Path(name).name: reference[name] for name in reference.files}
    produced = {Path(name).name: array for name, array in inference_outputs(bundle, tmp_path).items()}
    assert sorted(produced) == sorted(expected)
    for name, array in expected.items():
        assert produced[name].shape == array.shape, name
        np.testing.assert_allclose(produced[name], array, rtol=0, atol=1e-5, err_msg=name)
