"""The batch runner: images in parallel through the stage chain, cached, resumable, audited.

A run first checks, in this process and without loading any model, which images already
have a verified final record in the cache (a warm re-run ends there). Only the others go
to the workers, which resume from the latest cached expensive product or start from the
decoded image. One bad image becomes a ``failed`` row with its reason; the batch goes on.
Every input-folder entry gets a manifest row, also when the run is interrupted, terminated
or stopped by a full disk. Orchestration only: image maths lives in ``handprep.stages``.
"""
from __future__ import annotations

import csv
import errno
import io as _io
import json
import os
import platform
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

import handprep
from handprep.io import ImageReadError, atomic_write_text, content_hash, decode_image, decode_mask, read_file_bytes, \
    scan_inputs, write_mask, write_png
from handprep.pipeline.cache import Cache, CaseState, chain_key, file_sha256
from handprep.pipeline.chain import apply_step, metric_prefixes
from handprep.pipeline.config import InputConfig, PipelineConfig, output_overlap
from handprep.pipeline.executor import Terminated, map_cases, terminate_as_interrupt, warmup_error
from handprep.pipeline.labels import read_labels
from handprep.pipeline.lock import OutputLock
from handprep.stages.registry import StageError, get_stage

MANIFEST_BASE_COLUMNS = [
    "id", "path", "status", "reason", "sha256", "output", "output_sha256", "out_height", "out_width", "mask_output",
    "height", "width", "dtype", "format", "notes", "cached", "seconds", "stage_ms",
]
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
MANIFEST_EVERY_S = 10.0  # a killed run still leaves a manifest at most this old
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class OutputError(OSError):
    """The output folder cannot be used (overlaps the inputs, read-only, or the disk is full)."""


@dataclass(frozen=True)
class Case:
    """One radiograph to process (paths are strings so cases pickle cheaply to workers)."""

    id: str
    path: str
    mask_path: str | None = None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, computed once in the main process."""

    config: PipelineConfig
    output: str
    checkpoints: tuple[int, ...]  # steps whose product is cached
    warmups: tuple[tuple[str, dict], ...] = ()  # (stage, params) to load once per worker

    def keys(self, input_hash: str, mask_hash: str | None) -> list[str]:
        """Cache key after each step."""
        keys, chain = [], []
        base = {"input": input_hash, "mask": mask_hash, "max_side_px": self.config.input.max_side_px}
        for step in self.config.stages:
            chain.append(step.key())
            keys.append(chain_key({**base, "steps": chain}))
        return keys


@dataclass
class RunSummary:
    rows: list[dict]
    counts: Counter
    output: Path
    seconds: float
    dataset: dict | None = None
    interrupted: bool = False
    terminated: bool = False  # SIGTERM rather than Ctrl-C
    stopped: str = ""  # why the run stopped early (a full disk)
    messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 143 if self.terminated else 130
        if self.stopped:
            return 4
        return 1 if self.counts.get("failed", 0) else 0


def build_plan(config: PipelineConfig) -> Plan:
    """Cache after expensive stages and after the last mask step (the finished mask), so a
    change to a later stage's parameters resumes from there."""
    stages = [get_stage(s.name) for s in config.stages]
    checkpoints = {i for i, s in enumerate(stages) if s.expensive}
    mask_steps = [i for i, s in enumerate(stages) if s.kind in ("mask", "segmenter")]
    if mask_steps and mask_steps[-1] < len(stages) - 1:
        checkpoints.add(mask_steps[-1])
    warmups = tuple((s.name, s.params) for s, st in zip(config.stages, stages) if st.warmup is not None)
    return Plan(config, str(Path(config.output)), tuple(sorted(checkpoints)), warmups)


def find_cases(config: PipelineConfig) -> tuple[list[Case], list[dict]]:
    """The input images (each with the mask path it should have), and rows for the entries
    of the input folder that are not read (other files, folders, links leading outside)."""
    scan = scan_inputs(config.input.images)
    mask_files: dict[str, str] = {}
    if config.input.masks:
        for p in sorted(Path(config.input.masks).iterdir()):
            if p.suffix.lower() in MASK_SUFFIXES and not p.name.startswith("."):
                mask_files.setdefault(p.stem, str(p))
    cases, first_path = [], {}
    for p in scan.images:
        mask_path = None
        if config.input.masks:
            mask_path = mask_files.get(p.stem, str(Path(config.input.masks) / f"{p.stem}.png"))
        duplicate = first_path.get(p.stem)
        first_path.setdefault(p.stem, str(p))
        cases.append(Case(p.stem, str(p), mask_path, duplicate))
    skipped = [{"id": p.name, "path": str(p), "status": "skipped", "reason": reason} for p, reason in scan.skipped]
    return cases, skipped


