"""Regression metrics in months (standard definitions), overall, by sex and by age band."""
from __future__ import annotations

import numpy as np

DEFAULT_BANDS = (0, 60, 120, 156, 192, 300)  # months: <5 y, 5–10 y, 10–13 y, 13–16 y, ≥16 y


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    """MAE, RMSE, R² (1 − SS_res/SS_tot; None with fewer than 2 distinct ages), share within
    12 months (|error| ≤ 12), MAPE in % over ages > 0, and the mean signed error (bias)."""
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.size == 0:
        return {"n": 0}
    error = pred - true
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    positive = true > 0
    return {
        "n": int(true.size),
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "r2": float(1 - np.sum(error ** 2) / ss_tot) if ss_tot > 0 else None,
        "within_12": float(np.mean(np.abs(error) <= 12)),
        "mape": float(np.mean(np.abs(error[positive]) / true[positive]) * 100) if positive.any() else None,
        "bias": float(np.mean(error)),
    }


def band_names(bands=DEFAULT_BANDS) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(bands[:-1], bands[1:])]


def metric_report(true, pred, male, bands=DEFAULT_BANDS) -> dict:
    """``{"all", "by_sex": {"female", "male"}, "by_band": {"0-60": …}}``; a band holds ages in [lo, hi)
    (the last band includes its upper edge)."""
    true, pred, male = (np.asarray(a, dtype=np.float64) for a in (true, pred, male))
    report = {"all": regression_metrics(true, pred),
              "by_sex": {name: regression_metrics(true[male == value], pred[male == value])
                         for name, value in (("female", 0), ("male", 1))},
              "by_band": {}}
    for k, (name, lo, hi) in enumerate(zip(band_names(bands), bands[:-1], bands[1:])):
        inside = (true >= lo) & ((true < hi) if k < len(bands) - 2 else (true <= hi))
        report["by_band"][name] = regression_metrics(true[inside], pred[inside])
    return report


def interval_coverage(true, lower, upper) -> float:
    """Share of true ages inside [lower, upper]."""
    true = np.asarray(true, dtype=np.float64)
    return float(np.mean((true >= np.asarray(lower)) & (true <= np.asarray(upper)))) if true.size else float("nan")


def conformal_scale(true, centre, spread, level: float) -> float:
    """Split-conformal factor k: the ⌈(n+1)·level⌉-th smallest |true − centre| / spread on a
    calibration set, so that centre ± k·spread covers ``level`` of new cases (exchangeable data)."""
    scores = np.sort(np.abs(np.asarray(true, np.float64) - np.asarray(centre, np.float64)) / np.asarray(spread))
    n = scores.size
    if n == 0:
        raise ValueError("no calibration cases for the interval")
    rank = min(n, int(np.ceil((n + 1) * level)))
    return float(scores[rank - 1])
