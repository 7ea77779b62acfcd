import numpy as np
import pytest

from handprep.stages.geometry import crop_to_mask, letterbox_box, resize
from handprep.stages.registry import StageError


def test_letterbox_portrait_is_centred_and_unstretched():
    image = np.full((200, 100), 255, np.uint8)
    mask = np.full((200, 100), 255, np.uint8)
    out, out_mask, info = resize(image, mask, size_px=40)
    assert out.shape == (40, 40) and info["scale"] == 0.2
    assert info["pad_left"] == 10 and info["pad_top"] == 0
    assert out[:, :10].max() == 0 and out[:, 30:].max() == 0 and out[:, 10:30].min() == 255
    assert np.array_equal(out_mask > 0, out > 0)


def test_letterbox_maps_coordinates_back():
    image = np.zeros((300, 500), np.uint8)
    image[150, 250] = 255  # centre pixel (plus its neighbourhood after area filter)
    image[149:152, 249:252] = 255
    out, _, info = resize(image, None, size_px=100)
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert abs((x - info["pad_left"]) / info["scale"] - 250) <= 5
    assert abs((y - info["pad_top"]) / info["scale"] - 150) <= 5
    assert letterbox_box(300, 500, 100) == (0.2, 60, 100, 20, 0)


def test_resize_enlarges_small_images_and_keeps_dtype():
    out, _, info = resize(np.full((10, 20), 4000, np.uint16), None, size_px=40)
    assert out.dtype == np.uint16 and info["scale"] == 2.0 and out[10:30].min() == 4000


def test_crop_to_mask_with_margin():
    image = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 20:30] = 255  # box 10 wide, 20 tall
    out, out_mask, info = crop_to_mask(image, mask, margin=0.1)
    assert (info["crop_x0"], info["crop_y0"], info["crop_x1"], info["crop_y1"]) == (19, 38, 31, 62)
    assert np.array_equal(out, image[38:62, 19:31]) and out_mask.shape == out.shape
    _, _, edge = crop_to_mask(image, np.pad(np.full((5, 5), 255, np.uint8), ((0, 95), (0, 95))), margin=1.0)
    assert edge["crop_x0"] == 0 and edge["crop_y0"] == 0


def test_crop_to_empty_mask_is_an_error():
    with pytest.raises(StageError, match="mask is empty"):
        crop_to_mask(np.zeros((9, 9), np.uint8), np.zeros((9, 9), np.uint8))
