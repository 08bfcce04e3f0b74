"""The five bundles say the same thing the same way: common config ids and run ids (issue #15).

Reads every bundle's configs as JSON (no parsing of expressions), so it is fast and fails on a missing or
misspelled id before anything runs.
"""

import difflib
import json
from pathlib import Path

import pytest
from harness import find_bundles

BUNDLES = find_bundles()
bundle_params = pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])

# every id a user may override the same way in all five bundles, per config
TRAIN_IDS = (
    "bundle_root",
    "dataset_dir",
    "output_dir",
    "ckpt_dir",
    "device",
    "network_def",
    "network",
    "resume_from",
    "keep_last",
    "max_epochs",
    "learning_rate",
    "loss_weights",
    "seed",
)
INFERENCE_IDS = ("bundle_root", "dataset_dir", "output_dir", "device", "network_def", "network", "checkpoint", "seed")
EVALUATE_IDS = ("checkpoint",)
# the ids wiring exact resume: TrainingState in the epoch checkpoint, saver and loader attached in initialize
RESUME_IDS = ("train#training_state", "train#checkpoint_dict", "train#checkpoint_saver", "train#checkpoint_loader")
GAN_BUNDLES = ("ipa_medgan", "mask_optimized_object_removal", "shape_aware_mask_inpainting")
# spellings the bundles used before they agreed, and near-misses of the common ids
FORBIDDEN = ("lr", "g_lr", "d_lr", "d_lr_ratio", "ckpt_path", "checkpoint_path", "data_dir", "out_dir", "resume")
COMMON_IDS = set(TRAIN_IDS + INFERENCE_IDS + EVALUATE_IDS + ("d_learning_rate",))


def read(bundle: Path, name: str) -> dict:
    return json.loads((bundle / "configs" / name).read_text(encoding="utf-8"))


def merged(bundle: Path, *names: str) -> dict:
    config: dict = {}
    for name in names:
        config.update(read(bundle, name))
    return config


def config_files(bundle: Path) -> list[Path]:
    return sorted(p for p in (bundle / "configs").glob("*.json") if p.name != "metadata.json")


@bundle_params
def test_train_config_defines_every_common_id(bundle):
    config = read(bundle, "train.json")
    missing = [k for k in TRAIN_IDS if k not in config]
    assert not missing, f"{bundle.name}/configs/train.json lacks {missing}"
    assert isinstance(config["loss_weights"], dict) and config["loss_weights"], "loss_weights is one dict"
    has_discriminator = bundle.name in GAN_BUNDLES
    assert ("d_learning_rate" in config) == has_discriminator


@bundle_params
def test_inference_and_evaluate_configs_define_every_common_id(bundle):
    inference = read(bundle, "inference.json")
    assert not [k for k in INFERENCE_IDS if k not in inference], bundle.name
    evaluate = merged(bundle, "train.json", "evaluate.json")
    assert not [k for k in EVALUATE_IDS if k not in evaluate], bundle.name


@bundle_params
def test_no_config_uses_an_old_or_misspelled_common_id(bundle):
    for path in config_files(bundle):
        keys = set(read(bundle, path.name))
        old = sorted(keys & set(FORBIDDEN))
        assert not old, f"{path}: {old} (use {sorted(COMMON_IDS)})"
        for key in keys - COMMON_IDS:
            near = difflib.get_close_matches(key, COMMON_IDS, n=1, cutoff=0.85)
            assert not near, f"{path}: id {key!r} looks like a misspelling of {near[0]!r}"


@bundle_params
def test_run_ids_are_initialize_run_finalize_and_nothing_is_attached_twice(bundle):
    for names in (("train.json",), ("inference.json",), ("train.json", "evaluate.json")):
        config = merged(bundle, *names)
        for run_id in ("initialize", "run", "finalize"):
            assert run_id in config, f"{bundle.name} {names}: no run id {run_id!r}"
        initialize = [x for x in config["initialize"] if isinstance(x, str)]
        for run_id in ("run", "training", "evaluating"):
            steps = config.get(run_id, [])
            if isinstance(steps, str):  # a thin alias such as "$@run"
                continue
            twice = [x for x in steps if isinstance(x, str) and ".attach(" in x and x in initialize]
            assert not twice, f"{bundle.name} {names}: {twice} runs in initialize and {run_id}"
    assert "training" in read(bundle, "train.json")
    assert "evaluating" in merged(bundle, "train.json", "evaluate.json")


@bundle_params
def test_every_train_config_checkpoints_its_training_state(bundle):
    config = merged(bundle, "train.json")
    train = config["train"]
    for key in RESUME_IDS:
        assert key.split("#")[1] in train, f"{bundle.name}: no {key}"
    assert train["training_state"]["_target_"] == "common.engines.TrainingState"
    assert "@train#training_state" in json.dumps(train["checkpoint_dict"])
    assert train["checkpoint_saver"]["save_dict"] == train["checkpoint_loader"]["load_dict"] == "@train#checkpoint_dict"
    assert train["checkpoint_saver"]["n_saved"] == "@keep_last"
    attached = " ".join(config["initialize"])
    assert "@train#checkpoint_saver.attach(@train#trainer)" in attached
    assert "@train#checkpoint_loader.attach(@train#trainer) if @resume_from" in attached


@bundle_params
def test_configs_are_ascii_so_any_locale_reads_them(bundle):
    """MONAI's ConfigParser opens configs in the locale's encoding: a non-ASCII character (e.g. a "²" in a
    description) fails under a C / POSIX locale, as on some CI machines."""
    for path in sorted((bundle / "configs").glob("*.json")):
        text = path.read_bytes()
        bad = [i for i, byte in enumerate(text) if byte > 127]
        assert not bad, f"{path.name}: non-ASCII byte at offset {bad[0]}: {text[max(0, bad[0] - 30):bad[0] + 10]!r}"
