"""Metric definitions against hand-computed cases."""
import math

import numpy as np
import pytest

from handprep.boneage.metrics import conformal_scale, interval_coverage, metric_report, regression_metrics


def test_regression_metrics_hand_computed():
    true = np.array([100.0, 120.0, 140.0, 160.0])
    pred = np.array([110.0, 115.0, 140.0, 180.0])  # errors +10, -5, 0, +20
    m = regression_metrics(true, pred)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(35 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((100 + 25 + 0 + 400) / 4))
    # SS_tot = 30² + 10² + 10² + 30² = 2000; SS_res = 525
    assert m["r2"] == pytest.approx(1 - 525 / 2000)
    assert m["within_12"] == pytest.approx(3 / 4)  # |20| is outside, |10| inside
    assert m["mape"] == pytest.approx((10 / 100 + 5 / 120 + 0 + 20 / 160) / 4 * 100)
    assert m["bias"] == pytest.approx(25 / 4)


def test_edge_cases_are_defined():
    assert regression_metrics([], [])["n"] == 0
    same = regression_metrics([50, 50], [40, 60])
    assert same["r2"] is None and same["mae"] == 10
    assert regression_metrics([0, 10], [1, 10])["mape"] == 0  # age 0 is left out of MAPE
    assert regression_metrics([12.0], [24.0])["within_12"] == 1.0  # exactly 12 months counts


def test_report_by_sex_and_band():
    true = np.array([30, 90, 130, 200, 300])
    pred = true + np.array([1, 2, 3, 4, 5])
    male = np.array([1, 0, 1, 0, 1])
    r = metric_report(true, pred, male)
    assert r["by_sex"]["male"]["mae"] == pytest.approx(3) and r["by_sex"]["female"]["mae"] == pytest.approx(3)
    assert {k: v["n"] for k, v in r["by_band"].items()} == {"0-60": 1, "60-120": 1, "120-156": 1, "156-192": 0,
                                                           "192-300": 2}


def test_conformal_scale_and_coverage():
    centre = np.zeros(9)
    true = np.arange(1, 10, dtype=float)  # scores 1..9 with spread 1
    # level 0.8: rank ceil(10 · 0.8) = 8 → the 8th smallest score
    assert conformal_scale(true, centre, np.ones(9), 0.8) == 8
    assert conformal_scale(true, centre, np.full(9, 2.0), 0.8) == 4
    assert conformal_scale(true, centre, np.ones(9), 0.99) == 9  # capped at the largest score
    assert interval_coverage([1, 5, 9], [0, 6, 9], [2, 7, 10]) == pytest.approx(2 / 3)
