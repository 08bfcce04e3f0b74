"""Command line for real T1 data (:mod:`common.data.ixi`): ``python -m common.data.ixi_cli --help``."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from .ixi import build_ixi_data, build_ixi_mni, default_ixi_dir, find_subjects, skull_strip_dice


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.data.ixi_cli",
        description="Real T1 data: list the subjects of a T1 folder (default: the IXI set), build the cached "
        "skull-stripped volumes, masks, axial slices and datalists (and, with --mni, the MNI-registered "
        "volumes), or measure the project's skull stripping against the parcellations.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("list", "print each subject: id, split, age, sex, whether it has a parcellation"),
        ("build", "build the cache (reused when already built) and print its folder"),
        ("dice", "Dice of the skull stripping against the parcellation's brain mask, per subject"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--data", default=None, help=f"T1 folder (default: {default_ixi_dir()})")
        if name == "list":
            continue
        cmd.add_argument(
            "--brain-roi", type=int, default=701, choices=(701, 702), help="701 TotalBrain, 702 ICV"
        )
        cmd.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
        if name == "build":
            cmd.add_argument(
                "--root", default=None, help="cache folder (default: $MEDINPAINT_DATA or ~/.cache)"
            )
            cmd.add_argument("--mni", action="store_true", help="also register every subject to MNI")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for s in find_subjects(args.data):
                parcellation = "parcellation" if s.parcellation else "no parcellation"
                print(f"{s.subject}\t{s.split}\t{s.age}\t{s.sex}\t{parcellation}")
        elif args.command == "build":
            start = time.perf_counter()
            build = (build_ixi_mni if args.mni else build_ixi_data)(
                args.data, args.root, args.brain_roi, workers=args.workers
            )
            print(f"real T1 data ready in {build} ({time.perf_counter() - start:.1f} s)")
        else:
            scores = skull_strip_dice(args.data, args.brain_roi, args.workers)
            for subject, score in scores.items():
                print(f"{subject}\t{score:.4f}")
            values = list(scores.values())
            print(f"mean {statistics.mean(values):.4f}, lowest {min(values):.4f} over {len(values)} subjects")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
