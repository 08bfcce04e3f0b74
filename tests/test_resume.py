"""Checkpoints and resume (issue #16): evaluate and inference never score or run random weights.

A missing or unreadable ``checkpoint`` ends the bundle CLI with a non-zero exit whose stderr's LAST line names
the path (MONAI wraps other exceptions in "Failed to evaluate ConfigExpression", burying the cause).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
