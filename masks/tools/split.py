"""Make masks/splits_final.json: seeded, stratified train / validation / test over all mask ids.

    PYTHONPATH=$PWD python masks/tools/split.py TAGS.csv RSNA60_IDS.txt OUT.json [SEED=2026]

Raw images (TAGS.csv: id, tags): the test split gets 45, chosen tag by tag from the rarest
up, so that every tag has at least max(1, ceil(30 %)) of its images in test (hard cases
included by construction), then filled at random; validation gets 25 the same way at 15 %;
the rest train; the first seed whose train split keeps every tag with ≥ 3 images
is used. rsna60 ids: 10 test, 10 validation, 40 train, at random. Run once, before
any training; the committed JSON, not a rerun, is the split.
"""
from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np


def stratified(tags: dict[str, set[str]], pool: list[str], size: int, share: float,
               rng: np.random.Generator) -> list[str]:
    counts: dict[str, int] = {}
    for case_id in pool:
        for tag in tags[case_id]:
            counts[tag] = counts.get(tag, 0) + 1
    chosen: list[str] = []
    for tag in sorted(counts, key=lambda t: (counts[t], t)):
        want = max(1, math.ceil(share * counts[tag]))
        have = sum(tag in tags[c] for c in chosen)
        rest = [c for c in pool if tag in tags[c] and c not in chosen]
        for index in rng.permutation(len(rest))[:max(0, min(want - have, size - len(chosen)))]:
            chosen.append(rest[index])
    rest = [c for c in pool if c not in chosen]
    chosen += [rest[i] for i in rng.permutation(len(rest))[:max(0, size - len(chosen))]]
    return chosen


def raw_split(tags: dict[str, set[str]], seed: int) -> tuple[list[str], list[str], list[str], np.random.Generator]:
    """The first seed from ``seed`` up whose train split keeps every tag that has ≥ 3 images."""
    raw = sorted(tags, key=int)
    common = {t for t in {t for c in raw for t in tags[c]} if sum(t in tags[c] for c in raw) >= 3}
    while True:
        rng = np.random.default_rng(seed)
        test = stratified(tags, raw, 45, 0.30, rng)
        validation = stratified(tags, [c for c in raw if c not in test], 25, 0.15, rng)
        train = [c for c in raw if c not in test and c not in validation]
        if common <= {t for c in train for t in tags[c]}:
            print("seed", seed)
            return train, validation, test, rng
        seed += 1


def main(tags_csv: str, rsna60_ids: str, out: str, seed: str = "2026") -> None:
    tags = {r["id"]: set(r["tags"].split()) for r in csv.DictReader(open(tags_csv))}
    raw = sorted(tags, key=int)
    train, validation, test, rng = raw_split(tags, int(seed))
    clean = sorted((line.strip() for line in open(rsna60_ids) if line.strip()), key=int)
    order = [clean[i] for i in rng.permutation(len(clean))]
    split = {"train": sorted(train + order[20:], key=int), "validation": sorted(validation + order[10:20], key=int),
             "test": sorted(test + order[:10], key=int)}
    with open(out, "w") as handle:
        json.dump(split, handle, indent=1)
        handle.write("\n")
    for name, ids in split.items():
        raw_ids = [c for c in ids if c in tags]
        per_tag = {t: sum(t in tags[c] for c in raw_ids) for t in sorted({t for c in raw for t in tags[c]})}
        print(name, len(ids), f"({len(raw_ids)} raw)", per_tag)


if __name__ == "__main__":
    main(*sys.argv[1:])