def read_case_mask(case: Case) -> bytes:
    """The bytes of the case's mask file, or a StageError saying which file was expected."""
    if not Path(case.mask_path).is_file():
        raise StageError(f"no mask for '{case.id}': expected {case.mask_path} "
                         "(masks are matched to images by file stem)")
    return read_file_bytes(case.mask_path)


def decode_case(case: Case, cfg: InputConfig, data: bytes, mask_data: bytes | None = None,
                row: dict | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Decode a case's image (and mask), check sizes, shrink huge scans to ``max_side_px``.

    Returns ``(image, mask or None, metrics)``; ``row`` (if given) receives size/format facts.
    """
    image, info = decode_image(data, case.path, cfg.max_pixels)
    if row is not None:
        row.update(height=image.shape[0], width=image.shape[1], dtype=str(image.dtype), format=info.format,
                   notes="; ".join(info.notes))
    h, w = image.shape
    if min(h, w) < cfg.min_side_px:
        raise StageError(f"image is {w}×{h} px, smaller than input.min_side_px={cfg.min_side_px}: "
                         "too small for the stages (a thumbnail or icon?); remove it or lower min_side_px")
    if mask_data is None and case.mask_path is not None:
        mask_data = read_case_mask(case)
    mask = None
    if mask_data is not None:
        mask = decode_mask(mask_data, case.mask_path)
        if mask.shape != image.shape:
            raise StageError(f"mask {case.mask_path} is {mask.shape[1]}×{mask.shape[0]} px but the image is "
                             f"{w}×{h} px; export the mask at the image's full size")
    metrics = {}
    if max(h, w) > cfg.max_side_px:
        # Huge scans: shrink right after decoding so no stage holds several huge copies.
        scale = cfg.max_side_px / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if mask is not None:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        metrics["read.scale"] = round(scale, 6)
    return image, mask, metrics


# --- one case ---------------------------------------------------------------------------

@dataclass
class _Identity:
    """What a case is, by content: its bytes, hashes and cache keys."""

    data: bytes
    mask_data: bytes | None
    keys: list[str]
    record_key: str


def _identify(case: Case, plan: Plan, row: dict) -> _Identity:
    if case.duplicate_of:
        raise StageError(f"another input has the same name stem '{case.id}' ({case.duplicate_of}); "
                         "outputs are named by stem, so rename one of them")
    data = read_file_bytes(case.path)
    row["sha256"] = input_hash = content_hash(data)
    mask_data = mask_hash = None
    if case.mask_path is not None:
        mask_data = read_case_mask(case)
        mask_hash = content_hash(mask_data)
    keys = plan.keys(input_hash, mask_hash)
    # outputs are named by id, so the final record is per id (states are shared by content)
    return _Identity(data, mask_data, keys, chain_key({"final": keys[-1], "id": case.id}))


def _outputs_valid(record: dict, output_dir: Path) -> bool:
    for entry in record.get("outputs", {}).values():
        if file_sha256(output_dir / entry["path"]) != entry["sha256"]:
            return False
    return True


def cached_row(case: Case, plan: Plan) -> dict | None:
    """The case's manifest row when a verified final record and its outputs exist, else None.

    Cheap (read, hash, compare): no image is decoded and no model is loaded.
    """
    row = _new_row(case)
    try:
        ident = _identify(case, plan, row)
    except (ImageReadError, StageError) as exc:  # empty file, duplicate name: no decoding needed to say so
        row["reason"] = str(exc)
        return row
    except OSError:
        return None  # the worker reports it with its reason
    record = Cache(Path(plan.output)).load_record(ident.record_key)
    if record is None or not _outputs_valid(record, Path(plan.output)):
        return None
    row.update(record["row"])
    row.update(path=case.path, cached="all")
    return row


def _new_row(case: Case) -> dict:
    return {"id": case.id, "path": case.path, "status": "failed", "reason": "", "cached": ""}


def _resume(plan: Plan, cache: Cache, ident: _Identity, case: Case, row: dict):
    """Start from the latest cached expensive product, else from the decoded image."""
    start, state = 0, None
    for index in reversed(plan.checkpoints):
        state = cache.load_state(ident.keys[index])
        if state is not None:
            start = index + 1
            row["cached"] = metric_prefixes(plan.config.stages)[index]
            break
    image, mask, metrics = decode_case(case, plan.config.input, ident.data, ident.mask_data, row)
    decoded = image
    if state is not None:
        image = state.image if state.image is not None else image
        mask, metrics = state.mask, state.metrics
    return start, image, mask, metrics, decoded


def _run_steps(plan: Plan, cache: Cache, ident: _Identity, start: int, image, mask, metrics: dict, decoded,
               stage_ms: dict, where: list, extras: dict) -> tuple[bool, str, np.ndarray, np.ndarray | None]:
    steps, prefixes = plan.config.stages, metric_prefixes(plan.config.stages)
    for index in range(start, len(steps)):
        step = steps[index]
        where[0] = step.name
        problem = warmup_error(step.name)
        if problem:
            raise StageError(problem)
        t0 = time.perf_counter()
        result = apply_step(step, image, mask)
        stage_ms[prefixes[index]] = round((time.perf_counter() - t0) * 1000, 1)
        image, mask = result.image, result.mask
        extras.update(result.extras)
        metrics.update({f"{prefixes[index]}.{k}": v for k, v in result.metrics.items()})
        if not result.keep:
            return False, result.reason, image, mask
        if index in plan.checkpoints:
            # stages return their input when they change nothing: then store no image,
            # re-decode the input on resume (a full-size copy per image would be huge)
            cache.save_state(ident.keys[index], CaseState(None if image is decoded else image, mask, metrics))
    return True, "", image, mask


def _write_outputs(plan: Plan, case: Case, image, mask, extras: dict, row: dict) -> dict:
    output_dir = Path(plan.output)
    outputs = {}
    written = write_png(output_dir / "images" / f"{case.id}.png", image, plan.config.export.png_compression)
    outputs["image"] = {"path": f"images/{case.id}.png", "sha256": content_hash(written)}
    if mask is not None and plan.config.export.save_masks:
        written = write_mask(output_dir / "masks" / f"{case.id}.png", mask)
        outputs["mask"] = {"path": f"masks/{case.id}.png", "sha256": content_hash(written)}
    for name, extra in sorted(extras.items()):  # e.g. the rois stage's crops
        written = write_png(output_dir / "rois" / f"{case.id}_{name}.png", extra, plan.config.export.png_compression)
        outputs[f"roi:{name}"] = {"path": f"rois/{case.id}_{name}.png", "sha256": content_hash(written)}
    if extras:
        row["rois"] = ";".join(v["path"] for k, v in outputs.items() if k.startswith("roi:"))
    return outputs


def _finish_row(row: dict, keep: bool, reason: str, image, outputs: dict, metrics: dict, stage_ms: dict) -> None:
    row.update(metrics)
    row.update(status="ok" if keep else "dropped", reason=reason,
               output=outputs.get("image", {}).get("path", ""),
               output_sha256=outputs.get("image", {}).get("sha256", ""),
               out_height=image.shape[0] if keep else "", out_width=image.shape[1] if keep else "",
               mask_output=outputs.get("mask", {}).get("path", ""),
               stage_ms=";".join(f"{k}={v}" for k, v in stage_ms.items()))


def process_case(case: Case, plan: Plan) -> dict:
    """Run one image through the chain; return its manifest row. Never raises for bad input.

    A row with ``fatal`` set means the output folder cannot take more files (disk full,
    read-only): the runner stops the batch.
    """
    started = time.perf_counter()
    cache = Cache(Path(plan.output))
    row, stage_ms, where, ident, extras = _new_row(case), {}, ["read"], None, {}
    try:
        ident = _identify(case, plan, row)
        record = cache.load_record(ident.record_key)
        if record is not None and _outputs_valid(record, Path(plan.output)):
            row.update(record["row"], path=case.path, cached="all")
            row["seconds"] = round(time.perf_counter() - started, 4)
            return row
        start, image, mask, metrics, decoded = _resume(plan, cache, ident, case, row)
        keep, reason, image, mask = _run_steps(plan, cache, ident, start, image, mask, metrics, decoded,
                                               stage_ms, where, extras)
        where[0] = "write"
        outputs = _write_outputs(plan, case, image, mask, extras, row) if keep else {}
        _finish_row(row, keep, reason, image, outputs, metrics, stage_ms)
        cached = {k: v for k, v in row.items() if k not in ("cached", "seconds")}
        cache.save_record(ident.record_key, {"row": cached, "outputs": outputs})
    except (ImageReadError, StageError) as exc:
        row["reason"] = str(exc) if where[0] in ("read", "write") else f"{where[0]}: {exc}"
        if where[0] == "read" and ident is not None:
            # the file's content decides this failure: remember it, so a re-run need not decode again
            cache.save_record(ident.record_key, {"row": {k: v for k, v in row.items() if k != "cached"},
                                                 "outputs": {}})
    except OSError as exc:
        row["reason"] = _os_error_reason(exc, where[0], case)
        row["fatal"] = exc.errno in _NO_SPACE and where[0] != "read"
    except MemoryError:
        row["reason"] = f"{where[0]}: out of memory; lower input.max_side_px or use fewer --workers"
    except Exception as exc:  # a bug or an unforeseen input: record it, keep the batch going
        at = traceback.extract_tb(exc.__traceback__)[-1]
        row["reason"] = (f"{where[0]}: unexpected {type(exc).__name__}: {exc} "
                         f"(at {Path(at.filename).name}:{at.lineno}; please report this)")
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row


def _os_error_reason(exc: OSError, where: str, case: Case) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: the output disk is full ({exc.filename or ''}); free some space and run again to resume"
    if exc.errno == errno.EROFS:
        return f"{where}: the output folder is on a read-only file system; choose another --output"
    return f"{where}: {exc.strerror or exc} ({exc.filename or case.path})"


# --- the whole batch --------------------------------------------------------------------

def _clean_stray_temp_files(output_dir: Path) -> int:
    removed = 0
    for folder in [output_dir, output_dir / "images", output_dir / "masks", output_dir / "rois", output_dir / "dataset"]:
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                removed += 1
    cache_dir = output_dir / ".cache"
    if cache_dir.is_dir():
        for p in cache_dir.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _previous_outputs(output_dir: Path) -> set[str]:
    """Files the previous run's manifest says it wrote (the only ones a run may delete)."""
    path = output_dir / "manifest.csv"
    try:
        with open(path, newline="") as handle:
            return {path for r in csv.DictReader(handle) for path in _row_outputs(r)}
    except (OSError, csv.Error):
        return set()


def _row_outputs(row: dict) -> list[str]:
    """The files a manifest row says were written for it (image, mask, ROI crops)."""
    return [p for p in [row.get("output"), row.get("mask_output"), *(row.get("rois") or "").split(";")] if p]


def _remove_stale_outputs(output_dir: Path, rows: list[dict], written_before: set[str]) -> int:
    """Keep images/ and masks/ equal to the manifest: delete files of images that are no longer
    ok — only files an earlier run recorded writing, never anything else in the folder."""
    keep = {p for r in rows if r["status"] == "ok" for p in _row_outputs(r)}
    removed = 0
    for relative in sorted(written_before - keep):
        path = output_dir / relative
        if relative.startswith(("images/", "masks/", "rois/")) and ".." not in Path(relative).parts and path.is_file():
            path.unlink()
            removed += 1
    return removed


def write_manifest(path: Path, rows: list[dict]) -> None:
    extra = sorted({k for r in rows for k in r} - set(MANIFEST_BASE_COLUMNS) - {"fatal"})
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_BASE_COLUMNS + extra, extrasaction="ignore", restval="")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: (r["id"], r["path"])):
        writer.writerow(r)
    atomic_write_text(path, buffer.getvalue())


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(config: PipelineConfig | None = None) -> dict:
    """Versions and model hashes that decide the outputs, for run.json (nothing is imported)."""
    versions = {"handprep": handprep.__version__, "python": platform.python_version(), "numpy": np.__version__,
                "opencv": cv2.__version__}
    for name in ("scikit-image", "joblib", "torch", "segmentation-models-pytorch", "timm", "pydicom", "mediapipe"):
        versions[name] = _package_version(name)
    info = {"versions": versions, "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if config is not None:
        info["stage_files"] = {f"{i}:{s.name}": s.key()["uses"] for i, s in enumerate(config.stages)
                               if "uses" in s.key()}
    return info


def check_output(config: PipelineConfig) -> Path:
    """Refuse an output that overlaps the inputs or cannot be written, before reading anything."""
    problem = output_overlap(config.input, config.output)
    if problem:
        raise OutputError(problem)
    output_dir = Path(config.output)
    probe = output_dir / f".handprep-write-test-{os.getpid()}.tmp"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {output_dir} ({exc.strerror}); "
                          "choose a writable --output or fix its permissions") from None
    return output_dir


