"""Reading radiographs into one array convention, and writing files atomically.

Convention: an ``image`` is a 2-D ``uint8`` or ``uint16`` array (H×W, row 0 at the top),
bright = dense (bone). Bit depth is preserved: 8-bit files give ``uint8``, 16-bit files and
DICOM give ``uint16``; the ``to_uint8`` stage converts explicitly. A ``mask`` is a 2-D
``uint8`` array holding 0 or 255.

Every reading failure raises :class:`ImageReadError` whose message names the file, what is
wrong with it and what to do.
"""
from __future__ import annotations

import csv
import hashlib
import io as _io
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")

# cv2 refuses more than 2**30 pixels anyway; this keeps a decompression bomb from
# allocating gigabytes in several workers at once.
DEFAULT_MAX_PIXELS = 400_000_000


class ImageReadError(ValueError):
    """A file could not be read as a radiograph (message: file, problem, fix)."""


@dataclass
class ReadInfo:
    """How a file was turned into an image array."""

    format: str
    source_dtype: str
    source_channels: int
    notes: list[str] = field(default_factory=list)


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of file content (the identity used by the cache)."""
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """Name the container format from magic bytes, or None if unknown."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data[:4] in _TIFF_MAGICS:
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


def _describe_unknown(data: bytes) -> str:
    head = data[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"it looks like text (starts with {head.decode('ascii', 'replace')!r})"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith(b"PK"):
        return "it is a ZIP archive"
    if head.startswith(b"GIF8"):
        return "it is a GIF (not supported: convert to PNG)"
    return f"its first bytes {head[:8].hex(' ')} match no supported format"


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _check_complete(data: bytes, fmt: str, name: str) -> None:
    # Decoders return partial pixels for some truncated files instead of failing,
    # so look for the end markers ourselves.
    if fmt == "png" and b"IEND" not in data[-64:]:
        raise ImageReadError(
            f"{name}: PNG file is truncated (no IEND chunk; {len(data)} bytes). "
            "Re-copy or re-export the file."
        )
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageReadError(
            f"{name}: JPEG file is truncated (no end-of-image marker; {len(data)} bytes). "
            "Re-copy or re-export the file."
        )


def decode_image(
    data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, ReadInfo]:
    """Decode file content into a 2-D uint8/uint16 image.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        Shown in error messages (normally the path).
    max_pixels : int
        Refuse images with more pixels than this before decoding them.

    Returns
    -------
    image : ndarray, shape (H, W), uint8 or uint16
    info : ReadInfo
    """
    if len(data) == 0:
        raise ImageReadError(f"{name}: file is empty (0 bytes). Re-copy it or remove it from the input folder.")
    fmt = sniff_format(data)
    if fmt is None and Path(name).suffix.lower() in (".dcm", ".dicom"):
        fmt = "dicom"  # DICOM without the 128-byte preamble
    if fmt is None:
        raise ImageReadError(
            f"{name}: not a readable image: {_describe_unknown(data)}. "
            "Supported: PNG, JPEG, TIFF, BMP, DICOM. Remove the file or convert it."
        )
    if fmt == "dicom":
        return _decode_dicom(data, name)
    _check_complete(data, fmt, name)
    if fmt == "png":
        size = _png_size(data)
        if size and size[0] * size[1] > max_pixels:
            raise ImageReadError(
                f"{name}: image is {size[1]}×{size[0]} px ({size[0] * size[1] / 1e6:.0f} MP), over the "
                f"{max_pixels / 1e6:.0f} MP limit. Downscale it first or raise input.max_pixels."
            )
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise ImageReadError(
            f"{name}: {fmt.upper()} data could not be decoded (corrupt or truncated). "
            "Re-copy or re-export the file."
        )
    info = ReadInfo(format=fmt, source_dtype=str(array.dtype),
                    source_channels=1 if array.ndim == 2 else array.shape[2])
    image = _to_grey(array, info, name)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageReadError(
            f"{name}: image is {image.shape[1]}×{image.shape[0]} px, over the "
            f"{max_pixels / 1e6:.0f} MP limit. Downscale it first or raise input.max_pixels."
        )
    return image, info


def _to_grey(array: np.ndarray, info: ReadInfo, name: str) -> np.ndarray:
    """Reduce any channel layout / dtype to a 2-D uint8 or uint16 image."""
    if array.ndim == 3:
        channels = array.shape[2]
        if channels == 4:
            alpha = array[..., 3]
            colour = array[..., :3]
            full = np.iinfo(array.dtype).max if array.dtype.kind in "ui" else 1.0
            if alpha.min() < full:
                # Transparent pixels are background: composite onto black.
                colour = (colour.astype(np.float32) * (alpha[..., None].astype(np.float32) / full)).astype(array.dtype)
                info.notes.append("alpha composited onto black")
            array = colour
        elif channels == 2:  # grey + alpha
            array = array[..., 0]
        if array.ndim == 3:
            if array.shape[2] == 1:
                array = array[..., 0]
            elif np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
                array = array[..., 0]
            else:
                array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_BGR2GRAY)
                info.notes.append("colour converted to grey (luminance)")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return np.ascontiguousarray(array)
    if array.dtype == np.int8 or array.dtype == np.int16:
        info.notes.append(f"signed {array.dtype} shifted to unsigned")
        offset = 128 if array.dtype == np.int8 else 32768
        out_dtype = np.uint8 if array.dtype == np.int8 else np.uint16
        return (array.astype(np.int32) + offset).astype(out_dtype)
    if array.dtype.kind in "fiu":
        # float / 32-bit TIFFs: keep precision by mapping the data range onto uint16.
        values = array.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            raise ImageReadError(f"{name}: image holds no finite pixel values. Re-export it.")
        lo, hi = values[finite].min(), values[finite].max()
        scaled = np.zeros(values.shape, np.float64) if hi == lo else (np.where(finite, values, lo) - lo) / (hi - lo)
        info.notes.append(f"{array.dtype} range [{lo:g}, {hi:g}] mapped to uint16")
        return np.round(scaled * 65535).astype(np.uint16)
    raise ImageReadError(f"{name}: unsupported pixel type {array.dtype}. Convert to 8- or 16-bit PNG.")


