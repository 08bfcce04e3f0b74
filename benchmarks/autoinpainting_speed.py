"""Autoinpainting pipeline speed: candidate circles inpainted in batches vs the naive one-circle-per-pass loop.

Runs the sliding-circle search (AutoInpainter, the autoinpainting bundle's ``scripts/autoinpainting.py``) on
the sample data's tumour slices with the same network, once per batch size, checks that every batch size gives
the same inpainted slices, chosen circles and masks as the naive loop (batch size 1), and prints slices per
second and the Dice of the residual segmentation. ``--checkpoint`` loads trained weights (e.g. the bundle's quick-scale model); otherwise the
network is seeded random (timings are the same, Dice is meaningless).

    python benchmarks/autoinpainting_speed.py --slices 4 --batch-sizes 1 8 32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, ScaleIntensityRangePercentiles

import common.data
from common.bundle_scripts import load_bundle_scripts
from common.networks import GatedUNet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "autoinpainting_tumor_segmentation"
autoinpainting = load_bundle_scripts(BUNDLE).autoinpainting


def load_slices(count: int) -> list[dict]:
    """The ``count`` tumour slices with the largest tumours of the test subjects, scaled to [0, 1]."""
    root = common.data.build_sample_data()
    entries = json.loads((root / "datalist_2d.json").read_text(encoding="utf-8"))["test"]
    entries = sorted((e for e in entries if e["tumour_pixels"] > 0), key=lambda e: -e["tumour_pixels"])[
        :count
    ]
    read = Compose([LoadImage(image_only=True), EnsureChannelFirst()])
    scale = ScaleIntensityRangePercentiles(0, 99.5, 0.0, 1.0, clip=True)
    return [
        {
            "image": scale(read(str(root / e["image_tumour"]))).as_tensor().float(),
            "ooi": read(str(root / e["brain"])).as_tensor()[0] > 0,
            "label": read(str(root / e["label_tumour"])).as_tensor() > 0,
        }
        for e in entries
    ]


def dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    overlap = (prediction.bool() & truth).sum().item()
    return 2 * overlap / max(prediction.sum().item() + truth.sum().item(), 1)


def run(network, slices, batch_size: int, threshold: float, crop_size=None) -> tuple[tuple, list, float]:
    """(wall-clock and CPU-time slices per second), the results, the mean Dice. CPU time is the robust
    figure on a shared machine (one thread: CPU time = compute)."""
    search = autoinpainting.AutoInpainter(batch_size=batch_size, crop_size=crop_size)
    start, cpu_start = time.perf_counter(), time.process_time()
    results = [search.inpaint_slice(network, s["image"], s["ooi"]) for s in slices]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    scores = [
        dice(
            autoinpainting.segment_residual(
                autoinpainting.residual_volume(s["image"], r.inpainted), threshold
            ),
            s["label"],
        )
        for s, r in zip(slices, results)
    ]
    return (len(slices) / elapsed, len(slices) / cpu), results, float(np.mean(scores))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 32, 32, 32, 32, 32])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--crop-size", type=int, default=96, help="crop for the crop-scoring row (0: skip it)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = GatedUNet(channels=args.channels)
    if args.checkpoint:
        network.load_state_dict(torch.load(Path(args.checkpoint), map_location="cpu", weights_only=True))
    network.eval()
    slices = load_slices(args.slices)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {len(slices)} slices 256x256, GatedUNet "
        f"{args.channels}, {'trained' if args.checkpoint else 'random'} weights"
    )
    rows, reference = [], None
    for batch_size in args.batch_sizes:
        speed, results, mean_dice = run(network, slices, batch_size, args.threshold)
        if reference is None:
            reference = results
        same = all(
            np.array_equal(a.top, b.top)
            and a.chosen == b.chosen
            and torch.allclose(a.inpainted, b.inpainted, atol=1e-5)
            for a, b in zip(results, reference)
        )
        circles = int(np.mean([len(r.circles) for r in results]))
        rows.append((str(batch_size), circles, speed, mean_dice, same))
    if args.crop_size:
        batch_size = max(args.batch_sizes)
        speed, results, mean_dice = run(network, slices, batch_size, args.threshold, args.crop_size)
        same = all(np.array_equal(a.top, b.top) and a.chosen == b.chosen for a, b in zip(results, reference))
        rows.append(
            (f"{batch_size}, {args.crop_size}x{args.crop_size} crops", circles, speed, mean_dice, same)
        )
    print(
        "\n| circles per forward pass | circles per slice | slices / s (wall) | slices / CPU-s | speed-up (CPU) | mean Dice | same as first row |"
    )
    print("|---:|---:|---:|---:|---:|---:|:---:|")
    for batch_size, circles, speed, mean_dice, same in rows:
        print(
            f"| {batch_size} | {circles} | {speed[0]:.3f} | {speed[1]:.3f} | {speed[1] / rows[0][2][1]:.2f}x "
            f"| {mean_dice:.3f} | {same} |"
        )


if __name__ == "__main__":
    main()
