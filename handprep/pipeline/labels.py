"""Labels CSV in the RSNA schema ``id,boneage,male`` (bone age in months, male True/False)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("id", "boneage", "male")
_TRUE = {"true", "1", "m", "male", "yes", "t"}
_FALSE = {"false", "0", "f", "female", "no"}


class LabelsError(ValueError):
    """The labels file is unusable (message names the file, the line and the fix)."""


@dataclass(frozen=True)
class Label:
    boneage_months: float
    male: bool


def parse_male(text: str) -> bool | None:
    """RSNA writes True/False; also accept 1/0, M/F, male/female. None if unrecognised."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def read_labels(path: str | Path) -> dict[str, Label]:
    """Read a labels CSV into ``{image id: Label}``.

    The id column matches image file stems. Column names are matched case-insensitively
    (RSNA's own files say ``id``/``Case ID``, ``boneage``/``Bone Age (months)``, ``male``/``Sex``).
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: labels file not found. Fix input.labels in the YAML or pass --labels.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise LabelsError(f"{path}: labels file is empty; expected a header line 'id,boneage,male'.") from None
        columns = {_canonical(name): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise LabelsError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or '(none)'}. "
                "The RSNA schema is 'id,boneage,male' (bone age in months, male True/False)."
            )
        labels: dict[str, Label] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                case_id = row[columns["id"]].strip()
                age_text = row[columns["boneage"]].strip()
                male_text = row[columns["male"]].strip()
            except IndexError:
                raise LabelsError(f"{path} line {line_no}: row has {len(row)} fields, header has {len(header)}.") from None
            try:
                age = float(age_text)
            except ValueError:
                raise LabelsError(f"{path} line {line_no}: boneage {age_text!r} is not a number (months).") from None
            if not math.isfinite(age) or age < 0 or age > 300:
                raise LabelsError(f"{path} line {line_no}: boneage {age_text} is outside 0–300 months.")
            male = parse_male(male_text)
            if male is None:
                raise LabelsError(f"{path} line {line_no}: male {male_text!r} is not True/False (or 1/0, M/F).")
            if case_id in labels:
                raise LabelsError(f"{path} line {line_no}: id {case_id} appears twice.")
            labels[case_id] = Label(age, male)
    return labels


_ALIASES = {
    "case id": "id", "image id": "id", "image": "id",
    "bone age (months)": "boneage", "bone_age": "boneage", "boneage_months": "boneage",
    "sex": "male", "is_male": "male",
}


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)
