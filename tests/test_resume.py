"""Checkpoints and resume (issue #16): a resumed run equals an uninterrupted one, a run killed mid-epoch keeps
its last checkpoint, and evaluate and inference never score or run random weights.

A missing or unreadable ``checkpoint`` ends the bundle CLI with a non-zero exit whose stderr's LAST line names
the path (MONAI wraps other exceptions in "Failed to evaluate ConfigExpression", burying the cause).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.harness import REPO, config_list, find_bundles

BUNDLES = find_bundles()


def run_cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` on one CPU thread, not raising on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "monai.bundle", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600, env=env)


def evaluate(bundle, checkpoint, output_dir) -> subprocess.CompletedProcess:
    configs = config_list(*(bundle / "configs" / n for n in ("train.json", "quick.json", "evaluate.json")))
    return run_cli(
        ["run", "evaluating", "--config_file", configs, "--bundle_root", str(bundle),
         "--checkpoint", str(checkpoint), "--output_dir", str(output_dir)],
        cwd=bundle,
    )


def assert_stops_naming(result: subprocess.CompletedProcess, path) -> None:
    assert result.returncode != 0, result.stdout[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert str(path) in last_line, result.stderr[-3000:]


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_evaluate_with_a_missing_checkpoint_stops_naming_it(bundle, tmp_path):
    missing = tmp_path / "no_such_dir" / "model.pt"
    result = evaluate(bundle, missing, tmp_path / "out")
    assert_stops_naming(result, missing)
    assert not (tmp_path / "out" / "metrics.csv").exists()


@pytest.mark.slow
def test_object_removal_independent_evaluation_needs_its_pretrained_parts(tmp_path):
    """``--eval_independent true`` scores segmenter.pt + inpainter.pt: a missing one stops, never random weights."""
    bundle = next(b for b in BUNDLES if b.name == "mask_optimized_object_removal")
    missing = tmp_path / "no_such_dir" / "segmenter.pt"
    configs = config_list(*(bundle / "configs" / n for n in ("train.json", "quick.json", "evaluate.json")))
    result = run_cli(
        ["run", "evaluating", "--config_file", configs, "--bundle_root", str(bundle), "--output_dir", str(tmp_path),
         "--eval_independent", "true", "--pretrained_segmenter", str(missing)],
        cwd=bundle,
    )  # fmt: skip
    assert_stops_naming(result, missing)


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_evaluate_with_an_unreadable_checkpoint_stops_naming_it(bundle, tmp_path):
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(bytes(range(256)) * 3)
    result = evaluate(bundle, garbage, tmp_path / "out")
    assert_stops_naming(result, garbage)
    assert "cannot be read" in result.stderr.strip().splitlines()[-1]


def test_inference_with_an_unreadable_checkpoint_stops_naming_it(tmp_path):
    bundle = REPO / "bundles" / "ipa_medgan"
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a checkpoint\n" * 20)
    result = run_cli(
        ["run", "run", "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
         "--checkpoint", str(garbage), "--output_dir", str(tmp_path / "out")],
        cwd=bundle,
    )
    assert_stops_naming(result, garbage)
    assert "cannot be read with torch.load(weights_only=True)" in result.stderr.strip().splitlines()[-1]


def test_atomic_saver_fsyncs_and_keeps_the_last_k(tmp_path, monkeypatch):
    """Per-epoch checkpoints: written via fsynced temp files in the same folder, only the last ``n_saved`` kept."""
    import torch
    from ignite.engine import Engine

    from common.engines import AtomicCheckpointSaver

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    network = torch.nn.Linear(2, 2)
    engine = Engine(lambda engine, batch: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": network}, save_interval=1, n_saved=3).attach(engine)
    engine.run([0], max_epochs=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model_epoch={e}.pt" for e in (3, 4, 5)]
    assert len(synced) == 5
    assert torch.load(tmp_path / "model_epoch=5.pt", weights_only=True).keys() == network.state_dict().keys()


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_train_configs_use_only_atomic_savers(bundle):
    """Every saver of train.json writes atomically; per-epoch savers keep ``keep_last`` checkpoints."""
    text = (bundle / "configs" / "train.json").read_text(encoding="utf-8")
    assert '"_target_": "CheckpointSaver"' not in text
    if '"save_interval"' in text:
        assert '"n_saved": "@keep_last"' in text and '"keep_last": 3' in text


# fewer whole-brain volumes per epoch: the 3-D epochs are what makes these tests slow
FEWER_CASES = {"blind_lesion_inpainting_3d": ["--cases_per_epoch", "2"]}


def short_training(bundle, output_dir, max_epochs, *extra) -> list[str]:
    """``run training`` (train.json + quick.json) on two training samples and one validation sample."""
    return [
        "run", "training", "--config_file", config_list(bundle / "configs" / "train.json", bundle / "configs" / "quick.json"),
        "--bundle_root", str(bundle), "--output_dir", str(output_dir), "--max_epochs", str(max_epochs),
        "--train#dataset#data", "$@train#datalist[:2]", "--validate#dataset#data", "$@validate#datalist[:1]",
        *FEWER_CASES.get(bundle.name, []), *extra,
    ]


def epoch_checkpoint(output_dir: Path, epoch: int) -> Path:
    (path,) = output_dir.rglob(f"*checkpoint_epoch={epoch}.pt")  # with the stage as prefix where a bundle has two
    return path


def flatten(state, prefix="") -> dict:
    """Every tensor and number in a (nested) checkpoint, by path."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in flatten(value, f"{prefix}/{key}").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in flatten(value, f"{prefix}/{i}").items()}
    return {prefix: state}


