"""TensorBoardPanels writes one validation sample's channels as images TensorBoard can read back."""

import io

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.engines import TensorBoardPanels


def read_images(log_dir):
    images = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            images[tag] = [(e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)))) for e in accumulator.Images(tag)]
    return images


def test_panels_of_each_channel_and_the_middle_slice_of_a_volume(tmp_path):
    image = torch.zeros(2, 4, 6)
    image[0, 1, 2] = 3.0  # masked image: one bright pixel
    image[1, :, 3:] = 1.0  # mask: right half
    volume = torch.zeros(1, 4, 6, 5)
    volume[0, 2, 1, 2] = 7.0  # middle slice of the last axis (5 // 2 = 2)
    volume[0, 0, 0, 0] = 9.0  # another slice: must not show
    outputs = [{"image": image, "pred": volume}, {"image": -image, "pred": volume}]
    engine = Engine(lambda engine, batch: outputs)
    TensorBoardPanels(log_dir=str(tmp_path), keys=("image", "pred")).attach(engine)
    engine.run([0], max_epochs=2)

    images = read_images(tmp_path)
    assert sorted(images) == ["val/image_0", "val/image_1", "val/pred_0"]
    assert [step for step, _ in images["val/pred_0"]] == [1, 2]
    expected = {"val/image_0": image[0] / 3.0, "val/image_1": image[1], "val/pred_0": volume[0, :, :, 2] / 7.0}
    for tag, plane in expected.items():
        written = images[tag][-1][1]
        written = written[..., 0] if written.ndim == 3 else written
        np.testing.assert_array_equal(written, np.round(plane.numpy() * 255).astype(np.uint8))


def test_a_missing_key_is_a_clear_error(tmp_path):
    engine = Engine(lambda engine, batch: {"pred": torch.zeros(1, 1, 4, 4)})
    TensorBoardPanels(log_dir=str(tmp_path), keys=("image", "pred")).attach(engine)
    with pytest.raises(KeyError, match=r"no \['image'\]; it has \['pred'\]"):
        engine.run([0], max_epochs=1)


def test_the_inpainting_target_label_draws_its_image_and_mask(tmp_path):
    target = {"image": torch.rand(2, 1, 4, 6), "mask": torch.ones(2, 1, 4, 6)}  # batched, not decollated
    engine = Engine(lambda engine, batch: {"label": target, "pred": torch.rand(2, 1, 4, 6)})
    TensorBoardPanels(log_dir=str(tmp_path), keys=("label", "pred")).attach(engine)
    engine.run([0], max_epochs=1)
    assert sorted(read_images(tmp_path)) == ["val/label_image_0", "val/label_mask_0", "val/pred_0"]
