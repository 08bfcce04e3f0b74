"""All five bundles run in one Python process, one after another, each through its own ``scripts`` package, and
their shipped weights give the same outputs as the saved references (see reference_outputs.py)."""

import sys

import pytest
from harness import find_bundles
from reference_outputs import compare_with_reference, inference_outputs

from common.bundle_scripts import scripts_module_name


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_all_bundles_share_one_process_and_reproduce_their_reference_outputs(tmp_path):
    bundles = find_bundles()
    assert len(bundles) == 5
    for bundle in bundles:
        produced = inference_outputs(bundle, tmp_path / bundle.name)
        if "@scripts" in (bundle / "configs" / "inference.json").read_text(encoding="utf-8"):
            # its own package, under its name (or that name plus a path hash if another copy came first)
            own = [m for name, m in list(sys.modules.items()) if name.startswith(scripts_module_name(bundle))]
            assert any(str(getattr(m, "__file__", "")).startswith(str(bundle / "scripts")) for m in own)
        compare_with_reference(bundle, produced)
    assert "scripts" not in sys.modules  # no bundle claimed the shared top-level name
