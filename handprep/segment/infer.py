"""Hand segmentation of whole radiographs: working scale, sliding window, back to full size."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from handprep.segment.film import film_box
from handprep.segment.files import NORMALISATION, NORMALISATION_CLAHE, model_settings
from handprep.modelfile import pick_device
from handprep.segment.model import load_model, resolve_model_path
from handprep.segment.tiling import check_stride, sliding_window_many
from handprep.stages.contrast import percentiles
from handprep.stages.mask import fill_contours, largest_component

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 of the part of the radiograph the model sees



def work_scale(shape: tuple[int, int], work_size_px: int) -> tuple[float, tuple[int, int]]:
    """Scale factor and (width, height) that bring the long side to ``work_size_px``."""
    h, w = shape
    scale = work_size_px / max(h, w)
    return scale, (max(1, round(w * scale)), max(1, round(h * scale)))


def to_work_image(image: np.ndarray, work_size_px: int, normalisation: str = NORMALISATION) -> np.ndarray:
    """Resize a uint8/uint16 image to the working scale and normalise it to float32 [0, 1] as the model file says."""
    scale, size = work_scale(image.shape, work_size_px)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return local_contrast(normalise(small), normalisation)


def local_contrast(image: np.ndarray, normalisation: str) -> np.ndarray:
    """The step after the percentile stretch: CLAHE for models trained with it (a faint hand on a
    grey film gets the contrast of a well-exposed one), nothing otherwise."""
    if normalisation != NORMALISATION_CLAHE:
        return image
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe.apply(np.round(image * 255).astype(np.uint8)).astype(np.float32) / np.float32(255)


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


def input_box(image: np.ndarray, input_crop: str) -> Box:
    """The part of the radiograph the model is shown: the film inside black padding (``film_box``) or all."""
    if input_crop == "film_box":
        return film_box(image)
    return 0, 0, image.shape[1], image.shape[0]


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def postprocess(mask: np.ndarray, how: str) -> np.ndarray:
    """The model file's post-processing of a thresholded mask: holes filled, and either regions
    under 5 % of the largest dropped (``fill_5pct``) or only the largest region kept
    (``largest_region``: strips along a frame and markers apart from the hand go)."""
    if how == "largest_region":
        return fill_contours(largest_component(mask))
    return fill_contours(mask, min_area_ratio=0.05)


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

    def work_input(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        """What the model sees: the (cropped) image at its working scale, normalised as in training
        (float32), and where that crop lies in the radiograph."""
        box = input_box(image, self.settings["input_crop"])
        work = to_work_image(crop(image, box), self.settings["work_size_px"], self.settings["normalisation"])
        return work, box

    def work_image(self, image: np.ndarray) -> np.ndarray:
        return self.work_input(image)[0]

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
        work, box = self.work_input(image)
        return to_full_size(self.work_probability(work, stride_px, window, batch_size), image.shape, box)

    def mask(self, image: np.ndarray, threshold: float | None = None, **options) -> np.ndarray:
        """Binary hand mask (uint8 0/255) at full size, before post-processing; ``threshold`` defaults to the model's."""
        return binarise(self.probability(image, **options), self.threshold(threshold))

    def finish(self, mask: np.ndarray) -> np.ndarray:
        """The model file's post-processing (see ``postprocess``)."""
        return postprocess(mask, self.settings["postprocess"])

    def threshold(self, threshold: float | None = None) -> float:
        return self.settings["threshold"] if threshold is None else threshold


def to_full_size(prob: np.ndarray, shape: tuple[int, ...], box: Box | None = None) -> np.ndarray:
    """A working-scale map back at the radiograph's size; 0 outside the ``box`` the model saw."""
    if box is None or box == (0, 0, shape[1], shape[0]):
        return cv2.resize(prob, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = box
    full = np.zeros(shape[:2], np.float32)
    full[y0:y1, x0:x1] = cv2.resize(prob, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return full


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
