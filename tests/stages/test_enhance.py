import cv2
import numpy as np
import pytest

from handprep.stages.enhance import adaptive_clip_limit, clahe, normalize, polarity, sharpen, to_uint8
from handprep.synth import phantom


def test_to_uint8_passes_8bit_and_maps_16bit_ranges():
    image8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_uint8(image8) is image8
    image16 = np.array([[1000, 2000, 3000]], np.uint16)
    assert to_uint8(image16).tolist() == [[0, 128, 255]]
    assert to_uint8(image16, method="bits").tolist() == [[62, 125, 187]]  # /4095·255
    spiky = np.full((10, 100), 1000, np.uint16)
    spiky[:, 50:] = 2000
    spiky[0, 0] = 65535  # one hot pixel
    out = to_uint8(spiky, method="percentile", lower_percentile=0.5, upper_percentile=99.5)
    assert out[5, 10] == 0 and out[5, 60] == 255  # the hot pixel does not squash the range


def test_polarity_inverts_only_bright_background():
    normal = phantom(seed=2, border=True, marker=True).image
    assert np.array_equal(polarity(normal), normal)  # bright border alone does not flip
    inverted = phantom(seed=2, inverted=True).image
    assert np.array_equal(polarity(inverted), 255 - inverted)
    assert np.array_equal(polarity(normal, mode="invert"), 255 - normal)
    assert np.array_equal(polarity(inverted, mode="keep"), inverted)
    image16 = np.array([[0, 65535]], np.uint16)
    assert polarity(image16, mode="invert").tolist() == [[65535, 0]]


def test_clahe_matches_opencv_and_keeps_dtype():
    image = phantom(seed=4).image
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(image)
    assert np.array_equal(clahe(image), expected)
    image16 = image.astype(np.uint16) * 16
    assert clahe(image16).dtype == np.uint16


def test_adaptive_clip_limit_darker_gets_higher():
    bright = np.full((10, 10), 200, np.uint8)
    dark = np.full((10, 10), 50, np.uint8)
    assert adaptive_clip_limit(dark, 3.0, 0.5, 1.0, 6.0) == pytest.approx(6.0)  # 3·0.5/(50/255)=7.65 → clamp
    assert adaptive_clip_limit(bright, 3.0, 0.5, 1.0, 6.0) == pytest.approx(3.0 * 0.5 / (200 / 255))
    masked = np.zeros((10, 10), np.uint8)
    masked[:5] = 102  # zeros (background) are ignored: brightness 0.4
    assert adaptive_clip_limit(masked, 3.0, 0.5, 1.0, 6.0) == pytest.approx(3.75)


def test_sharpen_is_image_minus_laplacian_clipped():
    image = np.zeros((5, 5), np.uint8)
    image[2, 2] = 100
    out = sharpen(image)
    # Laplacian at the centre is -400 → 100 + 400 = 500 → clipped 255; neighbours 0 - 100 → 0
    assert out[2, 2] == 255 and out[1, 2] == 0 and out[0, 0] == 0
    flat = np.full((5, 5), 77, np.uint8)
    assert np.array_equal(sharpen(flat), flat)  # Laplacian of a constant is 0
    ramp = np.tile(np.arange(0, 50, 10, dtype=np.uint8), (5, 1))
    assert np.array_equal(sharpen(ramp)[:, 1:-1], ramp[:, 1:-1])  # linear ramp: Laplacian 0 inside
    soft = np.zeros((5, 5), np.uint8)
    soft[2, 2] = 40
    assert sharpen(soft, strength=0.5)[2, 2] == 40 + 80
    assert sharpen(image.astype(np.uint16) * 100)[2, 2] == 10000 + 40000


def test_normalize_min_max_and_zero_kept():
    image = np.array([[50, 100, 150]], np.uint8)
    assert np.abs(normalize(image).astype(int) - [[0, 128, 255]]).max() <= 1
    masked = np.array([[0, 50, 100, 150]], np.uint8)
    assert np.abs(normalize(masked, ignore_zero=True).astype(int) - [[0, 0, 128, 255]]).max() <= 1
    assert normalize(np.full((3, 3), 9, np.uint8)).max() <= 255  # constant image: no division by zero
