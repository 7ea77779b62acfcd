"""The batch runner: images in parallel through the stage chain, cached, resumable, audited.

Per image it reads the file once, hashes it, and either finds a verified final record in the
cache (nothing else to do), resumes from the latest cached expensive product, or starts
from the decoded image. One bad image becomes a ``failed`` row with its reason; the batch
goes on. Orchestration only: image maths lives in ``handprep.stages``.
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
import platform
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

import handprep
from handprep.io import ImageReadError, content_hash, decode_image, decode_mask, list_images, read_file_bytes, \
    atomic_write_text, write_mask, write_png
from handprep.pipeline.cache import Cache, CaseState, chain_key, file_sha256
from handprep.pipeline.chain import apply_step, metric_prefixes
from handprep.pipeline.config import InputConfig, PipelineConfig
from handprep.pipeline.labels import read_labels
from handprep.pipeline.lock import OutputLock
from handprep.stages.registry import StageError, get_stage

MANIFEST_BASE_COLUMNS = [
    "id", "path", "status", "reason", "sha256", "output", "output_sha256", "out_height", "out_width", "mask_output",
    "height", "width", "dtype", "format", "notes", "cached", "seconds", "stage_ms",
]
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


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
    uses_torch: bool = False

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
    messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.counts.get("failed", 0) else 0


def build_plan(config: PipelineConfig) -> Plan:
    """Cache after expensive stages and after the last mask step (the finished mask), so a
    change to a later stage's parameters resumes from there."""
    stages = [get_stage(s.name) for s in config.stages]
    checkpoints = {i for i, s in enumerate(stages) if s.expensive}
    mask_steps = [i for i, s in enumerate(stages) if s.kind in ("mask", "segmenter")]
    if mask_steps and mask_steps[-1] < len(stages) - 1:
        checkpoints.add(mask_steps[-1])
    uses_torch = any(s.name == "segment" for s in config.stages)
    return Plan(config, str(Path(config.output)), tuple(sorted(checkpoints)), uses_torch)


def find_cases(config: PipelineConfig) -> list[Case]:
    """The input images, each with the mask path it should have (if masks are configured)."""
    paths = list_images(config.input.images)
    mask_files: dict[str, str] = {}
    if config.input.masks:
        for p in sorted(Path(config.input.masks).iterdir()):
            if p.suffix.lower() in MASK_SUFFIXES and not p.name.startswith("."):
                mask_files.setdefault(p.stem, str(p))
    cases, first_path = [], {}
    for p in paths:
        mask_path = None
        if config.input.masks:
            mask_path = mask_files.get(p.stem, str(Path(config.input.masks) / f"{p.stem}.png"))
        duplicate = first_path.get(p.stem)
        first_path.setdefault(p.stem, str(p))
        cases.append(Case(p.stem, str(p), mask_path, duplicate))
    return cases


def _pin_threads(uses_torch: bool) -> None:
    # Each worker is one core's worth of work; library thread pools would oversubscribe.
    cv2.setNumThreads(1)
    if uses_torch:
        import torch

        torch.set_num_threads(1)


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


def _outputs_valid(record: dict, output_dir: Path) -> bool:
    for entry in record.get("outputs", {}).values():
        if file_sha256(output_dir / entry["path"]) != entry["sha256"]:
            return False
    return True


