"""One speed table for every pipeline against its naive form, measured side by side in one run (issue #20).

    python benchmarks/run_all.py [--quick] [--threads N] [--repeats K]

Rows (each: the naive baseline and the optimised path on the same input, interleaved repeat by repeat so that a
change of machine load hits both alike; median wall seconds over the repeats after one warm-up, and the spread
min-max):

* ``blind_lesion_inpainting_3d``: one whole 3-D volume (a sample-cohort T1 on the MNI grid, 182x218x182):
  plain fp32 ``no_grad`` forward (``fast_eval=False``) vs the bundle's default eval forward (``fast_eval``: BN
  folded, in-place ReLUs, the full-resolution block in ``channels_last_3d``; ``inference_mode``; fp32). Two
  widths: the shipped weights (the demo width in ``inference.json``) and the paper width (40 filters; no
  paper-width weights ship, so seeded random weights). Metric: PSNR of the output against the input volume.
* ``autoinpainting_tumor_segmentation``: the sliding-circle search on one 256x256 tumour slice of the sample
  cohort with the shipped weights and the bundle's search in mm: naive one-circle-per-pass full-slice loop
  (``batch_size=1``, ``local=False``) vs 64 circles per pass on the whole slice (same answer), and, as a
  second row, the bundle's default: the exact local pass (``local=True``: only the network outputs that reach
  each hole are computed, the same numbers; run on one thread, faster for its small windows). Metric: Dice of
  the thresholded residual against the tumour label.
* ``mask_optimized_object_removal``: the whole pipeline at 256x256, paper width (seeded random weights: the
  shipped ones are the 64x64 demo width): today's path (``no_grad``, as the evaluator) vs ``inference_mode``
  alone and vs ``inference_mode`` with its generators and segmenter frozen (``torch.jit.trace`` +
  ``optimize_for_inference``). Metric: PSNR of the output against the input image.
* ``<2-D bundle> training step``: one training step (forward, L1 loss, backward, Adam; the generator only) of
  the bundle's network (``train.json`` + ``quick.json``: the shipped weights' width and batch size) on 256x256
  images with its mask transform in the loop; "naive"
  is the step alone, "optimised" the step plus mask sampling for the batch; the fraction of the step spent on
  mask sampling is the row's ``mask_fraction`` (target < 5 %).

Peak memory: the resident set size sampled every 5 ms by a thread, peak minus the level just before the call
(MB), for the optimised path (``peak_mb``) and the naive one (``naive_peak_mb``). Writes ``docs/performance.md``
and ``docs/performance.json``; ``--quick`` shrinks every row (small volume and widths, one repeat) to check the
structure, and writes to ``--output-dir`` instead when given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import autoinpainting_speed  # noqa: E402
import object_removal_speed  # noqa: E402
from masks import sample_slice  # noqa: E402

from common.bundle_scripts import load_bundle_scripts  # noqa: E402

BUNDLES = ROOT / "bundles"


# ----------------------------------------------------------------------------------------------- measuring
class PeakRSS:
    """Peak resident set size (MB) above the level at entry, sampled from /proc/self/statm every 5 ms."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mb = (self.peak - self.start) / 2**20


def compare_many(
    naive: Callable[[], object], variants: dict[str, Callable[[], object]], repeats: int, budget_s: float = math.inf
) -> dict[str, dict]:
    """Warm-up call of each (memory measured there), then ``repeats`` rounds of timed calls, naive and every
    variant interleaved (fewer rounds, at least one, where the warm-up times say ``repeats`` rounds would take
    more than ``budget_s``); per variant the medians, spreads and the outputs of the warm-up calls."""
    functions = {"naive": naive, **variants}
    outputs, peaks, round_s = {}, {}, 0.0
    for name, function in functions.items():
        with PeakRSS() as memory:
            start = time.perf_counter()
            outputs[name] = function()
        round_s += time.perf_counter() - start
        peaks[name] = memory.mb
    repeats = max(1, min(repeats, int(budget_s / round_s)))
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    results = {}
    for name in variants:
        ratios = [a / b for a, b in zip(times["naive"], times[name])]
        results[name] = {
            "naive_out": outputs["naive"],
            "optimised_out": outputs[name],
            "naive_s": statistics.median(times["naive"]),
            "optimised_s": statistics.median(times[name]),
            "naive_spread_s": [min(times["naive"]), max(times["naive"])],
            "optimised_spread_s": [min(times[name]), max(times[name])],
            "ratio_spread": [min(ratios), max(ratios)],
            "repeats": repeats,
            "naive_peak_mb": peaks["naive"],
            "peak_mb": peaks[name],
        }
    return results


