"""Making hand masks: import annotation-tool exports, propose drafts, write review sheets.

The workflow is: ``propose`` drafts for unlabelled images (classical threshold or the current
model) → a person opens the review sheets and overlays, accepts good drafts (copies them into
masks/) and fixes or redraws the rest → ``segment-train`` learns from masks/.
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import (ImageReadError, atomic_write_text, decode_image, list_images, read_file_bytes,
                         read_image, refuse_output_overlap, write_mask, write_png)
from handprep.segment.film import film_region
from handprep.stages.mask import fill_contours, largest_component, threshold_mask

COLOURS = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0), "yellow": (0, 255, 255),
           "magenta": (255, 0, 255), "cyan": (255, 255, 0)}  # BGR


@dataclass
class ImportResult:
    converted: list[str]
    problems: dict[str, str]  # file → what went wrong


def painted_mask(bgr: np.ndarray, colour: tuple[int, int, int], min_strength: float = 40.0,
                 min_alignment: float = 0.9) -> np.ndarray:
    """Pixels painted in ``colour`` (BGR), opaque or translucent over a grey radiograph.

    Grey pixels have equal channels; paint adds a chroma vector towards the colour. A pixel
    counts as painted when its chroma points towards the colour (cosine ≥ ``min_alignment``)
    and is at least ``min_strength`` grey levels long.
    """
    pixels = bgr.astype(np.float32)
    chroma = pixels - pixels.mean(axis=2, keepdims=True)
    target = np.array(colour, np.float32) - np.mean(colour)
    target /= np.linalg.norm(target)
    along = chroma @ target
    length = np.linalg.norm(chroma, axis=2)
    return np.where((along >= min_strength) & (along >= min_alignment * length), 255, 0).astype(np.uint8)


def import_painted(exports: str | Path, out: str | Path, colour: str = "red", images: str | Path | None = None,
                   fill: bool = True, keep_largest: bool = True, min_strength: float = 40.0,
                   progress: bool = True) -> ImportResult:
    """Convert exports with the hand painted in a colour (or colour masks) to binary masks.

    Writes ``out/<stem>.png`` (0/255). With ``images``, each mask must match its radiograph's
    size. Files that cannot be converted are reported with the reason, never half-written.
    """
    if colour not in COLOURS:
        raise ValueError(f"colour {colour!r} is unknown; valid: {', '.join(COLOURS)}")
    refuse_output_overlap(out, {"exports folder": exports, "image folder": images})
    result = ImportResult([], {})
    sizes = {}
    if images is not None:
        sizes = {p.stem: p for p in list_images(images)}
    for path in tqdm(list_images(exports), desc="importing masks", unit="file", disable=not progress):
        try:
            data = read_file_bytes(path)
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if array is None:
                decode_image(data, str(path))  # raises the precise reason
                raise ImageReadError(f"{path}: could not be decoded as a colour image")
            if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
                raise ImageReadError(f"{path}: image is grey: no {colour} paint to convert "
                                     "(export with the annotation layer burned in, or pass a mask)")
            mask = painted_mask(array, COLOURS[colour], min_strength)
            if not mask.any():
                raise ImageReadError(f"{path}: no {colour} pixels found; pick the colour the hand was painted in "
                                     f"(--colour, one of {', '.join(COLOURS)})")
            if keep_largest:
                mask = largest_component(mask)
            if fill:
                mask = fill_contours(mask)
            if path.stem in sizes:
                h, w = read_image(sizes[path.stem]).shape
                if mask.shape != (h, w):
                    raise ImageReadError(f"{path}: export is {mask.shape[1]}×{mask.shape[0]} px but radiograph "
                                         f"{sizes[path.stem].name} is {w}×{h} px; export at full resolution")
            elif images is not None:
                raise ImageReadError(f"{path}: no radiograph named {path.stem} in {images}")
            write_mask(Path(out) / f"{path.stem}.png", mask)
            result.converted.append(path.stem)
        except ImageReadError as exc:
            result.problems[str(path)] = str(exc)
    return result


def smooth_mask(mask: np.ndarray, sigma_px: float = 2.0) -> np.ndarray:
    """Smooth a mask's outline (pixel noise along a threshold) without moving it: blur, re-threshold."""
    if sigma_px <= 0:
        return mask
    return np.where(cv2.GaussianBlur(mask, (0, 0), sigma_px) > 127, 255, 0).astype(np.uint8)


