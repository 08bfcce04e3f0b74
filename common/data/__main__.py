"""Command line for the sample data: ``python -m common.data --help``."""

from __future__ import annotations

import argparse
import sys
import time

from .overview import write_overview
from .sample import (
    DEFAULT_SEED,
    DEFAULT_SUBJECTS,
    SampleDataError,
    build_sample_data,
    dataset_dir,
    default_root,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.data",
        description="Build the medinpaint sample data: a seeded synthetic cohort made from nilearn's MNI152 "
        "2009a template (NIfTI volumes on the 182x218x182 MNI grid, 256x256 axial slices, MS-like and "
        "tumour-like lesions with masks, MONAI datalists split by subject).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("build", "build the cohort (reused when already built)"),
        ("path", "print the folder the cohort is (or would be) built in"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--root", default=None, help=f"cache folder (default: $MEDINPAINT_DATA or {default_root()})"
        )
        cmd.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS, help="number of subjects (>= 3)")
        cmd.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed, 0 <= seed < 2**32")
        if name == "build":
            cmd.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
            cmd.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
            cmd.add_argument("--overview", default=None, help="also write a PNG overview to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "path":
            print(dataset_dir(args.root, args.subjects, args.seed))
            return 0
        start = time.perf_counter()
        folder = build_sample_data(args.root, args.subjects, args.seed, args.workers, args.force)
        print(f"sample data ready in {folder} ({time.perf_counter() - start:.1f} s)")
        if args.overview:
            print(f"overview written to {write_overview(folder, args.overview)}")
    except (ValueError, SampleDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
