"""The packed training dataset: ``dataset/images.npy`` (N×H×W, memory-mappable) + ``index.csv``.

A trainer opens ``np.load("images.npy", mmap_mode="r")`` and reads rows as it needs them,
instead of decoding thousands of PNGs every epoch. Row ``i`` of the array is row ``i`` of
``index.csv``, which joins the labels (``boneage`` in months, ``male`` 1/0).
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import atomic_write_text
from handprep.pipeline.cache import chain_key, file_sha256
from handprep.pipeline.labels import Label

_GEOMETRY_PREFIXES = ("read.", "resize.", "crop_to_mask.", "orient.", "handedness.", "crop_hand.", "rois")


def pack_dataset(output_dir: str | Path, rows: list[dict], labels: dict[str, Label] | None,
                 labels_path: str | None = None, progress: bool = True) -> dict:
    """Pack the ``ok`` images of a run; skipped when an identical pack already exists.

    Returns a summary dict (``packed``, ``shape``, ``dtype``, ``unlabelled``, ``messages``).
    """
    output_dir = Path(output_dir)
    folder = output_dir / "dataset"
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["id"])
    messages: list[str] = []
    if not ok:
        return {"packed": 0, "messages": ["no images passed: nothing to pack"]}
    fingerprint = chain_key({
        "pack": [(r["id"], r.get("output_sha256", "")) for r in ok],
        "labels": file_sha256(labels_path) if labels_path else None,
    })
    meta_path = folder / "meta.json"
    if meta_path.is_file() and (folder / "images.npy").is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") == fingerprint:
                return {**meta, "messages": [], "reused": True}
        except (OSError, ValueError):
            pass

    first = cv2.imread(str(output_dir / ok[0]["output"]), cv2.IMREAD_UNCHANGED)
    if first is None:
        return {"packed": 0, "messages": [f"cannot read {ok[0]['output']}: dataset not packed"]}
    shape, dtype = first.shape, first.dtype
    odd = [r["id"] for r in ok if (int(r.get("out_height") or shape[0]), int(r.get("out_width") or shape[1])) != shape]
    if odd:
        return {"packed": 0, "messages": [
            f"final images differ in size ({len(odd)} not {shape[1]}×{shape[0]}, e.g. {odd[0]}): "
            "add a 'resize' stage at the end of the chain to get a packed dataset"]}

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".images.npy.tmp"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(ok), *shape))
    for i, r in enumerate(tqdm(ok, desc="packing dataset", unit="img", disable=not progress)):
        image = first if i == 0 else cv2.imread(str(output_dir / r["output"]), cv2.IMREAD_UNCHANGED)
        if image is None or image.shape != shape:
            del array
            tmp.unlink(missing_ok=True)
            return {"packed": 0, "messages": [f"{r['output']} is unreadable or of another size: dataset not packed"]}
        array[i] = image
    array.flush()
    del array
    os.replace(tmp, folder / "images.npy")

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
    atomic_write_text(folder / "index.csv", buffer.getvalue())
    if unlabelled:
        messages.append(f"{len(unlabelled)} of {len(ok)} packed images have no row in the labels file "
                        f"(boneage/male left empty), e.g. {', '.join(unlabelled[:5])}")
    meta = {"fingerprint": fingerprint, "packed": len(ok), "shape": list(shape), "dtype": str(dtype),
            "unlabelled": len(unlabelled)}
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return {**meta, "messages": messages}
