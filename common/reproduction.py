"""Paper-vs-ours result files of the bundles' ``scripts/reproduce_tables.py``: provenance, mean ± sd cells,
one-line verdicts per claim, and one ``<table>.md`` + ``<table>.csv`` per paper table; and the logged
``python -m monai.bundle`` runs that produce their numbers.

Kept free of torch and of other ``common`` parts, so the tables (and their tests) need no network.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "git_commit",
    "utc_date",
    "provenance",
    "busy_time",
    "mean_sd",
    "cell",
    "order_verdict",
    "write_table",
    "write_csv",
    "configs_arg",
    "run_monai_bundle",
]

NOT_RUN = "not run"


def git_commit(repo: Path) -> str:
    """HEAD of ``repo`` (``+dirty`` when tracked files differ from it), or ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "diff", "--quiet", "HEAD"], capture_output=True, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def utc_date() -> str:
    """Now, as the results files date their runs."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def provenance(repo: Path, scale: str, data: str, seeds: Sequence[int], wall_s: float) -> dict[str, str]:
    """What every results file records: date (UTC), commit, scale, data, seeds and wall time."""
    return {
        "date": utc_date(),
        "commit": git_commit(repo),
        "scale": scale,
        "data": data,
        "seeds": ", ".join(str(s) for s in seeds),
        "wall time": f"{wall_s / 60:.1f} min",
    }


def busy_time(records: Iterable[Mapping[str, float]]) -> tuple[float, float]:
    """(seconds during which at least one run was going, seconds summed over the runs) of ``{"wall_s", "end"}``
    records (a run's wall time and its end, ``time.time()``): right however the runs were scheduled (one after
    another, several at once, resumed later)."""
    covered, reach, total = 0.0, float("-inf"), 0.0
    for start, end in sorted((r["end"] - r["wall_s"], r["end"]) for r in records):  # union of the intervals
        covered += max(0.0, end - max(start, reach))
        reach, total = max(reach, end), total + end - start
    return covered, total


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, nan for none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def cell(values: Sequence[float], digits: int) -> str:
    """``mean ± sd`` over seeds (``mean`` alone for one seed; ``not run`` for none)."""
    mean, sd = mean_sd(values)
    if math.isnan(mean):
        return NOT_RUN
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def order_verdict(
    values: Mapping[str, Sequence[float]], order: Sequence[str], higher_is_better: bool = True
) -> str:
    """Whether the seed means keep the paper's ``order`` (best first): ``reproduced`` (flagged when a gap is
    within the seed spread), ``not reproduced at CPU scale`` (naming the first swapped pair and, with several
    seeds, whether its reversal is within the larger of the two sample sds), or ``not measurable here`` when a
    row has no result."""
    missing = [name for name in order if math.isnan(mean_sd(values.get(name, ()))[0])]
    if missing:
        return f"not measurable here (no result for {', '.join(missing)})"
    sign = 1.0 if higher_is_better else -1.0
    stats = {name: mean_sd(values[name]) for name in order}
    within_spread = False
    for better, worse in zip(order, order[1:]):
        gap = sign * (stats[better][0] - stats[worse][0])
        if gap <= 0:
            spread = ""
            if min(len(values[better]), len(values[worse])) > 1:
                inside = -gap <= max(stats[better][1], stats[worse][1])
                spread = ", within the seed spread" if inside else ", beyond the seed spread"
            return (
                f"not reproduced at CPU scale ({better} {stats[better][0]:.4g} vs {worse} "
                f"{stats[worse][0]:.4g}{spread})"
            )
        within_spread |= gap <= max(stats[better][1], stats[worse][1])
    return "reproduced" + (" (a gap is within the seed spread)" if within_spread else "")


def write_table(
    out_dir: Path,
    name: str,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, str]],
    info: Mapping[str, str],
    verdicts: Mapping[str, str] = (),
    notes: Sequence[str] = (),
) -> Path:
    """``<out_dir>/<name>.md`` (provenance, table, verdicts, notes) and ``<name>.csv`` (``# key: value``
    provenance lines, then the table); returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = dict(verdicts)
    lines = [f"# {title}", "", "; ".join(f"{k}: {v}" for k, v in info.items()), ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    if verdicts:
        lines += ["", "Verdicts (direction of each claim at this scale):", ""]
        lines += [f"- {claim}: **{verdict}**" for claim, verdict in verdicts.items()]
    if notes:
        lines += [""] + [f"{note}" for note in notes]
    markdown = out_dir / f"{name}.md"
    markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (out_dir / f"{name}.csv").open("w", newline="", encoding="utf-8") as stream:
        for key, value in {**info, **{f"verdict: {c}": v for c, v in verdicts.items()}}.items():
            stream.write(f"# {key}: {value}\n")
        writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return markdown


def write_csv(path: Path, records: Sequence[Mapping]) -> None:
    """``records`` as a CSV whose columns are their keys, in order of first appearance."""
    fields = list(dict.fromkeys(key for record in records for key in record))
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


def configs_arg(bundle: Path, *names: str) -> str:
    """``--config_file`` value: the JSON list of ``<bundle>/configs/<name>`` paths (merged in this order)."""
    return json.dumps([str(bundle / "configs" / name) for name in names])


def run_monai_bundle(args: Sequence[str], log: Path, repo: Path) -> None:
    """``python -m monai.bundle <args>`` with ``repo`` on ``PYTHONPATH`` (so ``common`` imports from a clone),
    the command and its output appended to ``log``; a failure raises naming the run, the log and its last 20
    lines."""
    command = [sys.executable, "-m", "monai.bundle", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as stream:
        stream.write(" ".join(command) + "\n")
        stream.flush()
        code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code:
        run = " ".join(itertools.takewhile(lambda arg: not arg.startswith("--"), args))
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-20:])
        raise RuntimeError(f"monai.bundle {run} failed (exit {code}); log {log}:\n{tail}")
