"""Faster CPU inference of the object-removal pipeline with the same outputs (issue #20).

:func:`optimise_for_inference` returns an eval-only copy of an :class:`.networks.ObjectRemovalPipeline` with
spectral norm baked in: the edge generator's parametrised convs become plain convs holding the weights that the
eval forward computes (in eval mode spectral norm recomputes ``W / sigma`` from the stored vectors on every call,
a matrix-vector product and a weight copy per conv and image, for a constant result). The outputs are identical.

The profile of one 256x256 image at paper width (1 thread) is 80 % oneDNN convolutions already running near the
core's peak (the 48 3x3 convs on 256 channels at 64x64 of the three generators' residual blocks), so what is left
to remove is the rest (instance norm, padding, copies, the spectral-norm recomputation), and none of the segmenter's
norms is a foldable BatchNorm (BasicUNet: instance norm).
The copy also computes each generator's last layer (reflection pad + 7x7 conv, 64 -> 1 or 4 channels at full size,
a slow layer for oneDNN: ~6 % of the time) only over the mask's bounding box: the inpainter uses the generators'
outputs only inside the mask (``out * mask + known * (1 - mask)``) and nothing normalises after that layer, so the
values in the box are the full layer's and the output is unchanged. ``forward(x, details=True)``, which returns the
raw generator outputs, keeps the full layer.
:class:`FastInference` wraps the pipeline for ``inference.json``: it builds the copy on the first eval call
(after the checkpoint is loaded) and keeps it only if its output is within ``atol`` of the plain path's on that
input, else it runs the plain pipeline.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["FastInference", "bake_parametrizations", "optimise_for_inference"]


def _plain_copy(conv: nn.Module) -> nn.Module:
    """A plain conv / transposed conv with the (eval-mode) weights that a parametrised one computes."""
    cls = type(conv).__bases__[0]  # ParametrizedConv2d -> Conv2d
    options = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups,
               "bias": conv.bias is not None, "padding_mode": conv.padding_mode}  # fmt: skip
    if isinstance(conv, nn.ConvTranspose2d):
        options["output_padding"] = conv.output_padding
    plain = cls(conv.in_channels, conv.out_channels, conv.kernel_size, **options).to(conv.weight)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    return plain.eval()


def bake_parametrizations(module: nn.Module) -> nn.Module:
    """Replace every parametrised (spectral-norm) conv under ``module`` (in eval mode) by a plain one, in place.

    Not ``parametrize.remove_parametrizations``: on a deep copy it deletes the property from the class the copy
    shares with the original, which breaks the original."""
    for name, child in module.named_children():
        if parametrize.is_parametrized(child, "weight") and isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            setattr(module, name, _plain_copy(child))
        else:
            bake_parametrizations(child)
    return module


class _HoleOnlyHead(nn.Module):
    """A generator's last layer (reflection pad + stride-1 conv): where ``box`` (top, bottom, left, right) is set,
    computed only over those output rows and columns, zeros elsewhere; the full layer where it is ``None``."""

    def __init__(self, pad: nn.Module, conv: nn.Conv2d) -> None:
        super().__init__()
        self.pad, self.conv = pad, conv
        self.box: tuple[int, int, int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = self.pad(x)
        if self.box is None:
            return self.conv(padded)
        top, bottom, left, right = self.box
        out = x.new_zeros(x.shape[0], self.conv.out_channels, *x.shape[2:])
        if bottom > top:
            halo_y, halo_x = (k - 1 for k in self.conv.kernel_size)
            window = padded[:, :, top : bottom + halo_y, left : right + halo_x]
            out[:, :, top:bottom, left:right] = self.conv(window)
        return out


class _HoleOnlyHeads:
    """Forward pre-hooks that set the heads' box to the bounding box of the inpainter's mask (all images of the
    batch), or to ``None`` (full layer) for a pipeline call with ``details=True``."""

    def __init__(self, heads: list[_HoleOnlyHead]) -> None:
        self.heads, self.full = heads, False

    def on_pipeline(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.full = bool(args[1] if len(args) > 1 else kwargs.get("details", False))

    def on_inpainter(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        box = None
        if not self.full:
            hole = (args[1] if len(args) > 1 else kwargs["mask"]).detach().amax(dim=(0, 1)) != 0
            rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
            box = (0, 0, 0, 0)  # no hole: the outputs are not used
            if len(rows):
                box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        for head in self.heads:
            head.box = box


def _hole_only_heads(pipeline: nn.Module) -> nn.Module:
    """Make the last layer of each generator of ``pipeline.inpainter`` a :class:`_HoleOnlyHead`, in place."""
    heads = []
    for generator in (pipeline.inpainter.edge_net, pipeline.inpainter.segmap_net, pipeline.inpainter.image_net):
        *body, pad, conv = generator.decoder
        if not (isinstance(pad, nn.ReflectionPad2d) and isinstance(conv, nn.Conv2d)):
            continue
        kh, kw = conv.kernel_size  # the pad must keep the size: (left, right, top, bottom) = half the kernel
        same_size = kh % 2 == kw % 2 == 1 and pad.padding == (kw // 2, kw // 2, kh // 2, kh // 2)
        if same_size and conv.stride == conv.dilation == (1, 1):
            heads.append(_HoleOnlyHead(pad, conv))
            generator.decoder = nn.Sequential(*body, heads[-1])
    hooks = _HoleOnlyHeads(heads)
    pipeline.register_forward_pre_hook(hooks.on_pipeline, with_kwargs=True)
    pipeline.inpainter.register_forward_pre_hook(hooks.on_inpainter, with_kwargs=True)
    return pipeline


def optimise_for_inference(pipeline: nn.Module) -> nn.Module:
    """An eval-only copy of ``pipeline`` with spectral norm baked in and the generators' last layers computed only
    where the mask uses them (see the module docstring)."""
    return _hole_only_heads(bake_parametrizations(copy.deepcopy(pipeline).eval()))


class FastInference(nn.Module):
    """``pipeline`` for inference: in eval mode without autograd the :func:`optimise_for_inference` copy, built on
    the first such call and kept only if its output there is within ``atol`` of the plain path's (else, with a
    warning, the plain pipeline); in training mode or with autograd the pipeline itself. Call :meth:`reset` after
    changing the pipeline's weights."""

    def __init__(self, pipeline: nn.Module, atol: float = 1e-4) -> None:
        super().__init__()
        self.pipeline, self.atol = pipeline, float(atol)
        self._fast: list[nn.Module | None] = []  # a list: not a registered submodule (no duplicate state dict)

    def reset(self) -> None:
        self._fast.clear()

    def forward(self, x: torch.Tensor, *args, **kwargs):
        if self.training or torch.is_grad_enabled():
            return self.pipeline(x, *args, **kwargs)
        if not self._fast:
            fast = optimise_for_inference(self.pipeline)
            plain, out = self.pipeline(x), fast(x)
            difference = float((plain - out).abs().max())
            if difference > self.atol:
                warnings.warn(
                    f"optimised object-removal pipeline differs by {difference:.2e} > {self.atol:.0e}; "
                    "running the plain one",
                    stacklevel=2,
                )
                fast = None
            self._fast.append(fast)
            return plain
        fast = self._fast[0]
        return (fast if fast is not None else self.pipeline)(x, *args, **kwargs)
