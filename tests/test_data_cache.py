"""build_cached_folder: the one atomic folder build behind the sample cohort and the mask banks."""

import pytest

from common.data.cache import build_cached_folder


def complete(folder):
    return (folder / "done").is_file()


def write_files(staging):
    (staging / "a.txt").write_text("a", encoding="utf-8")
    (staging / "done").write_text("", encoding="utf-8")


def test_builds_once_then_reuses_and_rebuilds_on_force(tmp_path):
    calls = []

    def write(staging):
        calls.append(staging)
        write_files(staging)

    target = build_cached_folder(tmp_path / "cache" / "bank", complete, write)
    assert complete(target) and (target / "a.txt").read_text(encoding="utf-8") == "a"
    assert build_cached_folder(target, complete, write) == target and len(calls) == 1
    build_cached_folder(target, complete, write, force=True)
    assert len(calls) == 2 and sorted(p.name for p in target.parent.iterdir()) == ["bank"]


def test_an_interrupted_build_leaves_nothing_that_looks_complete(tmp_path):
    def crash(staging):
        (staging / "a.txt").write_text("partial", encoding="utf-8")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        build_cached_folder(tmp_path / "bank", complete, crash)
    assert list(tmp_path.iterdir()) == []  # no target, no staging folder left behind


def test_a_folder_completed_by_another_process_meanwhile_is_kept(tmp_path):
    target = tmp_path / "bank"

    def racing(staging):
        write_files(staging)
        target.mkdir()  # another rank finishes first
        (target / "done").write_text("theirs", encoding="utf-8")

    build_cached_folder(target, complete, racing)
    assert (target / "done").read_text(encoding="utf-8") == "theirs" and not (target / "a.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bank"]