def _decode_dicom(data: bytes, name: str) -> tuple[np.ndarray, ReadInfo]:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(_io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageReadError(f"{name}: DICOM header could not be parsed ({exc}). Re-export the study.") from exc
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: DICOM file holds no pixel data (a report or structured document?). Remove it.")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageReadError(
            f"{name}: DICOM pixel data could not be decoded (transfer syntax {syntax}: {exc}). "
            "For compressed DICOM install a decoder: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg."
        ) from exc
    info = ReadInfo(format="dicom", source_dtype=str(pixels.dtype), source_channels=1)
    if pixels.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        pixels = pixels[0]
        info.notes.append("multi-frame DICOM: first frame used")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels.astype(np.float32), cv2.COLOR_RGB2GRAY)
        info.notes.append("colour DICOM converted to grey")
    values = apply_modality_lut(pixels, ds)
    has_window = "WindowCenter" in ds or "VOILUTSequence" in ds
    if has_window:
        values = apply_voi_lut(values, ds, index=0)
        info.notes.append("VOI LUT / window applied")
    values = np.asarray(values, dtype=np.float64)
    monochrome1 = str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    integral = np.all(np.mod(values, 1) == 0)
    if not has_window and integral and values.min() >= 0 and values.max() < 2**min(bits, 16):
        top = 2 ** min(bits, 16) - 1
        image = values.astype(np.uint16)
        if monochrome1:
            image = (top - image).astype(np.uint16)
    else:
        lo, hi = float(values.min()), float(values.max())
        scaled = np.zeros(values.shape) if hi == lo else (values - lo) / (hi - lo)
        image = np.round(scaled * 65535).astype(np.uint16)
        if monochrome1:
            image = 65535 - image
    if monochrome1:
        info.notes.append("MONOCHROME1 inverted (bone bright)")
    return np.ascontiguousarray(image), info


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a radiograph file as a 2-D uint8/uint16 array."""
    return read_image_with_info(path, max_pixels)[0]


def read_image_with_info(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ReadInfo]:
    """Read a radiograph file; also say how it was converted."""
    data = read_file_bytes(path)
    return decode_image(data, str(path), max_pixels)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file, turning OS errors into :class:`ImageReadError`."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError as exc:
        raise ImageReadError(f"{path}: is a directory, not an image file.") from exc
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror}). Check it exists and is readable.") from exc


def decode_mask(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode a mask file into uint8 0/255 (any level above half the range is hand)."""
    image, _ = decode_image(data, name)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return cv2.threshold(image, 127, 255, cv2.THRESH_BINARY)[1]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask PNG as uint8 0/255."""
    return decode_mask(read_file_bytes(path), str(path))


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """PNG-encode a 2-D uint8/uint16 array (fast compression by default)."""
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"could not PNG-encode an array of shape {image.shape} and dtype {image.dtype}")
    return buffer.tobytes()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """PNG-encode a 0/255 mask at 1 bit per pixel: 8× faster to write and 3× to read than 8-bit.

    Every PNG reader returns it as 0/255 (OpenCV) or as a boolean image (Pillow mode "1").
    """
    ok, buffer = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise ValueError(f"could not PNG-encode a mask of shape {mask.shape}")
    return buffer.tobytes()


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> bytes:
    """Atomically write a 0/255 mask as a 1-bit PNG; returns the bytes written."""
    data = encode_mask_png(mask)
    atomic_write_bytes(path, data)
    return data


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()  # what open() would give; mkstemp alone makes files private (0600)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    """Write a file so that readers see the old content or the new, never a part.

    The data goes to a temporary file in the same folder and is renamed over the target
    (atomic on POSIX and Windows within a filesystem), so a killed process leaves at most a
    stray ``.*.tmp`` file. ``fsync=True`` also survives a power cut, at a cost per file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_rows_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Dict rows as CSV (columns from the first row), written atomically; nothing for no rows."""
    if not rows:
        return
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_png(path: str | os.PathLike, image: np.ndarray, compression: int = 1) -> bytes:
    """Atomically write a PNG; returns the bytes written (to hash them)."""
    data = encode_png(image, compression)
    atomic_write_bytes(path, data)
    return data


class InputScan(NamedTuple):
    """What a folder or glob holds: radiographs to read, and every other entry with why it is not read."""

    images: list[Path]
    skipped: list[tuple[Path, str]]


def input_root(images: str | os.PathLike) -> Path:
    """The folder a glob or folder of inputs lives in (the part before the first wildcard)."""
    parts = Path(images).parts
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return Path(*parts[:i]) if i else Path(".")
    return Path(images)


class OutputOverlapError(ValueError):
    """An output that is, contains or lies inside an input: writing there could destroy originals."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def output_overlap(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None],
                   option: str = "--out") -> str | None:
    """Why ``output`` may not be used with these inputs (description → file, folder or glob), or None.

    Commands write (and runs also delete) files under their output, so an output that is,
    contains or lies inside an input could overwrite or delete originals. Paths are compared
    after resolving symbolic links; a glob counts as the folder it lives in.
    """
    out = Path(output).resolve()
    for what, source in inputs.items():
        if source is None:
            continue
        src = input_root(source).resolve()
        if _inside(out, src) or _inside(src, out):
            relation = "is" if out == src else ("lies inside" if _inside(out, src) else "contains")
            return (f"output {output} {relation} the {what} {src}: handprep writes and deletes files in its "
                    f"output, so it must be separate from the inputs; choose another {option} (e.g. a sibling "
                    "folder)")
    return None


