import numpy as np
import pytest

from handprep.segment.tiling import extract_patches, gaussian_window, sliding_window, tile_grid, tile_starts


def test_tile_starts_last_tile_flush_with_border():
    assert tile_starts(300, 128, 96) == [0, 96, 172]
    assert tile_starts(320, 128, 96) == [0, 96, 192]  # already flush
    assert tile_starts(128, 128, 96) == [0]
    assert tile_starts(50, 128, 96) == [0]
    assert tile_starts(129, 128, 64) == [0, 1]
    with pytest.raises(ValueError):
        tile_starts(100, 128, 0)


def test_tiles_cover_every_pixel():
    for shape in [(300, 97), (257, 130), (384, 295)]:
        cover = np.zeros(shape, int)
        for y, x in tile_grid(shape, 64, 48):
            assert y + 64 <= max(shape[0], 64) and x + 64 <= max(shape[1], 64)
            cover[y:y + 64, x:x + 64] += 1
        assert cover.min() >= 1


@pytest.mark.parametrize("shape", [(130, 257), (50, 70), (128, 128), (300, 97), (1, 1), (383, 295)])
@pytest.mark.parametrize("window", ["constant", "gaussian"])
def test_identity_prediction_reconstructs_the_image_exactly(shape, window):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = sliding_window(image, lambda batch: batch, tile=128, stride=96, batch_size=5, window=window)
    assert out.shape == shape
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-6)


def test_overlaps_are_averaged_with_constant_weights():
    # each tile predicts a constant: its own index; overlapping pixels get the mean of the indices
    calls = []

    def predict(batch):
        start = sum(len(b) for b in calls)
        calls.append(batch)
        return np.stack([np.full(b.shape, start + i, np.float32) for i, b in enumerate(batch)])

    out = sliding_window(np.zeros((10, 14), np.float32), predict, tile=8, stride=6, batch_size=2)
    # tiles at x = 0, 6 and y = 0, 2 → indices (y0,x0)=0, (y0,x6)=1, (y2,x0)=2, (y2,x6)=3
    assert out[0, 0] == 0 and out[0, 13] == 1 and out[9, 0] == 2 and out[9, 13] == 3
    assert out[0, 7] == pytest.approx(0.5)  # x 6..7 covered by tiles 0 and 1
    assert out[5, 7] == pytest.approx(1.5)  # all four tiles


def test_gaussian_window_peaks_in_the_centre():
    window = gaussian_window(128)
    assert window.shape == (128, 128) and window.max() == pytest.approx(1.0)
    assert window[64, 64] > window[10, 64] > window[0, 0] >= 1e-3


def test_extract_patches_counts_and_content():
    image = np.arange(200 * 150, dtype=np.float32).reshape(200, 150)
    patches = extract_patches(image, 128, 64)
    assert patches.shape == (len(tile_starts(200, 128, 64)) * len(tile_starts(150, 128, 64)), 128, 128)
    np.testing.assert_array_equal(patches[0], image[:128, :128])
    np.testing.assert_array_equal(patches[-1], image[-128:, -128:])
    small = extract_patches(np.ones((20, 30), np.float32), 32, 16)
    assert small.shape == (1, 32, 32) and small[0, :20, :30].min() == 1 and small[0, 20:].max() == 0
