"""Overlapping square tiles: cutting patches for training and sliding-window prediction.

Tiles start every ``stride`` pixels and the last one is placed flush with the border, so every
pixel is covered and no tile hangs off the image. Images smaller than a tile are padded with
zeros for prediction and cropped back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def check_stride(tile: int, stride: int) -> None:
    """Refuse a stride that would leave pixels between tiles unpredicted (stride > tile)."""
    if stride < 1 or tile < 1:
        raise ValueError("tile and stride must be positive")
    if stride > tile:
        raise ValueError(f"stride_px {stride} is larger than the {tile} px tile: the pixels between tiles "
                         f"would never be predicted; use stride_px ≤ {tile} (e.g. {tile * 3 // 4}, a quarter overlap)")


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: 0, stride, 2·stride, …, and ``length - tile`` last."""
    check_stride(tile, stride)
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_grid(shape: tuple[int, int], tile: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) corners of all tiles covering an H×W array."""
    return [(y, x) for y in tile_starts(shape[0], tile, stride) for x in tile_starts(shape[1], tile, stride)]


def extract_patches(array: np.ndarray, tile: int, stride: int) -> np.ndarray:
    """All tiles of an H×W array (zero-padded to at least tile×tile) as N×tile×tile."""
    padded = _pad_to(array, tile)
    return np.stack([padded[y:y + tile, x:x + tile] for y, x in tile_grid(padded.shape, tile, stride)])


def _pad_to(array: np.ndarray, tile: int) -> np.ndarray:
    h, w = array.shape
    if h >= tile and w >= tile:
        return array
    out = np.zeros((max(h, tile), max(w, tile)), array.dtype)
    out[:h, :w] = array
    return out


def gaussian_window(tile: int, sigma_scale: float = 0.125) -> np.ndarray:
    """A tile-sized weight peaking at the centre (σ = tile·sigma_scale), never below 1e-3 of the peak."""
    centre = (tile - 1) / 2
    axis = np.exp(-0.5 * ((np.arange(tile) - centre) / (tile * sigma_scale)) ** 2)
    window = np.outer(axis, axis)
    window /= window.max()
    return np.maximum(window, 1e-3).astype(np.float32)


def sliding_window(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    tile: int = 128,
    stride: int = 96,
    batch_size: int = 16,
    window: str = "constant",
) -> np.ndarray:
    """Predict an H×W float image tile by tile and average where tiles overlap.

    ``predict`` takes a batch N×tile×tile (float32) and returns N×tile×tile. ``window``
    ``"constant"`` weighs every pixel of a tile equally (the reference method's plain
    average); ``"gaussian"`` trusts tile centres more than edges.
    """
    return sliding_window_many([image], predict, tile, stride, batch_size, window)[0]


def sliding_window_many(
    images: list[np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    tile: int = 128,
    stride: int = 96,
    batch_size: int = 16,
    window: str = "constant",
) -> list[np.ndarray]:
    """:func:`sliding_window` over several images at once: batches mix tiles of different images.

    Used on a GPU, where one image's dozen tiles would leave the device idle; the result for
    each image is the same as predicting it alone.
    """
    if window not in ("constant", "gaussian"):
        raise ValueError(f"window must be 'constant' or 'gaussian', got {window!r}")
    check_stride(tile, stride)
    padded = [_pad_to(np.asarray(image, dtype=np.float32), tile) for image in images]
    corners = [(i, y, x) for i, array in enumerate(padded) for y, x in tile_grid(array.shape, tile, stride)]
    weights = np.ones((tile, tile), np.float32) if window == "constant" else gaussian_window(tile)
    total = [np.zeros(array.shape, np.float32) for array in padded]
    norm = [np.zeros(array.shape, np.float32) for array in padded]
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([padded[i][y:y + tile, x:x + tile] for i, y, x in chunk])
        out = predict(batch)
        for (i, y, x), tile_out in zip(chunk, out):
            total[i][y:y + tile, x:x + tile] += tile_out * weights
            norm[i][y:y + tile, x:x + tile] += weights
    return [(t / n)[:image.shape[0], :image.shape[1]] for t, n, image in zip(total, norm, images)]
