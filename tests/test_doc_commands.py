"""Every command printed in README.md and the bundles' docs/README.md runs as written (issue #16).

Commands are extracted from fenced bash blocks and inline ``python -m monai.bundle ...`` spans and expanded by
bash itself (variables, loops, ``cd``, ``&&``) with every program replaced by a recorder; ``bundles/<name>``
placeholders expand to every bundle. Then each recorded command is checked:

* every ``monai.bundle run`` (and under torchrun): its config files exist and merge, every ``--<id>`` names an
  existing id with a valid value (:func:`common.bundle_config.override_problems`), every ``@reference`` of the
  merged config resolves, the run id exists and ``--bundle_root`` is the folder holding the configs;
* inference on the shipped weights runs (through fire and ``monai.bundle.scripts.run``, as the command line
  does), on the first sample case (``--dataset#data``), with its outputs in a temporary folder, and writes the
  output files the bundle's docs name;
* packing runs, ``python -m common.data`` runs, bundle scripts, ``common.data.*`` builders and benchmarks accept
  their options (``--help``);
* training and evaluation at paper scale only parse (above).
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import REPO, find_bundles

from common.bundle_config import BundleCommand, merged_config, override_problems, parse_command_line

BUNDLES = find_bundles()
DOCS = [REPO / "README.md", *(bundle / "docs" / "README.md" for bundle in BUNDLES)]
MONAI_MAIN = str(Path(__import__("monai").__file__).parent / "bundle" / "__main__.py")
RECORDED = ("python", "python3", "torchrun", "medinpaint-pack", "medinpaint-data", "pip", "cp", "tensorboard")
SHIMS = "\n".join(
    [
        "set -e",
        "__rec() { printf '%s\\037' \"$PWD\" \"$@\" >&3; printf '\\036' >&3; }",
        *(f'{name}() {{ __rec {name} "$@"; }}' for name in RECORDED),
        'nice() { [ "$1" = -n ] && shift 2; "$@"; }',
        'command_not_found_handle() { __rec UNKNOWN "$@"; }',
    ]
)


@dataclass
class Snippet:
    """A fenced bash block or an inline command of one doc, with its placeholders expanded for ``bundle``."""

    doc: Path
    line: int
    text: str
    bundle: Path | None = None
    raw: str = ""

    @property
    def where(self) -> str:
        suffix = f" [{self.bundle.name}]" if self.bundle and "bundles/<name>" in self.raw else ""
        return f"{self.doc.relative_to(REPO)}:{self.line}{suffix}"


@dataclass
class Command:
    snippet: Snippet
    cwd: Path
    argv: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.snippet.where}: (cd {self.cwd}) {' '.join(self.argv)}"


def doc_bundle(doc: Path) -> Path | None:
    return doc.parents[1] if doc.parent.name == "docs" and doc.parents[1].parent.name == "bundles" else None


def snippets(doc: Path) -> list[Snippet]:
    """Fenced bash blocks, then inline ``python -m monai.bundle`` spans outside them, each expanded."""
    text = doc.read_text(encoding="utf-8")
    found, fenced = [], []
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^ *```", text, re.S | re.M):
        fenced.append(match.span())
        if match.group(2) in ("bash", "sh", "shell"):
            body = "\n".join(line[len(match.group(1)) :] for line in match.group(3).splitlines())
            found.append((text.count("\n", 0, match.start()) + 2, body))
    for match in re.finditer(r"`(python -m monai\.bundle [^`]+)`", text):
        if not any(start <= match.start() < end for start, end in fenced):
            found.append((text.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())))
    expanded = []
    for line, body in found:
        for bundle in BUNDLES if "bundles/<name>" in body else [doc_bundle(doc)]:
            expanded.append(Snippet(doc, line, expand(body, bundle), bundle, raw=body))
    return expanded


def expand(text: str, bundle: Path | None) -> str:
    """``<name>`` / ``<version>`` of ``bundle``; ``/path/to/<repo>/`` is this checkout."""
    if bundle is not None:
        version = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"]
        text = text.replace("<name>", bundle.name).replace("<version>", version)
    return re.sub(r"/path/to/(?:repo/|medinpaint/)?", str(REPO) + "/", text)


def record(snippet: Snippet, tmp_path: Path) -> list[Command]:
    """Run the snippet in bash with every program replaced by a recorder: what it would run, where."""
    code = "\n".join(re.sub(r"(^|\s)#.*", "", line) for line in snippet.text.splitlines())  # comments may
    leftover = re.findall(r"<[\w .-]+>", code)
    assert not leftover, f"{snippet.where}: placeholder {leftover} in a command: write a runnable example"
    log = tmp_path / "commands.log"
    preset = f"B={doc_bundle(snippet.doc).relative_to(REPO)}\n" if doc_bundle(snippet.doc) else ""
    script = f'{SHIMS}\nexec 3>"{log}"\ncd "{REPO}"\n{preset}{snippet.text}\n'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60)
    assert result.returncode == 0, f"{snippet.where}: bash fails on the snippet: {result.stderr}"
    commands = []
    for entry in log.read_text().split("\x1e")[:-1]:
        cwd, *argv = entry.split("\x1f")[:-1]
        commands.append(Command(snippet, Path(cwd), argv))
    return commands


@functools.cache
def recorded() -> tuple[Command, ...]:
    """Every command of every doc (recorded once per session)."""
    with tempfile.TemporaryDirectory() as folder:
        return tuple(command for doc in DOCS for snippet in snippets(doc) for command in record(snippet, Path(folder)))


def monai_bundle_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``-m monai.bundle`` (python or torchrun), else None."""
    if argv[0] in ("python", "python3", "torchrun") and "-m" in argv:
        index = argv.index("-m")
        if argv[index + 1 : index + 2] == ["monai.bundle"]:
            return argv[index + 2 :]
    return None


