"""Each bundle's ``configs/ixi.json`` trains on real IXI T1 slices of the training split and validates on the
validation split (issue #17); skipped, with the reason, when the IXI set is absent (a user's clone)."""

from __future__ import annotations

import pytest
import torch

from common.data.ixi import IXI_DIR_ENV, default_ixi_dir, fixed_split
from tests.harness import config_list, find_bundles, run_bundle

# the 2-D bundles' slice training; the 3-D bundle's ixi.json (whole MNI-registered volumes, a 45-CPU-minute
# registration + preprocessing build) has its own fast checks in tests/test_blind_lesion_3d_ixi.py
IXI_BUNDLES = [
    b for b in find_bundles() if (b / "configs" / "ixi.json").is_file() and b.name != "blind_lesion_inpainting_3d"
]
needs_ixi = pytest.mark.skipif(
    not (default_ixi_dir() / "t1").is_dir(),
    reason=f"IXI T1 set not found at {default_ixi_dir()} (set {IXI_DIR_ENV}; CI has it)",
)


IXI_CONFIGS = ("train.json", "quick.json", "ixi.json")


def ixi_parser(bundle):
    """The bundle's training config on IXI (train.json + quick.json + ixi.json), parsed."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in IXI_CONFIGS])
    parser.update({"bundle_root": str(bundle)})
    return parser


def bundle_named(name: str):
    return next(b for b in IXI_BUNDLES if b.name == name)


def test_at_least_one_bundle_trains_on_real_data():
    assert IXI_BUNDLES, "no bundle has configs/ixi.json"


# mask_optimized_object_removal's ixi.json trains the inpainters (`run pretrain_inpainters`), not the end-to-end
# `run training`: its own test below
END_TO_END_IXI_BUNDLES = [b for b in IXI_BUNDLES if b.name != "mask_optimized_object_removal"]


@needs_ixi
@pytest.mark.parametrize("bundle", END_TO_END_IXI_BUNDLES, ids=[b.name for b in END_TO_END_IXI_BUNDLES])
def test_ixi_training_reads_the_split_and_keeps_holes_in_the_brain(bundle, tmp_path):
    parser = ixi_parser(bundle)
    split = fixed_split()
    train = parser.get_parsed_content("train#datalist")
    validation = parser.get_parsed_content("validate#datalist")
    assert {e["subject"] for e in train} == set(split["training"])
    assert {e["subject"] for e in validation} == set(split["validation"])
    sample = parser.get_parsed_content("train#preprocessing")(dict(train[0]))
    hole, brain = sample["mask"] > 0, sample["brain"] > 0
    assert hole.any() and not (hole & ~brain).any(), "training holes must lie inside the brain"
    configs = config_list(*(bundle / "configs" / c for c in IXI_CONFIGS))
    run_bundle(
        ["run", "training", "--config_file", configs, "--bundle_root", str(bundle), "--output_dir", str(tmp_path),
         "--max_epochs", "1", "--train#dataset#data", "$@train#datalist[:4]",
         "--validate#dataset#data", "$@validate#datalist[:2]", "--progress_bar", "false"],
        cwd=tmp_path,
    )  # fmt: skip
    (checkpoint,) = tmp_path.rglob("*checkpoint_epoch=1.pt")
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]["iteration"] > 0


@needs_ixi
def test_ipa_medgan_ixi_pads_to_128_starts_from_the_demo_weights_and_fixes_the_validation_holes():
    """ipa_medgan's ixi.json: 90x120 IXI slices zero-padded (not resized) to 128x128, the masked input has the hole
    voided, the shipped generator loads into the 128-px network, and validation holes repeat epoch to epoch."""
    from monai.transforms import Compose

    bundle = bundle_named("ipa_medgan")
    parser = ixi_parser(bundle)
    entry = parser.get_parsed_content("train#datalist")[0]
    sample = parser.get_parsed_content("train#preprocessing")(dict(entry))
    assert sample["image"].shape == (1, 128, 128)
    # load ... percentile scaling, before the padding
    unpadded = Compose(parser.get_parsed_content("load")[:4])(dict(entry))["image"]
    assert max(unpadded.shape[1:]) <= 128  # padded only, nothing cropped or resized
    assert torch.isclose(torch.as_tensor(sample["image"]).sum(), torch.as_tensor(unpadded).sum())
    hole = sample["mask"] > 0
    assert hole.any() and float(sample["masked_image"][hole].abs().max()) == 0.0
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    # strict: the same architecture as the demo weights
    parser.get_parsed_content("generator").load_state_dict(state)
    masks = parser.get_parsed_content("validate#mask_transform")
    preprocessing = parser.get_parsed_content("validate#preprocessing")
    val_entry = parser.get_parsed_content("validate#datalist")[0]
    draws = []
    for _ in range(2):
        masks.set_random_state(seed=parser.get_parsed_content("val_hole_seed"))
        draws.append(preprocessing(dict(val_entry))["mask"])
    assert torch.equal(torch.as_tensor(draws[0]), torch.as_tensor(draws[1]))


@needs_ixi
def test_shape_aware_ixi_keeps_pseudo_segment_holes_in_the_brain_and_fixes_the_validation_holes():
    """shape_aware_mask_inpainting's ixi.json: slices and brain masks resized together to 128x128, pseudo-segment
    holes clipped to the brain, the shipped weights load strictly, and validation holes are seeded per slice id."""
    bundle = bundle_named("shape_aware_mask_inpainting")
    parser = ixi_parser(bundle)
    entry = parser.get_parsed_content("train#datalist")[0]
    sample = parser.get_parsed_content("train#preprocessing")(dict(entry))
    assert sample["image"].shape == sample["brain"].shape == sample["mask"].shape == (1, 128, 128)
    hole, brain = sample["mask"] > 0, sample["brain"] > 0
    assert hole.any() and not (hole & ~brain).any()
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    parser.get_parsed_content("network").load_state_dict(state)  # strict: the demo architecture
    preprocessing = parser.get_parsed_content("validate#preprocessing")
    first, second = parser.get_parsed_content("validate#datalist")[:2]
    a, b = (torch.as_tensor(preprocessing(dict(first))["mask"]) for _ in range(2))
    other = preprocessing(dict(second))
    assert torch.equal(a, b) and a.any() and not torch.equal(a, torch.as_tensor(other["mask"]))
    assert not ((torch.as_tensor(other["mask"]) > 0) & ~(torch.as_tensor(other["brain"]) > 0)).any()


@needs_ixi
@pytest.mark.slow
def test_object_removal_ixi_pretrains_the_inpainters_on_padded_slices_with_voided_holes_in_the_brain(tmp_path):
    """mask_optimized_object_removal's ixi.json: 90x120 slices zero-padded (not resized) to 128x128, holes inside
    the brain and voided in the input, edges of the voided input; the shipped pipeline loads strictly; one
    iteration of `run pretrain_inpainters` validates through the hint route and saves a whole-pipeline model.pt
    that inference.json + inference_ixi.json (padded, not resized) loads."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    bundle = bundle_named("mask_optimized_object_removal")
    parser = ixi_parser(bundle)
    entry = parser.get_parsed_content("train#datalist")[0]
    sample = parser.get_parsed_content("pretrain#inpainter_transform")(dict(entry))
    assert sample["image"].shape == sample["clean"].shape == sample["mask"].shape == (1, 128, 128)
    unpadded = Compose(parser.get_parsed_content("ixi_load")[:4])(dict(entry))["image"]
    assert tuple(unpadded.shape[1:]) == (90, 120)  # padded only: the same intensities, nothing resized
    assert torch.isclose(torch.as_tensor(sample["clean"]).sum(), torch.as_tensor(unpadded).sum())
    hole, brain = sample["mask"] > 0, sample["brain"] > 0
    assert hole.any() and not (hole & ~brain).any()
    assert float(sample["image"][hole].abs().max()) == 0.0
    assert torch.equal(sample["image"][~hole], sample["clean"][~hole])
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    parser.get_parsed_content("network").load_state_dict(state)  # strict: the shipped architecture
    assert parser.get_parsed_content("validate#evaluator").network.mask_source == "hint"

    configs = config_list(*(bundle / "configs" / c for c in IXI_CONFIGS))
    run_bundle(
        ["run", "pretrain_inpainters", "--config_file", configs, "--bundle_root", str(bundle), "--output_dir",
         str(tmp_path), "--pretrain_epochs", "1", "--epoch_length", "1",
         "--pretrain#inpainter_datalist", "$@train#datalist[:4]", "--validate#datalist",
         "$common.data.load_ixi_datalist('2d', 'validation')[:2]", "--progress_bar", "false"],
        cwd=tmp_path,
    )  # fmt: skip
    checkpoint = torch.load(tmp_path / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    assert checkpoint["trainer"]["iteration"] == 1
    best = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True)
    assert best.keys() == state.keys()  # the whole pipeline, as shipped
    inference = ConfigParser()
    inference.read_config([str(bundle / "configs" / c) for c in ("inference.json", "inference_ixi.json")])
    inference.update({"bundle_root": str(bundle)})
    steps = [type(t).__name__ for t in inference.get_parsed_content("preprocessing").transforms]
    assert "Resized" not in steps and "SpatialPadd" in steps
