"""VGG16/VGG19 feature stacks that load torchvision's ImageNet checkpoints without torchvision.

Perceptual, style and LPIPS terms of the inpainting papers use ImageNet-trained VGG features. torchvision
does not import in this project's environment and the machines running it have no internet, so the
feature stacks are rebuilt here in plain torch with the *same* ``state_dict`` keys as torchvision's
``vgg16``/``vgg19`` (``features.N.weight`` / ``features.N.bias``). A user's ``vgg16-397923af.pth`` or
``vgg19-dcbb9e9d.pth`` therefore loads unchanged (its ``classifier.*`` entries are ignored).

Pretrained-weights policy (shared by every pretrained component of ``common``):

1. ``weights_path`` from the config, if given (it must exist);
2. otherwise the torch hub cache ``torch.hub.get_dir()/checkpoints/<file name>``, where torchvision
   itself would have put the download;
3. otherwise a :class:`FileNotFoundError` names the file, the places searched and how to get it,
   unless ``pretrained=False`` was set explicitly: then a warning is logged and the weights are a
   seeded random (Kaiming) initialisation, so runs stay reproducible but the features are not ImageNet's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VGG_CHECKPOINTS",
    "LPIPS_CHECKPOINT",
    "VGGFeatures",
    "LPIPSNetwork",
    "vgg_layer_names",
    "resolve_pretrained_file",
]

logger = logging.getLogger(__name__)

_M = "M"
_VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, _M, 128, 128, _M, 256, 256, 256, _M, 512, 512, 512, _M, 512, 512, 512, _M],
    "vgg19": [
        64,
        64,
        _M,
        128,
        128,
        _M,
        256,
        256,
        256,
        256,
        _M,
        512,
        512,
        512,
        512,
        _M,
        512,
        512,
        512,
        512,
        _M,
    ],
}

#: torchvision's ImageNet checkpoint per architecture: (file name, download URL).
VGG_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "vgg16": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "vgg19": ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
}

#: the linear calibration layers of LPIPS v0.1 (VGG), shipped inside the ``lpips`` pip package.
LPIPS_CHECKPOINT = (
    "lpips_vgg_v0.1.pth",
    "the file lpips/weights/v0.1/vgg.pth of the `lpips` pip package (`pip download lpips`, unzip the wheel), "
    "or https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layer_names(arch: str = "vgg16") -> list[str]:
    """Names of the layers of ``features`` in order: ``conv1_1, relu1_1, ..., pool1, conv2_1, ...``.

    The position in the list is torchvision's index N in ``features.N``.
    """
    if arch not in _VGG_CONFIGS:
        raise ValueError(f"arch must be one of {sorted(_VGG_CONFIGS)}, got {arch!r}.")
    names, block, conv = [], 1, 1
    for item in _VGG_CONFIGS[arch]:
        if item == _M:
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def resolve_pretrained_file(file_name: str, weights_path: str | None, how_to_get: str) -> str:
    """Return the path of a pretrained file following the policy of this module, or raise.

    Args:
        file_name: the expected file name (e.g. ``vgg16-397923af.pth``).
        weights_path: an explicit path from the config, or None to look in the torch hub cache.
        how_to_get: where the file can be downloaded from (a URL or instructions), quoted in the error.

    Raises:
        FileNotFoundError: naming the file, the places searched and how to get it.
    """
    hub_path = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
    candidates = [weights_path] if weights_path is not None else [hub_path]
    for path in candidates:
        if os.path.isfile(path):
            return path
    searched = "\n".join(f"  - {p}" for p in candidates)
    raise FileNotFoundError(
        f"pretrained weights {file_name!r} not found. Searched:\n{searched}\n"
        f"No download is attempted (no internet here). On a machine with internet, download {how_to_get} "
        f"and copy it to {hub_path} (the torch hub cache, `torch.hub.get_dir()/checkpoints/`) or to any path "
        f"given as `weights_path` in the config. To run without pretrained features (results will not match "
        f"the papers), set `pretrained: false` explicitly."
    )


def _seeded_kaiming_init(module: nn.Module, seed: int) -> None:
    """torchvision's VGG init (Kaiming normal, fan_out, zero bias) drawn from a private seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class VGGFeatures(nn.Module):
    """Frozen VGG feature stack returning the activations of chosen layers.

    Input (B, C, H, W) with intensities in ``input_range`` is mapped to ImageNet's convention: rescaled to
    [0, 1], made 3-channel and normalised with ImageNet's mean/std. ``channel_mode`` says how:

    - ``"per_channel"`` (default, for grey and multi-modal medical images): every channel is treated as a
      separate grey image (replicated to RGB), i.e. the batch becomes (B*C, 3, H, W) and the returned
      features have batch size B*C;
    - ``"rgb"``: the input must have exactly 3 channels and is used as RGB.

    The weights never train (``requires_grad=False``, always in eval mode); gradients still flow to the input.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        layers: layer names (see :func:`vgg_layer_names`, e.g. ``"pool1"``, ``"relu2_2"``) or torchvision
            indices into ``features``; default pool1-pool3, the partial-convolution paper's choice.
        weights_path: explicit checkpoint path; None looks in ``torch.hub.get_dir()/checkpoints/``.
        pretrained: must be set to False explicitly to run with seeded random weights when the file is absent.
        input_range: (min, max) intensity of the input, e.g. (-1, 1) for tanh generators.
        channel_mode: ``"per_channel"`` or ``"rgb"``.
        seed: seed of the random initialisation used when ``pretrained=False``.
    """

    def __init__(
        self,
        arch: str = "vgg16",
        layers: Sequence[str | int] = ("pool1", "pool2", "pool3"),
        weights_path: str | None = None,
        pretrained: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        channel_mode: str = "per_channel",
        seed: int = 0,
    ) -> None:
        super().__init__()
        names = vgg_layer_names(arch)
        self.layer_indices = [self._layer_index(layer, names) for layer in layers]
        if not self.layer_indices:
            raise ValueError("layers must name at least one VGG layer.")
        if channel_mode not in ("per_channel", "rgb"):
            raise ValueError(f"channel_mode must be 'per_channel' or 'rgb', got {channel_mode!r}.")
        if len(input_range) != 2 or input_range[1] <= input_range[0]:
            raise ValueError(f"input_range must be (min, max) with max > min, got {input_range!r}.")
        self.arch = arch
        self.channel_mode = channel_mode
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.features = self._build(arch)
        self._load_or_init(weights_path, pretrained, seed)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _layer_index(layer: str | int, names: list[str]) -> int:
        if isinstance(layer, int) and 0 <= layer < len(names):
            return layer
        if isinstance(layer, str) and layer in names:
            return names.index(layer)
        raise ValueError(f"unknown VGG layer {layer!r}; expected an index < {len(names)} or one of {names}.")

    @staticmethod
    def _build(arch: str) -> nn.Sequential:
        layers: list[nn.Module] = []
        in_channels = 3
        for item in _VGG_CONFIGS[arch]:
            if item == _M:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [
                    nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1),
                    nn.ReLU(inplace=False),
                ]
                in_channels = int(item)
        return nn.Sequential(*layers)

    def _load_or_init(self, weights_path: str | None, pretrained: bool, seed: int) -> None:
        file_name, url = VGG_CHECKPOINTS[self.arch]
        if not pretrained:
            logger.warning(
                "VGGFeatures(%s): pretrained=False, using seeded random weights (seed=%d); perceptual/style "
                "losses will not match the papers.",
                self.arch,
                seed,
            )
            _seeded_kaiming_init(self.features, seed)
            return
        path = resolve_pretrained_file(file_name, weights_path, f"{url} (file {file_name})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(
                f"{path} is not a torchvision {self.arch} checkpoint: missing keys {missing[:4]}"
                f"{' ...' if len(missing) > 4 else ''} (expected torchvision's 'features.N.weight' layout)."
            )
        wrong = [k for k in own if state[k].shape != own[k].shape]
        if wrong:
            raise ValueError(
                f"{path}: shape mismatch for {wrong[:4]} (e.g. {wrong[0]}: file {tuple(state[wrong[0]].shape)}, "
                f"expected {tuple(own[wrong[0]].shape)}); is it a {self.arch} checkpoint?"
            )
        self.load_state_dict({k: state[k] for k in own})
        logger.info("VGGFeatures(%s): loaded ImageNet weights from %s", self.arch, path)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode: the feature extractor is frozen."""
        return super().train(False)

    def to_imagenet(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) input to ImageNet-normalised 3-channel images (see class docstring)."""
        if x.ndim != 4:
            raise ValueError(f"VGG features need 2D images (B, C, H, W), got shape {tuple(x.shape)}.")
        lo, hi = self.input_range
        x = (x - lo) / (hi - lo)
        if self.channel_mode == "rgb":
            if x.shape[1] != 3:
                raise ValueError(f"channel_mode='rgb' needs 3 channels, got {x.shape[1]}.")
        else:
            x = x.reshape(-1, 1, *x.shape[2:]).expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of ``layers`` (in the order given) for input ``x``."""
        h = self.to_imagenet(x)
        wanted = {index: position for position, index in enumerate(self.layer_indices)}
        out: list[torch.Tensor | None] = [None] * len(self.layer_indices)
        for index, layer in enumerate(self.features[: max(self.layer_indices) + 1]):
            h = layer(h)
            if index in wanted:
                out[wanted[index]] = h
        return out  # type: ignore[return-value]


class LPIPSNetwork(nn.Module):
    """LPIPS distance (Zhang et al. 2018, v0.1, VGG backbone) built on :class:`VGGFeatures`.

    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 ) over relu1_2 ... relu5_3, with the
    unit-normalisation along channels and non-negative per-channel weights w_l of the released linear
    layers. LPIPS's own input scaling (shift/scale on [-1, 1]) is exactly ImageNet's mean/std on [0, 1],
    so :class:`VGGFeatures` with the right ``input_range`` reproduces it. Both files follow the module's
    pretrained policy: ``vgg16-397923af.pth`` for the backbone and ``lpips_vgg_v0.1.pth`` (keys
    ``lin0.model.1.weight`` ... ``lin4.model.1.weight``, as in the ``lpips`` package) for the linear layers.

    Returns one distance per image (per channel image with ``channel_mode='per_channel'``, averaged over
    channels), shape (B,).
    """

    LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(
        self,
        vgg_weights_path: str | None = None,
        lin_weights_path: str | None = None,
        pretrained: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        channel_mode: str = "per_channel",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = VGGFeatures(
            "vgg16", self.LAYERS, vgg_weights_path, pretrained, input_range, channel_mode, seed
        )
        self.lins = nn.ParameterList(
            [nn.Parameter(torch.ones(1, c, 1, 1), requires_grad=False) for c in self.WIDTHS]
        )
        if pretrained:
            path = resolve_pretrained_file(LPIPS_CHECKPOINT[0], lin_weights_path, LPIPS_CHECKPOINT[1])
            state = torch.load(path, map_location="cpu", weights_only=True)
            for i, (lin, width) in enumerate(zip(self.lins, self.WIDTHS)):
                key = f"lin{i}.model.1.weight"
                if key not in state or tuple(state[key].shape) != (1, width, 1, 1):
                    raise ValueError(
                        f"{path} is not an LPIPS v0.1 VGG file: needs {key} of shape (1, {width}, 1, 1)."
                    )
                lin.data.copy_(state[key])
        else:
            logger.warning(
                "LPIPSNetwork: pretrained=False, using uniform linear weights; values are not LPIPS."
            )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(
                f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        feats = self.backbone(torch.cat([x, y], dim=0))
        total = 0.0
        for feat, lin in zip(feats, self.lins):
            unit = feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fx, fy = unit.chunk(2, dim=0)
            total = total + F.conv2d((fx - fy) ** 2, lin).mean(dim=(1, 2, 3))
        per_image = (
            total.reshape(x.shape[0], -1) if self.backbone.channel_mode == "per_channel" else total[:, None]
        )
        return per_image.mean(dim=1)
