"""Hand landmarks on raw RSNA radiographs: found rate, handedness, QA, speed, keypoint error.

For every radiograph (one CPU core): the shipped segmenter's mask (or ``--masks``), then
``LandmarkDetector`` (renderings × scales × turns × mirrors), against the trivial baseline
— raw MediaPipe (bundled models, default confidence 0.5) once on the plain grey image.
Prints the found rate (target ≥ 97 %), handedness counts, QA flags, seconds per radiograph,
and, on the radiographs annotated by hand (``landmarks/annotations_rsna_raw.csv``), the
keypoint error as a fraction of hand size for both, with the worst cases drawn.

    python benchmarks/bench_landmarks.py --data ../shared/data/rsna-raw --out /tmp/bench-lm \
        [--masks DIR | --no-mask] [--limit N] [--annotations landmarks/annotations_rsna_raw.csv]

Resumable: rows already in OUT/ours.csv and OUT/baseline.csv are kept.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handprep.io import read_image, write_png  # noqa: E402
from handprep.landmarks.anatomy import qa  # noqa: E402
from handprep.landmarks.batch import find_hand, read_landmarks_csv, to_row, write_landmarks_csv  # noqa: E402
from handprep.landmarks.detect import HandLandmarks, LandmarkDetector, _LegacyHands  # noqa: E402
from handprep.landmarks.draw import overlay  # noqa: E402
from handprep.landmarks.evaluate import ANNOTATED_INDEX, keypoint_errors, read_annotations, summarise  # noqa: E402
from handprep.landmarks.points import patient_side  # noqa: E402
from handprep.landmarks.render import render  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def baseline(hands: _LegacyHands, image: np.ndarray) -> HandLandmarks:
    """Raw MediaPipe, one look at the plain image (percentile-stretched grey as RGB)."""
    rgb = render(image, None, "plain")
    found = hands(rgb)
    if found is None:
        return HandLandmarks(False, reason="raw MediaPipe found no hand")
    points = found[0] * np.array([image.shape[1], image.shape[0]])
    return HandLandmarks(True, points, round(found[1], 4), patient_side(points), "plain", 0.0, 0, False, attempts=1)


def run(args) -> tuple[dict, dict, dict]:
    cv2.setNumThreads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(args.data, "images").glob("*.png"))
    if args.ids:
        wanted = set(args.ids)
        paths = [p for p in paths if p.stem in wanted]
    paths = paths[:args.limit] if args.limit else paths
    ours = read_landmarks_csv(out / "ours.csv") if (out / "ours.csv").is_file() else {}
    base = read_landmarks_csv(out / "baseline.csv") if (out / "baseline.csv").is_file() else {}
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").is_file() else {}
    detector, hands, segmenter = LandmarkDetector(), _LegacyHands(0.5, 1), None
    masks = Path(args.masks) if args.masks else None
    if masks is None and not args.no_mask:
        import torch

        torch.set_num_threads(1)
        from handprep.segment.infer import get_segmenter

        segmenter = get_segmenter("default", "cpu")
    from tqdm.auto import tqdm

    for k, path in enumerate(tqdm(paths, desc="bench landmarks", unit="img")):
        if path.stem in ours and path.stem in base and path.stem in timing:
            continue
        image = read_image(path)
        t0 = time.perf_counter()
        found, mask, note, flags = find_hand(image, path.stem, masks, segmenter, detector)
        t1 = time.perf_counter()
        raw = baseline(hands, image)
        t2 = time.perf_counter()
        row = to_row(path.stem, str(path), found, note, t1 - t0, flags)
        row.update({k: v for k, v in qa(found, mask).items() if k in ("fingers", "outside", "mask_ratio")},
                   attempts=found.attempts)
        ours[path.stem] = row
        base[path.stem] = to_row(path.stem, str(path), raw, "none", t2 - t1)
        timing[path.stem] = {"landmarks": t1 - t0, "baseline": t2 - t1, "attempts": found.attempts, "qa": flags,
                             "fingers": row["fingers"], "mask_ratio": row["mask_ratio"], "mask": note}
        if k % 50 == 49 or k == len(paths) - 1:
            save(out, ours, base, timing)
    save(out, ours, base, timing)
    keep = {p.stem for p in paths}
    return ({i: r for i, r in ours.items() if i in keep}, {i: r for i, r in base.items() if i in keep},
            {i: t for i, t in timing.items() if i in keep})


def save(out: Path, ours: dict, base: dict, timing: dict) -> None:
    strip = lambda table: [{k: v for k, v in r.items() if k != "points"} for r in table.values()]  # noqa: E731
    write_landmarks_csv(out / "ours.csv", strip(ours), ("fingers", "outside", "mask_ratio", "attempts"))
    write_landmarks_csv(out / "baseline.csv", strip(base))
    (out / "timing.json").write_text(json.dumps(timing))


def points_of(row: dict) -> np.ndarray | None:
    if str(row.get("found")) != "1":
        return None
    return np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(21)])


def report(ours: dict, base: dict, timing: dict, args) -> None:
    n = len(ours)
    found = sum(str(r["found"]) == "1" for r in ours.values())
    returned = sum(bool(r["view"]) for r in ours.values())
    base_found = sum(str(r["found"]) == "1" for r in base.values())
    sides = Counter(r["handedness"] or "not found/implausible" for r in ours.values())
    base_sides = Counter(r["handedness"] or "not found" for r in base.values())
    print(f"radiographs: {n}")
    print(f"found: ours {found}/{n} = {100 * found / n:.1f} % plausible ({returned} returned by MediaPipe)   |   "
          f"baseline (raw MediaPipe, plain image) {base_found}/{n} = {100 * base_found / n:.1f} %")
    print(f"handedness (anatomy): ours {dict(sides)}   |   baseline keypoints {dict(base_sides)}")
    flags = Counter(f for t in timing.values() for f in (t["qa"] or "").split("+") if f)
    print(f"QA flags: {dict(flags)} (fingers counted: {dict(Counter(t['fingers'] for t in timing.values()))})")
    views = Counter(r["view"] for r in ours.values() if r["view"])
    print(f"finding views: {dict(views.most_common(8))}")
    attempts = np.array([t["attempts"] for t in timing.values()])
    print(f"attempts per radiograph: median {np.median(attempts):.0f}, mean {attempts.mean():.2f}, max {attempts.max()}")
    lm = np.array([t["landmarks"] for t in timing.values()])
    bl = np.array([t["baseline"] for t in timing.values()])
    what = ("masks from the folder + landmarks" if args.masks else "the image alone" if args.no_mask
            else "shipped segmenter (+ contrast fallbacks) + landmarks")
    print(f"seconds per radiograph on 1 core ({what}): {lm.mean():.3f} mean / {np.median(lm):.3f} median / "
          f"{lm.max():.2f} max; raw MediaPipe {bl.mean():.3f}")
    print(f"mask source: {dict(Counter(t['mask'] for t in timing.values()))}")
    ratios = np.array([float(t["mask_ratio"]) for t in timing.values() if t["mask_ratio"] not in ("", None)])
    if len(ratios):
        print(f"mask area / hand size²: p0.5 {np.percentile(ratios, 0.5):.3f}, p50 {np.median(ratios):.3f}, "
              f"p99.5 {np.percentile(ratios, 99.5):.3f}")
    if args.annotations and Path(args.annotations).is_file():
        evaluate(ours, base, args)


def evaluate(ours: dict, base: dict, args) -> None:
    truth = read_annotations(args.annotations)
    ids = [i for i in sorted(truth) if i in ours]
    print(f"\nkeypoint error on {len(ids)} hand-annotated radiographs (fraction of hand size, wrist → middle tip):")
    rows = []
    for name, table in (("ours", ours), ("baseline", base)):
        errors, missed, side_ok = [], [], 0
        for i in ids:
            points = points_of(table[i])
            if points is None:
                missed.append(i)
                continue
            e = keypoint_errors(points, truth[i]["points"])
            errors.append(e)
            side_ok += table[i]["handedness"] == truth[i]["side"]
            rows.append({"method": name, "id": i, **{k: round(v, 4) for k, v in e.items()}})
        s = summarise(errors)
        if s["cases"]:
            print(f"  {name:8s}: found {s['cases']}/{len(ids)}; 10 finger keypoints median {100 * s['finger_median']:.1f} %, "
                  f"mean {100 * s['finger_mean']:.1f} %; wrist median {100 * s['wrist_median']:.1f} %; worst case "
                  f"{100 * s['case_mean_worst']:.1f} %; handedness right {side_ok}/{s['cases']}"
                  + (f"; missed {', '.join(missed)}" if missed else ""))
        else:
            print(f"  {name:8s}: found 0/{len(ids)}")
    out = Path(args.out)
    import csv

    with (out / "keypoint_errors.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method", "id", *truth[ids[0]]["points"].keys()])
        writer.writeheader()
        writer.writerows(rows)
    worst = sorted((r for r in rows if r["method"] == "ours"),
                   key=lambda r: -np.mean([r[k] for k in r if k not in ("method", "id", "wrist")]))[:4]
    tiles = []
    for r in worst:
        image = read_image(Path(args.data, "images", f"{r['id']}.png"))
        tile = overlay(image, points_of(ours[r["id"]]), f"{r['id']} ours", 500)
        scale = tile.shape[1] / image.shape[1]
        truth_points = np.full((21, 2), np.nan)
        for k, idx in enumerate(ANNOTATED_INDEX):
            truth_points[idx] = truth[r["id"]]["points"][list(truth[r["id"]]["points"])[k]]
        for x, y in truth_points[ANNOTATED_INDEX] * scale:
            cv2.drawMarker(tile, (int(x), int(y)), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
        canvas = np.zeros((500, 500, 3), np.uint8)
        canvas[:tile.shape[0], :tile.shape[1]] = tile[:500, :500]
        tiles.append(canvas)
    if tiles:
        write_png(out / "worst_cases.png", np.hstack(tiles))
        print(f"  worst cases (ours, white crosses = annotation): {', '.join(r['id'] for r in worst)} → "
              f"{out / 'worst_cases.png'}; per case: {out / 'keypoint_errors.csv'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "rsna-raw"))
    parser.add_argument("--out", default="bench-landmarks")
    parser.add_argument("--masks", default=None, help="mask folder (default: the shipped segmenter, timed)")
    parser.add_argument("--no-mask", action="store_true", help="the image alone (threshold-mask silhouettes, grey views)")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--ids", nargs="*", default=None)
    parser.add_argument("--annotations", default=str(REPO / "landmarks" / "annotations_rsna_raw.csv"))
    args = parser.parse_args()
    if not Path(args.data, "images").is_dir():
        sys.exit(f"no images/ under {args.data}: pass --data (rsna-raw)")
    report(*run(args), args)


if __name__ == "__main__":
    main()
