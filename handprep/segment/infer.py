"""Hand segmentation of whole radiographs: working scale, sliding window, back to full size."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from handprep.segment.files import model_settings
from handprep.segment.model import load_model, pick_device, resolve_model_path
from handprep.segment.tiling import check_stride, sliding_window_many
from handprep.stages.contrast import percentiles



def work_scale(shape: tuple[int, int], work_size_px: int) -> tuple[float, tuple[int, int]]:
    """Scale factor and (width, height) that bring the long side to ``work_size_px``."""
    h, w = shape
    scale = work_size_px / max(h, w)
    return scale, (max(1, round(w * scale)), max(1, round(h * scale)))


def to_work_image(image: np.ndarray, work_size_px: int) -> np.ndarray:
    """Resize a uint8/uint16 image to the working scale and normalise it to float32 [0, 1]."""
    scale, size = work_scale(image.shape, work_size_px)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return normalise(small)


def normalise(image: np.ndarray) -> np.ndarray:
    """Percentile 0.5–99.5 stretch to [0, 1] (robust to hot pixels, markers and bit depth)."""
    if image.dtype in (np.uint8, np.uint16):
        lo, hi = percentiles(image, 0.5, 99.5)
    else:
        lo, hi = np.percentile(image, (0.5, 99.5))
    if hi <= lo:
        return np.zeros(image.shape, np.float32)
    lo, hi = np.float32(lo), np.float32(hi)  # numpy 2 would promote to float64 with float64 scalars
    return np.clip((image.astype(np.float32) - lo) / (hi - lo), 0, 1)


def to_work_mask(mask: np.ndarray, work_size_px: int) -> np.ndarray:
    """A 0/255 mask at the working scale as float32 coverage in [0, 1] (soft edges)."""
    _, size = work_scale(mask.shape, work_size_px)
    coverage = cv2.resize((mask > 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.clip(coverage, 0, 1)  # area averaging can overshoot 1 by a rounding error


class Segmenter:
    """A loaded segmentation model: ``probability(image)`` and ``mask(image)`` at full size.

    Tile, working scale, default stride, normalisation and threshold come from the model file
    (``settings``), never assumed.
    """

    def __init__(self, model: str | os.PathLike = "default", device: str = "auto"):
        self.path = resolve_model_path(model)
        self.device = pick_device(device)
        self.model, self.meta = load_model(self.path, self.device)
        self.settings = model_settings(self.meta, self.path)

    @torch.inference_mode()
    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        # explicit float32: numpy 2 promotes to float64 in places numpy 1 did not
        tensor = torch.from_numpy(np.ascontiguousarray(batch[:, None], dtype=np.float32)).to(self.device)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                logits = self.model(tensor)
        else:
            logits = self.model(tensor)
        return torch.sigmoid(logits.float())[:, 0].cpu().numpy()

    def _stride(self, stride_px: int | None) -> int:
        stride = self.settings["stride_px"] if stride_px is None else int(stride_px)
        check_stride(self.settings["tile_px"], stride)
        return stride

    def work_image(self, image: np.ndarray) -> np.ndarray:
        """The image at the model's working scale, normalised as the model was trained (float32)."""
        return to_work_image(image, self.settings["work_size_px"])

    def work_probabilities(self, work_images: list[np.ndarray], stride_px: int | None = None,
                           window: str = "constant", batch_size: int = 16) -> list[np.ndarray]:
        """Hand probability at the working scale for normalised work images; batches mix their tiles."""
        return sliding_window_many([np.asarray(w, dtype=np.float32) for w in work_images], self._predict_batch,
                                   tile=self.settings["tile_px"], stride=self._stride(stride_px),
                                   batch_size=batch_size, window=window)

    def work_probability(self, work_image: np.ndarray, stride_px: int | None = None, window: str = "constant",
                         batch_size: int = 16) -> np.ndarray:
        """Hand probability at the working scale for an already normalised work image."""
        return self.work_probabilities([work_image], stride_px, window, batch_size)[0]

    def probability(self, image: np.ndarray, stride_px: int | None = None, window: str = "constant",
                    batch_size: int = 16) -> np.ndarray:
        """Hand probability (float32 0..1) at the image's full size."""
        prob = self.work_probability(self.work_image(image), stride_px, window, batch_size)
        return to_full_size(prob, image.shape)

    def mask(self, image: np.ndarray, threshold: float | None = None, **options) -> np.ndarray:
        """Binary hand mask (uint8 0/255) at full size; ``threshold`` defaults to the model's."""
        return binarise(self.probability(image, **options), self.threshold(threshold))

    def threshold(self, threshold: float | None = None) -> float:
        return self.settings["threshold"] if threshold is None else threshold


def to_full_size(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return cv2.resize(prob, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def binarise(prob: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(prob > threshold, 255, 0).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float, device: str) -> Segmenter:
    return Segmenter(path, device)


def get_segmenter(model: str | os.PathLike = "default", device: str = "auto") -> Segmenter:
    """A per-process cached Segmenter (reloaded if the file changes)."""
    path = resolve_model_path(model)
    mtime = Path(path).stat().st_mtime if Path(path).exists() else 0.0
    return _cached(str(path), mtime, device)
