"""common.masking: the per-sample network input that inference preprocessing builds (MONAI Label passes only
data["image"] to the network), the same input for batches, composites and the inpainting target."""

import pytest
import torch

from common.masking import (
    CompositeOutputd,
    MaskedInput,
    MaskedInputd,
    inpainting_target,
    split_inpainting_target,
)


def test_masked_input_channels_are_the_masked_image_the_mask_and_the_extras():
    image = torch.arange(6.0).reshape(1, 2, 3)
    mask = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    edge = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    out = MaskedInputd("image", extra_keys=["edge"], output_key="net", fill_value=-1.0)(
        {"image": image, "mask": mask, "edge": edge}
    )
    expected = torch.tensor(
        [[[0.0, -1.0, 2.0], [-1.0, 4.0, 5.0]], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    )
    torch.testing.assert_close(out["net"], expected)
    assert out["image"] is image  # sources stay unless the output replaces one


def test_masked_input_matches_the_training_batch_preparer():
    generator = torch.Generator().manual_seed(0)
    sample = {
        "image": torch.rand(1, 8, 8, generator=generator),
        "mask": (torch.rand(1, 8, 8, generator=generator) > 0.7).float(),
        "edge": (torch.rand(1, 8, 8, generator=generator) > 0.5).float(),
    }
    batch = {k: v[None] for k, v in sample.items()}
    (trained_on,) = MaskedInput("concat", extra_keys=["edge"])(batch)
    torch.testing.assert_close(MaskedInputd("image", extra_keys=["edge"])(sample)["image"], trained_on[0])


def test_masked_input_rejects_a_soft_mask_and_a_missing_or_misshaped_extra():
    image, mask = torch.rand(1, 4, 4), torch.zeros(1, 4, 4)
    with pytest.raises(ValueError, match="binary"):
        MaskedInputd("image")({"image": image, "mask": mask + 0.5})
    with pytest.raises(KeyError, match="edge"):
        MaskedInputd("image", extra_keys=["edge"])({"image": image, "mask": mask})
    with pytest.raises(ValueError, match="spatial shape"):
        MaskedInputd("image", extra_keys=["edge"])({"image": image, "mask": mask, "edge": torch.zeros(1, 4, 5)})


def test_the_inpainting_target_carries_the_mask_by_name_and_composites_the_prediction():
    image, mask = torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    mask[:, :, 1:3, 1:3] = 1
    target = inpainting_target(image, mask)
    assert split_inpainting_target(target) == (image, mask)
    images, masks = split_inpainting_target([inpainting_target(image[i], mask[i]) for i in (0, 1)])
    assert all(torch.equal(a, b) for a, b in zip(images + masks, [*image, *mask]))
    with pytest.raises(TypeError, match="inpainting target"):
        split_inpainting_target(torch.cat([image, mask], dim=1))
    with pytest.raises(KeyError, match="mask"):
        split_inpainting_target({"image": image})
    pred = torch.full_like(image[0], 9.0)
    out = CompositeOutputd("pred", "label")({"pred": pred, "label": inpainting_target(image[0], mask[0])})
    torch.testing.assert_close(out["pred"], torch.where(mask[0].bool(), pred, image[0]))