def refuse_output_overlap(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None],
                          option: str = "--out") -> None:
    """Raise ``OutputOverlapError`` (naming the input and the fix) if ``output`` overlaps an input."""
    problem = output_overlap(output, inputs, option)
    if problem:
        raise OutputOverlapError(problem)


def _scan_paths(source: str | os.PathLike) -> tuple[list[Path], Path]:
    text = str(source)
    if any(ch in text for ch in "*?["):
        import glob

        return [Path(p) for p in glob.glob(text, recursive=True)], input_root(text)
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder does not exist")
    return list(folder.iterdir()), folder


def _skip_reason(path: Path, root: Path) -> str | None:
    """Why a folder entry is not read as a radiograph (None: read it). Reads at most 132 bytes."""
    if path.name.startswith("."):
        return "hidden file: not read"
    if path.is_symlink() and root.resolve() not in path.resolve().parents:
        return ("symbolic link to a file outside the input folder: not read (inputs are only read "
                "inside the folder you name; copy the file in if it belongs to the batch)")
    if path.is_dir():
        return "a folder: not read (handprep does not descend into subfolders; use a glob such as DIR/**/*.dcm)"
    if not path.is_file():
        return "not a regular file: not read"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror}): check its permissions"
    if sniff_format(head) is not None:
        return None  # e.g. DICOM without an extension (IM0001), as scanners and PACS exports write
    return (f"not a radiograph by name ('{path.suffix or 'no extension'}') or content: not read "
            f"(handprep reads {', '.join(IMAGE_SUFFIXES)} and DICOM with any name)")


def scan_inputs(source: str | os.PathLike) -> InputScan:
    """Radiographs in a folder (not recursive) or matching a glob, sorted by name, and the rest.

    Files are taken by extension, or by content when the extension is unknown (DICOM's
    ``DICM`` preamble, PNG/JPEG/TIFF/BMP magic). Symbolic links leading outside the input
    folder are never opened.
    """
    paths, root = _scan_paths(source)
    images, skipped = [], []
    for path in paths:
        reason = _skip_reason(path, root)
        if reason is None:
            images.append(path)
        else:
            skipped.append((path, reason))
    key = lambda p: (p.stem, p.name)  # noqa: E731
    return InputScan(sorted(images, key=key), sorted(skipped, key=lambda item: key(item[0])))


def list_images(source: str | os.PathLike) -> list[Path]:
    """Radiograph files in a folder (not recursive) or matching a glob, sorted by name."""
    return scan_inputs(source).images
