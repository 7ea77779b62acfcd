"""Pipeline stages built on the landmarks: ``orient``, ``handedness``, ``crop_hand``, ``rois``.

Each is a geometry stage (image and mask move together; the numbers that map coordinates
back go to the manifest) and records the landmark QA (found, fingers, keypoints off the
mask, mask area for the hand's size). A hand that is not found never fails the image: the
stage passes it on unchanged and flags it (``<stage>.qa = not_found``).

Detection is memoised per process by the image and mask content, and a stage that moves the
image hands its moved keypoints to the next one, so a chain of these stages runs MediaPipe
once per radiograph (again only after a stage that changes the pixels, such as CLAHE).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np

from handprep.landmarks.anatomy import crop_box, qa, roi_boxes
from handprep.landmarks.detect import HandLandmarks, get_detector
from handprep.landmarks.points import axis_angle
from handprep.landmarks.render import largest_component
from handprep.landmarks.transform import Affine, crop_scale, mirror, rotated_canvas, warp
from handprep.stages.mask import check_mask
from handprep.stages.registry import Geometry, GeometryExtras, ParamError, Range, stage

_MEMO: OrderedDict = OrderedDict()
_MEMO_SIZE = 16


def _digest(image: np.ndarray, mask: np.ndarray | None, task: str | None, min_confidence: float) -> str:
    h = hashlib.blake2b(digest_size=16)
    for array in (image, mask):
        if array is not None:
            h.update(f"{array.shape}{array.dtype}".encode())
            h.update(np.ascontiguousarray(array).data)
        h.update(b"|")
    h.update(f"{task}|{min_confidence}".encode())
    return h.hexdigest()


def remember(image: np.ndarray, mask: np.ndarray | None, found: HandLandmarks, task: str | None = None,
             min_confidence: float = 0.3) -> None:
    _MEMO[_digest(image, mask, task, min_confidence)] = found
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


def landmarks_for(image: np.ndarray, mask: np.ndarray | None, task: str | None = None,
                  min_confidence: float = 0.3) -> HandLandmarks:
    """The keypoints of this image (and mask), detected once per process."""
    key = _digest(image, mask, task, min_confidence)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    if mask is not None:
        check_mask(image, mask)
    found = get_detector(task, min_confidence).detect(image, mask)
    remember(image, mask, found, task, min_confidence)
    return found


def _prepare(params: dict, base_dir: Path) -> dict:
    """Resolve a task file against the YAML's folder and check it exists, before any image."""
    if params.get("task"):
        path = Path(params["task"])
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise ParamError("task", f"MediaPipe task file {path} not found; give a hand_landmarker.task "
                                     "or leave 'task' out to use the models bundled with mediapipe")
        params = {**params, "task": str(path)}
    return params


def _moved(image, mask, found, affine: Affine, out_image, out_mask, task, min_confidence) -> None:
    if found.found:
        remember(out_image, out_mask, found.moved(affine), task, min_confidence)


@stage("orient", kind="geometry", expensive=True, prepare=_prepare)
def orient(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    min_angle_deg: Annotated[float, Range(0.0, 180.0)] = 1.0,
    task: str | None = None,
    min_confidence: Annotated[float, Range(0.0, 1.0)] = 0.3,
) -> Geometry:
    """Rotate so the wrist → middle-finger axis points up (MediaPipe landmarks).

    The canvas grows so no pixel is cut (new corners are 0). ``angle_deg`` in the manifest is
    the counter-clockwise turn applied (0 when under ``min_angle_deg`` or no hand was found);
    with a = angle_deg, ``x_out = cos a·x + sin a·y + pad_x`` and ``y_out = −sin a·x + cos a·y +
    pad_y`` (pixels, y down), so a point maps back by the inverse. ``task`` is an optional
    ``hand_landmarker.task`` (else the bundled models); ``min_confidence`` is MediaPipe's
    detection threshold.
    """
    found = landmarks_for(image, mask, task, min_confidence)
    info = qa(found, mask)
    angle = round(axis_angle(found.points), 3) if found.found else 0.0
    if abs(angle) < min_angle_deg:
        return Geometry(image, mask, {**info, "angle_deg": 0.0, "pad_x": 0.0, "pad_y": 0.0})
    affine, size = rotated_canvas(*image.shape, angle)
    out = warp(image, affine, size)
    out_mask = None if mask is None else warp(mask, affine, size, nearest=True)
    _moved(image, mask, found, affine, out, out_mask, task, min_confidence)
    return Geometry(out, out_mask, {**info, "angle_deg": angle, "pad_x": round(float(affine.matrix[0, 2]), 3),
                                    "pad_y": round(float(affine.matrix[1, 2]), 3)})


