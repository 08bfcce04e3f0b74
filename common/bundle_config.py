"""Check a bundle's command line against its configs before anything runs.

``python -m monai.bundle run ... --<id> <value>`` accepts any id: a misspelt or missing one is added to the
config and never read, so the run exits 0 having ignored the user's option (e.g. their datalist). And fire
hands ``--flag false`` over as the string ``'false'``, which Python treats as true. Every train, inference and
evaluate config therefore calls :func:`check_overrides` as its first ``initialize`` step: under
``python -m monai.bundle`` it reads ``--config_file`` / ``--args_file`` and the ``--<id>`` arguments from
``sys.argv``, stops on ids (``#`` nesting) that the merged config files do not define, naming the closest
existing ones (a new argument of a component passes when its ``_target_`` takes it), and parses boolean ids
strictly (:func:`as_bool`), setting the parsed value. In-process use (MONAI Label, notebooks, tests building a
``ConfigWorkflow``) is left alone.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pydoc
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "MONAI_RUN_ARGS",
    "BundleCommand",
    "as_bool",
    "check_overrides",
    "config_ids",
    "is_bundle_cli",
    "merged_config",
    "override_problems",
    "parse_command_line",
]

#: Arguments of ``monai.bundle.scripts.run`` / ``ConfigWorkflow`` themselves, not config ids.
MONAI_RUN_ARGS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "workflow_name",
        "workflow_type",
        "properties_path",
    }
)
_RUN_POSITIONAL = ("run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file")
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_checked = False


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: True/False, 1/0 or the words true/false/1/0 in any case; anything else is an error
    naming ``name`` (a non-empty string such as ``'false'`` must never count as true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false (or 1 / 0, any case), got {value!r}")


def _parse_value(text: str) -> Any:
    """A command-line value as fire parses it (Python literals, else the string)."""
    try:
        from fire.parser import DefaultParseValue
    except ImportError:  # fire is what runs ``python -m monai.bundle``; without it keep the text
        return text
    return DefaultParseValue(text)


def _is_flag(argument: str) -> bool:
    return argument.startswith("--") or (len(argument) > 1 and argument[0] == "-" and argument[1].isalpha())


@dataclass
class BundleCommand:
    """One ``python -m monai.bundle <command> ...`` command line, split as fire splits it."""

    command: str
    args: dict[str, Any] = field(default_factory=dict)  # MONAI's own arguments (MONAI_RUN_ARGS)
    overrides: dict[str, Any] = field(default_factory=dict)  # config id -> value as fire parses it
    raw: dict[str, str | None] = field(default_factory=dict)  # config id -> its command-line text

    @property
    def run_id(self) -> str:
        return str(self.args.get("run_id") or "run")

    def config_files(self, cwd: str | Path | None = None) -> list[Path]:
        """The ``--config_file`` paths (relative ones against ``cwd``), in merge order."""
        files = self.args.get("config_file")
        if files is None:
            return []
        if isinstance(files, str):
            files = [files] if Path(cwd or ".", files).is_file() or "," not in files else files.split(",")
        return [Path(cwd or ".", str(f)).expanduser() for f in files]

    def meta_file(self, cwd: str | Path | None = None) -> Path | None:
        """``--meta_file``, else ``metadata.json`` beside the first config file (what ``ConfigWorkflow`` reads)."""
        meta = self.args.get("meta_file")
        if meta:
            return Path(cwd or ".", str(meta))
        files = self.config_files(cwd)
        return files[0].parent / "metadata.json" if files else None


def parse_command_line(argv: Sequence[str], cwd: str | Path | None = None) -> BundleCommand:
    """Split ``argv`` (without the program name: ``['run', 'training', '--config_file', ...]``) the way fire
    does for ``monai.bundle.scripts.run``; ``--args_file`` entries fill in what the command line leaves out."""
    args = list(argv)
    if "--" in args:  # what follows the last lone "--" is for fire itself
        args = args[: len(args) - 1 - args[::-1].index("--")]
    command = BundleCommand(args[0] if args else "")
    positional: list[str] = []
    index = 1
    while index < len(args):
        argument = args[index]
        index += 1
        if not _is_flag(argument):
            positional.append(argument)
            continue
        key, has_value, text = argument.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not has_value:
            if index == len(args) or _is_flag(args[index]):  # a bare flag: True (--noX: X False)
                text = "True"
                if key not in MONAI_RUN_ARGS and key.startswith("no"):
                    key, text = key[2:], "False"
            else:
                text = args[index]
                index += 1
        if key in MONAI_RUN_ARGS:
            command.args[key] = _parse_value(text)
        else:
            command.overrides[key] = _parse_value(text)
            command.raw[key] = text
    for name, value in zip(_RUN_POSITIONAL, positional):
        command.args.setdefault(name, _parse_value(value))
    args_file = command.args.get("args_file")
    if args_file:
        from monai.bundle import ConfigParser

        for key, value in ConfigParser.load_config_file(str(Path(cwd or ".", str(args_file)))).items():
            if key in MONAI_RUN_ARGS:
                command.args.setdefault(key, value)
            elif key not in command.overrides:
                command.overrides[key], command.raw[key] = value, None
    return command


def merged_config(config_files: Sequence[str | Path], meta_file: str | Path | None = None):
    """A ``ConfigParser`` holding ``config_files`` merged in order (and ``meta_file`` under ``_meta_``), as
    ``ConfigWorkflow`` reads them before applying overrides; nothing is evaluated."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files([str(f) for f in config_files]))
    if meta_file is not None and Path(meta_file).is_file():
        parser.read_meta(str(meta_file))
    return parser


