"""``handprep segment``: one binary mask PNG per radiograph, resumable, one bad file never stops it.

On a CPU images are done one at a time, as before. On CUDA the device would idle on one
image's dozen tiles, so images are decoded and scaled in worker threads, tiles of several
images share each forward pass (float16 autocast), and masks are finished and written in
the same threads while the next group is predicted.
"""
from __future__ import annotations

import csv
import io as _io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import ImageReadError, atomic_write_text, list_images, read_image, refuse_output_overlap, write_mask
from handprep.segment.infer import Segmenter, binarise, to_full_size
from handprep.segment.quality import mask_quality
from handprep.stages.mask import fill_contours

QUALITY_CSV = "segment_quality.csv"
QUALITY_COLUMNS = ("id", "flags", "doubtful", "border_contact", "area", "components", "confidence")


@dataclass
class SegmentResult:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # outputs already there (resume)
    failed: dict[str, str] = field(default_factory=dict)
    quality: dict[str, dict] = field(default_factory=dict)  # per written mask: numbers and flags

    @property
    def doubtful(self) -> list[str]:
        return sorted(k for k, q in self.quality.items() if q["doubtful"])


def _load(path: Path, segmenter: Segmenter):
    """Decode and scale one radiograph (runs in a worker thread on the GPU path)."""
    cv2.setNumThreads(1)
    try:
        image = read_image(path)
    except ImageReadError as exc:
        return path, None, None, str(exc)
    work, box = segmenter.work_input(image)
    return path, (image.shape, box), work, ""


def _finish(path: Path, where, work_prob: np.ndarray, target: Path, threshold: float, finish) -> tuple[str, dict]:
    prob = to_full_size(work_prob, *where)
    mask = binarise(prob, threshold)
    quality = mask_quality(mask, prob)
    if finish is not None:
        mask = finish(mask)
    write_mask(target, mask)
    return path.stem, quality


def segment_folder(images: str | Path, out: str | Path, model: str = "default", stride_px: int | None = None,
                   window: str = "constant", threshold: float | None = None, batch_size: int | None = None,
                   device: str = "auto", fill: bool = True, min_area_ratio: float | None = None,
                   overwrite: bool = False, progress: bool = True, images_per_batch: int | None = None,
                   workers: int | None = None) -> SegmentResult:
    """Segment every image into ``out/<stem>.png`` (0/255, the image's size) and score each mask.

    ``fill`` applies the model file's post-processing (holes filled; only the largest region
    kept, or regions under 5 % of the largest dropped, as the file says); a ``min_area_ratio``
    given instead drops regions under that share of the largest. Existing outputs are kept unless ``overwrite``: an interrupted run
    resumes. Quality numbers and flags (see ``handprep.segment.quality``, measured before
    filling) go to ``out/segment_quality.csv``. ``images_per_batch``, ``workers`` and
    ``batch_size`` (tiles per forward pass) default to 1, 0 and 16 on a CPU and to 32, up to
    8 and 512 on CUDA.
    """
    refuse_output_overlap(out, {"image folder": images})
    segmenter = Segmenter(model, device)
    gpu = segmenter.device.type == "cuda"
    images_per_batch = images_per_batch or (32 if gpu else 1)
    workers = (min(8, os.cpu_count() or 1) if gpu else 0) if workers is None else workers
    batch_size = batch_size or (512 if gpu else 16)
    threshold = segmenter.threshold(threshold)
    finish = None if not fill else (segmenter.finish if min_area_ratio is None
                                    else lambda m: fill_contours(m, min_area_ratio=min_area_ratio))
    out = Path(out)
    result = SegmentResult()
    todo = []
    for path in list_images(images):
        if (out / f"{path.stem}.png").exists() and not overwrite:
            result.skipped.append(path.stem)
        else:
            todo.append(path)
    pool = ThreadPoolExecutor(workers) if workers > 0 else None
    loaded = _prefetch(pool, todo, segmenter, 2 * images_per_batch) if pool else (_load(p, segmenter) for p in todo)
    pending = []
    bar = tqdm(total=len(todo), desc="segment", unit="img", disable=not progress)
    try:
        for group in _groups(loaded, images_per_batch):
            for path, _, _, problem in group:
                if problem:
                    result.failed[str(path)] = problem
            good = [g for g in group if not g[3]]
            probs = segmenter.work_probabilities([g[2] for g in good], stride_px, window, batch_size) if good else []
            for (path, where, _, _), work_prob in zip(good, probs):
                args = (path, where, work_prob, out / f"{path.stem}.png", threshold, finish)
                pending.append(pool.submit(_finish, *args) if pool else _finish(*args))
            pending = _collect(pending, result, keep_running=pool is not None)
            bar.update(len(group))
        _collect(pending, result, keep_running=False)
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True)
    if result.quality:
        _write_quality(out / QUALITY_CSV, result.quality)
    return result


def _prefetch(pool: ThreadPoolExecutor, paths: list[Path], segmenter: Segmenter, ahead: int):
    """Decode in the pool, in order, at most ``ahead`` images in flight (bounded memory)."""
    queue = []
    for path in paths:
        queue.append(pool.submit(_load, path, segmenter))
        if len(queue) > ahead:
            yield queue.pop(0).result()
    for future in queue:
        yield future.result()


def _groups(items, size: int):
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _collect(pending: list, result: SegmentResult, keep_running: bool) -> list:
    """Record finished masks; with ``keep_running`` only those already done (the rest stay pending)."""
    still = []
    for item in pending:
        if keep_running and hasattr(item, "done") and not item.done():
            still.append(item)
            continue
        stem, quality = item.result() if hasattr(item, "result") else item
        result.written.append(stem)
        result.quality[stem] = quality
    return still


def _write_quality(path: Path, quality: dict[str, dict]) -> None:
    """Merge this run's rows into the folder's quality CSV (a resumed run keeps earlier rows)."""
    rows = {}
    if path.is_file():
        rows = {r["id"]: r for r in csv.DictReader(path.open())}
    rows.update({stem: {"id": stem, **q} for stem, q in quality.items()})
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(QUALITY_COLUMNS), extrasaction="ignore", restval="")
    writer.writeheader()
    for stem in sorted(rows):
        writer.writerow(rows[stem])
    atomic_write_text(path, buffer.getvalue())