@stage("handedness", kind="geometry", prepare=_prepare)
def handedness(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    to: Literal["left", "right"] = "left",
    task: str | None = None,
    min_confidence: Annotated[float, Range(0.0, 1.0)] = 0.3,
) -> Geometry:
    """Mirror right hands (and mirrored films) to the ``to`` convention (left in bone-age practice).

    The side is the patient's, from the anatomy: in a PA radiograph with the fingers up a
    left hand has its thumb on the image's right. The manifest records ``side`` (as found),
    ``flipped`` (1 when mirrored) — never silently; an image whose hand is not found is
    left as it is and flagged.
    """
    found = landmarks_for(image, mask, task, min_confidence)
    info = {**qa(found, mask), "side": found.handedness, "flipped": 0}
    if not found.found or found.handedness == to:
        return Geometry(image, mask, info)
    out = np.ascontiguousarray(image[:, ::-1])
    out_mask = None if mask is None else np.ascontiguousarray(mask[:, ::-1])
    _moved(image, mask, found, mirror(image.shape[1]), out, out_mask, task, min_confidence)
    return Geometry(out, out_mask, {**info, "flipped": 1})


@stage("crop_hand", kind="geometry", prepare=_prepare)
def crop_hand(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    margin: Annotated[float, Range(0.0, 1.0)] = 0.05,
    task: str | None = None,
    min_confidence: Annotated[float, Range(0.0, 1.0)] = 0.3,
) -> Geometry:
    """Crop to the box around the landmarks and the hand mask, grown by ``margin`` × its size per side.

    The mask's largest region (markers dropped) and the keypoints together make the box, so
    a finger the mask missed is kept. Without a hand found the mask's box is used; without
    either the image passes unchanged (flagged). ``crop_x0 … crop_y1`` record the box.
    """
    found = landmarks_for(image, mask, task, min_confidence)
    info = qa(found, mask)
    corners = []
    if found.found:
        corners.append(found.points)
    if mask is not None and np.any(mask):
        x, y, w, h = cv2.boundingRect(cv2.findNonZero(largest_component(mask)))
        corners.append(np.array([[x, y], [x + w, y + h]], np.float64))
    if not corners:
        return Geometry(image, mask, {**info, "crop_x0": 0, "crop_y0": 0, "crop_x1": image.shape[1],
                                      "crop_y1": image.shape[0]})
    points = np.vstack(corners)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    x0, y0 = max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy)))
    x1, y1 = min(image.shape[1], int(np.ceil(x1 + dx))), min(image.shape[0], int(np.ceil(y1 + dy)))
    out = image[y0:y1, x0:x1].copy()
    out_mask = None if mask is None else mask[y0:y1, x0:x1].copy()
    _moved(image, mask, found, crop_scale(x0, y0, 1.0), out, out_mask, task, min_confidence)
    return Geometry(out, out_mask, {**info, "crop_x0": x0, "crop_y0": y0, "crop_x1": x1, "crop_y1": y1})


@stage("rois", kind="geometry", prepare=_prepare)
def rois(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    size_px: Annotated[int, Range(8, 2048)] = 128,
    scale: Annotated[float, Range(0.1, 5.0)] = 1.0,
    task: str | None = None,
    min_confidence: Annotated[float, Range(0.0, 1.0)] = 0.3,
) -> GeometryExtras:
    """Bone-age regions as ``size_px``² crops saved beside the final image (``rois/<id>_<name>.png``).

    Carpals, distal radius and ulna, and the MCP and IP joints of thumb, middle and little
    finger (``anatomy.ROI_LAYOUT``), sized by the hand (wrist → middle MCP) times ``scale``,
    cut from the image as it is at this step (put the stage after enhancement, before
    ``resize``). The image and mask pass unchanged; no crops when no hand is found (flagged).
    """
    found = landmarks_for(image, mask, task, min_confidence)
    info = {**qa(found, mask), "count": 0}
    if not found.found:
        return GeometryExtras(image, mask, info, {})
    boxes = roi_boxes(found.points, scale)
    extras = {name: crop_box(image, box, size_px) for name, box in boxes.items()}
    return GeometryExtras(image, mask, {**info, "count": len(extras)}, extras)
