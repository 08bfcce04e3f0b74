"""Autoencoder anomaly-detection baselines (Baur et al.'s comparative study): dense AE and VAE.

Both are MONAI's ``VarAutoEncoder`` (convolutional encoder, dense bottleneck, convolutional decoder, sigmoid
output), trained on the same healthy slices as the inpainting networks, at 128x128 as in Baur et al. (slices
are downsampled by area averaging, reconstructions upsampled bilinearly back). The dense AE uses the latent mean
without sampling and an L1 loss; the VAE samples the latent and adds the KL term (``beta`` x KL, summed over
latent units, per image; L1 summed over pixels, per image). Residual scoring is the bundle's: |x - x_hat| inside
the organ of interest (brain mask), stacked per subject, thresholded as for autoinpainting.

Run from the bundle folder (uses train.json + quick.json for data and preprocessing, evaluate.json's
segmentation datalist and thresholds)::

    python -m scripts.baselines --kind ae --output_dir /tmp/ae --epochs 30
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.data import CacheDataset, DataLoader
from monai.networks.nets import VarAutoEncoder
from monai.transforms import Compose
from monai.utils import set_determinism

from .evaluation import load_tumour_cases, segment_subjects, write_report

BASELINES = ("ae", "vae")


class DenseAutoEncoder(VarAutoEncoder):
    """Dense-bottleneck autoencoder: MONAI's ``VarAutoEncoder`` with the latent mean used deterministically."""

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu


def build_baseline(kind: str, size: int = 128, latent_size: int = 128, channels=(16, 32, 64, 128, 128)):
    """A dense AE (``"ae"``) or VAE (``"vae"``) on (1, size, size) images with sigmoid output."""
    if kind not in BASELINES:
        raise ValueError(f"kind must be one of {BASELINES}, got {kind!r}.")
    cls = DenseAutoEncoder if kind == "ae" else VarAutoEncoder
    return cls(
        spatial_dims=2,
        in_shape=(1, size, size),
        out_channels=1,
        latent_size=latent_size,
        channels=channels,
        strides=(2,) * len(channels),
        use_sigmoid=True,
    )


def baseline_loss(kind: str, outputs, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-image L1 (summed over pixels), plus beta x KL for the VAE; averaged over the batch."""
    recon, mu, logvar, _ = outputs
    loss = (recon - target).abs().flatten(1).sum(1)
    if kind == "vae":
        loss = loss + beta * (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1))
    return loss.mean()


def reconstruct(network, image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) image -> reconstruction at (C, H, W) via the network at ``size`` x ``size``."""
    small = F.interpolate(image[None], size=(size, size), mode="area")
    mu, _ = network.encode_forward(small)  # the latent mean: MONAI's eval-mode sampling adds the std
    recon = network.decode_forward(mu, True)
    return F.interpolate(recon, size=image.shape[1:], mode="bilinear", align_corners=False)[0]


def train_baseline(kind, network, datalist, load, epochs, lr, batch_size, size, beta, device) -> list[float]:
    dataset = CacheDataset(datalist, Compose(list(load)), cache_rate=1.0, num_workers=0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        network.train()
        total = 0.0
        for batch in loader:
            image = F.interpolate(batch["image"].as_tensor().to(device), size=(size, size), mode="area")
            loss = baseline_loss(kind, network(image), image, beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * image.shape[0]
        history.append(total / len(dataset))
        logging.info("%s epoch %d loss %.2f", kind, epoch + 1, history[-1])
    return history


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description="Train and score a dense AE / VAE anomaly-detection baseline."
    )
    parser.add_argument("--kind", choices=BASELINES, required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--latent_size", type=int, default=128)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle_root", default=".")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    set_determinism(args.seed)
    configs = Path(args.bundle_root) / "configs"
    config = ConfigParser()
    config.read_config([str(configs / n) for n in ("train.json", "quick.json", "evaluate.json")])
    config.update({"bundle_root": args.bundle_root, "output_dir": args.output_dir})
    device = torch.device("cpu")
    network = build_baseline(args.kind, args.size, args.latent_size).to(device)
    load = config.get_parsed_content("load")
    history = train_baseline(
        args.kind,
        network,
        config.get_parsed_content("train#datalist"),
        load,
        args.epochs,
        args.lr,
        args.batch_size,
        args.size,
        args.beta,
        device,
    )
    network.eval()
    name = {"ae": "DenseAE", "vae": "VAE"}[args.kind]
    subjects = load_tumour_cases(config.get_parsed_content("segmentation_datalist"), load)

    def predict(image, ooi):
        recon = reconstruct(network, image.to(device), args.size)
        return recon * ooi + image * (1 - ooi), None

    with torch.no_grad():
        result = segment_subjects(
            predict,
            subjects,
            config.get_parsed_content("threshold"),
            config.get_parsed_content("best_threshold_range"),
        )
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), Path(args.output_dir) / f"{args.kind}.pt")
    summary = write_report(
        result,
        subjects,
        args.output_dir,
        name,
        config.get_parsed_content("threshold"),
        {"training_loss": history, "arguments": vars(args)},
    )
    print(json.dumps(summary["mean"], indent=2))
    return summary


if __name__ == "__main__":
    main()