def check_bundle_run(command: Command, parsed: BundleCommand) -> None:
    """Config files exist and merge, ids and values, references, run id and bundle root (nothing runs)."""
    problems, _ = override_problems(parsed, command.cwd)
    assert not problems, f"{command}\n" + "\n".join(problems)
    files = parsed.config_files(command.cwd)
    parser = merged_config(files, parsed.meta_file(command.cwd))
    assert parsed.run_id in parser, f"{command}: no config defines the run id {parsed.run_id!r}"
    parser.update(parsed.overrides)
    dangling = _dangling_references(parser, [parsed.run_id, "initialize", "finalize"])
    assert not dangling, f"{command}: the merged configs reference ids they do not define: {dangling}"
    root = Path(command.cwd, str(parsed.overrides.get("bundle_root", parser["bundle_root"]))).resolve()
    assert root == files[0].resolve().parents[1] and (root / "scripts" / "__init__.py").is_file(), (
        f"{command}: --bundle_root must be the bundle folder {files[0].resolve().parents[1]}, got {root}"
    )


def _dangling_references(parser, start: list[str]) -> list[str]:
    """``@ids`` that the run would resolve (reachable from ``start``) but no config defines."""
    from monai.bundle.reference_resolver import ReferenceResolver

    todo, seen, dangling = [i for i in start if i in parser], set(), set()
    while todo:
        config_id = todo.pop()
        if config_id in seen:
            continue
        seen.add(config_id)
        for value in _strings(parser[config_id]):
            for ref in ReferenceResolver.match_refs_pattern(value):
                if ref in parser:
                    todo.append(ref)
                else:
                    dangling.add(ref)
    return sorted(dangling)


def _strings(config):
    if isinstance(config, str):
        yield config
    elif isinstance(config, dict):
        for value in config.values():
            yield from _strings(value)
    elif isinstance(config, list):
        for value in config:
            yield from _strings(value)


def is_shipped_inference(command: Command, parsed: BundleCommand) -> bool:
    """``run`` of inference.json alone on the sample data with shipped (or no) ``--checkpoint``."""
    files = parsed.config_files(command.cwd)
    checkpoint = parsed.overrides.get("checkpoint")
    return (
        parsed.run_id == "run"
        and [f.name for f in files] == ["inference.json"]
        and set(parsed.overrides) <= {"bundle_root", "output_dir", "checkpoint"}
        and (checkpoint is None or Path(command.cwd, str(checkpoint)).is_file())
    )


def test_bash_snippets_expand_to_commands():
    """The extraction itself: every doc yields commands, and ``bundles/<name>`` expands to every bundle."""
    commands = recorded()
    assert {c.snippet.doc for c in commands} == set(DOCS)
    readme = [c for c in commands if c.snippet.doc == REPO / "README.md" and "bundles/<name>" in c.snippet.raw]
    assert {c.snippet.bundle.name for c in readme} == {b.name for b in BUNDLES}
    inference = {a for c in readme for a in c.argv if a.endswith("/configs/inference.json")}
    assert inference == {f"bundles/{b.name}/configs/inference.json" for b in BUNDLES}