class _Reserve:
    """A few MiB held on the output disk, given up when it fills, so the manifest still fits."""

    def __init__(self, output_dir: Path, n_rows: int):
        self.path = output_dir / ".cache" / ".reserve"
        size = (2 << 20) + 1024 * n_rows
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.is_file() or self.path.stat().st_size != size:
                with open(self.path, "wb") as handle:
                    handle.truncate(size)
                    os.posix_fallocate(handle.fileno(), 0, size) if hasattr(os, "posix_fallocate") else None
        except OSError:
            self.path.unlink(missing_ok=True)  # already too full: nothing to hold

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class _Progress:
    """Rows as they come, a progress bar, and a manifest rewritten every few seconds (unfinished
    images listed as pending), so even a killed run leaves a manifest."""

    def __init__(self, output_dir: Path, cases: list[Case], rows: list[dict], progress: bool):
        self.output_dir, self.cases, self.rows, self.counts = output_dir, cases, rows, Counter()
        self.bar = tqdm(total=len(cases), desc="handprep run", unit="img", disable=not progress, dynamic_ncols=True)
        self.save()

    def save(self) -> None:
        pending = _pending_rows(self.cases, self.rows, "not processed yet (the run is going on, or was killed: "
                                                       "run the same command again to resume)")
        write_manifest(self.output_dir / "manifest.csv", self.rows + pending)
        self.saved_at = time.monotonic()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.counts[row["status"]] += 1
        if row.get("cached") == "all":
            self.counts["cached"] += 1
        self.bar.update(1)
        self.bar.set_postfix(ok=self.counts["ok"], dropped=self.counts["dropped"], failed=self.counts["failed"],
                             refresh=False)
        if time.monotonic() - self.saved_at > MANIFEST_EVERY_S:
            self.save()

    def close(self) -> None:
        self.bar.close()