def compare(
    naive: Callable[[], object], optimised: Callable[[], object], repeats: int, budget_s: float = math.inf
) -> dict:
    """:func:`compare_many` with one variant."""
    return compare_many(naive, {"optimised": optimised}, repeats, budget_s)["optimised"]


def psnr(output: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    mse = float(((output.float() - reference.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def comparison_row(
    description: dict, max_abs_diff: float, metric: str, naive_value: float, optimised_value: float, result: dict
) -> dict:
    """One table record: ``description`` (bundle, variant, unit, naive, optimised, ...), the outputs' largest
    difference, the quality metric on both paths and their difference, and the timings of ``compare_many``."""
    return {
        **description,
        "max_abs_diff": float(max_abs_diff),
        "metric": metric,
        "metric_naive": naive_value,
        "metric_optimised": optimised_value,
        "metric_delta": optimised_value - naive_value,
        **result,
    }


def native_bf16() -> bool:
    """Whether the CPU has native bf16 (AVX512-BF16 or AMX): elsewhere bf16 autocast is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ----------------------------------------------------------------------------------------------- 3-D
def volume_3d(quick: bool) -> torch.Tensor:
    """A test subject's T1 of the sample cohort (MNI grid, 182x218x182), scaled to [0, 1], (1, 1, D, H, W)."""
    import nibabel as nib

    import common.data

    root = common.data.build_sample_data()
    entry = json.loads((root / "datalist_3d.json").read_text(encoding="utf-8"))["test"][0]
    volume = np.asarray(nib.load(str(root / entry["image_ms"])).get_fdata(), np.float32)
    volume = np.clip(volume / np.percentile(volume, 99.5), 0, 1)
    if quick:
        volume = volume[40:104, 40:104, 40:104]
    return torch.from_numpy(np.ascontiguousarray(volume))[None, None]


def fast_3d(network: torch.nn.Module, bf16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bundle's eval forward under inference_mode: ``fast_eval`` (its default) in fp32, or with the opt-in
    ``cpu_bf16`` (inference.json's id of that name) when ``bf16``."""

    def run(volume: torch.Tensor) -> torch.Tensor:
        network.fast_eval, network.cpu_bf16 = True, bf16
        with torch.inference_mode():
            return network(volume)

    return run


def row_3d(quick: bool, repeats: int, budget_s: float) -> list[dict]:
    from monai.bundle import ConfigParser

    bundle = BUNDLES / "blind_lesion_inpainting_3d"
    networks = load_bundle_scripts(bundle).networks
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    demo = {  # the raw network_def, its "@name" references resolved (e.g. "residual": "@residual")
        k: parser[v[1:]] if isinstance(v, str) and v.startswith("@") else v
        for k, v in parser["network_def"].items()
        if k != "_target_"
    }
    volume = volume_3d(quick)
    rows = []
    widths = [("shipped weights", demo["filters"])] + ([] if quick else [("paper width 40, random", 40)])
    for label, filters in widths:
        torch.manual_seed(0)
        network = networks.SpaceToDepthUNet3D(**{**demo, "filters": filters}).eval()
        if filters == demo["filters"]:
            state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
            network.load_state_dict(state)

        def naive(network=network) -> torch.Tensor:
            network.fast_eval = False
            with torch.no_grad():
                return network(volume)

        variants = {"fp32": fast_3d(network, bf16=False)}
        if native_bf16():  # emulated bf16 is slower: the option is only timed where it can help
            variants["bf16"] = fast_3d(network, bf16=True)
        results = compare_many(naive, {k: lambda f=f: f(volume) for k, f in variants.items()}, repeats, budget_s)
        if not torch.allclose(results["fp32"]["optimised_out"], results["fp32"]["naive_out"], atol=1e-4, rtol=1e-4):
            raise RuntimeError("the fast 3-D eval forward differs from the plain one by more than 1e-4")
        for key, result in results.items():
            a, b = result.pop("naive_out"), result.pop("optimised_out")
            base, new = psnr(a.clamp(0, 1), volume), psnr(b.clamp(0, 1), volume)
            description = {
                "bundle": "blind_lesion_inpainting_3d"
                + ("" if filters == demo["filters"] else " (paper width)")
                + ("" if key == "fp32" else " (cpu_bf16)"),
                "variant": f"{label}, filters {filters}, residual {demo.get('residual', False)}",
                "unit": f"one 3-D volume {'x'.join(map(str, volume.shape[2:]))}",
                "naive": "fp32, no_grad, plain forward (fast_eval=False)",
                "optimised": "the bundle's default eval forward (fast_eval: BN folded, in-place ReLU, full-resolution "
                "block in channels_last_3d, BN folded into the 1x1 head), inference_mode, "
                + ("fp32" if key == "fp32" else "with inference.json's opt-in cpu_bf16 true (bf16 autocast)"),
            }
            rows.append(comparison_row(description, (a - b).abs().max(), "PSNR vs input (dB)", base, new, result))
    return rows


# ----------------------------------------------------------------------------------------------- autoinpainting
def row_autoinpainting(quick: bool, repeats: int, budget_s: float) -> list[dict]:
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImage

    import common.data
    from common.networks import GatedUNet

    bundle = BUNDLES / "autoinpainting_tumor_segmentation"
    scripts = autoinpainting_speed.autoinpainting
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    search = dict(parser["search"])
    threshold = float(parser["threshold"])
    network = GatedUNet(channels=list(parser["channels"]))
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    item = autoinpainting_speed.load_slices(1)[0]
    # the pixel spacing of that slice (load_slices drops the affine): the largest-tumour test slice
    root = common.data.build_sample_data()
    entries = json.loads((root / "datalist_2d.json").read_text(encoding="utf-8"))["test"]
    entry = max((e for e in entries if e["tumour_pixels"] > 0), key=lambda e: e["tumour_pixels"])
    spacing = scripts.pixel_spacing(LoadImage(image_only=True)(str(root / entry["image_tumour"])))
    image, ooi, label = item["image"], item["ooi"], item["label"]
    if quick:
        image, ooi, label = image[:, ::2, ::2].contiguous(), ooi[::2, ::2], label[:, ::2, ::2]
        spacing *= 2
    base = {k: v for k, v in search.items() if not k.startswith("_")}
    naive = {"batch_size": 1, "crop_size_mm": None, "local": False}
    naive_search = scripts.AutoInpainter(**scripts.search_in_pixels(spacing, **{**base, **naive}))
    options = {
        "exact": {"batch_size": 64, "crop_size_mm": None, "local": False},
        "local": {"crop_size_mm": None},  # inference.json's search as the bundle runs it (local pass, its batch)
    }
    searches = {k: scripts.AutoInpainter(**scripts.search_in_pixels(spacing, **{**base, **o})) for k, o in options.items()}
    described = {
        "exact": "64 circles per pass, whole slice, inference_mode",
        "local": f"{searches['local'].batch_size} circles per pass (inference.json), local pass (only outputs "
        "reaching each hole; exact), candidates inpainted until the choice settles, inference_mode, torch default "
        f"threads ({torch.get_num_threads()}, as the bundle runs)",
    }

    def segment(result) -> torch.Tensor:
        return scripts.segment_residual(scripts.residual_volume(image, result.inpainted), threshold)

    def fast(search):
        def run():
            with torch.inference_mode():
                return search.inpaint_slice(network, image, ooi)

        return run

    results = compare_many(
        lambda: naive_search.inpaint_slice(network, image, ooi),
        {k: fast(v) for k, v in searches.items()},
        repeats,
        budget_s,
    )
    rows = []
    for key, result in results.items():
        a, b = result.pop("naive_out"), result.pop("optimised_out")
        dice_a, dice_b = autoinpainting_speed.dice(segment(a), label), autoinpainting_speed.dice(segment(b), label)
        description = {
            "bundle": "autoinpainting_tumor_segmentation" + ("" if key == "exact" else " (local pass)"),
            "variant": f"shipped weights, {len(a.circles)} circles, {spacing:.3f} mm pixels",
            "unit": f"one 2-D slice {image.shape[1]}x{image.shape[2]}",
            "naive": "1 circle per pass, whole slice",
            "optimised": described[key],
            "same_top_circles": bool(np.array_equal(np.sort(a.top), np.sort(b.top))),
        }
        difference = (a.inpainted - b.inpainted).abs().max()
        rows.append(comparison_row(description, difference, "Dice vs tumour label", dice_a, dice_b, result))
    return rows


# ----------------------------------------------------------------------------------------------- object removal
def object_removal_optimiser():
    """The object-removal bundle's ``scripts.fast_inference`` module."""
    return load_bundle_scripts(BUNDLES / "mask_optimized_object_removal").fast_inference


def freeze_object_removal(network: torch.nn.Module, size: list[int]) -> torch.nn.Module:
    """The bundle's :func:`optimise_for_inference` copy (spectral norm baked in) with its segmenter and three
    generators traced and frozen (same maths)."""
    fast = object_removal_optimiser().optimise_for_inference(network)
    channels = fast.inpainter.image_channels
    classes = fast.inpainter.num_classes
    with torch.no_grad():
        fast.segmenter = torch.jit.optimize_for_inference(
            torch.jit.trace(fast.segmenter, torch.rand(1, channels, *size), check_trace=False)
        )
        for name in ("edge_net", "segmap_net", "image_net"):
            generator = getattr(fast.inpainter, name)
            example = torch.rand(1, generator.in_channels, *size)
            setattr(
                fast.inpainter,
                name,
                torch.jit.optimize_for_inference(torch.jit.trace(generator, example, check_trace=False)),
            )
    assert classes == fast.inpainter.num_classes
    return fast


def row_object_removal(quick: bool, repeats: int, budget_s: float) -> list[dict]:
    network, size = object_removal_speed.build("demo" if quick else "paper")
    x = object_removal_speed.sample_input(size)
    fast = freeze_object_removal(network, size)

    def naive() -> torch.Tensor:
        with torch.no_grad():
            return network(x)

    def frozen() -> torch.Tensor:
        with torch.inference_mode():
            return fast(x)

    baked = object_removal_optimiser().optimise_for_inference(network)

    def bundle_default() -> torch.Tensor:
        with torch.inference_mode():
            return baked(x)

    variants = {"bundle_default": bundle_default, "frozen": frozen}
    results = compare_many(naive, variants, repeats, budget_s)
    described = {
        "bundle_default": "inference_mode + optimise_for_inference (spectral norm baked in, output convs over the hole's bounding box; inference.json's default)",
        "frozen": "inference_mode + optimise_for_inference + segmenter and generators frozen (jit.trace + "
        "optimize_for_inference)",
    }
    rows = []
    for key, result in results.items():
        a, b = result.pop("naive_out"), result.pop("optimised_out")
        image = x[:, :1]
        base, new = psnr(a, image), psnr(b, image)
        description = {
            "bundle": "mask_optimized_object_removal" + ("" if key == "bundle_default" else " (jit frozen)"),
            "variant": f"{'demo' if quick else 'paper'} width, seeded random weights",
            "unit": f"one image {size[0]}x{size[1]}",
            "naive": "today's path: no_grad forward of the pipeline",
            "optimised": described[key],
        }
        rows.append(comparison_row(description, (a - b).abs().max(), "PSNR vs input (dB)", base, new, result))
    return rows


# ----------------------------------------------------------------------------------------------- training steps
def training_setups(quick: bool) -> dict[str, tuple]:
    """Per 2-D bundle: (network of train.json + quick.json, the width the shipped weights were trained at; its
    batch size; 256 px images; the mask transform as configured)."""
    from monai.bundle import ConfigParser

    from common.transforms import FreeFormMaskd, IrregularMaskd, PseudoSegmentMaskd, SquareMaskd

    setups = {}
    for name in (
        "autoinpainting_tumor_segmentation",
        "ipa_medgan",
        "mask_optimized_object_removal",
        "shape_aware_mask_inpainting",
    ):
        parser = ConfigParser()  # train.json + quick.json: the configuration the shipped weights were trained with
        parser.read_config([str(BUNDLES / name / "configs" / f) for f in ("train.json", "quick.json")])
        parser["bundle_root"] = str(BUNDLES / name)
        config = parser.get_parsed_content
        if name == "autoinpainting_tumor_segmentation":
            transform = IrregularMaskd("image", coverage_range=config("hole_coverage"), masked_key=None)
            network = config("network_def")
        elif name == "ipa_medgan":
            transform = SquareMaskd("image", side=config("square_side"), fill_value=config("fill_value"))
            network = config("network_def")
        elif name == "mask_optimized_object_removal":
            transform = FreeFormMaskd("image", masked_key=None, width_range=config("random_mask_width"))
            network = config("inpainter")  # the trained networks: segmenter and inpainter
        else:
            mask = config("mask_config")
            transform = PseudoSegmentMaskd(
                "image",
                position=mask["position"],
                shape=mask["shape"],
                weighting=mask["weighting"],
                num_segments=mask["num_segments"],
                perturb_px=mask["perturb_px"],
                masked_key=None,
            )
            network = config("network_def")
        size = 256  # the bundles' working size (the autoinpainting U-Net's 8 levels need 128+)
        batch = 2 if quick else int(parser["batch_size"])  # BatchNorm at 1x1 needs 2+
        setups[name] = (network, batch, size, transform)
    return setups


def training_step(network: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> Callable[[], None]:
    """One forward/backward/Adam step of ``network`` on masked images (input channels filled with the masked
    image, the mask and, for the object-removal inpainter, edges and a segmentation map); L1 of its output."""
    optimiser = torch.optim.Adam(network.parameters(), 1e-4)
    network.train()
    edges = (images > 0.5).float()

    def inputs(masked: torch.Tensor, extra: int) -> torch.Tensor:
        return torch.cat([masked, masks, edges, masks][: 1 + extra], 1)

    extra = 0
    if not hasattr(network, "edge_net"):
        network.eval()
        for extra in range(4):  # input channels: masked image, then mask, edge map (as the bundle's network asks)
            try:
                with torch.no_grad():
                    network(inputs(images, extra)[:1])
                break
            except (ValueError, RuntimeError):
                continue
        network.train()

    def step() -> None:
        optimiser.zero_grad()
        masked = images * (1 - masks)
        if hasattr(network, "edge_net"):  # EdgeConnectInpainter
            segmap = torch.softmax(torch.rand(images.shape[0], network.num_classes, *images.shape[2:]), 1)
            output = network(images, masks, edges, segmap)["image_raw"]
        else:
            output = network(inputs(masked, extra))
        if isinstance(output, (list, tuple)):
            output = output[0]
        if isinstance(output, dict):
            output = next(iter(output.values()))
        torch.nn.functional.l1_loss(output[:, : images.shape[1]], images).backward()
        optimiser.step()

    return step


def rows_training(quick: bool, repeats: int, budget_s: float) -> list[dict]:
    image = torch.from_numpy(sample_slice())[None]
    rows = []
    for name, (network, batch, size, transform) in training_setups(quick).items():
        item = torch.nn.functional.interpolate(image[None], size=(size, size), mode="area")[0]
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(0)
        transform({"image": item.clone()})  # fills caches (pseudo segments)

        def sample_masks(transform=transform, item=item, batch=batch, size=size) -> torch.Tensor:
            masks = []
            for _ in range(batch):
                out = transform({"image": item.clone()})
                mask = next(v for k, v in out.items() if "mask" in k)
                masks.append(torch.as_tensor(np.asarray(mask), dtype=torch.float32).reshape(1, size, size))
            return torch.stack(masks)

        images = item[None].repeat(batch, 1, 1, 1)
        masks = sample_masks()
        step = training_step(network, images, masks)

        def with_masks(step=step, sample_masks=sample_masks) -> None:
            sample_masks()
            step()

        result = compare(step, with_masks, repeats, budget_s)
        result.pop("naive_out"), result.pop("optimised_out")
        sampling = [sample_masks] * 5
        sample_s = statistics.median(_time(f) for f in sampling)
        rows.append(
            {
                "bundle": f"{name} training step",
                "variant": f"{type(transform).__name__}, batch {batch}, train.json + quick.json network",
                "unit": f"one training step, batch {batch} x {size}x{size}",
                "naive": "training step alone",
                "optimised": "training step + mask sampling (in the loop)",
                "max_abs_diff": 0.0,
                "metric": "mask sampling / step",
                "metric_naive": 0.0,
                "metric_optimised": sample_s / result["naive_s"],
                "metric_delta": sample_s / result["naive_s"],
                "mask_sampling_s": sample_s,
                "mask_fraction": sample_s / result["naive_s"],
                **result,
            }
        )
    return rows


def _time(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- report
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True)
        return head.stdout.strip() + (" (uncommitted changes in the tree)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[dict]) -> str:
    lines = [
        "| bundle | unit | naive | optimised | naive s (min-max) | optimised s (min-max) | ratio (min-max) | repeats "
        "| max abs diff | metric: naive -> optimised (delta) | peak MB naive / optimised |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bundle']} ({r['variant']}) | {r['unit']} | {r['naive']} | {r['optimised']} "
            f"| {r['naive_s']:.3f} ({r['naive_spread_s'][0]:.3f}-{r['naive_spread_s'][1]:.3f}) "
            f"| {r['optimised_s']:.3f} ({r['optimised_spread_s'][0]:.3f}-{r['optimised_spread_s'][1]:.3f}) "
            f"| {r['ratio']:.2f}x ({r['ratio_spread'][0]:.2f}-{r['ratio_spread'][1]:.2f}) | {r['repeats']} "
            f"| {r['max_abs_diff']:.2e} | {r['metric']}: {r['metric_naive']:.4f} -> {r['metric_optimised']:.4f} "
            f"({r['metric_delta']:+.4f}) | {r['naive_peak_mb']:.0f} / {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def kept_rows(path: Path, section: str) -> list[dict]:
    """The rows of ``section`` in an earlier ``performance.json`` (none when absent): an ``--only`` run keeps the
    sections it does not measure; each row carries its ``section`` and when it was ``measured``."""
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text(encoding="utf-8")) if row.get("section") == section]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and widths, one repeat (structure check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-3d", type=float, default=240.0, help="seconds per 3-D width for the timed repeats")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per other row for the timed repeats")
    parser.add_argument("--only", nargs="+", choices=["3d", "autoinpainting", "object_removal", "training"])
    parser.add_argument("--output-dir", default=None, help="where performance.md/json go (default docs/)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # traced shapes are the timed ones
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    command = "python benchmarks/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()
    started = time.time()
    sections = {
        "3d": lambda: row_3d(args.quick, repeats, args.budget_3d),
        "autoinpainting": lambda: row_autoinpainting(args.quick, repeats, 2 * args.budget),
        "object_removal": lambda: row_object_removal(args.quick, repeats, args.budget),
        "training": lambda: rows_training(args.quick, repeats, args.budget),
    }
    out_dir = Path(args.output_dir) if args.output_dir else ROOT / "docs"
    measured = f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit()}"
    rows = []
    for key, function in sections.items():
        if args.only and key not in args.only:
            rows += kept_rows(out_dir / "performance.json", key)
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
        for row in function():
            row["ratio"] = row["naive_s"] / row["optimised_s"]
            row["threads"] = args.threads
            row["section"], row["measured"] = key, measured
            rows.append(row)
    load_after = os.getloadavg()
    text = table(rows)
    print(text)
    header = [
        "# Speed on CPU: every pipeline against its naive form (issue #20)",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; commit {commit()}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores visible), torch {torch.__version__}, "
        f"{args.threads} threads (torch.set_num_threads); native bf16: {native_bf16()}",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{', '.join(f'{x:.2f}' for x in load_after)} (a shared machine: absolute times are noisy, ratios are "
        "measured with naive and optimised interleaved)",
        f"- wall time of the run: {time.time() - started:.0f} s; times are medians over the repeats after one "
        "warm-up call each, (min-max) the spread; ratio spread is over paired repeats",
        "- peak MB: resident set size sampled every 5 ms, peak minus the level before the (warm-up) call",
        *(
            [f"- with `--only {' '.join(args.only)}`: the other sections' rows are kept from the earlier run "
             "that measured them (per row `measured` in performance.json): "
             + "; ".join(sorted({f"{r['section']} {r['measured']}" for r in rows if r["measured"] != measured}))]
            if args.only else []
        ),
        "",
        text,
        "",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "performance.md").write_text("\n".join(header), encoding="utf-8")
    (out_dir / "performance.json").write_text(json.dumps(rows, indent=1, default=float), encoding="utf-8")
    return {"rows": rows}


if __name__ == "__main__":
    main()
