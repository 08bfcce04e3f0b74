"""Object-removal inference time per image on CPU: the whole pipeline against the inpainter alone.

Builds ``network_def`` of ``bundles/mask_optimized_object_removal/configs/inference.json`` (the demo
architecture, 64x64) and with ``inference_paper_width.json`` merged (the paper's widths, 256x256), and times one
image (batch 1) through

* the whole pipeline (segmenter -> segment chosen by a hint -> Canny edges -> edge, segmentation-map and image
  inpainters), which is what ``inference.json`` runs, and
* the baseline: the same inpainters fed the hint as the mask (``mask_source="hint"``: no segmentation, no
  segment selection),

so the ratio is the cost of optimising the mask. Weights are seeded random (time does not depend on them). Prints
the median and spread of wall-clock and CPU time over ``--repeats`` runs after ``--warmup`` runs; the paper
reports 0.62 s per image on an A100 at its size.

    python benchmarks/object_removal_speed.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"
WIDTHS = {"demo": [], "paper": ["inference_paper_width.json"]}


def build(width: str) -> tuple[torch.nn.Module, list[int]]:
    """The pipeline of inference.json at the given width, in eval mode, and its input size."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in ["inference.json", *WIDTHS[width]]])
    parser["bundle_root"] = str(BUNDLE)
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def").eval(), list(parser["spatial_size"])


def sample_input(size: list[int]) -> torch.Tensor:
    """A smooth random image and a disc-shaped hint covering ~5 % of it, (1, 2, H, W)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 1, *size, generator=generator), 5, 1, 2)
    yy, xx = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in size), indexing="ij")
    radius = 0.125 * min(size)
    hint = (((yy - size[0] / 2) ** 2 + (xx - size[1] / 2) ** 2) <= radius**2).float()[None, None]
    return torch.cat([image, hint], dim=1)


def time_runs(network, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, tuple[list, list]]:
    """Wall-clock and CPU seconds of each timed forward pass per mask source, the two interleaved so that a
    change of machine load hits both alike."""
    times = {source: ([], []) for source in ("segmenter", "hint")}
    with torch.inference_mode():
        for index in range(warmup + repeats):
            for source, (walls, cpus) in times.items():
                network.mask_source = source
                start, cpu_start = time.perf_counter(), time.process_time()
                network(x)
                if index >= warmup:
                    walls.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - cpu_start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", nargs="+", choices=sorted(WIDTHS), default=["demo", "paper"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 1, median of {args.repeats} runs")
    print("| width | size | pipeline wall s | pipeline CPU s | inpainter alone wall s | inpainter alone CPU s"
          " | pipeline / inpainter (CPU) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for width in args.widths:
        network, size = build(width)
        x = sample_input(size)
        times = time_runs(network, x, args.warmup, args.repeats)
        pipeline, alone = times["segmenter"], times["hint"]
        p_wall, p_cpu, a_wall, a_cpu = (statistics.median(v) for v in (*pipeline, *alone))
        print(f"| {width} | {size[0]}x{size[1]} | {p_wall:.3f} | {p_cpu:.3f} | {a_wall:.3f} | {a_cpu:.3f}"
              f" | {p_cpu / a_cpu:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
