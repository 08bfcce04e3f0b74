"""Whole-volume (182x218x182) CPU inference speed of the space-to-depth 3D U-Net at paper width (40 filters).

Each variant runs in its own subprocess (so peak memory is its own) with a fixed number of threads:

* ``plain``: ``torch.no_grad()`` forward in eval mode, layer by layer (``fast_eval=False``; the baseline);
* ``inference_mode``: ``torch.inference_mode()`` with the bundle's default eval forward (``fast_eval``: BN folded,
  in-place ReLUs, the full-resolution block in ``channels_last_3d``);
* ``frozen``: ``torch.jit.trace`` + ``torch.jit.optimize_for_inference`` (folds BatchNorm into the convs, oneDNN
  layouts); the network is traced, not scripted (see the bundle's metadata).

Prints one Markdown row per variant: median and min wall seconds over ``--repeats`` runs after one warm-up, the
median CPU seconds of the process (all threads; less sensitive than wall time to other jobs on a shared machine),
peak resident memory, and the speed-up of the median against ``plain`` measured in the same invocation, with the
load average before and after. The paper reports about 8 s per volume on CPU and 0.5 s on GPU.

    python benchmarks/blind_lesion_3d_speed.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("plain", "inference_mode", "frozen")
SHAPE = (1, 1, 182, 218, 182)


def measure(variant: str, threads: int, repeats: int, filters: int) -> dict:
    import torch

    from common.bundle_scripts import load_bundle_scripts

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d"
    SpaceToDepthUNet3D = load_bundle_scripts(bundle).networks.SpaceToDepthUNet3D

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = SpaceToDepthUNet3D(filters=filters, fast_eval=variant == "inference_mode").eval()
    volume = torch.rand(SHAPE)
    if variant == "frozen":
        with torch.no_grad():
            net = torch.jit.optimize_for_inference(torch.jit.trace(net, volume))
    context = torch.inference_mode if variant == "inference_mode" else torch.no_grad
    times, cpu_times = [], []
    with context():
        reference = net(volume)
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            net(volume)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    return {
        "variant": variant,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_gib": peak_gib,
        "output_mean": float(reference.mean()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--filters", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.threads, args.repeats, args.filters)))
        return
    load_before = os.getloadavg()
    rows = []
    for variant in args.variants:
        command = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
            "--filters",
            str(args.filters),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True, encoding="utf-8", errors="replace").stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    baseline = next((r["median_s"] for r in rows if r["variant"] == "plain"), rows[0]["median_s"])
    print(
        f"CPU, {args.threads} threads, {args.filters} filters, input {SHAPE[2:]}, {args.repeats} runs after a warm-up"
    )
    print(
        f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"
    )
    print("| variant | median s | min s | median CPU s | peak RSS GiB | speed-up vs plain | output mean |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_gib']:.2f} | "
            f"{baseline / r['median_s']:.2f}x | {r['output_mean']:.5f} |"
        )


if __name__ == "__main__":
    main()
