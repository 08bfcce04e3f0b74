"""Each bundle's ``configs/ixi.json`` trains on real IXI T1 slices of the training split and validates on the
validation split (issue #17); skipped, with the reason, when the IXI set is absent (a user's clone)."""

from __future__ import annotations

import pytest
import torch

from common.data.ixi import IXI_DIR_ENV, default_ixi_dir, fixed_split
from tests.harness import config_list, find_bundles, run_bundle

IXI_BUNDLES = [b for b in find_bundles() if (b / "configs" / "ixi.json").is_file()]
needs_ixi = pytest.mark.skipif(
    not (default_ixi_dir() / "t1").is_dir(),
    reason=f"IXI T1 set not found at {default_ixi_dir()} (set {IXI_DIR_ENV}; CI has it)",
)


def test_at_least_one_bundle_trains_on_real_data():
    assert IXI_BUNDLES, "no bundle has configs/ixi.json"


@needs_ixi
@pytest.mark.parametrize("bundle", IXI_BUNDLES, ids=[b.name for b in IXI_BUNDLES])
def test_ixi_training_reads_the_split_and_keeps_holes_in_the_brain(bundle, tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in ("train.json", "quick.json", "ixi.json")])
    parser.update({"bundle_root": str(bundle)})
    split = fixed_split()
    train = parser.get_parsed_content("train#datalist")
    validation = parser.get_parsed_content("validate#datalist")
    assert {e["subject"] for e in train} == set(split["training"])
    assert {e["subject"] for e in validation} == set(split["validation"])
    sample = parser.get_parsed_content("train#preprocessing")(dict(train[0]))
    hole, brain = sample["mask"] > 0, sample["brain"] > 0
    assert hole.any() and not (hole & ~brain).any(), "training holes must lie inside the brain"
    configs = config_list(*(bundle / "configs" / c for c in ("train.json", "quick.json", "ixi.json")))
    run_bundle(
        ["run", "training", "--config_file", configs, "--bundle_root", str(bundle), "--output_dir", str(tmp_path),
         "--max_epochs", "1", "--train#dataset#data", "$@train#datalist[:4]",
         "--validate#dataset#data", "$@validate#datalist[:2]", "--progress_bar", "false"],
        cwd=tmp_path,
    )  # fmt: skip
    (checkpoint,) = tmp_path.rglob("*checkpoint_epoch=1.pt")
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]["iteration"] > 0
