"""Speed of the mask generators at 256x256 and the pseudo-segment sampler's share of a CPU training step.

Run: ``python benchmarks/masks.py`` (about a minute on 2 CPU cores). Prints a markdown table:
masks/second per generator (array-level functions, one seeded RandomState), the cost of one pseudo-segment
computation (Felzenszwalb + merge, the cache miss) and of one organ-region computation, and the cost of the
cached ``PseudoSegmentMaskd`` for a batch of 4 as a ratio of one training step of a small inpainting UNet
(masked image + mask in, L1 loss, Adam, batch 4, 256x256, CPU).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from monai.networks.nets import UNet
from skimage.transform import resize

from common.transforms.lesion_masks import lesion_mask
from common.transforms.masks import (
    MaskBankd,
    free_form_mask,
    irregular_mask,
    large_square_mask,
    multi_square_mask,
    sliding_circle_masks,
    square_mask,
    write_mask_bank,
)
from common.transforms.pseudo_segments import (
    PseudoSegmentMaskd,
    PseudoSegments,
    compute_pseudo_segments,
    organ_bounded_region,
    sample_pseudo_segment_mask,
)

SIZE = (256, 256)
BATCH = 4


def sample_slice(size: tuple[int, int] = SIZE) -> np.ndarray:
    """Mid axial slice (z=95) of nilearn's MNI152 T1 template (ships with nilearn), anterior up, resized to
    ``size``, values 0..1, float32."""
    from nilearn.datasets import load_mni152_template

    volume = load_mni152_template(resolution=1).get_fdata()
    image = resize(np.rot90(volume[:, :, 95]), size, anti_aliasing=True)
    return np.clip(image / image.max(), 0, 1).astype(np.float32)


def seconds_per_call(function: Callable[[], object], budget_s: float = 1.0, min_calls: int = 5) -> float:
    """Median wall time of one call, over as many calls as fit in ``budget_s`` (at least ``min_calls``)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < budget_s:
        tick = time.perf_counter()
        function()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def training_step_seconds(steps: int = 5) -> float:
    """Median time of one CPU training step of a small inpainting UNet on a batch of 4 256x256 images."""
    torch.manual_seed(0)
    net = UNet(2, 2, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)
    optimiser = torch.optim.Adam(net.parameters(), 1e-4)
    images = torch.rand(BATCH, 1, *SIZE)
    masks = (torch.rand(BATCH, 1, *SIZE) > 0.7).float()

    def step() -> None:
        optimiser.zero_grad()
        output = net(torch.cat([images * (1 - masks), masks], dim=1))
        torch.nn.functional.l1_loss(output, images).backward()
        optimiser.step()

    step()  # warm-up
    return statistics.median(seconds_per_call(step, budget_s=0, min_calls=1) for _ in range(steps))


def main() -> None:
    image = sample_slice()
    rng = np.random.RandomState(0)
    segments = PseudoSegments(compute_pseudo_segments(image))
    region = np.argwhere(organ_bounded_region(image))
    lesion = np.zeros(SIZE, np.int64)
    lesion[120:135, 90:110] = 1
    with tempfile.TemporaryDirectory() as bank_dir:
        write_mask_bank(bank_dir, count=20)
        bank = MaskBankd("image", bank_dir, masked_key=None)
        sliding, _ = sliding_circle_masks(image > 0.1)
        generators: dict[str, tuple[Callable[[], object], int]] = {
            "square 64x64": (lambda: square_mask(SIZE, 64, rng), 1),
            "large square 20-60%": (lambda: large_square_mask(SIZE, rng), 1),
            "multi-square 16x16, 6.25%": (lambda: multi_square_mask(SIZE, rng), 1),
            "irregular 25-30%": (lambda: irregular_mask(SIZE, rng), 1),
            "free-form strokes": (lambda: free_form_mask(SIZE, rng), 1),
            "mask bank draw (transform)": (lambda: bank({"image": image[None]}), 1),
            "pseudo-segment, OPS, cached": (lambda: sample_pseudo_segment_mask(SIZE, segments, rng), 1),
            "pseudo-segment, IBR square, cached": (
                lambda: sample_pseudo_segment_mask(
                    SIZE, segments, rng, position="ibr", shape="square", region_coordinates=region
                ),
                1,
            ),
            f"sliding circles r=27 s=15 ({len(sliding)} per call)": (
                lambda: sliding_circle_masks(image > 0.1),
                len(sliding),
            ),
            "lesion mask, dilation 2": (lambda: lesion_mask(lesion, dilation=2), 1),
        }
        rows = [(name, count / seconds_per_call(function)) for name, (function, count) in generators.items()]

    segmentation_s = seconds_per_call(lambda: compute_pseudo_segments(image), min_calls=5)
    region_s = seconds_per_call(lambda: organ_bounded_region(image), min_calls=5)
    transform = PseudoSegmentMaskd("image")
    transform.set_random_state(0)
    data = {"image": torch.from_numpy(image[None])}
    transform(data)  # fills the cache
    sampler_s = seconds_per_call(lambda: transform(data))
    step_s = training_step_seconds()
    ratio = BATCH * sampler_s / step_s

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, image {SIZE[0]}x{SIZE[1]}\n")
    print("| generator (256x256) | masks / second |")
    print("|---|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} |")
    print("\n| cost | milliseconds |")
    print("|---|---:|")
    print(
        f"| one pseudo-segment computation (Felzenszwalb + merge, {segments.count} segments) | {segmentation_s * 1e3:.1f} |"
    )
    print(f"| one organ bounded region (IBR) computation | {region_s * 1e3:.1f} |")
    print(f"| PseudoSegmentMaskd call, cache hit (hash + sample + masked image) | {sampler_s * 1e3:.2f} |")
    print(f"| one training step, UNet 16-128, batch {BATCH}, L1 + Adam, CPU | {step_s * 1e3:.0f} |")
    print(f"\nsampler for a batch of {BATCH} / training step = {ratio:.2%} (target < 5%)")
    uncached = BATCH * (segmentation_s + sampler_s) / step_s
    print(f"without the cache (segmenting every image every step) it would be {uncached:.0%}")


if __name__ == "__main__":
    main()
