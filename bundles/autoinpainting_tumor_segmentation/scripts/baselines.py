"""Autoencoder anomaly-detection baselines of the paper's Table 6 (Baur et al.'s comparative study), one module.

Every kind is a small MONAI network trained on the same healthy slices as the inpainting networks, at 128x128
as in Baur et al. (slices downsampled by area averaging, reconstructions upsampled bilinearly back), and scored
as autoinpainting is: |x - x_hat| inside the organ of interest (brain mask), stacked per subject, thresholded.

- ``ae`` (paper: dAE, *dense* AE): MONAI ``VarAutoEncoder`` with the latent mean used deterministically.
- ``sae`` (sAE): MONAI ``AutoEncoder``, convolutional 16x16 bottleneck, no dense layer, sigmoid output.
- ``ceae`` (ceAE): the dense AE fed slices with ``--boxes`` random rectangles erased (set to 0, the background),
  trained to reconstruct the full clean slice.
- ``vae`` (VAE): ``VarAutoEncoder``, sampled latent, ``beta`` x KL to N(0, I).
- ``cevae`` (ceVAE, Zimmerer et al.): the VAE loss on the clean slice plus ``ce_weight`` x the reconstruction loss
  of the clean slice from the box-erased one (same encoder/decoder).
- ``gmvae`` (GMVAE): the VAE with a Gaussian-mixture prior of ``components`` learned means/log-variances/weights;
  the KL is the one-sample estimate log q(z|x) - log p(z).
- ``fanogan`` (f-AnoGAN, Schlegl et al.): WGAN-GP generator/critic (MONAI ``Generator``/``Discriminator``) for
  ``epochs``, then an izif encoder (MONAI ``Regressor``) for ``encoder_epochs``: image -> z -> G(z), MSE plus
  ``kappa`` x MSE of the critic's features.
- ``aae`` (AAE, Makhzani et al.): the dense AE whose latent is matched to N(0, I) by a latent discriminator
  (MONAI ``FullyConnectedNet``), ``adv_weight`` x its non-saturating generator loss.
- ``dae`` (not a Table 6 row): *denoising* dense AE, input + N(0, ``noise_std``^2) noise clipped to [0, 1].

Reconstruction losses are L1 summed over pixels per image (KL summed over latent units), batch-averaged.
Defaults from the literature: 128x128 (Baur et al.); WGAN-GP lambda 10, 5 critic steps, Adam(1e-4, betas 0/0.9)
(Gulrajani et al.); izif kappa 1 (Schlegl et al.). Ours (CPU scale): widths, latent 128, lr 1e-3, batch 8,
1-3 boxes of 1/8-1/4 of the side, ce_weight 1, 6 mixture components, adv_weight 1, noise_std 0.1.
Deterministic: ``set_determinism(seed)``; corruptions draw from their own generator seeded with ``seed``.

Run from the bundle folder (train.json + quick.json for data and preprocessing, evaluate.json's segmentation
datalist and thresholds)::

    python -m scripts.baselines --kind ceae --output_dir /tmp/ceae --epochs 30
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.data import CacheDataset, DataLoader
from monai.networks.nets import (
    AutoEncoder,
    Discriminator,
    FullyConnectedNet,
    Generator,
    Regressor,
    VarAutoEncoder,
)
from monai.transforms import Compose
from monai.utils import set_determinism
from torch import nn

from .evaluation import load_tumour_cases, segment_subjects, write_report

#: kind -> report name (``segmentation_<name>.json``)
REPORT_NAMES = {
    "ae": "DenseAE",
    "sae": "SpatialAE",
    "ceae": "ceAE",
    "vae": "VAE",
    "cevae": "ceVAE",
    "gmvae": "GMVAE",
    "fanogan": "fAnoGAN",
    "aae": "AAE",
    "dae": "DenoisingAE",
}
BASELINES = tuple(REPORT_NAMES)
CHANNELS = (16, 32, 64, 128, 128)


def add_noise(image: torch.Tensor, std: float, rng: torch.Generator) -> torch.Tensor:
    """The denoising AE's corruption: image + N(0, std^2) noise, clipped to the intensity range [0, 1]."""
    noise = torch.randn(image.shape, generator=rng).to(image.device)
    return (image + std * noise).clamp(0.0, 1.0)


