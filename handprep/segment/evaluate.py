"""Scoring a segmenter on one subset of a persisted split, with the trivial baseline beside it.

For every id of the subset (``test`` by default) the model's mask — exactly what
``handprep segment`` writes: threshold, then the model file's post-processing — and the baseline's mask (the ``threshold_mask`` stage: threshold → largest
component → fill) are scored against the reviewed mask with Dice, IoU and HD95 (see
``metrics``). A *gross failure* is a mask with more than 5 % of the hand's area outside the
hand, or more than 5 % of the hand missing. The worst cases are drawn as overlays
(truth green, model red, both yellow).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import ImageReadError, atomic_write_text, read_image, read_mask, refuse_output_overlap, write_png
from handprep.segment.metrics import compare, summarise, write_metrics_csv
from handprep.segment.quality import mask_quality
from handprep.segment.train import image_files, image_folders, input_folders, read_split
from handprep.stages.mask import threshold_mask

GROSS_FRACTION = 0.05
COLUMNS = ("id", "source", "dice", "iou", "hd95_px", "hd95_diag", "outside", "missing", "gross", "flags",
           "baseline_dice", "baseline_hd95_px", "baseline_gross", "problem")


@dataclass
class EvalReport:
    rows: list[dict]
    model: dict
    baseline: dict
    gross: list[str] = field(default_factory=list)
    baseline_gross: list[str] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    by_source: dict[str, dict] = field(default_factory=dict)  # per --images folder, when several


def source_of(path: Path, folders: list[Path]) -> str:
    """Which of the given image folders a file came from (so rsna60 and raw films are reported apart)."""
    return next((str(f) for f in folders if Path(path).parent.resolve() == Path(f).resolve()), str(Path(path).parent))


def summaries(rows: list[dict]) -> dict:
    """Model and baseline summaries of scored rows, with their gross failures."""
    return {"model": summarise(rows),
            "baseline": summarise([{"id": r["id"], "dice": r["baseline_dice"], "iou": math.nan,
                                    "hd95_px": r["baseline_hd95_px"], "hd95_diag": math.nan} for r in rows]),
            "gross_failures": sorted((r["id"] for r in rows if r["gross"]), key=str),
            "baseline_gross_failures": sorted((r["id"] for r in rows if r["baseline_gross"]), key=str)}


def gross_failure(pred: np.ndarray, true: np.ndarray, limit: float = GROSS_FRACTION) -> tuple[float, float, bool]:
    """Share of the hand's area predicted outside it, share of the hand missed, and whether either exceeds ``limit``."""
    p, t = pred > 0, true > 0
    hand = max(int(t.sum()), 1)
    outside, missing = int((p & ~t).sum()) / hand, int((t & ~p).sum()) / hand
    return outside, missing, outside > limit or missing > limit


def model_mask(segmenter, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """What ``handprep segment`` writes for this image, and the quality of the unfilled mask."""
    from handprep.segment.infer import binarise

    prob = segmenter.probability(image)
    mask = binarise(prob, segmenter.threshold())
    return segmenter.finish(mask), mask_quality(mask, prob)


def score_case(case_id: str, image: np.ndarray, truth: np.ndarray, segmenter) -> tuple[dict, np.ndarray]:
    pred, quality = model_mask(segmenter, image)
    outside, missing, gross = gross_failure(pred, truth)
    baseline = threshold_mask(image)
    base_scores = compare(baseline, truth)
    row = {"id": case_id, **compare(pred, truth), "outside": outside, "missing": missing, "gross": gross,
           "flags": quality["flags"], "baseline_dice": base_scores["dice"],
           "baseline_hd95_px": base_scores["hd95_px"], "baseline_gross": gross_failure(baseline, truth)[2],
           "problem": ""}
    return row, pred


def evaluate_subset(images, masks: str | Path, out: str | Path, split: str | Path | None = None,
                    subset: str = "test", model: str = "default", device: str = "auto", worst: int = 8,
                    progress: bool = True) -> EvalReport:
    """Score the model and the baseline on ``subset`` of ``split`` (every mask when no split is given).

    Writes ``out/segment_eval_<subset>.csv`` (per image), ``out/segment_eval_<subset>.json``
    (summaries) and ``out/worst_<subset>/<rank>_<id>.png`` overlays of the ``worst`` cases.
    """
    from handprep.segment.infer import Segmenter

    refuse_output_overlap(out, input_folders(images, masks))
    folders = image_folders(images)
    segmenter = Segmenter(model, device)
    files = image_files(images)
    mask_dir = Path(masks)
    if split is not None:
        ids = read_split(split).get(subset)
        if not ids:
            raise ValueError(f"{split}: subset {subset!r} is empty or missing; valid: train, validation, test")
    else:
        ids = sorted(p.stem for p in mask_dir.glob("*.png"))
    rows, preds = [], {}
    for case_id in tqdm(ids, desc=f"segment-eval {subset}", unit="img", disable=not progress):
        try:
            if case_id not in files:
                raise ImageReadError(f"no image named {case_id} in {images}")
            image, truth = read_image(files[case_id]), read_mask(mask_dir / f"{case_id}.png")
        except (ImageReadError, FileNotFoundError) as exc:
            rows.append({"id": case_id, "problem": str(exc)})
            continue
        if truth.shape != image.shape:
            rows.append({"id": case_id, "problem": f"mask is {truth.shape[1]}×{truth.shape[0]} px, image "
                                                   f"{image.shape[1]}×{image.shape[0]} px"})
            continue
        row, preds[case_id] = score_case(case_id, image, truth, segmenter)
        rows.append({**row, "source": source_of(files[case_id], folders)})
    scored = [r for r in rows if not r["problem"]]
    whole = summaries(scored)
    report = EvalReport(rows, whole["model"], whole["baseline"], whole["gross_failures"],
                        whole["baseline_gross_failures"])
    sources = sorted({r["source"] for r in scored})
    if len(sources) > 1:
        report.by_source = {s: summaries([r for r in scored if r["source"] == s]) for s in sources}
    out = Path(out)
    write_metrics_csv(out / f"segment_eval_{subset}.csv", rows, COLUMNS)
    atomic_write_text(out / f"segment_eval_{subset}.json", json.dumps(
        {"subset": subset, "split": str(split) if split else None, "model_file": str(segmenter.path),
         **whole, "by_source": report.by_source}, indent=2))
    for rank, row in enumerate(sorted(scored, key=lambda r: r["dice"])[:worst], start=1):
        path = out / f"worst_{subset}" / f"{rank:02d}_{row['id']}.png"
        write_png(path, overlay(read_image(files[row["id"]]), read_mask(mask_dir / f"{row['id']}.png"),
                                preds[row["id"]], f"{row['id']} Dice {row['dice']:.4f} HD95 {row['hd95_px']:.1f}px"))
        report.overlays.append(path)
    return report


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str = "") -> np.ndarray:
    """Colour picture (BGR, as ``write_png`` expects): truth outline green, prediction red, yellow where they agree."""
    grey = image if image.dtype == np.uint8 else cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(max(image.shape) / 400))
    canvas_t, canvas_p = np.zeros_like(grey), np.zeros_like(grey)
    for mask, canvas in ((truth, canvas_t), (pred, canvas_p)):
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, 255, thickness)
    rgb[canvas_t > 0] = (0, 255, 0)
    rgb[canvas_p > 0] = (0, 0, 255)
    rgb[(canvas_t > 0) & (canvas_p > 0)] = (0, 255, 255)
    if title:
        cv2.putText(rgb, title, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, max(0.5, image.shape[1] / 1200), (0, 255, 255), 2)
    return rgb
