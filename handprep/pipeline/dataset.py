"""The packed training dataset: ``dataset/images.npy`` (N×H×W, memory-mappable) + ``index.csv``.

A trainer opens ``np.load("images.npy", mmap_mode="r")`` and reads rows as it needs them,
instead of decoding thousands of PNGs every epoch. Row ``i`` of the array is row ``i`` of
``index.csv``, which joins the labels (``boneage`` in months, ``male`` 1/0). ``meta.json``
records the size and SHA-256 of both files: every run, and every consumer, checks them
(:func:`verify_packed`), so a truncated or swapped file is rebuilt or refused, never used.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io as _io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import atomic_write_text
from handprep.pipeline.cache import chain_key, file_sha256
from handprep.pipeline.labels import Label

_GEOMETRY_PREFIXES = ("read.", "resize.", "crop_to_mask.", "orient.", "handedness.", "crop_hand.", "rois")
_SPACE_MARGIN = 1.05  # free space asked for beyond the array's size (index, filesystem slack)


class PackedDatasetError(ValueError):
    """A packed dataset is missing, incomplete or does not match its record."""


def verify_packed(folder: str | Path) -> list[str]:
    """Problems with ``folder`` (a ``dataset/`` written by a run); empty when it is intact.

    Checks that ``meta.json``, ``images.npy`` and ``index.csv`` exist, that their sizes and
    SHA-256 match the record, and that the array has one row per index row.
    """
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return [f"{meta_path}: missing or unreadable; run 'handprep run' again to rebuild the dataset"]
    problems = []
    for name in ("images.npy", "index.csv"):
        record = meta.get("files", {}).get(name)
        path = folder / name
        if record is None:
            problems.append(f"{meta_path}: no record of {name} (written by an older handprep); run again to rebuild")
        elif not path.is_file():
            problems.append(f"{path}: missing; run 'handprep run' again to rebuild the dataset")
        elif path.stat().st_size != record["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, recorded {record['bytes']} (truncated or "
                            "replaced); run 'handprep run' again to rebuild the dataset")
        elif file_sha256(path) != record["sha256"]:
            problems.append(f"{path}: content differs from its record; run 'handprep run' again to rebuild")
    return problems


def load_packed(folder: str | Path) -> tuple[np.ndarray, list[dict]]:
    """The verified array (memory-mapped, read-only) and index rows; raises PackedDatasetError."""
    folder = Path(folder)
    problems = verify_packed(folder)
    if problems:
        raise PackedDatasetError("; ".join(problems))
    array = np.load(folder / "images.npy", mmap_mode="r")
    with open(folder / "index.csv", newline="") as handle:
        index = list(csv.DictReader(handle))
    if len(index) != array.shape[0]:
        raise PackedDatasetError(f"{folder}: images.npy has {array.shape[0]} rows but index.csv {len(index)}; "
                                 "run 'handprep run' again to rebuild the dataset")
    return array, index


def pack_dataset(output_dir: str | Path, rows: list[dict], labels: dict[str, Label] | None,
                 labels_path: str | None = None, progress: bool = True) -> dict:
    """Pack the ``ok`` images of a run; reused when an identical, intact pack already exists.

    Returns a summary dict (``packed``, ``shape``, ``dtype``, ``unlabelled``, ``messages``).
    """
    output_dir = Path(output_dir)
    folder = output_dir / "dataset"
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["id"])
    if not ok:
        return {"packed": 0, "messages": ["no images passed: nothing to pack"]}
    fingerprint = chain_key({
        "pack": [(r["id"], r.get("output_sha256", "")) for r in ok],
        "labels": file_sha256(labels_path) if labels_path else None,
    })
    reused, messages = _reuse(folder, fingerprint)
    if reused is not None:
        return reused
    first = cv2.imread(str(output_dir / ok[0]["output"]), cv2.IMREAD_UNCHANGED)
    if first is None:
        return {"packed": 0, "messages": [f"cannot read {ok[0]['output']}: dataset not packed"]}
    problem = _size_problem(ok, first.shape) or _space_problem(folder, len(ok) * first.nbytes)
    if problem:
        return {"packed": 0, "messages": messages + [problem]}
    try:
        array_record = _write_array(folder, output_dir, ok, first, progress)
    except (OSError, ValueError) as exc:
        return {"packed": 0, "messages": messages + [f"dataset not packed: {exc}"]}
    index_text, unlabelled = _index_text(ok, labels)
    atomic_write_text(folder / "index.csv", index_text)
    if unlabelled:
        messages.append(f"{len(unlabelled)} of {len(ok)} packed images have no row in the labels file "
                        f"(boneage/male left empty), e.g. {', '.join(unlabelled[:5])}")
    index_bytes = index_text.encode()
    meta = {"fingerprint": fingerprint, "packed": len(ok), "shape": list(first.shape), "dtype": str(first.dtype),
            "unlabelled": len(unlabelled),
            "files": {"images.npy": array_record,
                      "index.csv": {"bytes": len(index_bytes), "sha256": hashlib.sha256(index_bytes).hexdigest()}}}
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2))
    return {**meta, "messages": messages}


def _reuse(folder: Path, fingerprint: str) -> tuple[dict | None, list[str]]:
    """The existing pack's summary when it is this run's and intact; else why it is rebuilt."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None, []
    if meta.get("fingerprint") != fingerprint:
        return None, []
    problems = verify_packed(folder)
    if not problems:
        return {**meta, "messages": [], "reused": True}, []
    return None, [f"rebuilt the packed dataset: {problems[0]}"]