def test_every_monai_bundle_command_parses():
    """Every ``python -m monai.bundle`` / torchrun command: files, ids, values, references, run id, bundle root."""
    import monai.bundle.__main__ as bundle_cli

    checked = 0
    for command in recorded():
        args = monai_bundle_args(command.argv)
        if args is None:
            continue
        assert args, f"{command}: no monai.bundle sub-command"
        if args[0] != "run":
            assert callable(getattr(bundle_cli, args[0], None)), f"{command}: monai.bundle has no {args[0]!r}"
            continue
        check_bundle_run(command, parse_command_line(args, command.cwd))
        checked += 1
    assert checked > 40


def run_bundle_in_process(args: list[str], cwd: Path, monkeypatch) -> None:
    """``python -m monai.bundle ARGS`` in this process: fire parses ``ARGS`` into ``monai.bundle.scripts.run``,
    with ``sys.argv`` as the command line so the configs' override check runs too."""
    import fire
    from monai.bundle.scripts import run

    import common.bundle_config

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [MONAI_MAIN, *args])
    monkeypatch.setattr(common.bundle_config, "_checked", False)
    fire.Fire(run, command=args[1:], name="run")


SLOW_INFERENCE = ("blind_lesion_inpainting_3d",)  # 3-D MNI preprocessing: minutes on a loaded CPU


def shipped_inference_command(bundle: Path) -> tuple[Command, list[str], BundleCommand]:
    """The docs' inference command on ``bundle``'s shipped weights; one run from another folder ("from any
    folder") is preferred, the stronger claim."""
    found = None
    for command in recorded():
        args = monai_bundle_args(command.argv)
        if args is None or args[0] != "run" or command.argv[0] == "torchrun":
            continue
        parsed = parse_command_line(args, command.cwd)
        if is_shipped_inference(command, parsed) and parsed.config_files(command.cwd)[0].resolve().parents[1] == bundle:
            if found is None or not command.cwd.is_relative_to(REPO):
                found = (command, args, parsed)
    assert found, f"no doc shows inference of {bundle.name} on its shipped weights"
    return found


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "bundle",
    [pytest.param(b, marks=[pytest.mark.slow] if b.name in SLOW_INFERENCE else []) for b in BUNDLES],
    ids=[b.name for b in BUNDLES],
)
def test_inference_on_the_shipped_weights_runs_as_written_and_writes_the_documented_files(
    bundle, tmp_path, monkeypatch
):
    """The documented inference command runs (outputs moved to a temporary folder, the first sample case only)
    and writes files named as the bundle's docs say (their ``sub-008/...`` examples)."""
    command, args, parsed = shipped_inference_command(bundle)
    output = tmp_path / "out"
    argv = [a if a != parsed.overrides.get("output_dir") else str(output) for a in args]
    if "output_dir" not in parsed.overrides:
        argv += ["--output_dir", str(output)]
    run_bundle_in_process([*argv, "--dataset#data", "$@datalist[:1]"], command.cwd, monkeypatch)
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.nii.gz"))
    assert written, f"{command}: wrote no NIfTI file"
    doc = bundle / "docs" / "README.md"
    for named in re.findall(r"`(sub-(?:\d{3}|xxx)/[^`\s]+\.nii\.gz)`", doc.read_text(encoding="utf-8")):
        pattern = re.sub(r"\d+", r"\\d+", re.escape(named))  # the example's numbers stand for any
        pattern = re.sub(r"<[^>]+>|xxx", "[^/]+", pattern)
        assert any(re.fullmatch(pattern, name) for name in written), (
            f"{doc.relative_to(REPO)} names the output {named}, but {command} writes {written}"
        )


