"""MaskedInputd: the per-sample network input that inference preprocessing builds (MONAI Label passes only
data["image"] to the network)."""

import pytest
import torch

from common.engines import MaskedInput
from common.transforms import MaskedInputd


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
