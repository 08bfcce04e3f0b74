"""Canny edge maps as a dictionary transform."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.feature import canny

from common.transforms import CannyEdged, canny_edges


def square_image(size=32):
    image = np.zeros((1, size, size), dtype=np.float32)
    image[0, 8:24, 8:24] = 1.0
    return image


def test_edges_lie_on_the_square_border_and_equal_skimage():
    image = square_image()
    edges = canny_edges(image, sigma=2.0)
    np.testing.assert_array_equal(edges, canny(image[0].astype(np.float64), sigma=2.0).astype(np.float32))
    rows, cols = np.nonzero(edges)
    assert len(rows) > 0
    distance_to_border = np.minimum(
        np.minimum(np.abs(rows - 7.5), np.abs(rows - 23.5)),
        np.minimum(np.abs(cols - 7.5), np.abs(cols - 23.5)),
    )
    assert distance_to_border.max() <= 1.5
    assert edges[12:20, 12:20].sum() == 0


def test_dictionary_transform_keeps_metadata_and_writes_grey():
    image = MetaTensor(
        torch.from_numpy(np.repeat(square_image(), 3, axis=0)),
        affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])),
    )
    image[1] *= 0.5
    out = CannyEdged("image", edge_key="edge", gray_key="gray")({"image": image})
    assert isinstance(out["edge"], MetaTensor) and out["edge"].shape == (1, 32, 32)
    torch.testing.assert_close(out["edge"].affine, image.affine)
    assert set(np.unique(out["edge"].numpy())) <= {0.0, 1.0}
    np.testing.assert_allclose(out["gray"].numpy()[0], image.numpy().mean(axis=0), rtol=1e-6)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="2D"):
        CannyEdged("image")({"image": np.zeros((1, 8, 8, 8), dtype=np.float32)})
    with pytest.raises(ValueError, match="sigma"):
        CannyEdged("image", sigma=-1)
    with pytest.raises(ValueError, match="NaN"):
        canny_edges(np.full((1, 8, 8), np.nan, dtype=np.float32))
