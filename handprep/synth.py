"""Phantom hand radiographs with exact ground-truth masks, for tests and the demo.

A phantom has a soft-tissue silhouette (forearm, palm, four fingers and a thumb), brighter
bones (radius, ulna, carpals, metacarpals, phalanges with epiphyses), film noise, and on
request a bright film border, an "L" side marker, low contrast, inverted polarity or 16-bit
depth. The mask is exactly the soft tissue; borders and markers are outside it.

Bone age shapes the phantom the way it shapes a real hand: more carpal bones ossified and
narrower epiphyseal gaps with age, so a regressor has something real to learn.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from handprep.io import write_mask, write_png


@dataclass
class Phantom:
    image: np.ndarray  # uint8 or uint16, H×W
    mask: np.ndarray  # uint8 0/255, H×W: the hand (soft tissue)
    age_months: float
    male: bool
    meta: dict = field(default_factory=dict)


def _capsule(canvas: np.ndarray, p0, p1, width: float, value: float) -> None:
    a = (int(round(p0[0] * 16)), int(round(p0[1] * 16)))
    b = (int(round(p1[0] * 16)), int(round(p1[1] * 16)))
    cv2.line(canvas, a, b, value, thickness=max(1, int(round(width))), lineType=cv2.LINE_AA, shift=4)


def _along(p0, p1, t):
    return (p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t)


@dataclass
class _Hand:
    """Tissue and bone density maps of a drawn hand, and where it is."""

    tissue: np.ndarray
    bone: np.ndarray
    cx: float
    wrist_y: float
    size: float  # the hand's scale in pixels (grows with age)
    finger_w: float
    n_carpals: int


def phantom(
    seed: int = 0,
    height: int = 520,
    width: int = 400,
    age_months: float | None = None,
    male: bool | None = None,
    border: bool | None = None,
    marker: bool | None = None,
    low_contrast: bool = False,
    inverted: bool = False,
    bits: int = 8,
    rotation_deg: float | None = None,
    noise: float = 4.0,
) -> Phantom:
    """Draw one phantom radiograph (deterministic for a seed).

    Parameters left as None are drawn at random from the seed. ``bits`` 8 gives uint8;
    12 or 16 give uint16 scaled to that many bits.
    """
    rng = np.random.default_rng(seed)
    age = float(rng.uniform(12, 216)) if age_months is None else float(age_months)
    male = bool(rng.integers(0, 2)) if male is None else male
    border = bool(rng.random() < 0.5) if border is None else border
    marker = bool(rng.random() < 0.7) if marker is None else marker
    rotation = float(rng.uniform(-12, 12)) if rotation_deg is None else rotation_deg

    hand = _draw_hand(rng, height, width, age)
    mask = _rotate_hand(hand, rotation)
    film = _expose(rng, hand, mask, noise)
    if border:
        _add_film_border(rng, film, mask)
    if marker:
        _add_marker(rng, film, mask)
    image = _develop(film, low_contrast, inverted, bits)
    meta = {"border": border, "marker": marker, "rotation_deg": round(rotation, 2), "carpals": hand.n_carpals,
            "low_contrast": low_contrast, "inverted": inverted, "bits": bits}
    return Phantom(image, mask, age, male, meta)


def _draw_hand(rng: np.random.Generator, h: int, w: int, age: float) -> _Hand:
    growth = 0.75 + 0.25 * min(age, 216) / 216  # hands grow with age
    s = min(h, w) * growth
    cx, wrist_y = w * rng.uniform(0.46, 0.54), h * rng.uniform(0.70, 0.76)
    palm_w, palm_h = 0.42 * s, 0.32 * s
    tissue = np.zeros((h, w), np.float32)
    bone = np.zeros((h, w), np.float32)

    # forearm to the bottom edge, wrist, palm
    fw = 0.34 * s
    cv2.fillPoly(tissue, [np.array([[cx - fw / 2, h + 5], [cx + fw / 2, h + 5], [cx + fw / 2 * 1.05, wrist_y],
                                    [cx - fw / 2 * 1.05, wrist_y]], np.int32)], 1.0)
    cv2.ellipse(tissue, (int(cx), int(wrist_y - palm_h / 2)), (int(palm_w / 2), int(palm_h / 2 * 1.15)), 0, 0, 360, 1.0, -1)

    # radius and ulna, with distal epiphyses whose gap narrows with age
    gap = max(0.0, 0.018 * s * (1 - age / 200))
    for dx, bw in ((-0.08, 0.11), (0.09, 0.07)):
        x = cx + dx * s
        _capsule(bone, (x, h + 5), (x, wrist_y + 0.02 * s + gap), bw * s, 1.0)
        _capsule(bone, (x, wrist_y + 0.005 * s), (x, wrist_y - 0.005 * s), bw * s * 1.1, 0.9)

    # carpals: ossify one by one with age (about one per 1.5 years, 8 in all)
    n_carpals = int(np.clip(1 + age // 18, 1, 8))
    carpal_spots = [(-0.06, -0.05), (0.05, -0.05), (-0.10, -0.10), (0.0, -0.09), (0.09, -0.10),
                    (-0.05, -0.14), (0.04, -0.14), (0.11, -0.04)]
    carpal_r = 0.028 * s * (0.6 + 0.4 * min(age, 180) / 180)
    for dx, dy in carpal_spots[:n_carpals]:
        cv2.circle(bone, (int(cx + dx * s), int(wrist_y + dy * s * 0.9)), int(carpal_r), 0.95, -1, cv2.LINE_AA)
    hand = _Hand(tissue, bone, cx, wrist_y, s, 0.085 * s, n_carpals)
    _draw_fingers(rng, hand, palm_w, wrist_y - palm_h, gap)
    return hand


def _draw_fingers(rng: np.random.Generator, hand: _Hand, palm_w: float, palm_top: float, gap: float) -> None:
    """Four fingers with metacarpals, phalanges and epiphyses, then the thumb (left or right hand)."""
    cx, s, finger_w, tissue, bone = hand.cx, hand.size, hand.finger_w, hand.tissue, hand.bone
    # (x offset at palm top, angle°, length), thumb last
    fingers = [(-0.15, -14, 0.38), (-0.05, -4, 0.44), (0.05, 4, 0.42), (0.15, 13, 0.34)]
    if rng.random() < 0.5:  # left or right hand
        fingers = [(-dx, -a, L) for dx, a, L in fingers]
        thumb_side = 1
    else:
        thumb_side = -1
    for dx, angle, length in fingers:
        angle += rng.uniform(-4, 4)
        base = (cx + dx * s, palm_top + 0.05 * s)
        rad = math.radians(angle)
        tip = (base[0] + math.sin(rad) * length * s, base[1] - math.cos(rad) * length * s)
        _capsule(tissue, base, tip, finger_w, 1.0)
        mc_base = (cx + dx * s * 0.55, hand.wrist_y - 0.15 * s)
        _capsule(bone, mc_base, _along(base, mc_base, 0.08), finger_w * 0.45, 1.0)  # metacarpal
        cuts = [0.05, 0.45, 0.75, 0.96]  # proximal, middle, distal phalanx
        for a, b in zip(cuts[:-1], cuts[1:]):
            p0, p1 = _along(base, tip, a + 0.03), _along(base, tip, b - 0.03)
            _capsule(bone, _along(p0, p1, 0.12 + gap / (length * s)), p1, finger_w * 0.42, 1.0)
            _capsule(bone, p0, _along(p0, p1, 0.06), finger_w * 0.46, 0.9)  # epiphysis
    t_base = (cx + thumb_side * palm_w * 0.42, hand.wrist_y - 0.10 * s)
    t_rad = math.radians(thumb_side * rng.uniform(40, 55))
    t_tip = (t_base[0] + math.sin(t_rad) * 0.30 * s, t_base[1] - math.cos(t_rad) * 0.30 * s)
    _capsule(tissue, t_base, t_tip, finger_w * 1.1, 1.0)
    for a, b in ((0.05, 0.45), (0.5, 0.78), (0.8, 0.97)):
        _capsule(bone, _along(t_base, t_tip, a), _along(t_base, t_tip, b), finger_w * 0.45, 1.0)


def _rotate_hand(hand: _Hand, rotation: float) -> np.ndarray:
    """Rotate the hand about the wrist (in place); return its exact mask."""
    h, w = hand.tissue.shape
    matrix = cv2.getRotationMatrix2D((hand.cx, hand.wrist_y), rotation, 1.0)
    hand.tissue = cv2.warpAffine(hand.tissue, matrix, (w, h), flags=cv2.INTER_LINEAR)
    hand.bone = cv2.warpAffine(hand.bone, matrix, (w, h), flags=cv2.INTER_LINEAR) * (hand.tissue > 0.5)
    return np.where(hand.tissue > 0.5, 255, 0).astype(np.uint8)


def _expose(rng: np.random.Generator, hand: _Hand, mask: np.ndarray, noise: float) -> np.ndarray:
    """Film density: background, soft tissue thinning to the edges, cortical bone; blur and noise."""
    s, finger_w = hand.size, hand.finger_w
    # soft tissue is thinner, so darker, towards the edges of the hand
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    thickness = 0.5 + 0.5 * np.clip(depth / (0.05 * s), 0, 1) ** 0.6
    # bones: dense cortex around a lighter medullary canal
    solid = (hand.bone > 0.5).astype(np.uint8)
    core = cv2.GaussianBlur(cv2.erode(solid, np.ones((max(3, int(finger_w * 0.15)),) * 2, np.uint8)).astype(np.float32),
                            (0, 0), max(1.0, finger_w * 0.06))
    bone = hand.bone * (1 - 0.35 * core)

    background = rng.uniform(8, 25)
    soft = rng.uniform(75, 110)
    dense = rng.uniform(170, 210)
    film = background + (soft - background) * np.clip(hand.tissue, 0, 1) * thickness \
        + (dense - soft) * np.clip(bone, 0, 1)
    film = cv2.GaussianBlur(film, (0, 0), 1.2)
    film += rng.normal(0, noise, film.shape).astype(np.float32)
    return film


def _add_film_border(rng: np.random.Generator, film: np.ndarray, mask: np.ndarray) -> None:
    """Bright bands on 1–4 sides (cassette edges); the hand under them is not in the mask."""
    h, w = film.shape
    t = int(rng.uniform(0.02, 0.05) * min(h, w))
    level = rng.uniform(200, 240)
    sides = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)
    for side in sides:
        region = [(slice(0, t), slice(None)), (slice(h - t, h), slice(None)),
                  (slice(None), slice(0, t)), (slice(None), slice(w - t, w))][side]
        film[region] = level
    mask[:t] = 0 if 0 in sides else mask[:t]
    mask[h - t:] = 0 if 1 in sides else mask[h - t:]
    mask[:, :t] = 0 if 2 in sides else mask[:, :t]
    mask[:, w - t:] = 0 if 3 in sides else mask[:, w - t:]


def _add_marker(rng: np.random.Generator, film: np.ndarray, mask: np.ndarray) -> None:
    """A burned-in side marker "L" in an upper corner, never over the hand."""
    h, w = film.shape
    scale = 0.0035 * min(h, w)
    corner_x = int(w * (0.06 if rng.random() < 0.5 else 0.82))
    org = (corner_x, int(h * 0.14))
    letters = np.zeros((h, w), np.uint8)
    cv2.putText(letters, "L", org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(scale * 2.5)), cv2.LINE_AA)
    letters[mask > 0] = 0
    film[letters > 0] = 250.0


def _develop(film: np.ndarray, low_contrast: bool, inverted: bool, bits: int) -> np.ndarray:
    """Contrast, polarity and bit depth of the stored image."""
    if low_contrast:
        film = 118 + (film - film.mean()) * 0.03
    film = np.clip(film, 0, 255)
    if inverted:
        film = 255 - film
    if bits == 8:
        return np.round(film).astype(np.uint8)
    top = 2**bits - 1
    return np.round(film / 255.0 * top).astype(np.uint16)


def write_phantom_set(folder: str | Path, n: int = 12, seed: int = 0, height: int = 520, width: int = 400,
                      extra: dict[str, dict] | None = None, **options) -> dict:
    """Write ``n`` phantoms as ``images/``, ``masks/`` and ``labels.csv`` (RSNA schema) under ``folder``.

    ``extra`` adds named variants, e.g. ``{"inverted": {"inverted": True}}`` writes
    ``ph000-inverted.png`` drawn with those options. Returns
    ``{"images": Path, "masks": Path, "labels": Path, "ids": [...]}``.
    """
    folder = Path(folder)
    images, masks = folder / "images", folder / "masks"
    ids, rows = [], []
    jobs = [(f"ph{seed:03d}{i:04d}", seed * 100_003 + i, options) for i in range(n)]
    jobs += [(f"ph{seed:03d}-{name}", seed * 100_003 + n + k, {**options, **opts})
             for k, (name, opts) in enumerate((extra or {}).items())]
    for case_id, phantom_seed, opts in jobs:
        p = phantom(seed=phantom_seed, height=height, width=width, **opts)
        write_png(images / f"{case_id}.png", p.image)
        write_mask(masks / f"{case_id}.png", p.mask)
        ids.append(case_id)
        rows.append([case_id, f"{p.age_months:.1f}", "True" if p.male else "False"])
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "boneage", "male"])
        writer.writerows(rows)
    return {"images": images, "masks": masks, "labels": labels, "ids": ids}


# Mean shape of 40 left hands (rsna-raw radiographs, keypoints by handprep.landmarks): MediaPipe's 21
# keypoints with the wrist at the origin, wrist → middle MCP pointing up (−y), wrist → middle tip = 1.
HAND_TEMPLATE = np.array([
    [0.0, 0.0], [0.203, -0.127], [0.319, -0.275], [0.412, -0.406], [0.499, -0.499],
    [0.135, -0.506], [0.179, -0.71], [0.199, -0.838], [0.21, -0.94],
    [0.0, -0.51], [-0.011, -0.743], [-0.02, -0.89], [-0.033, -0.999],
    [-0.121, -0.468], [-0.181, -0.676], [-0.205, -0.805], [-0.222, -0.907],
    [-0.22, -0.393], [-0.318, -0.526], [-0.374, -0.611], [-0.409, -0.699],
])
_CHAINS = ([1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20])


def keypoint_phantom(seed: int = 0, rotation_deg: float = 0.0, side: str = "left", height: int = 520,
                     width: int = 400, age_months: float = 120.0, noise: float = 4.0) -> Phantom:
    """A hand radiograph drawn around known MediaPipe keypoints (``HAND_TEMPLATE``), for landmark tests.

    ``side`` is the patient's hand in a PA view (a left hand has its thumb on the image's right
    when the fingers point up; ``right`` mirrors the template); ``rotation_deg`` turns the hand
    counter-clockwise on screen about the wrist. ``meta["keypoints"]`` holds the 21 keypoints
    (x, y image pixels), ``meta["side"]`` and ``meta["rotation_deg"]`` the truth.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    rng = np.random.default_rng(seed)
    h, w = height, width
    size = 0.5 * min(h, w) * rng.uniform(0.95, 1.05)  # fits the frame at any rotation
    template = HAND_TEMPLATE * size
    if side == "right":
        template = template * np.array([-1.0, 1.0])
    a = math.radians(rotation_deg)
    turn = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y down: counter-clockwise
    centre = np.array([(template[:, 0].min() + template[:, 0].max()) / 2, -0.55 * size])
    points = np.array([w / 2, h / 2]) + (template - centre) @ turn.T
    wrist = points[0]
    down = turn @ np.array([0.0, 1.0])  # from the wrist towards the elbow

    tissue = np.zeros((h, w), np.float32)
    bone = np.zeros((h, w), np.float32)
    finger_w = 0.085 * size
    forearm_end = wrist + down * 2 * max(h, w)
    _capsule(tissue, wrist, forearm_end, 0.36 * size, 1.0)
    palm = points[[0, 1, 2, 5, 9, 13, 17]] + (points[[0, 1, 2, 5, 9, 13, 17]] - points[[0, 1, 2, 5, 9, 13, 17]].mean(0)) * 0.12
    cv2.fillPoly(tissue, [np.round(cv2.convexHull(palm.astype(np.float32))).astype(np.int32)], 1.0)
    for k, chain in enumerate(_CHAINS):
        width_k = finger_w * (1.15 if k == 0 else 1.0)
        tip = points[chain[-1]] + (points[chain[-1]] - points[chain[-2]]) * 0.25
        for p0, p1 in zip([points[chain[0]], *points[chain[1:]]], [*points[chain[1:]], tip]):
            _capsule(tissue, p0, p1, width_k, 1.0)
        # metacarpal from the carpus to the MCP, then phalanges with gaps at the joints
        base = _along(points[0], points[chain[0]], 0.35) if k else points[1]
        joints = [base] + [points[i] for i in chain[(1 if k == 0 else 0):]]
        for p0, p1 in zip(joints[:-1], joints[1:]):
            _capsule(bone, _along(p0, p1, 0.1), _along(p0, p1, 0.9), width_k * 0.45, 1.0)
    for dx in (-0.09, 0.08):  # radius and ulna
        start = wrist + turn @ np.array([dx * size, 0.05 * size])
        _capsule(bone, start, start + down * 2 * max(h, w), 0.09 * size, 1.0)
    for dx, dy in ((-0.08, -0.1), (0.0, -0.12), (0.08, -0.1), (-0.05, -0.2), (0.05, -0.2)):
        centre = wrist + turn @ np.array([dx * size, dy * size])
        cv2.circle(bone, (int(centre[0]), int(centre[1])), int(0.035 * size), 0.95, -1, cv2.LINE_AA)
    bone *= tissue > 0.5
    mask = np.where(tissue > 0.5, 255, 0).astype(np.uint8)
    film = 15 + 75 * np.clip(tissue, 0, 1) + 100 * np.clip(bone, 0, 1)
    film = cv2.GaussianBlur(film, (0, 0), 1.2) + rng.normal(0, noise, (h, w)).astype(np.float32)
    image = np.round(np.clip(film, 0, 255)).astype(np.uint8)
    meta = {"rotation_deg": float(rotation_deg), "side": side, "keypoints": points}
    return Phantom(image, mask, age_months, True, meta)