def random_boxes(count: int, size: int, boxes: tuple[int, int], side: tuple[float, float], rng) -> list[list]:
    """Per image, ``boxes[0]``..``boxes[1]`` rectangles ``(y, x, height, width)``, sides in ``side`` x size."""
    lo, hi = max(1, int(side[0] * size)), max(1, int(side[1] * size))

    def draw(low, high):
        return int(torch.randint(low, high + 1, (1,), generator=rng))

    result = []
    for _ in range(count):
        rects = []
        for _ in range(draw(*boxes)):
            height, width = draw(lo, hi), draw(lo, hi)
            rects.append((draw(0, size - height), draw(0, size - width), height, width))
        result.append(rects)
    return result


def box_mask(shape, boxes: list[list]) -> torch.Tensor:
    """(N, 1, H, W) boolean mask, True inside each image's rectangles ``(y, x, height, width)``."""
    mask = torch.zeros(shape[0], 1, *shape[2:], dtype=torch.bool)
    for i, rects in enumerate(boxes):
        for y, x, height, width in rects:
            mask[i, :, y : y + height, x : x + width] = True
    return mask


def erase(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The context-encoder corruption: pixels under ``mask`` set to 0 (the background)."""
    return image.masked_fill(mask.to(image.device), 0.0)


def l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image L1 summed over pixels, batch-averaged."""
    return (recon - target).abs().flatten(1).sum(1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (logvar + (z - mean).pow(2) / logvar.exp() + math.log(2 * math.pi)).sum(-1)


def mixture_kl(z, mu, logvar, means, logvars, logits) -> torch.Tensor:
    """One-sample KL(q(z|x) || sum_k pi_k N(means_k, exp(logvars_k))) per image: log q(z|x) - log p(z)."""
    log_q = log_normal(z, mu, logvar)
    log_p = torch.logsumexp(F.log_softmax(logits, 0) + log_normal(z[:, None], means, logvars), dim=1)
    return log_q - log_p


def gradient_penalty(
    critic, real: torch.Tensor, fake: torch.Tensor, rng, weight: float = 10.0
) -> torch.Tensor:
    """WGAN-GP: weight x mean over images of (||grad critic(x_hat)||_2 - 1)^2, x_hat on random real-fake lines."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=rng).to(real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return weight * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def _step(optimiser, loss: torch.Tensor) -> float:
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


class _Baseline(nn.Module):
    """Hooks of the shared loop: ``loss`` (one optimiser) or ``phases`` (several), and ``reconstruction``."""

    def __init__(self, seed: int = 0, **hparams):
        super().__init__()
        self.hparams = hparams
        self.rng = torch.Generator().manual_seed(seed)

    def reconstruction(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def phases(self, epochs: int, lr: float) -> list:
        """[(name, epochs, step(image) -> loss value)]: one Adam phase on :meth:`loss` unless overridden."""
        optimiser = torch.optim.Adam(self.parameters(), lr=lr)
        return [("train", epochs, lambda image: _step(optimiser, self.loss(image)))]

    def corrupt(self, image: torch.Tensor) -> torch.Tensor:
        """The training input: noise for ``noise_std`` > 0, erased boxes for ``boxes``, else the image."""
        if self.hparams.get("noise_std"):
            return add_noise(image, self.hparams["noise_std"], self.rng)
        if self.hparams.get("boxes"):
            rects = random_boxes(
                image.shape[0], image.shape[-1], self.hparams["boxes"], self.hparams["side"], self.rng
            )
            return erase(image, box_mask(image.shape, rects))
        return image


class _LatentVAE(_Baseline):
    """MONAI ``VarAutoEncoder`` inside; reconstruction decodes the latent mean."""

    def __init__(self, size, latent_size, sample: bool, **hparams):
        super().__init__(**hparams)
        self.sample = sample
        self.net = VarAutoEncoder(
            spatial_dims=2,
            in_shape=(1, size, size),
            out_channels=1,
            latent_size=latent_size,
            channels=CHANNELS,
            strides=(2,) * len(CHANNELS),
            use_sigmoid=True,
        )

    def forward(self, image):
        """(reconstruction, mu, logvar, z); z = mu for the deterministic AEs."""
        mu, logvar = self.net.encode_forward(image)
        z = self.net.reparameterize(mu, logvar) if self.sample and self.training else mu
        return self.net.decode_forward(z, True), mu, logvar, z

    def reconstruction(self, image):
        return self.net.decode_forward(self.net.encode_forward(image)[0], True)

    def kl(self, mu, logvar, z) -> torch.Tensor:
        return gaussian_kl(mu, logvar)

    def loss(self, image):
        """AE kinds: L1(recon(corrupt(x)), x). VAE kinds: L1 + beta KL on x (+ ce_weight x L1 from corrupt(x))."""
        if not self.sample:
            return l1(self(self.corrupt(image))[0], image)
        recon, mu, logvar, z = self(image)
        loss = l1(recon, image) + self.hparams["beta"] * self.kl(mu, logvar, z).mean()
        if self.hparams.get("boxes"):
            loss = loss + self.hparams["ce_weight"] * l1(self(self.corrupt(image))[0], image)
        return loss


class GaussianMixtureVAE(_LatentVAE):
    """VAE with a learned Gaussian-mixture prior (means, log-variances, weight logits of ``components``)."""

    def __init__(self, size, latent_size, components: int, **hparams):
        super().__init__(size, latent_size, True, **hparams)
        self.means = nn.Parameter(torch.randn(components, latent_size, generator=self.rng))
        self.logvars = nn.Parameter(torch.zeros(components, latent_size))
        self.logits = nn.Parameter(torch.zeros(components))

    def kl(self, mu, logvar, z):
        return mixture_kl(z, mu, logvar, self.means, self.logvars, self.logits)


class AdversarialAE(_LatentVAE):
    """Dense AE + latent discriminator against N(0, I) samples."""

    def __init__(self, size, latent_size, **hparams):
        super().__init__(size, latent_size, False, **hparams)
        self.discriminator = FullyConnectedNet(latent_size, 1, (64, 64))

    def losses(self, image):
        """(autoencoder loss, discriminator loss): L1 + adv_weight x BCE(D(z), real); BCE(prior, real) + (z, fake)."""
        recon, _, _, z = self(image)
        real = torch.ones(image.shape[0], 1, device=image.device)
        fooled = F.binary_cross_entropy_with_logits(self.discriminator(z), real)
        prior = torch.randn(z.shape, generator=self.rng).to(z.device)
        critic = F.binary_cross_entropy_with_logits(
            self.discriminator(prior), real
        ) + F.binary_cross_entropy_with_logits(self.discriminator(z.detach()), 1 - real)
        return l1(recon, image) + self.hparams["adv_weight"] * fooled, critic

    def phases(self, epochs, lr):
        autoencoder = torch.optim.Adam(self.net.parameters(), lr=lr)
        discriminator = torch.optim.Adam(self.discriminator.parameters(), lr=lr)

        def step(image):
            ae_loss, d_loss = self.losses(image)
            autoencoder.zero_grad()
            ae_loss.backward(inputs=list(self.net.parameters()))
            autoencoder.step()
            _step(discriminator, d_loss)
            return ae_loss.item()

        return [("train", epochs, step)]


class SpatialAE(_Baseline):
    """MONAI ``AutoEncoder`` (convolutions only) with a sigmoid output."""

    def __init__(self, size, **hparams):
        super().__init__(**hparams)
        self.net = AutoEncoder(2, 1, 1, channels=(16, 32, 64, 16), strides=(2, 2, 2, 1))

    def forward(self, image):
        return torch.sigmoid(self.net(image))

    reconstruction = forward

    def loss(self, image):
        return l1(self(image), image)


class FAnoGAN(_Baseline):
    """WGAN-GP generator and critic, then the izif encoder (generator and critic frozen)."""

    def __init__(self, size, latent_size, **hparams):
        super().__init__(**hparams)
        self.latent_size = latent_size
        start = size // 2 ** len(CHANNELS)
        self.generator = Generator(
            (latent_size,), (CHANNELS[-1], start, start), (*CHANNELS[-2::-1], 1), (2,) * 5, num_res_units=0
        )
        self.critic = Discriminator(
            (1, size, size), CHANNELS, (2,) * 5, num_res_units=0, dropout=None, last_act=None
        )
        self.encoder = Regressor((1, size, size), (latent_size,), CHANNELS, (2,) * 5, num_res_units=0)

    def generate(self, z):
        return torch.sigmoid(self.generator(z))

    def reconstruction(self, image):
        return self.generate(self.encoder(image))

    forward = reconstruction

    def izif_loss(self, image):
        """MSE(x, G(E(x))) + kappa x MSE(f(x), f(G(E(x)))), f = the critic's last convolutional features."""
        recon = self.reconstruction(image)
        features = F.mse_loss(self.critic.net(recon), self.critic.net(image))
        return F.mse_loss(recon, image) + self.hparams["kappa"] * features

    def critic_loss(self, image):
        z = torch.randn(image.shape[0], self.latent_size, generator=self.rng).to(image.device)
        fake = self.generate(z).detach()
        penalty = gradient_penalty(self.critic, image, fake, self.rng, self.hparams["gp_weight"])
        return self.critic(fake).mean() - self.critic(image).mean() + penalty

    def phases(self, epochs, lr):
        betas = (0.0, 0.9)
        gan_lr = self.hparams["gan_lr"]
        gen_opt = torch.optim.Adam(self.generator.parameters(), lr=gan_lr, betas=betas)
        critic_opt = torch.optim.Adam(self.critic.parameters(), lr=gan_lr, betas=betas)
        encoder_opt = torch.optim.Adam(self.encoder.parameters(), lr=lr)
        counter = [0]

        def gan_step(image):
            loss = _step(critic_opt, self.critic_loss(image))
            counter[0] += 1
            if counter[0] % self.hparams["n_critic"] == 0:
                z = torch.randn(image.shape[0], self.latent_size, generator=self.rng).to(image.device)
                gen_opt.zero_grad()
                (-self.critic(self.generate(z)).mean()).backward(inputs=list(self.generator.parameters()))
                gen_opt.step()
            return loss

        def encoder_step(image):
            encoder_opt.zero_grad()
            loss = self.izif_loss(image)
            loss.backward(inputs=list(self.encoder.parameters()))
            encoder_opt.step()
            return loss.item()

        return [("wgan-gp", epochs, gan_step), ("izif", self.hparams["encoder_epochs"], encoder_step)]


def build_baseline(
    kind: str,
    size: int = 128,
    latent_size: int = 128,
    seed: int = 0,
    beta: float = 1.0,
    noise_std: float = 0.1,
    boxes: tuple[int, int] = (1, 3),
    side: tuple[float, float] = (0.125, 0.25),
    ce_weight: float = 1.0,
    components: int = 6,
    adv_weight: float = 1.0,
    gp_weight: float = 10.0,
    n_critic: int = 5,
    kappa: float = 1.0,
    gan_lr: float = 1e-4,
    encoder_epochs: int = 1,
) -> _Baseline:
    """The ``kind`` baseline on (1, size, size) images, reconstructions in [0, 1] (hyperparameters: module doc)."""
    if kind not in BASELINES:
        raise ValueError(f"kind must be one of {BASELINES}, got {kind!r}.")
    common = {"seed": seed}
    box_args = {"boxes": boxes, "side": side}
    if kind == "sae":
        return SpatialAE(size, **common)
    if kind == "fanogan":
        return FAnoGAN(
            size, latent_size, gp_weight=gp_weight, n_critic=n_critic, kappa=kappa, gan_lr=gan_lr,
            encoder_epochs=encoder_epochs, **common,
        )  # fmt: skip
    if kind == "aae":
        return AdversarialAE(size, latent_size, adv_weight=adv_weight, **common)
    if kind == "gmvae":
        return GaussianMixtureVAE(size, latent_size, components, beta=beta, **common)
    extra = {"ae": {}, "dae": {"noise_std": noise_std}, "ceae": box_args}.get(kind)
    if extra is not None:
        return _LatentVAE(size, latent_size, False, **extra, **common)
    extra = box_args | {"ce_weight": ce_weight} if kind == "cevae" else {}
    return _LatentVAE(size, latent_size, True, beta=beta, **extra, **common)


def reconstruct(network: _Baseline, image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) image -> reconstruction at (C, H, W) via the network at ``size`` x ``size``."""
    small = F.interpolate(image[None], size=(size, size), mode="area")
    recon = network.reconstruction(small)
    return F.interpolate(recon, size=image.shape[1:], mode="bilinear", align_corners=False)[0]


def train_baseline(network: _Baseline, datalist, load, epochs, lr, batch_size, size, device) -> list[float]:
    """The shared loop over the kind's phases; returns the mean loss per epoch."""
    dataset = CacheDataset(datalist, Compose(list(load)), cache_rate=1.0, num_workers=0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    history = []
    for phase, phase_epochs, step in network.phases(epochs, lr):
        for epoch in range(phase_epochs):
            network.train()
            total = 0.0
            for batch in loader:
                image = F.interpolate(batch["image"].as_tensor().to(device), size=(size, size), mode="area")
                total += step(image) * image.shape[0]
            history.append(total / len(dataset))
            logging.info("%s epoch %d loss %.4f", phase, epoch + 1, history[-1])
    return history


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train and score an autoencoder anomaly-detection baseline.")
    parser.add_argument("--kind", choices=BASELINES, required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--epochs", type=int, default=30, help="training epochs (f-AnoGAN: the WGAN-GP stage)"
    )
    parser.add_argument(
        "--encoder_epochs", type=int, default=None, help="f-AnoGAN izif epochs; default --epochs"
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch (+1 izif), the first 6 tumour slices")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--latent_size", type=int, default=128)
    parser.add_argument("--beta", type=float, default=1.0, help="VAE kinds: KL weight")
    parser.add_argument(
        "--noise_std", type=float, default=0.1, help="dae: Gaussian noise sd (intensities 0-1)"
    )
    parser.add_argument(
        "--boxes", type=int, nargs=2, default=(1, 3), help="ceae/cevae: min, max boxes per image"
    )
    parser.add_argument("--side", type=float, nargs=2, default=(0.125, 0.25), help="box side range, x size")
    parser.add_argument(
        "--ce_weight", type=float, default=1.0, help="cevae: weight of the context-encoder term"
    )
    parser.add_argument("--components", type=int, default=6, help="gmvae: mixture components")
    parser.add_argument("--adv_weight", type=float, default=1.0, help="aae: latent adversarial weight")
    parser.add_argument("--gp_weight", type=float, default=10.0, help="fanogan: gradient-penalty lambda")
    parser.add_argument("--n_critic", type=int, default=5, help="fanogan: critic steps per generator step")
    parser.add_argument("--kappa", type=float, default=1.0, help="fanogan: izif critic-feature weight")
    parser.add_argument("--gan_lr", type=float, default=1e-4, help="fanogan: WGAN-GP Adam lr (betas 0, 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle_root", default=".")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.encoder_epochs = 1, 1
    args.encoder_epochs = args.epochs if args.encoder_epochs is None else args.encoder_epochs
    logging.basicConfig(level=logging.INFO)
    set_determinism(args.seed)
    configs = Path(args.bundle_root) / "configs"
    config = ConfigParser()
    config.read_config([str(configs / n) for n in ("train.json", "quick.json", "evaluate.json")])
    config.update({"bundle_root": args.bundle_root, "output_dir": args.output_dir})
    device = torch.device("cpu")
    hparams = (
        "latent_size",
        "seed",
        "beta",
        "noise_std",
        "boxes",
        "side",
        "ce_weight",
        "components",
        "adv_weight",
    )
    hparams += ("gp_weight", "n_critic", "kappa", "gan_lr", "encoder_epochs")
    network = build_baseline(args.kind, args.size, **{k: getattr(args, k) for k in hparams}).to(device)
    load = config.get_parsed_content("load")
    history = train_baseline(
        network,
        config.get_parsed_content("train#datalist"),
        load,
        args.epochs,
        args.lr,
        args.batch_size,
        args.size,
        device,
    )
    network.eval()
    name = REPORT_NAMES[args.kind]
    datalist = config.get_parsed_content("segmentation_datalist")
    subjects = load_tumour_cases(datalist[:6] if args.quick else datalist, load)

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