def mask_flags(mask: np.ndarray) -> list[str]:
    """Reasons a draft deserves a closer look."""
    flags = []
    area = cv2.countNonZero(mask) / mask.size
    if area == 0:
        return ["empty"]
    if area < 0.1:
        flags.append(f"small ({area:.1%} of the image)")
    if area > 0.8:
        flags.append(f"large ({area:.1%} of the image)")
    count = cv2.connectedComponents(mask, connectivity=8)[0] - 1
    if count > 1:
        flags.append(f"{count} separate regions")
    top, left, right = mask[0].any(), mask[:, 0].any(), mask[:, -1].any()
    if top or left or right:
        flags.append("touches the top/left/right edge (border or frame included?)")
    return flags


def overlay_image(image: np.ndarray, mask: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The radiograph with the mask tinted red and outlined in green, for review."""
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    scale = min(1.0, max_side / max(image.shape))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    grey = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    tint = bgr.copy()
    tint[small > 0] = (0.6 * tint[small > 0] + 0.4 * np.array([0, 0, 255])).astype(np.uint8)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tint, contours, -1, (0, 255, 0), 1, cv2.LINE_AA)
    return tint


def labelled_grid(entries: list[tuple[str, np.ndarray]], cell_px: int = 320, cols: int = 4) -> np.ndarray:
    """One image of BGR overlays, each fitted into a ``cell_px`` square with its id written on it."""
    cells = []
    for case_id, overlay in entries:
        scale = cell_px / max(overlay.shape[:2])
        small = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cell = np.zeros((cell_px, cell_px, 3), np.uint8)
        cell[:small.shape[0], :small.shape[1]] = small[:cell_px, :cell_px]
        cv2.putText(cell, case_id, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
        cells.append(cell)
    while len(cells) % cols:
        cells.append(np.zeros((cell_px, cell_px, 3), np.uint8))
    return np.vstack([np.hstack(cells[i:i + cols]) for i in range(0, len(cells), cols)])


def review_sheets(entries: list[tuple[str, np.ndarray]], out: Path, per_sheet: int = 12, cell_px: int = 320) -> list[Path]:
    """Grids of overlays (id written on each), ``per_sheet`` per PNG."""
    paths = []
    for start in range(0, len(entries), per_sheet):
        path = out / f"sheet_{start // per_sheet + 1:03d}.png"
        write_png(path, labelled_grid(entries[start:start + per_sheet], cell_px))
        paths.append(path)
    return paths


def propose(images: str | Path, out: str | Path, method: str = "threshold", model: str = "default",
            skip_existing: str | Path | None = None, progress: bool = True) -> dict:
    """Draft masks for every image (skipping ids already in ``skip_existing``) + review material.

    Writes ``out/<id>.png`` drafts, ``out/review/<id>.png`` overlays, ``out/review/sheet_NNN.png``
    grids and ``out/review/review.csv`` (id, mask area, flags), flagged drafts first.
    Method ``threshold``: classical (background level + 10 % of the span, largest region,
    holes filled); ``model``: the U-Net (``model`` = default or a path), thresholded and filled.
    """
    refuse_output_overlap(out, {"image folder": images, "existing masks folder": skip_existing})
    out = Path(out)
    done = {p.stem for p in Path(skip_existing).glob("*.png")} if skip_existing else set()
    segmenter = None
    if method == "model":
        from handprep.segment.infer import Segmenter

        segmenter = Segmenter(model)
    elif method != "threshold":
        raise ValueError(f"method must be 'threshold' or 'model', got {method!r}")
    rows, overlays, problems = [], [], {}
    todo = [p for p in list_images(images) if p.stem not in done]
    for path in tqdm(todo, desc="proposing masks", unit="img", disable=not progress):
        try:
            image = read_image(path)
        except ImageReadError as exc:
            problems[str(path)] = str(exc)
            continue
        if segmenter is None:
            draft = threshold_mask(image, work_size_px=4096, blur_px=3, method="background")
        else:
            draft = fill_contours(largest_component(segmenter.mask(image)))
        draft = fill_contours(largest_component(smooth_mask(draft)))
        write_mask(out / f"{path.stem}.png", draft)
        overlay = overlay_image(image, draft)
        write_png(out / "review" / f"{path.stem}.png", overlay)
        flags = mask_flags(draft)
        rows.append({"id": path.stem, "area": round(cv2.countNonZero(draft) / draft.size, 4), "flags": "; ".join(flags)})
        overlays.append((path.stem, overlay, bool(flags)))
    overlays.sort(key=lambda e: (not e[2], e[0]))  # flagged first
    sheets = review_sheets([(i, o) for i, o, _ in overlays], out / "review")
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", "area", "flags"])
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r["flags"] == "", r["id"])))
    atomic_write_text(out / "review" / "review.csv", buffer.getvalue())
    return {"drafted": len(rows), "skipped": len(done), "flagged": sum(1 for r in rows if r["flags"]),
            "sheets": sheets, "problems": problems}


# --- correcting drafts: recorded edits, film threshold, skin extension ---------------------

def polygon_mask(shape: tuple[int, int], points) -> np.ndarray:
    area = np.zeros(shape, np.uint8)
    cv2.fillPoly(area, [np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)], 255)
    return area


def _grow(image: np.ndarray, mask: np.ndarray, level: float, within: np.ndarray | None) -> np.ndarray:
    """Add pixels brighter than ``level`` (optionally only inside ``within``) connected to the mask."""
    candidate = np.where(image > level, 255, 0).astype(np.uint8)
    if within is not None:
        candidate &= within
    joined = candidate | mask
    count, labels = cv2.connectedComponents(joined, connectivity=8)
    touching = np.unique(labels[mask > 0])
    return np.where(np.isin(labels, touching[touching > 0]), 255, 0).astype(np.uint8)


EDIT_OPS = ("cut", "add", "keep", "grow", "film", "skin", "open", "smooth")


def apply_edits(image: np.ndarray, mask: np.ndarray, edits: list[dict]) -> np.ndarray:
    """Apply recorded corrections to a draft, in order, then keep one filled region.

    Each edit is a one-key dict, coordinates in full-resolution pixels (x, y):
    ``{"cut": [[x, y], ...]}`` remove a polygon (a marker, a frame strip);
    ``{"add": [[x, y], ...]}`` add a polygon (a missed fingertip);
    ``{"keep": [[x, y], ...]}`` keep only what lies inside a polygon (clip collimation edges);
    ``{"grow": {"level": L, "within": [[x, y], ...]}}`` add pixels brighter than grey level L
    connected to the mask (``within`` optional) — faint soft tissue the draft missed;
    ``{"film": {"within": [[x, y], ...], "fraction": f}}`` add the film threshold drafted inside
    a polygon (a part of the film with its own background level, e.g. a brighter exposure zone);
    ``{"skin": {"max_px": d, "k": k}}`` extend the outline to the skin (``extend_to_skin``);
    ``{"open": px}`` morphological opening with a disc of radius ``px`` (breaks thin bridges
    to markers and frames); ``{"smooth": sigma_px}`` smooth the outline (``smooth_mask``).
    """
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    for number, edit in enumerate(edits):
        if len(edit) != 1 or next(iter(edit)) not in EDIT_OPS:
            raise ValueError(f"edit {number} ({edit!r}) must be one of {', '.join(EDIT_OPS)} with its argument")
        (op, arg), = edit.items()
        if op == "cut":
            mask = mask & ~polygon_mask(mask.shape, arg)
        elif op == "add":
            mask = mask | polygon_mask(mask.shape, arg)
        elif op == "keep":
            mask = mask & polygon_mask(mask.shape, arg)
        elif op == "grow":
            within = polygon_mask(mask.shape, arg["within"]) if arg.get("within") else None
            mask = _grow(image, mask, float(arg["level"]), within)
        elif op == "film":
            zone = film_threshold_mask(image, fraction=float(arg.get("fraction", 0.1)),
                                       within=polygon_mask(mask.shape, arg["within"]))
            mask = mask | zone
        elif op == "skin":
            mask = extend_to_skin(image, mask, **arg)
        elif op == "open":
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(arg) + 1, 2 * int(arg) + 1))
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc)
        else:
            mask = smooth_mask(mask, float(arg))
    return fill_contours(largest_component(mask))


def film_stretch(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """uint8 image stretched by the film's own percentiles; the padding outside the film set to 0."""
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    film = film_region(image)
    lo, hi = np.percentile(image[film > 0], (low_pct, high_pct))
    stretched = np.clip((image.astype(np.float32) - lo) * 255.0 / max(hi - lo, 1.0), 0, 255).astype(np.uint8)
    stretched[film == 0] = 0
    return stretched


def _background_surface(image: np.ndarray, sample: np.ndarray, step: int = 8) -> np.ndarray:
    """Least-squares quadratic surface in (x, y) through the pixels in ``sample`` (heel effect, fogging)."""
    h, w = image.shape
    ys, xs = np.nonzero(sample[::step, ::step])
    values = image[::step, ::step][ys, xs].astype(np.float64)
    ys, xs = ys * step / h - 0.5, xs * step / w - 0.5
    design = np.stack([np.ones_like(xs), xs, ys, xs * ys, xs ** 2, ys ** 2], axis=1)
    coef = np.linalg.lstsq(design, values, rcond=None)[0]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    gy, gx = gy / h - 0.5, gx / w - 0.5
    return (coef[0] + coef[1] * gx + coef[2] * gy + coef[3] * gx * gy + coef[4] * gx ** 2
            + coef[5] * gy ** 2).astype(np.float32)


def film_threshold_mask(image: np.ndarray, fraction: float = 0.1, blur_px: float = 2.5, rounds: int = 2,
                        edge_px: int = 6, within: np.ndarray | None = None) -> np.ndarray:
    """Classical draft for faint films on black padding: threshold above a fitted background.

    Inside the film (``film_region``, less ``edge_px`` at its edge), the background is a
    quadratic surface fitted to the pixels outside the current hand estimate; the hand is what
    rises above it by ``fraction`` of the span to the 99th percentile. ``rounds`` refits
    after each estimate. Markers and frames inside the film are not told apart: pass
    ``within`` (0/255, where the hand may be) to leave them out, or edit the result.
    """
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    film = film_region(image) if within is None else film_region(image) & within
    film = cv2.erode(film, np.ones((2 * edge_px + 1, 2 * edge_px + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0)
    smooth = cv2.GaussianBlur(image, (0, 0), blur_px).astype(np.float32)
    values = np.round(smooth[film > 0]).astype(int)
    background = np.full(image.shape, float(np.argmax(np.bincount(values, minlength=256))), np.float32)
    hand = np.zeros(image.shape, np.uint8)
    for _ in range(rounds + 1):
        residual = smooth - background
        level = fraction * max(float(np.percentile(residual[film > 0], 99)), 1.0)
        hand = np.where((residual > level) & (film > 0), 255, 0).astype(np.uint8)
        hand = fill_contours(largest_component(cv2.morphologyEx(hand, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))))
        outside = (film > 0) & (cv2.dilate(hand, np.ones((15, 15), np.uint8)) == 0)
        if outside.sum() < 100:
            break
        background = _background_surface(smooth, outside)
    return fill_contours(largest_component(smooth_mask(hand)))


def extend_to_skin(image: np.ndarray, mask: np.ndarray, max_px: int = 15, k: float = 4.0,
                   min_step: float = 2.5) -> np.ndarray:
    """Grow a hand outline outwards to where the image falls to the local background.

    Threshold drafts cut a soft edge part-way: thin soft tissue at fingertips and a dim rim
    (blur, slight motion) lie between the hand's level and the background's. Here the
    background is a quadratic surface fitted to the film at least 10 px outside the mask;
    pixels within ``max_px`` of the mask that stand above it by more than ``k`` robust standard
    deviations of the ring 15–40 px outside (noise plus the surface's misfit, so scatter
    between the fingers stays out; at least ``min_step`` grey levels), that are no brighter
    than the outline pixel nearest to them (the image must fade outwards: frame strips and
    markers beside the hand are brighter) and that touch the mask are added. It stops at the
    background, so a dark edge-enhancement halo is never taken, and it never grows further
    than ``max_px``. On a phantom blurred by 1.2 px the outline lands about 1-2 px outside
    the half-maximum of the edge: the convention here is the outer edge of visible tissue.
    """
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not mask.any():
        return mask
    film = film_region(image) > 0
    smooth = cv2.GaussianBlur(image, (0, 0), 1.0).astype(np.float32)
    distance = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 3)
    outside = film & (distance > 10)
    if outside.sum() < 100:
        return mask
    residual = smooth - _background_surface(smooth, outside, step=4)
    ring = film & (distance > 15) & (distance <= 40)
    values = residual[ring] if ring.sum() >= 100 else residual[outside]
    sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))  # includes the surface's misfit
    level = max(k * sigma, min_step)
    fading = smooth <= _nearest_edge_value(smooth, mask) + 2.0  # frames and markers are brighter than the edge
    candidate = np.where((residual > level) & (distance <= max_px) & film & fading, 255, 0).astype(np.uint8)
    return fill_contours(largest_component(smooth_mask(_grow_connected(mask, candidate), 1.0)))