def assert_same_checkpoint(actual: Path, expected: Path) -> None:
    got, want = (flatten(torch.load(p, map_location="cpu", weights_only=True)) for p in (actual, expected))
    assert sorted(got) == sorted(want), f"{actual.name}: different entries"
    for key, value in want.items():
        if key == "/trainer/max_epochs":  # the interrupted run was asked for fewer epochs
            continue
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6, msg=f"{actual.name}{key}")
        elif isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), f"{actual.name}{key}"
        else:
            assert got[key] == value, f"{actual.name}{key}: {got[key]} != {value}"


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_resumed_training_equals_an_uninterrupted_run(bundle, tmp_path):
    """2 epochs straight == 1 epoch, then resume_from its checkpoint to 2: same weights, optimisers, RNGs,
    best-metric tracking and best model, every file."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    for args in (short_training(bundle, straight, 2), short_training(bundle, interrupted, 1)):
        result = run_cli(args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    resume = ["--resume_from", str(epoch_checkpoint(interrupted, 1))]
    result = run_cli(short_training(bundle, interrupted, 2, *resume), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {p.relative_to(straight) for p in straight.rglob("*.pt")}
    assert {p.relative_to(interrupted) for p in interrupted.rglob("*.pt")} == expected
    assert any(p.name.endswith("checkpoint_epoch=2.pt") for p in expected), sorted(expected)
    for relative in sorted(expected):
        assert_same_checkpoint(interrupted / relative, straight / relative)


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_a_run_killed_during_an_epoch_keeps_the_last_checkpoint(bundle, tmp_path):
    """SIGKILL while epoch k+1 runs: the epoch-k checkpoint is on disk, complete, and training resumes from it."""
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "monai.bundle", *short_training(bundle, output, 50)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 500
        while not list(output.rglob("*checkpoint_epoch=1.pt")) and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "training ended before its first checkpoint"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    saved = sorted(output.rglob("*checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
    assert saved, "no epoch checkpoint left after the kill"
    epoch = completed_epochs(saved[-1])  # loads: complete, not truncated
    assert saved[-1].name.endswith(f"checkpoint_epoch={epoch}.pt")
    result = run_cli(short_training(bundle, output, epoch + 1, "--resume_from", str(saved[-1])), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert completed_epochs(epoch_checkpoint(output, epoch + 1)) == epoch + 1


def completed_epochs(checkpoint: Path) -> int:
    trainer = torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]
