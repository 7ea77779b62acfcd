"""``handprep predict``: raw radiographs → the preprocessing chain recorded in the model file
(run in-process with the pipeline's own decode and stage functions) → the regressor, with a
calibrated interval. One unreadable or dropped image becomes a row with its reason."""
from __future__ import annotations

import csv
import io as _io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handprep.boneage.data import BoneAgeDataError, _canonical, _listed
from handprep.boneage.evaluate import interval
from handprep.boneage.infer import predict_months
from handprep.boneage.model import ModelFileError, load_model_file
from handprep.io import ImageReadError, atomic_write_text, list_images, read_file_bytes, refuse_output_overlap
from handprep.pipeline.chain import apply_step
from handprep.pipeline.config import InputConfig, StageStep
from handprep.pipeline.labels import parse_male
from handprep.stages.registry import StageError, get_stage

COLUMNS = ["id", "boneage_months", "lower", "upper", "status", "reason", "male", "tta_std", "path"]


@dataclass
class Chain:
    steps: list[StageStep]
    input: InputConfig


def recorded_chain(meta: dict, model_path: str | Path = "model") -> Chain:
    """The preprocessing chain a model was trained on, checked against the stages installed here."""
    pipeline = meta.get("pipeline")
    if not pipeline or not pipeline.get("stages"):
        raise ModelFileError(f"{model_path}: the model records no preprocessing chain (its dataset had no "
                             "run.json); it can only score packed datasets with 'handprep evaluate'")
    steps = []
    for entry in pipeline["stages"]:
        (name, params), = (entry.items() if isinstance(entry, dict) else [(entry, {})])  # "overlay" = no params
        try:
            get_stage(name)
        except StageError as exc:
            raise ModelFileError(f"{model_path}: its chain uses stage {name!r} that this handprep lacks ({exc})") from exc
        steps.append(StageStep(name, dict(params or {})))
    limits = pipeline.get("input", {})
    return Chain(steps, InputConfig(images="", **limits))


def preprocess(path: str | Path, chain: Chain) -> tuple[np.ndarray | None, str, str]:
    """One radiograph through the chain: ``(image or None, status, reason)``."""
    from handprep.pipeline.runner import Case, decode_case

    case = Case(Path(path).stem, str(path))
    current = "read"
    try:
        image, mask, _ = decode_case(case, chain.input, read_file_bytes(path))
        for step in chain.steps:
            current = step.name
            result = apply_step(step, image, mask)
            if not result.keep:
                return None, "dropped", f"{step.name}: {result.reason}"
            image, mask = result.image, result.mask
    except (ImageReadError, StageError, OSError, ValueError) as exc:
        return None, "failed", str(exc) if current == "read" else f"{current}: {exc}"
    if image.dtype != np.uint8 or image.ndim != 2:
        return None, "failed", f"the chain produced a {image.dtype} {image.shape} image, expected 2-D uint8"
    return image, "ok", ""


def read_sex_table(path: str | Path) -> dict[str, bool]:
    """``id,male`` (or a full labels CSV); every bad row is named in one error."""
    path = Path(path)
    if not path.is_file():
        raise BoneAgeDataError(f"{path}: --sex-from file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [_canonical(c) for c in next(reader, [])]
        if "id" not in header or "male" not in header:
            raise BoneAgeDataError(f"{path}: needs columns id and male (True/False, 1/0 or M/F)")
        i_id, i_male = header.index("id"), header.index("male")
        table, problems = {}, []
        for line_no, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            value = parse_male(row[i_male]) if len(row) > max(i_id, i_male) else None
            if value is None:
                problems.append(f"line {line_no}: male {row[i_male] if len(row) > i_male else ''!r}")
            else:
                table[row[i_id].strip()] = value
    if problems:
        raise BoneAgeDataError(f"{path}: {len(problems)} bad row(s): {_listed(problems)}; use True/False, 1/0 or M/F")
    return table


def _preprocess_in_worker(path: Path, chain: Chain) -> tuple[np.ndarray | None, str, str]:
    # one core per worker: library thread pools would oversubscribe
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    return preprocess(path, chain)


def _preprocessed(paths: list[Path], chain: Chain, workers: int):
    """``(path, image, status, reason)`` in input order; ``workers`` > 1 runs the chain in processes."""
    if workers <= 1:
        for path in paths:
            yield (path, *preprocess(path, chain))
        return
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=workers, return_as="generator")(delayed(_preprocess_in_worker)(p, chain) for p in paths)
    for path, result in zip(paths, results):
        yield (path, *result)


def predict_images(model_path: str | Path, images: str | Path, out: str | Path, sex_table: dict[str, bool] | None = None,
                   sex: bool | None = None, device: str = "auto", batch_size: int = 16, workers: int = 1,
                   progress: bool = True) -> list[dict]:
    """Predict every radiograph under ``images``; write ``out`` (CSV) and return its rows.

    ``workers`` processes run the preprocessing chain; the regressor runs in this process.
    """
    from tqdm.auto import tqdm

    from handprep.modelfile import pick_device

    if (sex_table is None) == (sex is None):
        raise ValueError("give the sex of the children: --sex-from CSV or --sex M|F (exactly one)")
    refuse_output_overlap(out, {"model file": model_path, "radiographs": images})
    dev = pick_device(device)
    model, meta = load_model_file(model_path, dev)
    chain = recorded_chain(meta, model_path)
    calibration = meta.get("interval")
    rows, todo, ready = [], [], []
    for path in list_images(images):
        male = sex if sex_table is None else sex_table.get(path.stem)
        rows.append({"id": path.stem, "boneage_months": "", "lower": "", "upper": "", "status": "failed",
                     "reason": "" if male is not None else f"no sex for id {path.stem} in the --sex-from file",
                     "male": "" if male is None else int(male), "tta_std": "", "path": str(path)})
        if male is not None:
            todo.append((path, rows[-1]))
    results = _preprocessed([p for p, _ in todo], chain, workers)
    for (_, row), (path, image, status, reason) in tqdm(zip(todo, results), total=len(todo), desc="predict",
                                                        unit="img", disable=not progress):
        row["status"], row["reason"] = status, reason
        if image is not None and image.shape != (meta["dataset_size_px"],) * 2:
            row["status"], row["reason"] = "failed", (f"the chain gave {image.shape[1]}×{image.shape[0]} px, "
                                                      f"the model expects {meta['dataset_size_px']} px")
        elif image is not None:
            ready.append((row, image))
        if len(ready) >= 4 * batch_size:
            _regress(model, meta, ready, calibration, dev, batch_size)
            ready = []
    _regress(model, meta, ready, calibration, dev, batch_size)
    _write(Path(out), rows)
    return rows


def _regress(model, meta: dict, ready: list, calibration: dict | None, device, batch_size: int) -> None:
    """Fill the prediction columns of the rows whose images passed the chain."""
    if not ready:
        return
    stack = np.stack([image for _, image in ready])
    males = np.array([r["male"] for r, _ in ready], dtype=np.float32)
    views = calibration["views"] if calibration else 1
    with torch.inference_mode():
        mean, std = predict_months(model, stack, males, meta["norm"], meta["size_px"], device, views, batch_size)
    lower, upper = interval(mean, std, calibration) if calibration else (mean, mean)
    for (row, _), m, s, lo, hi in zip(ready, mean, std, lower, upper):
        row.update(boneage_months=round(float(m), 1), lower=round(float(lo), 1), upper=round(float(hi), 1),
                   tta_std=round(float(s), 2))


def _write(path: Path, rows: list[dict]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