def _warm_rows(cases: list[Case], plan: Plan, progress: _Progress) -> list[Case]:
    """Serve every case with a verified final record; return the cases that need work."""
    todo = []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        for case, row in zip(cases, pool.map(lambda c: cached_row(c, plan), cases)):
            if row is None:
                todo.append(case)
            else:
                row["seconds"] = 0.0
                progress.add(row)
    return todo


def _process(cases: list[Case], plan: Plan, progress: _Progress, summary: RunSummary) -> None:
    todo = _warm_rows(cases, plan, progress)
    scratch = Path(plan.output) / ".cache" / "dask-scratch"
    for row in map_cases(process_case, todo, plan, plan.warmups if todo else (), scratch):
        if row.pop("fatal", False):
            summary.stopped = row["reason"]
            row["status"], row["reason"] = "pending", f"not finished: {row['reason']}"
            progress.add(row)
            break
        progress.add(row)


def _pending_rows(cases: list[Case], rows: list[dict], why: str) -> list[dict]:
    done = {r["path"] for r in rows}
    return [{"id": c.id, "path": c.path, "status": "pending", "reason": why} for c in cases if c.path not in done]


def run_pipeline(config: PipelineConfig, progress: bool = True, pack: bool | None = None) -> RunSummary:
    """Process every input image; write outputs, manifest.csv, run.json and the packed dataset.

    Raises ``OutputError`` (output overlaps an input or is not writable), ``LabelsError`` (bad
    labels file), ``OutputLockedError`` (folder busy) or ``FileNotFoundError`` (no inputs)
    before reading any image. Never writes, moves or deletes anything outside the output.
    """
    started = time.time()
    output_dir = check_output(config)
    with OutputLock(output_dir):
        _clean_stray_temp_files(output_dir)
        labels = read_labels(config.input.labels) if config.input.labels else None
        cases, skipped = find_cases(config)
        if not cases:
            raise FileNotFoundError(f"no images found in {config.input.images} "
                                    f"({len(skipped)} other entries; looked for .png .jpg .jpeg .tif .tiff .bmp "
                                    ".dcm and DICOM files without extension)")
        plan = build_plan(config)
        run_info = {"config": config.to_dict(), "seed": config.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": sys.argv, **environment(config), "images": len(cases), "finished": None}
        atomic_write_text(output_dir / "run.json", json.dumps(run_info, indent=2, default=str))
        written_before = _previous_outputs(output_dir)
        reserve = _Reserve(output_dir, len(cases) + len(skipped))
        rows: list[dict] = list(skipped)
        tracker = _Progress(output_dir, cases, rows, progress)
        summary = RunSummary(rows, tracker.counts, output_dir, 0.0)
        try:
            with terminate_as_interrupt():
                _process(cases, plan, tracker, summary)
        except KeyboardInterrupt as exc:
            summary.interrupted, summary.terminated = True, isinstance(exc, Terminated)
        finally:
            tracker.close()
        tracker.counts["skipped"] += len(skipped)
        _close_run(summary, cases, rows, reserve, written_before)
        if not (summary.interrupted or summary.stopped) and (pack if pack is not None else config.export.pack):
            summary.dataset = pack_dataset_safely(output_dir, rows, labels, config.input.labels, progress)
            summary.messages.extend(summary.dataset.get("messages", []))
        summary.seconds = time.time() - started
        run_info.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=round(summary.seconds, 3),
                        counts=dict(tracker.counts), interrupted=summary.interrupted, stopped=summary.stopped,
                        dataset={k: v for k, v in (summary.dataset or {}).items() if k != "messages"})
        _try_write(output_dir / "run.json", json.dumps(run_info, indent=2, default=str), summary)
    return summary