def config_ids(config: Any, prefix: str = "") -> Iterator[str]:
    """Every id of a config, nested ones joined with ``#`` (list items by index)."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        name = f"{prefix}#{key}" if prefix else str(key)
        yield name
        yield from config_ids(value, name)


def _is_expression(value: Any) -> bool:
    """An expression, reference or macro (``$...``, ``@id``, ``%file#id``): the user computes the value."""
    return isinstance(value, str) and value.startswith(("$", "@", "%"))


def _lookup(parser, config_id: str) -> tuple[bool, Any]:
    try:
        return True, parser[config_id]
    except Exception:  # KeyError, IndexError, TypeError (indexing into a string)...
        return False, None


def override_problems(command: BundleCommand, cwd: str | Path | None = None) -> tuple[list[str], dict[str, bool]]:
    """(problems, booleans): one line per unknown id (with the closest existing ids) or bad boolean value, and
    the parsed value of every boolean override."""
    files = command.config_files(cwd)
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        return [f"config file not found: {', '.join(missing)}" if missing else "no --config_file given"], {}
    parser = merged_config(files, command.meta_file(cwd))
    names = ", ".join(f.name for f in files)
    known_ids: list[str] | None = None
    problems, booleans = [], {}
    for config_id, value in command.overrides.items():
        if config_id in _tracking_settings(command.args.get("tracking")):
            continue  # read by MONAI's experiment tracking (--tracking mlflow), not by a config
        found, default = _lookup(parser, config_id)
        if not found and _new_argument_of_a_component(parser, config_id, command, cwd):
            continue
        if not found:
            if known_ids is None:  # suggestions: ids a user overrides, not list items or _target_-like keys
                known_ids = [i for i in config_ids(parser.get()) if not re.fullmatch(r"\d+|_\w+_", i.split("#")[-1])]
            close = difflib.get_close_matches(config_id, known_ids, n=3, cutoff=0.6)
            hint = f"; closest existing ids: {', '.join(close)}" if close else ""
            problems.append(f"unknown config id '{config_id}' (--{config_id}): not in {names}{hint}")
        elif isinstance(default, bool) and not _is_expression(value):
            try:
                booleans[config_id] = as_bool(value, f"--{config_id}")
            except ValueError as err:
                problems.append(f"{err} (boolean id '{config_id}')")
    return problems, booleans


def _new_argument_of_a_component(parser, config_id: str, command: BundleCommand, cwd) -> bool:
    """True when ``config_id`` adds an argument to a component (``--network_def#mask_source hint``: MONAI
    passes it to the ``_target_``) that the target's signature accepts, or whose signature cannot be known here
    (an expression, ``**kwargs``). A misspelt argument of a known signature is still an unknown id."""
    parent_id, _, key = config_id.rpartition("#")
    found, parent = _lookup(parser, parent_id) if parent_id else (False, None)
    if not (found and isinstance(parent, dict) and "_target_" in parent):
        return False
    try:
        target = _resolve_target(parent["_target_"], parser, command, cwd)
        parameters = inspect.signature(target).parameters if target is not None else None
    except Exception:  # an unimportable or unintrospectable target: MONAI will say so when it builds it
        return True
    if parameters is None or key in parameters:
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _resolve_target(target: Any, parser, command: BundleCommand, cwd) -> Any:
    """The callable of a ``_target_``: a (short) dotted name, or ``$@scripts.<module>.<name>`` of the bundle's
    own package; None for any other expression."""
    if not isinstance(target, str):
        return None
    if not target.startswith("$"):
        from monai.bundle.config_item import ConfigComponent

        return pydoc.locate(ConfigComponent({"_target_": target}).resolve_module_name())
    match = re.fullmatch(r"\$@scripts((?:\.\w+)+)", target.strip())
    if not match:
        return None
    from common.bundle_scripts import load_bundle_scripts

    root = command.overrides.get("bundle_root", parser.get("bundle_root", "."))
    obj = load_bundle_scripts(Path(cwd or ".", str(root)))
    for name in match.group(1)[1:].split("."):
        if not hasattr(obj, name) and isinstance(obj, ModuleType):
            importlib.import_module(f"{obj.__name__}.{name}")
        obj = getattr(obj, name)
    return obj


def _tracking_settings(tracking: Any) -> set[str]:
    if not isinstance(tracking, str):
        return set(tracking.get("configs", {})) if isinstance(tracking, dict) else set()
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    return set(DEFAULT_EXP_MGMT_SETTINGS.get(tracking, {}).get("configs", {}))


def is_bundle_cli(argv0: str | None = None) -> bool:
    """True when this process is ``python -m monai.bundle`` (also under torchrun)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    return bool(argv0) and Path(argv0).parts[-3:] == ("monai", "bundle", "__main__.py")


def _running_workflow():
    """The ``ConfigWorkflow`` whose ``initialize`` is evaluating this call (found on the call stack)."""
    from monai.bundle import ConfigWorkflow

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ConfigWorkflow):
            return candidate
        frame = frame.f_back
    return None


def check_overrides(argv: Sequence[str] | None = None, cwd: str | Path | None = None) -> None:
    """Stop a ``python -m monai.bundle`` run whose command line names ids no config defines or gives a
    boolean id a value other than true/false/1/0; set boolean overrides to real bools.

    With ``argv`` None the command line is ``sys.argv`` and the check runs only in the bundle CLI, once per
    process (a workflow nested in a run is not checked against the outer command line). Raises
    ``SystemExit`` with one line per problem (no traceback: the user mistyped, nothing crashed).
    """
    global _checked
    if argv is None:
        if _checked or not is_bundle_cli():
            return
        _checked = True
        argv = sys.argv[1:]
    command = parse_command_line(argv, cwd)
    if command.command not in ("run", "run_workflow"):
        return
    problems, booleans = override_problems(command, cwd)
    if problems:
        raise SystemExit("error: the command line does not match the bundle's configs:\n  " + "\n  ".join(problems))
    pending = {k: v for k, v in booleans.items() if command.overrides[k] is not v}
    if not pending:
        return
    workflow = _running_workflow()
    if workflow is None:
        raise SystemExit(
            "error: cannot set the boolean overrides "
            + ", ".join(f"--{k} {command.raw.get(k) or command.overrides[k]!r}" for k in pending)
            + " here: write them True or False"
        )
    for config_id, value in pending.items():
        workflow.parser[config_id] = value
