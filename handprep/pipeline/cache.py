"""Content-addressed cache under ``OUTPUT/.cache``: intermediate states and final records.

Keys are SHA-256 of (input file hash, mask file hash, read options, and the name, version
and parameters of every stage up to that point), so a changed parameter misses from that
stage on while earlier products still hit.

Every file is written via temp file + rename, so a killed run leaves nothing half-written.
Entries carry checksums; one that fails verification is deleted and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handprep.io import atomic_write_bytes, decode_image, decode_mask, encode_mask_png, encode_png

CACHE_FORMAT = 1
_MAGIC = b"HPCACHE1"


def chain_key(parts: dict) -> str:
    """Stable hash of a JSON-able description of how a product was made."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CaseState:
    """A case between stages. ``image`` None means: still the decoded input file."""

    image: np.ndarray | None
    mask: np.ndarray | None
    metrics: dict = field(default_factory=dict)


class Cache:
    def __init__(self, output_dir: str | Path):
        self.root = Path(output_dir) / ".cache"

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    # intermediate states -------------------------------------------------------------
    def save_state(self, key: str, state: CaseState) -> None:
        payloads = {}
        if state.image is not None:
            payloads["image"] = encode_png(state.image)
        if state.mask is not None:
            payloads["mask"] = encode_mask_png(state.mask)
        entries, offset = {}, 0
        for name, blob in payloads.items():
            entries[name] = {"offset": offset, "length": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
            offset += len(blob)
        header = json.dumps({"arrays": entries, "metrics": state.metrics}).encode()
        data = _MAGIC + struct.pack(">Q", len(header)) + header + b"".join(payloads.values())
        atomic_write_bytes(self._path("states", key, ".bin"), data)

    def load_state(self, key: str) -> CaseState | None:
        """The stored state, or None if absent or corrupt (a corrupt entry is deleted)."""
        path = self._path("states", key, ".bin")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _parse_state(data)
        except Exception:  # any damage: recompute rather than trust it
            path.unlink(missing_ok=True)
            return None

    # final records ---------------------------------------------------------------------
    def save_record(self, key: str, record: dict) -> None:
        body = json.dumps(record, sort_keys=True)
        wrapped = json.dumps({"record": record, "sha256": hashlib.sha256(body.encode()).hexdigest()})
        atomic_write_bytes(self._path("records", key, ".json"), wrapped.encode())

    def load_record(self, key: str) -> dict | None:
        path = self._path("records", key, ".json")
        try:
            wrapped = json.loads(path.read_text())
            record = wrapped["record"]
            if hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest() != wrapped["sha256"]:
                raise ValueError("checksum mismatch")
            return record
        except FileNotFoundError:
            return None
        except Exception:
            path.unlink(missing_ok=True)
            return None


def _parse_state(data: bytes) -> CaseState:
    if not data.startswith(_MAGIC):
        raise ValueError("bad magic")
    (header_len,) = struct.unpack(">Q", data[len(_MAGIC):len(_MAGIC) + 8])
    start = len(_MAGIC) + 8
    header = json.loads(data[start:start + header_len])
    body = data[start + header_len:]
    arrays = {}
    for name, entry in header["arrays"].items():
        blob = body[entry["offset"]:entry["offset"] + entry["length"]]
        if len(blob) != entry["length"] or hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise ValueError(f"{name} payload damaged")
        arrays[name] = decode_mask(blob, "cache:mask") if name == "mask" else decode_image(blob, "cache:image")[0]
    return CaseState(arrays.get("image"), arrays.get("mask"), header["metrics"])


def file_sha256(path: str | Path) -> str | None:
    """Streamed SHA-256 of a file (None when it cannot be read): packed datasets are gigabytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
