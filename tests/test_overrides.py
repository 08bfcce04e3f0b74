"""Command-line overrides and own data (issue #16): unknown ids stop the run, booleans parse strictly, own-data
inference never builds the sample cohort, the first build of the sample data says what it does, and a reader is
built once, not once per file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO, find_bundles, run_inference_in_process
from reference_outputs import first_datalist_entry

import common.bundle_config
from common.bundle_config import as_bool, override_problems, parse_command_line

BUNDLES = find_bundles()
MONAI_MAIN = str(Path(__import__("monai").__file__).parent / "bundle" / "__main__.py")
IPA = REPO / "bundles" / "ipa_medgan"
MOR = REPO / "bundles" / "mask_optimized_object_removal"


def configs(bundle: Path, *names: str) -> str:
    return str([str(bundle / "configs" / n) for n in names])


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False), ("False", False),
     (" TrUe ", True), ("1", True), ("0", False)],
)
def test_as_bool_accepts_true_false_1_0_in_any_case(value, expected):
    assert as_bool(value, "flag") is expected


@pytest.mark.parametrize("value", ["yes", "no", "", "off", 2, -1, 0.0, None, "[]"])
def test_as_bool_rejects_anything_else_naming_the_id(value):
    with pytest.raises(ValueError, match=r"^--eval_independent must be true or false \(or 1 / 0, any case\), got"):
        as_bool(value, "--eval_independent")


def test_the_command_line_is_split_as_fire_splits_it():
    command = parse_command_line(
        ["run", "evaluating", "--config_file", "['a.json','b.json']", "--bundle_root=bundles/x", "--max_epochs",
         "-3", "--progress_bar", "--noamp", "--train#trainer#max_epochs", "2", "--", "--help"]
    )
    assert command.command == "run" and command.run_id == "evaluating"
    assert command.args == {"config_file": ["a.json", "b.json"], "run_id": "evaluating"}
    assert command.overrides == {
        "bundle_root": "bundles/x", "max_epochs": -3, "progress_bar": True, "amp": False, "train#trainer#max_epochs": 2
    }
    assert [p.name for p in command.config_files("/r")] == ["a.json", "b.json"]


def test_unknown_ids_name_the_closest_existing_ones_and_booleans_are_parsed():
    command = parse_command_line(
        ["run", "--config_file", configs(MOR, "train.json", "evaluate.json"), "--datalist_fiel", "x.json",
         "--train#trainer#max_epoch", "3", "--eval_independent", "false", "--progress_bar", "maybe",
         "--max_epochs", "2", "--ckpt_dir", "/tmp/x"]
    )
    problems, booleans = override_problems(command)
    assert problems == [
        "unknown config id 'datalist_fiel' (--datalist_fiel): not in train.json, evaluate.json; "
        "closest existing ids: dataset_dir",
        "unknown config id 'train#trainer#max_epoch' (--train#trainer#max_epoch): not in train.json, evaluate.json; "
        "closest existing ids: train#trainer#max_epochs, pretrain#segmenter_trainer#max_epochs, "
        "pretrain#inpainter_trainer#max_epochs",
        "--progress_bar must be true or false (or 1 / 0, any case), got 'maybe' (boolean id 'progress_bar')",
    ]
    assert booleans == {"eval_independent": False}


def test_a_new_argument_of_a_component_is_accepted_only_when_its_target_takes_it():
    """MONAI passes ``--network_def#mask_source hint`` to the component's ``_target_`` (reproduce_tables.py
    relies on it); a name the target's signature lacks is an unknown id like any other."""
    mor = ["run", "--config_file", configs(MOR, "train.json", "evaluate.json"), "--bundle_root", str(MOR)]
    assert override_problems(parse_command_line([*mor, "--network_def#mask_source", "hint"]))[0] == []
    ipa = ["run", "--config_file", str(IPA / "configs" / "inference.json"), "--bundle_root", str(IPA)]
    assert override_problems(parse_command_line([*ipa, "--network_def#filterz", "[4]"]))[0] == [
        "unknown config id 'network_def#filterz' (--network_def#filterz): not in inference.json; closest existing "
        "ids: network_def#filters, network_def, network_def#alpha"
    ]


def test_experiment_tracking_settings_are_not_taken_for_unknown_ids():
    """``--tracking mlflow`` reads ``--tracking_uri`` / ``--experiment_name``: MONAI's, not a config's."""
    args = ["run", "--config_file", str(IPA / "configs" / "inference.json"), "--tracking_uri", "file:///tmp/ml"]
    assert override_problems(parse_command_line([*args, "--tracking", "mlflow"]))[0] == []
    assert override_problems(parse_command_line(args))[0] == [
        "unknown config id 'tracking_uri' (--tracking_uri): not in inference.json"
    ]


