"""A weighted sum of named losses, configured from a ``{name: weight}`` dict in a bundle config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..networks.vgg import VGGFeatures
from .perceptual import FeatureLoss, PerceptualLoss, StyleLoss
from .reconstruction import HoleL1Loss, LaplacianPyramidLoss, TotalVariationLoss, ValidL1Loss

__all__ = ["WeightedSumLoss", "BUILTIN_LOSSES"]

#: built-in terms, all called as ``loss(output, target, mask)``; values are (class, constructor kwargs).
BUILTIN_LOSSES: dict[str, tuple[type[nn.Module], dict]] = {
    "valid": (ValidL1Loss, {}),
    "hole": (HoleL1Loss, {}),
    "perceptual": (PerceptualLoss, {}),
    "perceptual_out": (PerceptualLoss, {"include_composite": False}),
    "perceptual_comp": (PerceptualLoss, {"include_output": False}),
    "style": (StyleLoss, {}),
    "style_out": (StyleLoss, {"include_composite": False}),
    "style_comp": (StyleLoss, {"include_output": False}),
    "tv": (TotalVariationLoss, {}),
    "tv_image": (TotalVariationLoss, {"region": "image"}),
    "laplacian": (LaplacianPyramidLoss, {}),
}


class WeightedSumLoss(nn.Module):
    """``sum_k weights[k] * losses[k](*args)``, e.g. the autoinpainting paper's
    ``{"valid": 30, "hole": 240, "perceptual": 0.2, "style": 0.05, "tv": 250, "laplacian": 20}``
    (``style`` = style_out + style_comp).

    Names in :data:`BUILTIN_LOSSES` are built automatically; ``losses`` adds or overrides terms with any
    callables sharing one call signature (e.g. discriminator-side terms ``(fake_out, real_out)``). Feature
    terms (perceptual/style) share one :class:`VGGFeatures` and one forward pass per call.

    Args:
        weights: {name: weight}; zero-weight terms are not computed (all zero: the sum is 0).
        losses: extra or overriding {name: callable}.
        feature_extractor: extractor shared by the built-in feature terms; None builds VGG16 pool1-3
            from ``vgg_weights_path`` / ``pretrained`` / ``input_range`` (only if a feature term is used).
        return_terms: return {name: weighted term} (summed by the engines, logged one by one)
            instead of the total.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        losses: Mapping[str, Callable] | None = None,
        feature_extractor: nn.Module | None = None,
        vgg_weights_path: str | None = None,
        pretrained: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        return_terms: bool = False,
    ) -> None:
        super().__init__()
        if not weights:
            raise ValueError("weights must name at least one loss.")
        custom = dict(losses or {})
        unknown = [n for n in weights if n not in custom and n not in BUILTIN_LOSSES]
        if unknown:
            raise ValueError(
                f"unknown loss names {unknown}; built-in: {sorted(BUILTIN_LOSSES)}, or pass them in `losses`."
            )
        self.weights = {name: float(w) for name, w in weights.items() if float(w) != 0.0}
        needs_features = any(
            n not in custom and issubclass(BUILTIN_LOSSES[n][0], FeatureLoss) for n in self.weights
        )
        if needs_features and feature_extractor is None:
            feature_extractor = VGGFeatures(
                weights_path=vgg_weights_path, pretrained=pretrained, input_range=input_range
            )
        terms: dict[str, Callable] = {}
        for name in self.weights:
            if name in custom:
                terms[name] = custom[name]
            else:
                cls, kwargs = BUILTIN_LOSSES[name]
                if issubclass(cls, FeatureLoss):
                    kwargs = {**kwargs, "feature_extractor": feature_extractor}
                terms[name] = cls(**kwargs)
        self.terms = nn.ModuleDict({k: v for k, v in terms.items() if isinstance(v, nn.Module)})
        self._callables = terms
        self.return_terms = return_terms

    @property
    def requires_real(self) -> bool:
        """For discriminator-side use: whether any term needs the discriminator's output on real data."""
        return any(getattr(term, "requires_real", True) for term in self._callables.values())

    def forward(self, *args, **kwargs) -> torch.Tensor | dict[str, torch.Tensor]:
        shared_features: dict[int, tuple] = {}
        values: dict[str, torch.Tensor] = {}
        for name, weight in self.weights.items():
            term = self._callables[name]
            if isinstance(term, FeatureLoss):
                key = id(term.feature_extractor)
                if key not in shared_features:
                    shared_features[key] = term.features(*args, **kwargs)
                value = term.loss_from_features(*shared_features[key])
            else:
                value = term(*args, **kwargs)
            values[name] = weight * value
        if self.return_terms:
            return values
        if not values:  # every weight set to 0: the sum switched off, e.g. an ablation from the command line
            reference = next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
            return reference.new_zeros(())
        return torch.stack(list(values.values())).sum()
