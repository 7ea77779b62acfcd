"""Choose a diverse subset of raw radiographs to mask, from measure.py's table.

    PYTHONPATH=$PWD python masks/tools/choose.py MEASURE_DIR OUT.csv [N=160] [SEED=7] [EXCLUDE.txt ...]

Ids listed in EXCLUDE files (one per line, or a CSV whose first column is the id) are never
chosen; quotas scale with N (they are written for N = 160).

Each image gets the candidate reasons its measurements support (see POOLS); the pools are
filled in turn, drawing at random (seeded) within each, until every pool has its quota or is
exhausted; typical images fill the rest. The output (id, reasons) records why each was chosen;
the tags in REVIEW.csv are what the review then saw by eye.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np


def tilt_deg(mask: np.ndarray) -> float:
    """Angle of the mask's principal axis from vertical, in degrees (0 = upright hand)."""
    moments = cv2.moments(mask, True)
    if moments["m00"] == 0:
        return 0.0
    angle = 0.5 * np.degrees(np.arctan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"]))
    return float(90 - abs(angle))


# name → (quota, rule on a row with floats); rows may satisfy several.
POOLS = {
    "landscape": (12, lambda r: r["landscape"] == 1),
    "bright_bg": (12, lambda r: r["border_med"] > 100),
    "grey_bg": (20, lambda r: 40 < r["border_med"] <= 100),
    "faint": (16, lambda r: r["contrast"] < 60),
    "dark": (12, lambda r: r["p99"] < 130 and r["contrast"] >= 60),
    "frame": (18, lambda r: r["edge_steps"].count("+") >= 1),
    "edge_step": (8, lambda r: r["edge_steps"] != "" and "+" not in r["edge_steps"]),
    "drafts_disagree": (22, lambda r: r["agree_dice"] < 0.85),
    "young": (10, lambda r: r["boneage"] <= 30),
    "old": (6, lambda r: r["boneage"] >= 216),
    "tilted": (12, lambda r: r["tilt"] > 20),
    "bright_labels": (8, lambda r: r["bright_frac"] > 0.02),
    "model_touches_side": (8, lambda r: any(s in r["model_touch"] for s in ("left", "right", "top"))),
    "small_or_large_hand": (8, lambda r: r["model_area"] < 0.18 or r["model_area"] > 0.45),
}
NUMERIC = ("boneage", "width", "height", "landscape", "border_med", "p1", "p50", "p99", "contrast",
           "bright_frac", "model_area", "thr_area", "agree_dice")


def load(measure_dir: Path) -> list[dict]:
    rows = []
    for row in csv.DictReader(open(measure_dir / "measure.csv")):
        for key in NUMERIC:
            row[key] = float(row[key])
        row["tilt"] = tilt_deg(cv2.imread(str(measure_dir / "drafts" / "model" / f"{row['id']}.png"), 0))
        row["reasons"] = [name for name, (_, rule) in POOLS.items() if rule(row)]
        rows.append(row)
    return rows


def choose(rows: list[dict], n: int, seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[str]] = {}
    for name, (full_quota, _) in POOLS.items():
        quota = max(1, round(full_quota * n / 160))
        pool = [r for r in rows if name in r["reasons"]]
        have = sum(1 for r in pool if r["id"] in chosen)
        rest = [r for r in pool if r["id"] not in chosen]
        for index in rng.permutation(len(rest))[:max(0, quota - have)]:
            chosen[rest[index]["id"]] = rest[index]["reasons"]
    typical = [r for r in rows if r["id"] not in chosen]
    for index in rng.permutation(len(typical))[:max(0, n - len(chosen))]:
        chosen[typical[index]["id"]] = typical[index]["reasons"] or ["typical"]
    return chosen


def read_ids(path: str) -> set[str]:
    lines = [line.split(",")[0].strip() for line in Path(path).read_text().splitlines()]
    return {line for line in lines if line.isdigit()}


def main(measure_dir: str, out: str, n: str = "160", seed: str = "7", *exclude_files: str) -> None:
    excluded = set().union(*(read_ids(f) for f in exclude_files))
    rows = [row for row in load(Path(measure_dir)) if row["id"] not in excluded]
    chosen = choose(rows, int(n), int(seed))
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "reasons"])
        for case_id in sorted(chosen, key=int):
            writer.writerow([case_id, " ".join(chosen[case_id])])
    counts = {name: sum(name in r for r in chosen.values()) for name in POOLS}
    print(f"{len(chosen)} chosen;", ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