def _nearest_edge_value(smooth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For every pixel, the image value at the nearest pixel of the mask's outline."""
    edge = (mask > 0) & (cv2.erode(mask, np.ones((3, 3), np.uint8)) == 0)
    source = np.where(edge, 0, 1).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    values = smooth[edge]  # raster order, as the labels are numbered
    return values[np.clip(labels, 1, len(values)) - 1]


def _grow_connected(mask: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The mask plus the candidate regions that touch it."""
    joined = candidate | mask
    _, labels = cv2.connectedComponents(joined, connectivity=8)
    touching = np.unique(labels[mask > 0])
    return np.where(np.isin(labels, touching[touching > 0]), 255, 0).astype(np.uint8)


def trim_border_feet(mask: np.ndarray, depth_px: int = 25, tolerance_px: int = 2) -> np.ndarray:
    """Cut the 'feet' a draft grows along a bright strip at the image edge where the forearm leaves.

    On each side the mask reaches within ``depth_px`` of, its extent in the ``depth_px`` rows next to the edge is
    limited to the forearm's cross-section carried straight on from the rows ``depth_px`` and
    ``2 × depth_px`` inside (linear extrapolation, ± ``tolerance_px``). A forearm that runs
    obliquely off the edge keeps its slant; a strip along the edge is cut off.
    """
    out = np.where(mask > 0, 255, 0).astype(np.uint8)
    for turns in range(4):  # bottom, then each other side brought to the bottom in turn
        view = np.rot90(out, turns).copy()
        h = view.shape[0]
        if h <= 2 * depth_px or not view[h - depth_px:].any():
            continue
        near, far = np.nonzero(view[h - 1 - depth_px])[0], np.nonzero(view[h - 1 - 2 * depth_px])[0]
        if near.size == 0 or far.size == 0:
            continue
        for k in range(depth_px):  # k rows beyond the reference row, towards the edge
            steps = (k + 1) / depth_px
            left = near[0] + (near[0] - far[0]) * steps - tolerance_px
            right = near[-1] + (near[-1] - far[-1]) * steps + tolerance_px
            row = view[h - depth_px + k]
            columns = np.arange(row.size)
            row[(columns < left) | (columns > right)] = 0
        out = np.rot90(view, -turns).copy()
    return fill_contours(largest_component(out))