def process_case(case: Case, plan: Plan) -> dict:
    """Run one image through the chain; return its manifest row. Never raises for bad input."""
    _pin_threads(plan.uses_torch)
    started = time.perf_counter()
    output_dir = Path(plan.output)
    cache = Cache(output_dir)
    steps = plan.config.stages
    prefixes = metric_prefixes(steps)
    row: dict = {"id": case.id, "path": case.path, "status": "failed", "reason": "", "cached": ""}
    stage_ms: dict[str, float] = {}
    current = "read"
    try:
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
        record_key = chain_key({"final": keys[-1], "id": case.id})

        record = cache.load_record(record_key)
        if record is not None and _outputs_valid(record, output_dir):
            row.update(record["row"])
            row.update(path=case.path, cached="all")
            row["seconds"] = round(time.perf_counter() - started, 4)
            return row

        start, state = 0, None
        for index in reversed(plan.checkpoints):
            state = cache.load_state(keys[index])
            if state is not None:
                start = index + 1
                row["cached"] = prefixes[index]
                break
        image, mask, metrics = decode_case(case, plan.config.input, data, mask_data, row)
        decoded = image
        if state is not None:
            image = state.image if state.image is not None else image
            mask, metrics = state.mask, state.metrics

        keep, reason, extras = True, "", {}
        for index in range(start, len(steps)):
            step = steps[index]
            current = step.name
            t0 = time.perf_counter()
            result = apply_step(step, image, mask)
            stage_ms[prefixes[index]] = round((time.perf_counter() - t0) * 1000, 1)
            image, mask = result.image, result.mask
            extras.update(result.extras)
            metrics.update({f"{prefixes[index]}.{k}": v for k, v in result.metrics.items()})
            if not result.keep:
                keep, reason = False, result.reason
                break
            if index in plan.checkpoints:
                # stages return their input when they change nothing: then store no image,
                # re-decode the input on resume (a full-size copy per image would be huge)
                cache.save_state(keys[index], CaseState(None if image is decoded else image, mask, metrics))
        current = "write"
        outputs = {}
        if keep:
            compression = plan.config.export.png_compression
            written = write_png(output_dir / "images" / f"{case.id}.png", image, compression)
            outputs["image"] = {"path": f"images/{case.id}.png", "sha256": content_hash(written)}
            if mask is not None and plan.config.export.save_masks:
                written = write_mask(output_dir / "masks" / f"{case.id}.png", mask)
                outputs["mask"] = {"path": f"masks/{case.id}.png", "sha256": content_hash(written)}
            for name, extra in sorted(extras.items()):  # e.g. the rois stage's crops
                written = write_png(output_dir / "rois" / f"{case.id}_{name}.png", extra, compression)
                outputs[f"roi:{name}"] = {"path": f"rois/{case.id}_{name}.png", "sha256": content_hash(written)}
            if extras:
                row["rois"] = ";".join(v["path"] for k, v in outputs.items() if k.startswith("roi:"))
        row.update(metrics)
        row.update(status="ok" if keep else "dropped", reason=reason,
                   output=outputs.get("image", {}).get("path", ""),
                   output_sha256=outputs.get("image", {}).get("sha256", ""),
                   out_height=image.shape[0] if keep else "", out_width=image.shape[1] if keep else "",
                   mask_output=outputs.get("mask", {}).get("path", ""),
                   stage_ms=";".join(f"{k}={v}" for k, v in stage_ms.items()))
        cached_row = {k: v for k, v in row.items() if k not in ("cached", "seconds")}
        cache.save_record(record_key, {"row": cached_row, "outputs": outputs})
    except (ImageReadError, StageError) as exc:
        row["reason"] = str(exc) if current in ("read", "write") else f"{current}: {exc}"
    except MemoryError:
        row["reason"] = f"{current}: out of memory; lower input.max_side_px or use fewer --workers"
    except Exception as exc:  # a bug or an unforeseen input: record it, keep the batch going
        where = traceback.extract_tb(exc.__traceback__)[-1]
        row["reason"] = (f"{current}: unexpected {type(exc).__name__}: {exc} "
                         f"(at {Path(where.filename).name}:{where.lineno}; please report this)")
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row


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


def _remove_stale_outputs(output_dir: Path, rows: list[dict]) -> int:
    """Keep images/ and masks/ equal to the manifest: drop files of images not ok in this run."""
    keep = {r["output"] for r in rows if r["status"] == "ok"} | {r["mask_output"] for r in rows if r["status"] == "ok"}
    keep |= {p for r in rows if r["status"] == "ok" for p in (r.get("rois") or "").split(";") if p}
    removed = 0
    for folder in ("images", "masks", "rois"):
        for p in (output_dir / folder).glob("*.png") if (output_dir / folder).is_dir() else []:
            if f"{folder}/{p.name}" not in keep:
                p.unlink()
                removed += 1
    return removed


def write_manifest(path: Path, rows: list[dict]) -> None:
    extra = sorted({k for r in rows for k in r} - set(MANIFEST_BASE_COLUMNS))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_BASE_COLUMNS + extra, extrasaction="ignore", restval="")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: (r["id"], r["path"])):
        writer.writerow(r)
    atomic_write_text(path, buffer.getvalue())


