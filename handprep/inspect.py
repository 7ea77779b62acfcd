"""Contact sheets: every stage of the chain side by side for a few images (before/after figures)."""
from __future__ import annotations

import cv2
import numpy as np

from handprep.io import ImageReadError, read_file_bytes
from handprep.landmarks.draw import LANDMARK_STAGES, draw_on_cell
from handprep.pipeline.chain import apply_step
from handprep.pipeline.config import PipelineConfig
from handprep.pipeline.runner import Case, decode_case, find_cases
from handprep.stages.geometry import letterbox_box
from handprep.stages.registry import StageError

_MASK_COLOUR = (0, 0, 255)  # red outline (BGR)
_TEXT_COLOUR = (80, 255, 80)


def _display(image: np.ndarray, mask: np.ndarray | None, cell_px: int, show_mask: bool) -> np.ndarray:
    """One cell: the image as 8-bit BGR, letterboxed into cell_px², mask outline on top."""
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    scale, new_h, new_w, top, left = letterbox_box(*image.shape, cell_px)
    cell = np.zeros((cell_px, cell_px, 3), np.uint8)
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    cell[top:top + new_h, left:left + new_w] = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    if show_mask and mask is not None:
        small_mask = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contours = [c + np.array([left, top]) for c in contours]
        cv2.drawContours(cell, contours, -1, _MASK_COLOUR, 1, cv2.LINE_AA)
    return cell


def _label(cell: np.ndarray, text: str, row: int = 0) -> None:
    y = 14 + 14 * row
    cv2.putText(cell, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(cell, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _TEXT_COLOUR, 1, cv2.LINE_AA)


def _message_cell(cell_px: int, text: str) -> np.ndarray:
    cell = np.full((cell_px, cell_px, 3), 40, np.uint8)
    words, line = text.split(), ""
    lines = []
    for word in words:
        if len(line) + len(word) > cell_px // 8:
            lines.append(line)
            line = ""
        line += word + " "
    lines.append(line)
    for i, chunk in enumerate(lines[:16]):
        _label(cell, chunk.strip(), i)
    return cell


def pick_cases(config: PipelineConfig, n: int = 4, ids: list[str] | None = None) -> list[Case]:
    """The named cases, or ``n`` spread evenly over the (sorted) input."""
    cases, _ = find_cases(config)
    if ids:
        by_id = {c.id: c for c in cases}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise KeyError(f"no input image with id {', '.join(missing)} in {config.input.images}")
        return [by_id[i] for i in ids]
    if len(cases) <= n:
        return cases
    return [cases[int(i)] for i in np.linspace(0, len(cases) - 1, n).round()]


def contact_sheet(config: PipelineConfig, cases: list[Case], cell_px: int = 256) -> np.ndarray:
    """A BGR image: one row per case, one column for the input and one per stage.

    Mask stages show the current image with the mask outlined in red; a dropped or failed
    image shows its reason in place of the remaining stages.
    """
    names = ["input"] + [s.name for s in config.stages]
    header = np.zeros((22, cell_px * len(names), 3), np.uint8)
    for i, name in enumerate(names):
        cv2.putText(header, name, (i * cell_px + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    rows = [header]
    for case in cases:
        cells = []
        try:
            image, mask, _ = decode_case(case, config.input, read_file_bytes(case.path))
            first = _display(image, mask, cell_px, True)
            _label(first, f"{case.id} {image.shape[1]}x{image.shape[0]} {image.dtype}")
            cells.append(first)
            for step in config.stages:
                result = apply_step(step, image, mask)
                image, mask = result.image, result.mask
                if not result.keep:
                    cells.append(_message_cell(cell_px, f"dropped: {result.reason}"))
                    break
                cells.append(_display(image, mask, cell_px, step.name not in ("overlay",)))
                if step.name in LANDMARK_STAGES:
                    draw_on_cell(cells[-1], step.name, image, mask, step.params)
        except (ImageReadError, StageError) as exc:
            cells.append(_message_cell(cell_px, f"failed: {exc}"))
        while len(cells) < len(names):
            cells.append(np.zeros((cell_px, cell_px, 3), np.uint8))
        rows.append(np.hstack(cells))
    return np.vstack(rows)
