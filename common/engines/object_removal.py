"""What the shared :class:`common.engines.InpaintingGanTrainer` needs to train object removal end to end.

No new engine: the segmenter + inpainters pipeline (:class:`common.networks.ObjectRemovalPipeline`) is the
engine's "generator" (dict outputs), its discriminators are the edge / segmentation-map / image patch
discriminators, and the object-removal batches carry the image *with* the object (``image``), the ground truth
without it (``clean``) and the object's true mask (``mask``). This module adds the generator-input builders,
the evaluator's batch preparer and the paper's three losses that ``common.losses`` does not have:

- :class:`NormalisedMaskExpansionLoss`: the mask expansion loss with the signed distance normalised to [-1, 1]
  and alpha in those units (the paper's 0.03), on top of ``common.losses.MaskExpansionLoss`` (alpha in pixels);
- :class:`HoleNormalisedL1Loss`: EdgeConnect's L1 divided by the mask's share of the image;
- :class:`SegmenterLoss`: Dice + cross-entropy on the object channel and the segmentation-map channels.
"""

from __future__ import annotations

import torch
from monai.losses import BoundaryLoss, DiceCELoss
from torch import nn

from ..losses.mask_expansion import MaskExpansionLoss
from ..losses.utils import check_binary_mask, pack_mask
from .batch import prepare_inpainting_batch

__all__ = [
    "HoleNormalisedL1Loss",
    "InpainterInput",
    "NormalisedMaskExpansionLoss",
    "PipelineBatchPreparer",
    "PipelineInput",
    "SegmenterLoss",
]


class NormalisedMaskExpansionLoss(MaskExpansionLoss):
    """Mask expansion loss of Shimosato & Ukita: mean(p * (phi / max|phi| - alpha)).

    phi is MONAI's signed distance of the true mask (<= 0 inside, pixels outside), divided per image by its
    largest magnitude so that it lies in [-1, 1], then shifted by ``alpha`` (the paper: 0.03). Probability is
    rewarded inside the mask and in a band of ``alpha * max|phi|`` pixels around it, so the predicted mask grows
    just beyond the object; the band scales with the image (about 5 px for a central object on 256x256).
    """

    def __init__(self, alpha: float = 0.03, sigmoid: bool = False, reduction: str = "mean") -> None:
        super().__init__(alpha=alpha, sigmoid=sigmoid, reduction=reduction)

    @torch.no_grad()
    def compute_distance_map(self, target: torch.Tensor) -> torch.Tensor:
        phi = BoundaryLoss.compute_distance_map(self, target)
        scale = phi.abs().flatten(2).amax(dim=2).clamp_min(1e-6)
        return phi / scale.reshape(*scale.shape, *([1] * (phi.ndim - 2))) - self.alpha


class HoleNormalisedL1Loss(nn.Module):
    """EdgeConnect's L1: mean |output - target| over all elements divided by the mean of the mask.

    Equals sum |output - target| / (C * #hole pixels): on a composite it is the mean error per hole pixel,
    whatever the object's size. The mask (B, 1 or C, H, W) must be binary and not empty.
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if output.shape != target.shape:
            raise ValueError(
                f"output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}."
            )
        check_binary_mask(mask)
        hole = mask.float().mean()
        if hole == 0:
            raise ValueError("the mask is empty: no hole to normalise the L1 by.")
        return torch.mean(torch.abs(output - target.detach())) / hole


class SegmenterLoss(nn.Module):
    """Segmenter loss on (B, 1 + K, H, W) logits: sigmoid Dice + BCE on channel 0 (object) and softmax
    Dice + CE on channels 1..K (segmentation map), weighted ``object_weight`` and ``segmap_weight``.

    The target is (B, 2, H, W): the object mask and the class index map (0..K-1).
    """

    def __init__(self, object_weight: float = 1.0, segmap_weight: float = 1.0) -> None:
        super().__init__()
        self.object_weight, self.segmap_weight = float(object_weight), float(segmap_weight)
        self.object_loss = DiceCELoss(sigmoid=True)
        self.segmap_loss = DiceCELoss(softmax=True, to_onehot_y=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] < 3:
            raise ValueError(f"logits must be (B, 1 + K, H, W) with K >= 2, got {tuple(logits.shape)}.")
        if target.shape[0] != logits.shape[0] or target.shape[1] != 2 or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"target must be (B, 2, H, W) (object mask, class index) matching {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}."
            )
        classes = target[:, 1:]
        if classes.min() < 0 or classes.max() > logits.shape[1] - 2:
            raise ValueError(f"class indices must be in 0..{logits.shape[1] - 2}.")
        check_binary_mask(target[:, :1], "object mask")
        terms = self.object_weight * self.object_loss(logits[:, :1], target[:, :1].float())
        return terms + self.segmap_weight * self.segmap_loss(logits[:, 1:], classes.long())


class PipelineInput:
    """Generator input of the end-to-end stage: ``{"x": image ⊕ hint mask, "details": True}`` for
    :class:`common.networks.ObjectRemovalPipeline` (the true mask is the hint that picks the segment)."""

    def __init__(self, image_key: str = "image", mask_key: str = "mask") -> None:
        self.image_key, self.mask_key = image_key, mask_key

    def __call__(self, batch: dict) -> dict:
        return {"x": torch.cat([batch[self.image_key], batch[self.mask_key].float()], dim=1), "details": True}


class InpainterInput:
    """Generator input of the inpainters' pretraining (true mask, given conditions), as keyword arguments of
    :class:`common.networks.EdgeConnectInpainter`: the image with the object, the true mask, the image's
    edges and segmentation map, and the ground truth's edges/map for the image inpainter (EdgeConnect's
    independent training of each inpainter). A condition key set to None is left out."""

    def __init__(
        self,
        image_key: str = "image",
        mask_key: str = "mask",
        edge_key: str = "edge_input",
        segmap_key: str = "segmap_input",
        edge_condition_key: str | None = "edge",
        segmap_condition_key: str | None = "segmap",
    ) -> None:
        self.keys = {"image": image_key, "mask": mask_key, "edge": edge_key, "segmap": segmap_key}
        self.conditions = {"edge_condition": edge_condition_key, "segmap_condition": segmap_condition_key}

    def __call__(self, batch: dict) -> dict:
        kwargs = {arg: batch[key] for arg, key in self.keys.items()}
        kwargs["mask"] = kwargs["mask"].float()
        kwargs.update({arg: batch[key] for arg, key in self.conditions.items() if key is not None})
        return kwargs


class PipelineBatchPreparer:
    """``prepare_batch`` of MONAI's ``SupervisedEvaluator`` for the pipeline: input = image ⊕ hint mask, label
    = the object-free ground truth with the true mask packed as last channel (for the mask-ratio bins and
    RoI metrics of ``common.metrics``)."""

    def __init__(
        self,
        image_key: str = "image",
        clean_key: str = "clean",
        mask_key: str = "mask",
        hint_key: str | None = None,
    ) -> None:
        self.image_key, self.clean_key, self.mask_key = image_key, clean_key, mask_key
        self.hint_key = hint_key or mask_key

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        batch = prepare_inpainting_batch(batchdata, device, non_blocking, **kwargs)
        x = torch.cat([batch[self.image_key], batch[self.hint_key].float()], dim=1)
        return x, pack_mask(batch[self.clean_key], batch[self.mask_key]), (), {}
