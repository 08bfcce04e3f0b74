"""What the shared :class:`common.engines.InpaintingGanTrainer` needs to train object removal end to end.

No new engine: the segmenter + inpainters pipeline (:class:`.networks.ObjectRemovalPipeline`) is the engine's
"generator" (dict outputs), its discriminators are the edge / segmentation-map / image patch discriminators,
and the object-removal batches carry the image *with* the object (``image``), the ground truth without it
(``clean``) and the object's true mask (``mask``). This module adds the generator-input builders and the
evaluator's batch preparer; the paper's losses are in :mod:`.losses`.
"""

from __future__ import annotations

import torch

from common.engines import prepare_inpainting_batch
from common.masking import inpainting_target

__all__ = ["InpainterInput", "PipelineBatchPreparer", "PipelineInput"]


class PipelineInput:
    """Generator input of the end-to-end stage: ``{"x": image ⊕ hint mask, "details": True}`` for
    :class:`.networks.ObjectRemovalPipeline` (the true mask is the hint that picks the segment)."""

    def __init__(self, image_key: str = "image", mask_key: str = "mask") -> None:
        self.image_key, self.mask_key = image_key, mask_key

    def __call__(self, batch: dict) -> dict:
        return {"x": torch.cat([batch[self.image_key], batch[self.mask_key].float()], dim=1), "details": True}


class InpainterInput:
    """Generator input of the inpainters' pretraining (true mask, given conditions), as keyword arguments of
    :class:`.networks.EdgeConnectInpainter`: the image with the object, the true mask, the image's
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
    = the inpainting target ``{"image": object-free ground truth, "mask": true mask}`` (for the mask-ratio bins
    and RoI metrics of ``common.metrics``)."""

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
        return x, inpainting_target(batch[self.clean_key], batch[self.mask_key]), (), {}