def test_other_documented_commands_run_or_accept_their_options(tmp_path, monkeypatch):
    """``medinpaint-pack``, ``python -m common.data`` run; bundle scripts list every option given (--help);
    ``pip install`` names files that exist. Outputs go to a temporary folder."""
    from common.bundle_scripts import load_bundle_scripts
    from common.data.__main__ import main as data_main
    from common.zoo import main as pack_main

    moved: dict[str, str] = {}
    kinds = set()
    for command in recorded():
        argv, cwd = command.argv, command.cwd
        if monai_bundle_args(argv) is not None or argv[0] in ("cp", "tensorboard"):
            continue
        if argv[0] == "pip":
            for flag, name in (("-r", None), ("-e", "setup.cfg")):
                if flag in argv:
                    target = Path(cwd, argv[argv.index(flag) + 1], *(name and [name] or []))
                    assert target.is_file(), f"{command}: {target} does not exist"
            kinds.add("pip")
            continue
        assert argv[0] != "UNKNOWN", f"{command}: a program the docs test does not know; add it to the test"
        args = [_move(a, moved, tmp_path) if prev in ("--output", "--overview") else _remap(a, moved)
                for prev, a in zip(["", *argv], argv)]
        monkeypatch.chdir(cwd)
        if argv[0] == "medinpaint-pack":
            assert pack_main(args[1:]) in (0, None), f"{command} failed"
            kinds.add("pack")
        elif argv[:3] == ["python", "-m", "common.data"]:
            assert _exit_code(data_main, args[3:]) == 0, f"{command} failed"
            kinds.add("common.data")
        elif argv[:3] == ["python", "-m", "pytest"]:
            kinds.add("pytest")  # this suite
        elif argv[:2] == ["python", "-m"] and argv[2].startswith("common.data."):
            main = importlib.import_module(argv[2]).main  # a data builder: its options, not a (slow) build
            missing = [o for o in argv[3:] if o.startswith("-") and o not in _help(main)]
            assert not missing, f"{command}: {argv[2]} --help does not list {missing}"
            kinds.add("common.data")
        elif argv[0] == "python" and Path(cwd, argv[1]).parent == REPO / "benchmarks":
            from harness import load_module

            main = load_module(Path(cwd, argv[1]), Path(argv[1]).stem).main  # a benchmark: its options, not a run
            missing = [o for o in argv[2:] if o.startswith("-") and o not in _help(main)]
            assert not missing, f"{command}: {argv[1]} --help does not list {missing}"
            kinds.add("benchmark")
        elif argv[0] == "python":
            module, options = _bundle_script(command)
            scripts = load_bundle_scripts(module[0])
            main = importlib.import_module(f"{scripts.__name__}.{module[1]}").main
            help_text = _help(main)
            missing = [o for o in options if o not in help_text]
            assert not missing, f"{command}: {module[1]} --help does not list {missing}"
            kinds.add("script")
        else:
            raise AssertionError(f"{command}: a program the docs test does not know; add it to the test")
    assert kinds >= {"pip", "pack", "common.data", "script"}


def _move(value: str, moved: dict[str, str], tmp_path: Path) -> str:
    target = tmp_path / "outputs" / str(len(moved))
    moved[value] = str(target) + ("/" if value.endswith("/") else "")
    return moved[value]


def _remap(value: str, moved: dict[str, str]) -> str:
    for old, new in moved.items():
        if value.startswith(old):
            return new + value[len(old) :]
    return value


def _exit_code(main, args: list[str]) -> int:
    try:
        return int(main(args) or 0)
    except SystemExit as err:
        return int(err.code or 0)


def _help(main) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert _exit_code(main, ["--help"]) == 0
    return buffer.getvalue()


def _bundle_script(command: Command) -> tuple[tuple[Path, str], list[str]]:
    """((bundle folder, module name), options) of ``python -m scripts.X`` (from a bundle folder) or
    ``python <bundle>/scripts/X.py``."""
    argv = command.argv
    if argv[1] == "-m":
        assert argv[2].startswith("scripts."), f"{command}: unknown module {argv[2]}"
        bundle, name, rest = command.cwd, argv[2].split(".", 1)[1], argv[3:]
    else:
        path = Path(command.cwd, argv[1]).resolve()
        assert path.is_file() and path.parent.name == "scripts", f"{command}: no script {path}"
        bundle, name, rest = path.parents[1], path.stem, argv[2:]
    assert (bundle / "scripts" / f"{name}.py").is_file(), f"{command}: no scripts/{name}.py in {bundle}"
    return (bundle, name), sorted({a.split("=")[0] for a in rest if a.startswith("--")})


def test_readme_names_only_run_ids_the_configs_define():
    """README's list of run ids (``training``, ``run``, ``evaluating``) exists in every bundle's configs."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = re.search(r"the run ids (.*?)\.", text, re.S)
    assert sentence, "README.md no longer lists the run ids"
    for run_id in re.findall(r"`(\w+)`", sentence.group(1)):
        for bundle in BUNDLES:
            configs = [bundle / "configs" / n for n in ("train.json", "inference.json", "evaluate.json")]
            assert any(run_id in json.loads(c.read_text(encoding="utf-8")) for c in configs), (
                f"README.md names the run id {run_id!r}; {bundle.name}'s configs do not define it"
            )

