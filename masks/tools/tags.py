"""Merge measured reasons (selection.csv, measure.csv) and eye notes into one tag list per raw image.

    PYTHONPATH=$PWD python masks/tools/tags.py MEASURE_DIR NOTES.txt OUT.csv
    PYTHONPATH=$PWD python masks/tools/tags.py measured MEASURE_DIR IDS.csv OUT.csv   # measured tags only

Notes lines: ``<id> <what the draft looked like> | <tags seen by eye>``. Measured tags:
landscape (width > height), young (bone age ≤ 30 months), old (≥ 216), faint (p99 − p1 < 60),
dark (p99 < 130, so the hand never gets bright), grey_bg (border median 40–100),
bright_bg (> 100), frame (a step near ≥ 2 sides), rotated (hand axis > 20° from vertical).
``draft_fail``: the shipped model's draft missed most of the hand or took in a frame (by eye).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from choose import load  # noqa: E402

ORDER = ["frame", "grey_bg", "bright_bg", "faint", "dark", "marker_over_hand", "marker_near", "rotated",
         "landscape", "young", "old", "right_hand", "small_film", "other_hand", "foreign_object", "draft_fail"]


def measured(row: dict) -> set[str]:
    tags = set()
    rules = {"landscape": row["landscape"] == 1, "young": row["boneage"] <= 30, "old": row["boneage"] >= 216,
             "faint": row["contrast"] < 60, "dark": row["p99"] < 130, "grey_bg": 40 < row["border_med"] <= 100,
             "bright_bg": row["border_med"] > 100, "frame": row["edge_steps"].count("+") >= 1,
             "rotated": row["tilt"] > 20}
    return {name for name, hit in rules.items() if hit} | tags


def measured_only(measure_dir: str, ids_file: str, out: str) -> None:
    """Measured tags alone for the ids in ``ids_file`` (first CSV column), for masks added after the v1 split."""
    rows = {r["id"]: r for r in load(Path(measure_dir))}
    ids = [line.split(",")[0].strip() for line in open(ids_file) if line.split(",")[0].strip().isdigit()]
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "tags"])
        for case_id in sorted(ids, key=int):
            writer.writerow([case_id, " ".join(t for t in ORDER if t in measured(rows[case_id]))])


def main(measure_dir: str, notes: str, out: str) -> None:
    rows = {r["id"]: r for r in load(Path(measure_dir))}
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "tags", "draft_note"])
        for line in open(notes):
            if not line.strip():
                continue
            head, _, seen = line.partition("|")
            case_id, _, draft = head.strip().partition(" ")
            tags = measured(rows[case_id]) | set(seen.split())
            if draft.startswith("FAIL") or "leak" in draft or "includes" in draft:
                tags.add("draft_fail")
            writer.writerow([case_id, " ".join(t for t in ORDER if t in tags), draft.strip()])


if __name__ == "__main__":
    if sys.argv[1] == "measured":
        measured_only(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
