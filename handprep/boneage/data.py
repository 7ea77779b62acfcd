"""Training data for the regressor: a packed dataset written by ``handprep run``, joined to labels.

A dataset folder is the output folder of ``handprep run`` (or its ``dataset/`` subfolder):
``dataset/images.npy`` (N×H×W uint8, opened memory-mapped), ``dataset/index.csv`` (row ``i``
of the array is row ``i`` of the index) and ``dataset/meta.json``; ``run.json`` beside them
records the preprocessing chain that made the images, which the model file keeps so that
``predict`` applies the same chain to new radiographs.
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handprep.io import atomic_write_text
from handprep.pipeline.dataset import verify_packed
from handprep.pipeline.labels import parse_male

SPLITS = ("train", "val", "test")
_ALIASES = {"case id": "id", "image id": "id", "image": "id", "bone age (months)": "boneage",
            "bone_age": "boneage", "boneage_months": "boneage", "sex": "male", "is_male": "male"}
MAX_LISTED = 10


class BoneAgeDataError(ValueError):
    """The dataset, labels or split cannot be used; the message names the file, the rows and the fix."""


@dataclass
class PackedDataset:
    folder: Path  # the run folder (holds dataset/ and run.json)
    images: np.ndarray  # N×H×W uint8, memory-mapped
    ids: list[str]
    pipeline: dict | None  # {"stages": [...], "input": {...}} from run.json, None if absent

    @property
    def size_px(self) -> int:
        return int(self.images.shape[1])


@dataclass(frozen=True)
class LabelRow:
    boneage_months: float
    male: bool
    split: str | None = None


@dataclass
class LabelledSet:
    """The dataset rows that have labels, in dataset order."""

    dataset: PackedDataset
    rows: np.ndarray  # row numbers into dataset.images
    ids: list[str]
    ages: np.ndarray  # float32 months
    male: np.ndarray  # float32 1/0
    splits: list[str | None]  # from a split column, else None
    notes: list[str]


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def dataset_folder(path: str | Path) -> Path:
    """Accept the run folder or its ``dataset/`` subfolder; return the run folder."""
    path = Path(path)
    if (path / "dataset" / "images.npy").is_file():
        return path
    if path.name == "dataset" and (path / "images.npy").is_file():
        return path.parent
    raise BoneAgeDataError(f"{path}: no packed dataset (dataset/images.npy) here. Run "
                           "'handprep run pipelines.yaml --output DIR' with export.pack: true and pass DIR.")


def open_dataset(path: str | Path) -> PackedDataset:
    """Open a packed dataset memory-mapped; refuse one whose array does not match its index/meta."""
    folder = dataset_folder(path)
    packed = folder / "dataset"
    for name in ("index.csv", "meta.json"):
        if not (packed / name).is_file():
            raise BoneAgeDataError(f"{packed / name} is missing: the dataset is incomplete; run 'handprep run' "
                                   "on the same output folder again to re-pack it.")
    recorded = verify_packed(packed)  # sizes and SHA-256 recorded when the run packed it
    if recorded:
        raise BoneAgeDataError(f"{packed}: {'; '.join(recorded)}")
    try:
        images = np.load(packed / "images.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise BoneAgeDataError(f"{packed / 'images.npy'} is not a readable .npy array ({exc}); re-run "
                               "'handprep run' to re-pack it.") from exc
    meta = json.loads((packed / "meta.json").read_text())
    with (packed / "index.csv").open(newline="") as handle:
        index = list(csv.DictReader(handle))
    ids = [r["id"] for r in index]
    problems = []
    if images.ndim != 3 or images.dtype != np.uint8:
        problems.append(f"images.npy is {images.dtype} with shape {images.shape}, expected N×H×W uint8")
    elif images.shape[1] != images.shape[2]:
        problems.append(f"images are {images.shape[2]}×{images.shape[1]} px, expected square (end the chain "
                        "with a 'resize' stage)")
    if len(images) != len(ids):
        problems.append(f"images.npy has {len(images)} rows but index.csv has {len(ids)}")
    if meta.get("packed") not in (None, len(images)) or (meta.get("shape") and list(images.shape[1:]) != meta["shape"]):
        problems.append(f"meta.json says {meta.get('packed')}×{meta.get('shape')}, images.npy is "
                        f"{len(images)}×{list(images.shape[1:])}")
    if [r.get("index") for r in index] != [str(i) for i in range(len(index))]:
        problems.append("index.csv rows are not numbered 0..N-1 in order")
    if len(set(ids)) != len(ids):
        problems.append("index.csv lists an id twice")
    if problems:
        raise BoneAgeDataError(f"{packed}: the packed array does not match its index ({'; '.join(problems)}). "
                               "Re-run 'handprep run' on that output folder to re-pack it.")
    return PackedDataset(folder, images, ids, read_pipeline(folder))


def read_pipeline(folder: Path) -> dict | None:
    """The resolved preprocessing chain from ``run.json`` (stages + input limits), JSON-able."""
    run_json = folder / "run.json"
    if not run_json.is_file():
        return None
    config = json.loads(run_json.read_text()).get("config", {})
    inputs = config.get("input", {})
    return {"stages": config.get("stages", []),
            "input": {k: inputs[k] for k in ("max_side_px", "min_side_px", "max_pixels") if k in inputs},
            "seed": config.get("seed", 0), "source": str(run_json)}


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def read_label_table(path: str | Path) -> dict[str, LabelRow]:
    """Labels CSV ``id,boneage,male[,split]``; every bad row is named in one error."""
    path = Path(path)
    if not path.is_file():
        raise BoneAgeDataError(f"{path}: labels file not found; pass --labels with an RSNA-schema CSV "
                               "(id,boneage,male).")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise BoneAgeDataError(f"{path}: empty file; expected a header line 'id,boneage,male'.")
        columns = {_canonical(c): i for i, c in enumerate(header)}
        missing = [c for c in ("id", "boneage", "male") if c not in columns]
        if missing:
            raise BoneAgeDataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}. "
                                   "Expected 'id,boneage,male' (months; True/False, 1/0 or M/F).")
        labels: dict[str, LabelRow] = {}
        problems: list[str] = []
        for line_no, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            problem, label, case_id = _parse_row(row, columns, len(header))
            if problem is None and case_id in labels:
                problem = f"id {case_id} appears twice"
            if problem:
                problems.append(f"line {line_no}: {problem}")
            else:
                labels[case_id] = label
    if problems:
        raise BoneAgeDataError(f"{path}: {len(problems)} bad row(s): {_listed(problems)}. "
                               "Fix these rows (bone age in months, male True/False/1/0/M/F).")
    if not labels:
        raise BoneAgeDataError(f"{path}: no label rows below the header.")
    return labels


def _parse_row(row: list[str], columns: dict, width: int) -> tuple[str | None, LabelRow | None, str]:
    if len(row) < width:
        return f"{len(row)} fields, the header has {width}", None, ""
    case_id = row[columns["id"]].strip()
    age_text, male_text = row[columns["boneage"]].strip(), row[columns["male"]].strip()
    if not case_id:
        return "empty id", None, ""
    if not age_text:
        return f"id {case_id}: boneage is empty", None, case_id
    try:
        age = float(age_text)
    except ValueError:
        return f"id {case_id}: boneage {age_text!r} is not a number of months", None, case_id
    if not math.isfinite(age) or not 0 <= age <= 300:
        return f"id {case_id}: boneage {age_text} is outside 0–300 months", None, case_id
    male = parse_male(male_text)
    if male is None:
        return f"id {case_id}: male {male_text!r} is not one of True/False/1/0/M/F", None, case_id
    split = row[columns["split"]].strip().lower() if "split" in columns else None
    if split is not None and split not in SPLITS:
        return f"id {case_id}: split {split!r} is not one of {'/'.join(SPLITS)}", None, case_id
    return None, LabelRow(age, male, split), case_id


def join_labels(dataset: PackedDataset, labels: dict[str, LabelRow], labels_path: str | Path = "labels",
                drop_unlabelled: bool = False) -> LabelledSet:
    """Keep the dataset rows that have labels (in dataset order); unlabelled rows are an error
    unless ``drop_unlabelled``. Label rows with no image are normal (the chain drops some)."""
    unlabelled = [i for i in dataset.ids if i not in labels]
    known = set(dataset.ids)
    unused = [i for i in labels if i not in known]
    if len(unlabelled) == len(dataset.ids):
        raise BoneAgeDataError(f"{labels_path}: none of its ids match the {len(dataset.ids)} images of "
                               f"{dataset.folder} (e.g. image {dataset.ids[0]!r}, label {next(iter(labels))!r}). "
                               "Is it the labels file of this dataset?")
    if unlabelled and not drop_unlabelled:
        raise BoneAgeDataError(f"{labels_path}: {len(unlabelled)} image(s) of {dataset.folder} have no label row: "
                               f"{_listed(unlabelled)}. Add their rows, or pass --drop-unlabelled to train without them.")
    notes = []
    if unlabelled:
        notes.append(f"{len(unlabelled)} unlabelled image(s) left out, e.g. {_listed(unlabelled)}")
    if unused:
        notes.append(f"{len(unused)} label row(s) have no image in the dataset (dropped or failed in "
                     f"'handprep run'?), e.g. {', '.join(unused[:5])}")
    rows = np.array([k for k, i in enumerate(dataset.ids) if i in labels], dtype=np.int64)
    ids = [dataset.ids[k] for k in rows]
    return LabelledSet(dataset, rows, ids,
                       np.array([labels[i].boneage_months for i in ids], dtype=np.float32),
                       np.array([labels[i].male for i in ids], dtype=np.float32),
                       [labels[i].split for i in ids], notes)


def stratified_split(ids: list[str], ages: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                     seed: int = 0, strata: int = 10) -> dict[str, str]:
    """Seeded train/val/test split, stratified by age: ids are sorted by age into ``strata``
    equal-count groups and each group is shuffled and cut by ``fractions``."""
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise BoneAgeDataError(f"split fractions {fractions} must be three non-negative numbers summing to 1")
    rng = np.random.default_rng(seed)
    order = np.argsort(np.asarray(ages), kind="stable")
    groups = np.array_split(order, max(1, min(strata, len(ids) // 3 or 1)))
    split: dict[str, str] = {}
    carry = np.zeros(3)  # largest-remainder rounding carried across groups keeps totals exact
    for group in groups:
        group = group[rng.permutation(len(group))]
        want = carry + np.asarray(fractions) * len(group)
        counts = np.floor(want).astype(int)
        counts[np.argsort(-(want - counts))[:len(group) - counts.sum()]] += 1
        carry = want - counts
        bounds = np.cumsum(counts)
        for k, idx in enumerate(group):
            split[ids[idx]] = SPLITS[int(np.searchsorted(bounds, k, side="right"))]
    return split


def write_split(path: str | Path, split: dict[str, str], ages: dict[str, float]) -> None:
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "split", "boneage"])
    for case_id in sorted(split):
        writer.writerow([case_id, split[case_id], f"{ages[case_id]:g}"])
    atomic_write_text(path, buffer.getvalue())


def read_split(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise BoneAgeDataError(f"{path}: split file not found")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    bad = [f"{r.get('id')}: {r.get('split')!r}" for r in rows if r.get("split") not in SPLITS]
    if bad:
        raise BoneAgeDataError(f"{path}: split must be one of {'/'.join(SPLITS)}: {_listed(bad)}")
    return {r["id"]: r["split"] for r in rows}


def resolve_split(data: LabelledSet, split_file: str | Path | None, fractions, seed: int) -> dict[str, str]:
    """Split column in the labels > a split file > a seeded stratified split."""
    if all(s is not None for s in data.splits):
        return dict(zip(data.ids, data.splits))
    if any(s is not None for s in data.splits):
        raise BoneAgeDataError("the labels' split column is empty for some rows; fill it for every row or drop it")
    if split_file is not None:
        split = read_split(split_file)
        missing = [i for i in data.ids if i not in split]
        if missing:
            raise BoneAgeDataError(f"{split_file}: no split for {len(missing)} labelled image(s): {_listed(missing)}")
        return {i: split[i] for i in data.ids}
    return stratified_split(data.ids, data.ages, fractions, seed)


def augmentation_copies(ages: np.ndarray, bins: list[float], extra_fraction: float = 1.0,
                        max_copies: int = 8) -> tuple[np.ndarray, dict]:
    """Weighted augmentation: how many extra augmented copies each image gets per epoch.

    Bin weights are inverse bin frequencies normalised to sum 1; a budget of
    ``extra_fraction × N`` copies is shared out by weight, and within a bin evenly over its
    images (capped at ``max_copies`` each), so rare ages are drawn more often.
    Returns ``(copies per image, {"edges", "before", "after", "weights"})``.
    """
    ages = np.asarray(ages, dtype=np.float64)
    edges = np.asarray(sorted(bins), dtype=np.float64)
    which = np.clip(np.digitize(ages, edges[1:-1]), 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    weights = inverse / inverse.sum()
    budget = extra_fraction * len(ages) * weights  # copies per bin
    per_image = np.where(counts > 0, budget / np.maximum(counts, 1), 0.0)
    copies = np.minimum(np.rint(per_image[which]), max_copies).astype(np.int64)
    after = counts + np.bincount(which, weights=copies, minlength=len(counts)).astype(np.int64)
    return copies, {"edges": edges.tolist(), "before": counts.tolist(), "after": after.tolist(),
                    "weights": [round(float(w), 6) for w in weights]}
