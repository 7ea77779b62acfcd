"""Evaluation: metrics (overall, by sex, by age band), the no-skill baseline, calibrated
intervals and their coverage, predictions CSV, curves and scatter plots.

Intervals: each image is predicted on ``tta_views`` fixed test-time views (the image and mild
seeded warps); the point prediction is their mean and their spread ``s`` measures how stable
the prediction is. The spread alone is far narrower than the real error, so the interval is
``mean ± k·(s + s0)`` with ``s0`` the median spread and ``k`` chosen on the validation split by
split-conformal calibration for the nominal level; coverage is then checked on the test split.
"""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path

import numpy as np

from handprep.boneage import data as bdata
from handprep.boneage.infer import RowView, predict_months
from handprep.boneage.metrics import conformal_scale, interval_coverage, metric_report, regression_metrics
from handprep.boneage.model import load_model_file, save_model_file
from handprep.io import atomic_write_text, refuse_output_overlap


def calibrate_interval(true, mean, std, level: float, views: int) -> dict:
    s0 = max(float(np.median(std)), 1.0)
    k = conformal_scale(true, mean, np.asarray(std) + s0, level)
    return {"method": "tta+split-conformal", "views": int(views), "level": float(level), "k": k, "s0": s0}


def interval(mean, std, calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    half = calibration["k"] * (np.asarray(std) + calibration["s0"])
    return np.maximum(mean - half, 0.0), mean + half


def _predict_rows(model, meta, images, rows, male, device, views, batch_size, progress):
    from tqdm.auto import tqdm

    with tqdm(total=len(rows), unit="img", desc="predicting", disable=not progress, leave=False) as bar:
        return predict_months(model, RowView(images, rows), male, meta["norm"], meta["size_px"], device, views,
                              batch_size, progress=bar.update)


def write_predictions(path: Path, records: list[dict]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buffer.getvalue())


def _records(ids, split, true, male, mean, std, lower, upper) -> list[dict]:
    return [{"id": i, "split": split, "boneage": f"{t:g}", "male": int(m), "predicted": round(float(p), 2),
             "lower": round(float(lo), 2), "upper": round(float(hi), 2), "error": round(float(p - t), 2),
             "tta_std": round(float(s), 3)}
            for i, t, m, p, s, lo, hi in zip(ids, true, male, mean, std, lower, upper)]


def evaluate_run(out: Path, prepared: dict, config, device, history: list[dict], log=print,
                 progress: bool = True) -> dict:
    """After training: calibrate intervals on validation, score the test split, write outputs."""
    from handprep.boneage import plots

    model_path = Path(out) / "model.pt"
    model, meta = load_model_file(model_path, device)
    labelled, parts, images = prepared["labelled"], prepared["parts"], prepared["dataset"].images
    batch = config.batch_size * 2
    results, records = {}, []
    for name in ("val", "test"):
        pos = parts[name]
        if len(pos) == 0:
            continue
        mean, std = _predict_rows(model, meta, images, labelled.rows[pos], labelled.male[pos], device,
                                  config.tta_views, batch, progress)
        results[name] = (pos, mean, std)
    val_pos, val_mean, val_std = results["val"]
    calibration = calibrate_interval(labelled.ages[val_pos], val_mean, val_std, config.interval_level,
                                     config.tta_views)
    train_mean = float(labelled.ages[parts["train"]].mean())
    metrics = {"model": str(model_path), "best_epoch": meta.get("epoch"), "epochs_run": len(history),
               "interval": calibration, "train_mean_months": train_mean}
    for name, (pos, mean, std) in results.items():
        true, male = labelled.ages[pos], labelled.male[pos]
        lower, upper = interval(mean, std, calibration)
        metrics[name] = metric_report(true, mean, male)
        metrics[name]["baseline_train_mean"] = regression_metrics(true, np.full_like(true, train_mean))
        metrics[name]["interval_coverage"] = interval_coverage(true, lower, upper)
        metrics[name]["interval_mean_width"] = float(np.mean(upper - lower))
        records += _records([labelled.ids[p] for p in pos], name, true, male, mean, std, lower, upper)
    scored = "test" if "test" in results else "val"
    metrics["scored_split"] = scored
    atomic_write_text(Path(out) / "metrics.json", json.dumps(metrics, indent=2))
    write_predictions(Path(out) / "predictions.csv", records)
    chosen = [r for r in records if r["split"] == scored]
    plots.scatter(Path(out) / "scatter.png", [float(r["boneage"]) for r in chosen], [r["predicted"] for r in chosen],
                  [r["male"] for r in chosen], f"{scored} split: MAE {metrics[scored]['all']['mae']:.1f} months",
                  [r["lower"] for r in chosen], [r["upper"] for r in chosen])
    plots.curves(Path(out) / "curves.png", history, metrics[scored]["baseline_train_mean"]["mae"])
    meta.update(interval=calibration, history=history,
                metrics={"scored_split": scored, **{k: metrics[scored]["all"][k] for k in ("mae", "rmse", "r2", "within_12")},
                         "baseline_mae": metrics[scored]["baseline_train_mean"]["mae"],
                         "interval_coverage": metrics[scored]["interval_coverage"],
                         "val_mae": metrics["val"]["all"]["mae"]})
    save_model_file(model_path, model, meta)
    atomic_write_text(Path(out) / "model.json", json.dumps({k: v for k, v in meta.items() if k != "history"},
                                                           indent=2))
    s = metrics[scored]
    log(f"{scored} split ({s['all']['n']} images): MAE {s['all']['mae']:.2f} months (no-skill training mean: "
        f"{s['baseline_train_mean']['mae']:.2f}), RMSE {s['all']['rmse']:.2f}, R² {s['all']['r2'] or 0:.3f}, "
        f"within 12 months {s['all']['within_12']:.1%}; {calibration['level']:.0%} intervals cover "
        f"{s['interval_coverage']:.1%} (mean width {s['interval_mean_width']:.1f} months)")
    return metrics


def pipelines_differ(model_pipeline: dict | None, dataset_pipeline: dict | None) -> bool:
    if not model_pipeline or not dataset_pipeline:
        return False
    return model_pipeline.get("stages") != dataset_pipeline.get("stages")


def evaluate(model_path: str | Path, dataset: str | Path, labels: str | Path, out: str | Path,
             split_file: str | Path | None = None, split: str | None = None, device: str = "auto",
             drop_unlabelled: bool = False, batch_size: int = 32, progress: bool = True, log=print) -> dict:
    """Score a model file on a labelled packed dataset (optionally one split of it)."""
    from handprep.boneage import plots
    from handprep.modelfile import pick_device

    if out is not None:
        refuse_output_overlap(out, {"model file": model_path, "dataset folder": dataset, "labels file": labels,
                                    "split file": split_file})
    device = pick_device(device)
    model, meta = load_model_file(model_path, device)
    packed = bdata.open_dataset(dataset)
    if packed.size_px != meta["dataset_size_px"]:
        raise bdata.BoneAgeDataError(f"{packed.folder}: images are {packed.size_px} px but the model was trained on "
                                     f"{meta['dataset_size_px']} px datasets; preprocess with the model's chain")
    if pipelines_differ(meta.get("pipeline"), packed.pipeline):
        log("warning: this dataset was made by another preprocessing chain than the model's training data")
    labelled = bdata.join_labels(packed, bdata.read_label_table(labels), labels, drop_unlabelled)
    pos = np.arange(len(labelled.ids))
    if split:
        chosen = bdata.resolve_split(labelled, split_file, (0.7, 0.15, 0.15), 0) if split_file or \
            all(s is not None for s in labelled.splits) else None
        if chosen is None:
            raise bdata.BoneAgeDataError("--split needs a split column in the labels or --split-file")
        pos = np.array([k for k, i in enumerate(labelled.ids) if chosen[i] == split], dtype=np.int64)
        if len(pos) == 0:
            raise bdata.BoneAgeDataError(f"no labelled image is in split {split!r}")
    interval_cal = meta.get("interval")
    views = interval_cal["views"] if interval_cal else 1
    mean, std = _predict_rows(model, meta, packed.images, labelled.rows[pos], labelled.male[pos], device, views,
                              batch_size, progress)
    true, male = labelled.ages[pos], labelled.male[pos]
    lower, upper = interval(mean, std, interval_cal) if interval_cal else (mean, mean)
    metrics = {"model": str(model_path), "dataset": str(packed.folder), "split": split or "all",
               **metric_report(true, mean, male)}
    baseline = meta.get("norm", {}).get("label_mean")
    if baseline is not None:
        metrics["baseline_train_mean"] = regression_metrics(true, np.full_like(true, baseline))
    if interval_cal:
        metrics["interval"] = interval_cal
        metrics["interval_coverage"] = interval_coverage(true, lower, upper)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_predictions(out / "predictions.csv", _records([labelled.ids[p] for p in pos], split or "all", true, male,
                                                        mean, std, lower, upper))
    plots.scatter(out / "scatter.png", true, mean, male, f"{split or 'all'}: MAE {metrics['all']['mae']:.1f} months",
                  lower if interval_cal else None, upper if interval_cal else None)
    if meta.get("history"):
        plots.curves(out / "curves.png", meta["history"], metrics.get("baseline_train_mean", {}).get("mae"))
    return metrics