def test_every_config_that_initializes_checks_the_command_line_first():
    """The check must run before anything else of a run: first ``initialize`` step of every config defining one."""
    for path in sorted((REPO / "bundles").glob("*/configs/*.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        if "initialize" in config:
            assert config["initialize"][0] == "$common.bundle_config.check_overrides()", path
        if "imports" in config:
            assert "$import common.bundle_config" in config["imports"], path


@pytest.mark.parametrize(
    "bundle, names, config_id, text, expected",
    [
        (IPA, ("inference.json",), "allow_random_weights", "FALSE", False),
        (MOR, ("train.json", "evaluate.json"), "eval_independent", "false", False),
        (MOR, ("train.json", "evaluate.json"), "eval_independent", "1", True),
        (REPO / "bundles" / "blind_lesion_inpainting_3d", ("inference.json",), "preprocessing_options#denoise",
         "false", False),
        (REPO / "bundles" / "shape_aware_mask_inpainting", ("train.json", "evaluate.json"), "progress_bar", "0",
         False),
    ],
    ids=["ipa-inference", "mor-evaluate-false", "mor-evaluate-1", "blind-nested", "shape-aware-evaluate"],
)
def test_boolean_overrides_reach_the_run_as_bools(bundle, names, config_id, text, expected, monkeypatch):
    """As under ``python -m monai.bundle``: the string fire hands over is replaced by the bool in the workflow."""
    from fire.parser import DefaultParseValue
    from monai.bundle import ConfigWorkflow

    files = [str(bundle / "configs" / n) for n in names]
    monkeypatch.setattr(
        sys, "argv", [MONAI_MAIN, "run", "--config_file", str(files), "--bundle_root", str(bundle), f"--{config_id}",
                      text]
    )
    monkeypatch.setattr(common.bundle_config, "_checked", False)
    workflow = ConfigWorkflow(config_file=files, bundle_root=str(bundle), **{config_id: DefaultParseValue(text)})
    assert workflow.parser[config_id] == DefaultParseValue(text)
    workflow.initialize()
    assert workflow.parser[config_id] is expected
    assert workflow.parser.get_parsed_content(config_id) is expected


def _bundle_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600,
        env={**environment, **(env or {})},
    )


def test_an_unknown_id_on_the_command_line_stops_the_run_before_anything_runs(tmp_path):
    """The ipa_medgan docs once said ``--datalist_file`` to inference, which lacked it: the run processed the
    sample data and exited 0. Now a misspelt id and a bad boolean stop it, with one line each, no traceback."""
    result = _bundle_cli(
        ["run", "--config_file", str(IPA / "configs" / "inference.json"), "--bundle_root", str(IPA),
         "--output_dir", str(tmp_path / "out"), "--datalist_fiel", str(tmp_path / "mine.json"),
         "--allow_random_weights", "maybe"],
        tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert (
        "error: the command line does not match the bundle's configs:\n"
        "  unknown config id 'datalist_fiel' (--datalist_fiel): not in inference.json; closest existing ids: "
        "datalist_file, "
    ) in result.stderr
    assert (
        "\n  --allow_random_weights must be true or false (or 1 / 0, any case), got 'maybe' (boolean id "
        "'allow_random_weights')\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _own_copy(entry: dict, folder: Path) -> dict:
    """The entry's image files copied into ``folder`` (a user's own data), other keys dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    own = {}
    for key, value in entry.items():
        if isinstance(value, str) and Path(value).is_file():
            own[key] = str(shutil.copy(value, folder / f"{key}_{Path(value).name}"))
    return own


def test_false_on_the_command_line_means_false(tmp_path):
    """``--allow_random_weights false`` with a missing checkpoint: the missing file stops the run (before, the
    string 'false' was true and the run went on with random weights, exit 0)."""
    entry = _own_copy(first_datalist_entry(IPA), tmp_path / "own")
    missing = tmp_path / "missing.pt"
    result = _bundle_cli(
        ["run", "--config_file", str(IPA / "configs" / "inference.json"), "--bundle_root", str(IPA),
         "--output_dir", str(tmp_path / "out"), "--datalist", json.dumps([entry]), "--checkpoint", str(missing),
         "--allow_random_weights", "false"],
        tmp_path, env={"MEDINPAINT_DATA": str(tmp_path / "cache")},
    )
    assert result.returncode != 0
    assert str(missing) in result.stderr and "RANDOM weights" not in result.stdout + result.stderr


SLOW_INFERENCE = ("autoinpainting_tumor_segmentation", "blind_lesion_inpainting_3d")  # minutes under load


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "bundle",
    [pytest.param(b, marks=[pytest.mark.slow] if b.name in SLOW_INFERENCE else []) for b in BUNDLES],
    ids=[b.name for b in BUNDLES],
)
def test_own_data_inference_never_builds_the_sample_data(bundle, tmp_path, monkeypatch):
    """``MEDINPAINT_DATA`` is an empty folder and the datalist one file of the user's: inference runs, writes
    its outputs, and the folder stays empty (before: the first own-data run wrote the 373 MB sample cohort)."""
    entry = _own_copy(first_datalist_entry(bundle), tmp_path / "own")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("MEDINPAINT_DATA", str(cache))
    run_inference_in_process(bundle, tmp_path / "out", [entry])
    assert sorted((tmp_path / "out").glob("*.nii.gz")), f"{bundle.name} wrote nothing"
    assert sorted(cache.iterdir()) == []


def test_the_first_build_of_the_sample_data_says_what_where_and_how_far(tmp_path, monkeypatch, caplog, capsys):
    """~30 s and 373 MB must not be silent: the folder, the size, then one line per subject, then done; logged
    when logging shows INFO (a bundle run), else printed to stderr."""
    import common.data.sample as sample

    def fake_subject(out_dir, index, seed_sequence, params):
        (Path(out_dir) / f"sub-{index:03d}").mkdir()
        return {"subject": f"sub-{index:03d}"}, [], {}, {}

    monkeypatch.setattr(sample, "_build_subject", fake_subject)
    monkeypatch.setattr(sample.logger, "disabled", False)
    caplog.set_level(logging.INFO, logger=sample.logger.name)
    folder = sample.build_sample_data(tmp_path, n_subjects=3, seed=5, workers=1)
    lines = [r.getMessage() for r in caplog.records if r.name == sample.logger.name]
    assert lines[0] == (
        f"building the sample data in {folder}: 3 synthetic subjects (seed 5) from nilearn's MNI152 template, "
        "about 112 MB, 1 process(es); done once, then reused"
    )
    assert [line.split(" (")[0] for line in lines[1:4]] == [f"sample data: subject {k}/3 written" for k in (1, 2, 3)]
    assert lines[4].startswith(f"sample data ready in {folder} (0 MB, ") and len(lines) == 5

    caplog.clear()
    caplog.set_level(logging.WARNING, logger=sample.logger.name)
    capsys.readouterr()
    again = sample.build_sample_data(tmp_path, n_subjects=3, seed=6, workers=1)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"building the sample data in {again}: 3 synthetic subjects (seed 6)") and len(err) == 5
    assert sample.build_sample_data(tmp_path, n_subjects=3, seed=6, workers=1) == again
    assert capsys.readouterr().err == ""  # a complete build is reused silently


def test_autoinpainting_evaluation_builds_one_reader_for_all_masks(tmp_path, monkeypatch):
    """One ``LoadImage`` per reader, not per file (each construction printed the same codec warning: 60 times
    in one evaluation)."""
    import nibabel as nib
    import numpy as np

    from common.bundle_scripts import load_bundle_scripts

    evaluation = load_bundle_scripts(REPO / "bundles" / "autoinpainting_tumor_segmentation").evaluation
    built = []

    class CountingLoadImage(evaluation.LoadImage):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(evaluation, "LoadImage", CountingLoadImage)
    evaluation._mask_loader.cache_clear()
    entries = []
    for z in range(3):
        paths = {}
        for key in ("label", "ooi"):
            paths[key] = str(tmp_path / f"{key}{z}.nii.gz")
            nib.save(nib.Nifti1Image(np.ones((8, 8), np.uint8), np.eye(4)), paths[key])
        entries.append({"image": f"image{z}", "subject": "sub-001", "slice_z": z, **paths})
    cases = evaluation.load_tumour_cases(entries, [])
    assert [c["z"] for c in cases["sub-001"]] == [0, 1, 2]
    assert all(c["label"].shape == (1, 8, 8) and c["ooi"].sum() == 64 for c in cases["sub-001"])
    assert len(built) == 1
    evaluation._mask_loader.cache_clear()