def _close_run(summary: RunSummary, cases: list[Case], rows: list[dict], reserve: _Reserve,
               written_before: set[str]) -> None:
    """Manifest (with a row for every unfinished image) and the folder mirror, after any ending."""
    output_dir = summary.output
    if summary.interrupted or summary.stopped:
        why = ("not processed: the run was " + ("terminated" if summary.terminated else "interrupted")
               if summary.interrupted else f"not processed: {summary.stopped}")
        rows.extend(_pending_rows(cases, rows, why + "; run the same command again to resume"))
        summary.counts["pending"] = sum(r["status"] == "pending" for r in rows)
        what = "terminated" if summary.terminated else "interrupted"
        summary.messages.append(
            f"{what} after {len(cases) - summary.counts['pending']} of {len(cases)} images; finished images are "
            "cached: run the same command again to resume" if summary.interrupted else
            f"stopped: {summary.stopped}")
    else:
        _remove_stale_outputs(output_dir, rows, written_before)
    reserve.release()  # its space is now the manifest's
    _try_write(output_dir / "manifest.csv", None, summary, rows)


def _try_write(path: Path, text: str | None, summary: RunSummary, rows: list[dict] | None = None) -> None:
    try:
        if rows is not None:
            write_manifest(path, rows)
        else:
            atomic_write_text(path, text)
    except OSError as exc:
        summary.stopped = summary.stopped or f"cannot write {path.name}: {exc.strerror}"
        summary.messages.append(f"could not write {path} ({exc.strerror}); the last one written during the run "
                                "is still there")


def pack_dataset_safely(output_dir: Path, rows: list[dict], labels, labels_path, progress: bool) -> dict:
    from handprep.pipeline.dataset import pack_dataset

    try:
        return pack_dataset(output_dir, rows, labels, labels_path, progress=progress)
    except OSError as exc:
        return {"packed": 0, "messages": [f"dataset not packed: {exc.strerror or exc}; free some space and run again"]}