def _size_problem(ok: list[dict], shape: tuple) -> str | None:
    odd = [r["id"] for r in ok if (int(r.get("out_height") or shape[0]), int(r.get("out_width") or shape[1])) != shape[:2]]
    if odd:
        return (f"final images differ in size ({len(odd)} not {shape[1]}×{shape[0]}, e.g. {odd[0]}): "
                "add a 'resize' stage at the end of the chain to get a packed dataset")
    return None


def _space_problem(folder: Path, nbytes: int) -> str | None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes * _SPACE_MARGIN:
        return (f"dataset not packed: it needs {nbytes / 2**20:.0f} MiB but {folder} has {free / 2**20:.0f} MiB "
                "free; free some space and run again (the images and manifest are complete)")
    return None


def _write_array(folder: Path, output_dir: Path, ok: list[dict], first: np.ndarray, progress: bool) -> dict:
    """Stream the images into ``images.npy`` with plain writes (a full disk raises, a memory map
    would crash with SIGBUS) under a temporary name; return its size and hash."""
    tmp = folder / ".images.npy.tmp"
    digest = hashlib.sha256()
    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(first.dtype),
                                                  "fortran_order": False, "shape": (len(ok), *first.shape)})
    try:
        with open(tmp, "wb") as handle:
            for chunk in _array_chunks(header.getvalue(), output_dir, ok, first, progress):
                handle.write(chunk)
                digest.update(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, folder / "images.npy")
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(exc.errno, "the disk filled up while writing dataset/images.npy; free some space "
                                     "and run again") from None
        raise
    return {"bytes": size, "sha256": digest.hexdigest()}


def _array_chunks(header: bytes, output_dir: Path, ok: list[dict], first: np.ndarray, progress: bool):
    yield header
    for i, r in enumerate(tqdm(ok, desc="packing dataset", unit="img", disable=not progress)):
        image = first if i == 0 else cv2.imread(str(output_dir / r["output"]), cv2.IMREAD_UNCHANGED)
        if image is None or image.shape != first.shape or image.dtype != first.dtype:
            raise ValueError(f"{r['output']} is unreadable or of another size")
        yield np.ascontiguousarray(image).tobytes()


def _index_text(ok: list[dict], labels: dict[str, Label] | None) -> tuple[str, list[str]]:
    geometry = sorted({k for r in ok for k in r if k.startswith(_GEOMETRY_PREFIXES)})
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "id", "path", "image", "boneage", "male", *geometry])
    unlabelled = []
    for i, r in enumerate(ok):
        label = labels.get(r["id"]) if labels is not None else None
        if labels is not None and label is None:
            unlabelled.append(r["id"])
        writer.writerow([i, r["id"], r["path"], r["output"],
                         "" if label is None else f"{label.boneage_months:g}",
                         "" if label is None else int(label.male),
                         *[r.get(k, "") for k in geometry]])
    return buffer.getvalue(), unlabelled
