"""``handprep landmarks``: keypoints for a folder of radiographs into one CSV, plus overlays.

One row per input file, whatever happened to it; a file that cannot be read or has no hand
gets a row with ``found = 0`` and its reason, and the batch goes on. ``landmarks.csv`` is
rewritten atomically as the batch goes, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import csv
import io as _io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from handprep.io import (ImageReadError, atomic_write_text, list_images, read_image, read_mask, refuse_output_overlap,
                         write_png)
from handprep.landmarks.anatomy import qa
from handprep.landmarks.detect import HandLandmarks, LandmarkDetector
from handprep.landmarks.masks import detect_with_segmenter
from handprep.landmarks.draw import overlay
from handprep.landmarks.points import NAMES

POINT_COLUMNS = [f"{axis}{i}" for i in range(len(NAMES)) for axis in ("x", "y")]
COLUMNS = ["id", "found", "score", "handedness", *POINT_COLUMNS, "reason", "qa", "rendering", "view", "mask", "path",
           "seconds"]
SAVE_EVERY = 20


@dataclass
class LandmarkRun:
    rows: list[dict] = field(default_factory=list)
    resumed: int = 0  # rows kept from an earlier run
    csv_path: Path | None = None

    @property
    def found(self) -> int:
        return sum(int(r["found"]) for r in self.rows)


def to_row(case_id: str, path: str, found: HandLandmarks, mask_note: str, seconds: float, flags: str = "") -> dict:
    """A landmarks.csv row. A hand MediaPipe returned but the QA calls implausible (keypoints off
    the mask, or a tiny hand in a big mask) is ``found = 0`` with its reason; its keypoints stay
    in the row for inspection."""
    implausible = found.found and any(f in ("outside_mask", "mask_area") for f in flags.split("+"))
    reason = found.reason or (f"implausible hand ({flags}): keypoints off the hand mask or too small for it; "
                              "check the mask (see the overlay)" if implausible else "")
    credible = found.found and not implausible
    row = {"id": case_id, "found": int(credible),
           "score": f"{found.score:.4f}" if found.found else "", "handedness": found.handedness if credible else "",
           "reason": reason, "qa": flags, "rendering": found.rendering, "view": found.view, "mask": mask_note,
           "path": path, "seconds": f"{seconds:.3f}"}
    for i in range(len(NAMES)):
        x, y = ("", "") if found.points is None else (f"{found.points[i, 0]:.2f}", f"{found.points[i, 1]:.2f}")
        row[f"x{i}"], row[f"y{i}"] = x, y
    return row


def read_landmarks_csv(path: str | Path) -> dict[str, dict]:
    """Rows of a landmarks.csv by id; ``points`` (21×2 array or None) added to each."""
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            row["points"] = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(len(NAMES))]) \
                if row.get("x0") else None
            rows[row["id"]] = row
    return rows


def write_landmarks_csv(path: str | Path, rows: list[dict], extra_columns: tuple[str, ...] = ()) -> None:
    """Write rows (sorted by id) atomically with the landmarks.csv columns (+ ``extra_columns``)."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS + list(extra_columns), extrasaction="ignore", restval="")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["id"]):
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def _mask_for(image: np.ndarray, stem: str, masks: Path | None) -> tuple[np.ndarray | None, str]:
    """The hand mask from the masks folder and where it came from (``file`` or ``none: why``)."""
    if masks is not None:
        candidates = [p for p in masks.glob(f"{stem}.*") if p.suffix.lower() in (".png", ".tif", ".tiff", ".bmp")]
        if not candidates:
            return None, f"none: no mask {masks / (stem + '.png')}"
        try:
            mask = read_mask(candidates[0])
        except ImageReadError as exc:
            return None, f"none: {exc}"
        if mask.shape != image.shape:
            return None, (f"none: mask {candidates[0]} is {mask.shape[1]}×{mask.shape[0]} px, "
                          f"image {image.shape[1]}×{image.shape[0]} px")
        return mask, "file"
    return None, "none"


def landmark_folder(images: str | Path, out: str | Path, masks: str | Path | None = None,
                    segmenter: str | None = "default", task: str | None = None, min_confidence: float = 0.3,
                    overlays: bool = True, overwrite: bool = False, progress: bool = True,
                    detector: LandmarkDetector | None = None) -> LandmarkRun:
    """Landmarks for every image in ``images`` → ``out/landmarks.csv`` (+ ``out/overlays/<id>.png``).

    Masks come from ``masks`` (by file stem) when given, else from the ``segmenter`` model
    (``default`` = the shipped U-Net; None = use the image alone). Rows already in
    ``out/landmarks.csv`` for the same path are kept unless ``overwrite``.
    """
    refuse_output_overlap(out, {"image folder": images, "mask folder": masks})
    out = Path(out)
    csv_path = out / "landmarks.csv"
    paths = list_images(images)
    if not paths:
        raise FileNotFoundError(f"no images found in {images} (looked for .png .jpg .jpeg .tif .tiff .bmp .dcm)")
    masks = Path(masks) if masks is not None else None
    if masks is not None and not masks.is_dir():
        raise FileNotFoundError(f"mask folder {masks} does not exist")
    done = {}
    if csv_path.is_file() and not overwrite:
        done = {r["id"]: r for r in read_landmarks_csv(csv_path).values()}
    detector = detector or LandmarkDetector(task, min_confidence)
    seg = None
    if masks is None and segmenter:
        from handprep.segment.infer import get_segmenter

        seg = get_segmenter(segmenter)
    run = LandmarkRun(csv_path=csv_path)
    pending = 0
    for path in tqdm(paths, desc="landmarks", unit="img", disable=not progress):
        previous = done.get(path.stem)
        if previous is not None and previous.get("path") == str(path):
            run.rows.append(previous)
            run.resumed += 1
            continue
        run.rows.append(_one(path, masks, seg, detector, out if overlays else None))
        pending += 1
        if pending >= SAVE_EVERY:
            write_landmarks_csv(csv_path, run.rows)
            pending = 0
    write_landmarks_csv(csv_path, run.rows)
    return run


def find_hand(image: np.ndarray, stem: str, masks: Path | None, segmenter,
              detector: LandmarkDetector) -> tuple[HandLandmarks, np.ndarray | None, str, str]:
    """Keypoints of one radiograph: ``(finding, mask used, mask source, QA flags)``.

    With the segmenter, contrast-boosted re-segmentations are tried when the first mask gives
    an implausible hand (``handprep.landmarks.masks``).
    """
    if masks is None and segmenter is not None:
        found, mask, note = detect_with_segmenter(detector, image, segmenter)
    else:
        mask, note = _mask_for(image, stem, masks)
        found = detector.detect(image, mask)
        if not found.found and note.startswith("none:"):
            found.reason += f" ({note[6:]})"
    flags = qa(found, mask)["qa"]
    return found, mask, note, flags


def _one(path: Path, masks: Path | None, segmenter, detector: LandmarkDetector, out: Path | None) -> dict:
    started = time.perf_counter()
    try:
        image = read_image(path)
    except ImageReadError as exc:
        return to_row(path.stem, str(path), HandLandmarks(False, reason=str(exc)), "", time.perf_counter() - started,
                      "not_found")
    found, _, note, flags = find_hand(image, path.stem, masks, segmenter, detector)
    row = to_row(path.stem, str(path), found, note, time.perf_counter() - started, flags)
    if out is not None:
        text = f"{path.stem} {row['handedness']} {found.view} {flags}".strip() if found.found \
            else f"{path.stem}: no hand found"
        write_png(out / "overlays" / f"{path.stem}.png", overlay(image, found.points, text))
    return row