def environment() -> dict:
    """Versions that decide the outputs, for run.json."""
    import joblib
    import skimage

    versions = {"handprep": handprep.__version__, "python": platform.python_version(), "numpy": np.__version__,
                "opencv": cv2.__version__, "scikit-image": skimage.__version__, "joblib": joblib.__version__}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    return {"versions": versions, "platform": platform.platform(), "cpu_count": os.cpu_count()}


def _map_cases(cases: list[Case], plan: Plan):
    """Yield rows as images finish, on the configured backend."""
    config = plan.config
    workers = config.n_workers
    if config.backend == "sequential" or (workers == 1 and config.backend != "dask"):
        threads = cv2.getNumThreads()
        torch_threads = None
        if plan.uses_torch:
            import torch

            torch_threads = torch.get_num_threads()
        try:
            for case in cases:
                yield process_case(case, plan)
        finally:
            cv2.setNumThreads(threads)
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
        return
    from joblib import Parallel, delayed, parallel_config

    tasks = (delayed(process_case)(case, plan) for case in cases)
    if config.backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError("backend 'dask' needs dask.distributed: pip install 'handprep[dask]'") from None
        cluster = None
        if config.scheduler:
            client = Client(config.scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            with parallel_config(backend="dask"):
                yield from Parallel(return_as="generator_unordered")(tasks)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    yield from Parallel(n_jobs=workers, backend=config.backend, return_as="generator_unordered")(tasks)


def run_pipeline(config: PipelineConfig, progress: bool = True, pack: bool | None = None) -> RunSummary:
    """Process every input image; write outputs, manifest.csv, run.json and the packed dataset.

    Raises ``LabelsError`` (bad labels file), ``OutputLockedError`` (folder busy) or
    ``FileNotFoundError`` (no inputs) before touching any image.
    """
    from handprep.pipeline.dataset import pack_dataset

    output_dir = Path(config.output)
    started = time.time()
    with OutputLock(output_dir):
        _clean_stray_temp_files(output_dir)
        labels = read_labels(config.input.labels) if config.input.labels else None
        cases = find_cases(config)
        if not cases:
            raise FileNotFoundError(f"no images found in {config.input.images} "
                                    "(looked for .png .jpg .jpeg .tif .tiff .bmp .dcm)")
        plan = build_plan(config)
        run_info = {"config": config.to_dict(), "seed": config.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": sys.argv, **environment(), "images": len(cases), "finished": None}
        atomic_write_text(output_dir / "run.json", json.dumps(run_info, indent=2, default=str))

        rows: list[dict] = []
        counts: Counter = Counter()
        summary = RunSummary(rows, counts, output_dir, 0.0)
        bar = tqdm(total=len(cases), desc="handprep run", unit="img", disable=not progress, dynamic_ncols=True)
        try:
            for row in _map_cases(cases, plan):
                rows.append(row)
                counts[row["status"]] += 1
                if row.get("cached") == "all":
                    counts["cached"] += 1
                bar.update(1)
                bar.set_postfix(ok=counts["ok"], dropped=counts["dropped"], failed=counts["failed"], refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
        if summary.interrupted:
            write_manifest(output_dir / "manifest.csv", rows)
            summary.messages.append(f"interrupted after {len(rows)} of {len(cases)} images; "
                                    "finished images are cached: run the same command again to resume")
            summary.seconds = time.time() - started
            return summary
        _remove_stale_outputs(output_dir, rows)
        write_manifest(output_dir / "manifest.csv", rows)
        if pack if pack is not None else config.export.pack:
            summary.dataset = pack_dataset(output_dir, rows, labels, config.input.labels, progress=progress)
            summary.messages.extend(summary.dataset.get("messages", []))
        summary.seconds = time.time() - started
        run_info.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=round(summary.seconds, 3),
                        counts=dict(counts), dataset={k: v for k, v in (summary.dataset or {}).items() if k != "messages"})
        atomic_write_text(output_dir / "run.json", json.dumps(run_info, indent=2, default=str))
    return summary
