"""Faster CPU inference of the object-removal pipeline with the same outputs (issue #20).

:func:`optimise_for_inference` returns an eval-only copy of an :class:`.networks.ObjectRemovalPipeline` with
spectral norm baked in: the edge generator's parametrised convs become plain convs holding the weights that the
eval forward computes (in eval mode spectral norm recomputes ``W / sigma`` from the stored vectors on every call,
a matrix-vector product and a weight copy per conv and image, for a constant result). The outputs are identical.

The profile of one 256x256 image at paper width (1 thread) is 80 % oneDNN convolutions already running near the
core's peak (the 48 3x3 convs on 256 channels at 64x64 of the three generators' residual blocks), so what is left
to remove is the rest (instance norm, padding, copies, the spectral-norm recomputation), and none of the segmenter's
norms is a foldable BatchNorm (BasicUNet: instance norm).
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


def optimise_for_inference(pipeline: nn.Module) -> nn.Module:
    """An eval-only copy of ``pipeline`` with spectral norm baked in (see the module docstring)."""
    return bake_parametrizations(copy.deepcopy(pipeline).eval())


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
