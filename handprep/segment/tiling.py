"""Overlapping square tiles: cutting patches for training and sliding-window prediction.

Tiles start every ``stride`` pixels and the last one is placed flush with the border, so every
pixel is covered and no tile hangs off the image. Images smaller than a tile are padded with
zeros for prediction and cropped back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: 0, stride, 2·stride, …, and ``length - tile`` last."""
    if stride < 1 or tile < 1:
        raise ValueError("tile and stride must be positive")
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
    if window not in ("constant", "gaussian"):
        raise ValueError(f"window must be 'constant' or 'gaussian', got {window!r}")
    h, w = image.shape
    padded = _pad_to(image.astype(np.float32, copy=False), tile)
    corners = tile_grid(padded.shape, tile, stride)
    weights = np.ones((tile, tile), np.float32) if window == "constant" else gaussian_window(tile)
    total = np.zeros(padded.shape, np.float32)
    norm = np.zeros(padded.shape, np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([padded[y:y + tile, x:x + tile] for y, x in chunk])
        out = predict(batch)
        for (y, x), tile_out in zip(chunk, out):
            total[y:y + tile, x:x + tile] += tile_out * weights
            norm[y:y + tile, x:x + tile] += weights
    return (total / norm)[:h, :w]
