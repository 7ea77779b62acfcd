"""Write masks/REVIEW.csv from the recipes (raw films) and the rsna60 provenance.

    PYTHONPATH=$PWD python masks/tools/review_csv.py

Columns: id, source (rsna60 | rsna-raw), method, corrections, review_note, tags.
Raw rows: only ids whose mask exists in masks/ (a recipe without a committed mask is work in
progress). Tags: those recorded before the split (tools/tags_at_split.csv; for masks added with
later splits, the measured tags in tools/tags_v2_measured.csv, tags_v3_measured.csv and
tags_v4_measured.csv) plus any the review added (``tags_add`` in the recipe).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

from handprep.io import atomic_write_text

TOOLS = Path(__file__).parent
MASKS = TOOLS.parent
FIELDS = ["id", "source", "method", "corrections", "review_note", "tags"]
METHODS = {
    "near_model": "film threshold within 20 px of the draft model's (commit a4b3061) draft (build.py near_model)",
    "model": "draft model (the segmenter shipped at commit a4b3061) draft, largest region, filled, smoothed (build.py model)",
    "film": "film threshold above a fitted background (drafts.film_threshold_mask)",
}
RSNA60_NOTES = {
    "1541": ("composite of two exposures; thumb's upper outline jagged by about 10 px beside a bright "
             "foreign object (excluded)"),
    "1516": "black jagged cut across the forearm in the image itself; mask follows the visible tissue",
}


def describe(edits: list[dict], recipe: dict) -> str:
    parts = []
    if recipe.get("within"):
        parts.append("drafted inside a polygon fencing out markers or frame")
    for edit in edits:
        (op, arg), = edit.items()
        parts.append({"cut": "cut a polygon", "add": "added a polygon", "keep": "kept inside a polygon",
                      "grow": "grew into faint tissue above a measured level",
                      "film": "added a film threshold drafted in a second zone", "open": f"opening r={arg}",
                      "skin": "extended to the skin", "smooth": "smoothed"}[op])
    return "; ".join(parts) if parts else "none (draft accepted after review)"


def rows() -> list[dict]:
    recipes = yaml.safe_load((TOOLS / "recipes.yaml").read_text()) or {}
    tags = {r["id"]: r["tags"].split() for name in ("tags_at_split.csv", "tags_v2_measured.csv", "tags_v3_measured.csv",
                                          "tags_v4_measured.csv")
            for r in csv.DictReader(open(TOOLS / name))}
    out = []
    for path in sorted(MASKS.glob("*.png"), key=lambda p: int(p.stem)):
        case_id = path.stem
        if case_id in recipes:
            recipe = recipes[case_id]
            all_tags = tags.get(case_id, []) + [t for t in recipe.get("tags_add", []) if t not in tags.get(case_id, [])]
            method = METHODS[recipe.get("base", "near_model")]
            if recipe.get("skin", True):
                method += "; outline extended to the skin (extend_to_skin)"
            if recipe.get("feet", True):
                method += "; feet along edge strips trimmed (trim_border_feet)"
            out.append({"id": case_id, "source": "rsna-raw", "method": method,
                        "corrections": describe(recipe.get("edits") or [], recipe), "review_note": recipe["note"],
                        "tags": " ".join(all_tags) or "typical"})
        else:
            out.append({"id": case_id, "source": "rsna60",
                        "method": "threshold drafter on the pre-cleaned image (handprep masks propose, classical)",
                        "corrections": "none (all 60 accepted as drafted)",
                        "review_note": RSNA60_NOTES.get(case_id, "clean black background; draft reviewed on sheets"),
                        "tags": "precleaned"})
    return out


def main() -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows())
    atomic_write_text(MASKS / "REVIEW.csv", buffer.getvalue())


if __name__ == "__main__":
    main()
