"""Peak memory of `handprep run` with a huge scan among normal ones, 2 workers, in one run.

Runs the shipped pipeline (U-Net segmentation included) twice as a subprocess and samples
the resident memory of the whole process tree (main process + joblib workers) every 20 ms:

  baseline: 6 phantom radiographs of 1040×800
  huge:     the same + one 12000×12000 scan (144 MP, 144 MB decoded)

Target: the huge scan adds at most 4× its decoded size to the peak (it is shrunk to
input.max_side_px right after decoding, so no stage holds several full-size copies).

    python benchmarks/bench_memory.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handprep.io import write_png  # noqa: E402
from handprep.synth import phantom, write_phantom_set  # noqa: E402


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def peak_run(images: Path, out: Path) -> tuple[float, float, int]:
    command = [sys.executable, "-m", "cli.main", "run", str(REPO / "pipelines.yaml"), "--input", str(images),
               "--output", str(out), "--workers", "2"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    peak = [0.0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    sampler.join()
    return peak[0], time.perf_counter() - started, code


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="handprep-mem-") as tmp:
        tmp = Path(tmp)
        made = write_phantom_set(tmp / "small", n=6, seed=2, height=1040, width=800)
        huge_dir = tmp / "huge"
        huge_dir.mkdir()
        for p in made["images"].glob("*.png"):
            (huge_dir / p.name).write_bytes(p.read_bytes())
        scan = phantom(seed=3, height=1200, width=1200, border=False, marker=False).image
        write_png(huge_dir / "huge.png", cv2.resize(scan, (12000, 12000), interpolation=cv2.INTER_LINEAR))
        base_peak, base_seconds, base_code = peak_run(made["images"], tmp / "out-base")
        huge_peak, huge_seconds, huge_code = peak_run(huge_dir, tmp / "out-huge")
        decoded_mb = 12000 * 12000 / 2**20
        print(json.dumps({
            "workers": 2,
            "baseline_peak_mb": round(base_peak), "baseline_seconds": round(base_seconds, 1),
            "with_huge_peak_mb": round(huge_peak), "with_huge_seconds": round(huge_seconds, 1),
            "huge_decoded_mb": round(decoded_mb),
            "extra_over_decoded (target ≤ 4)": round((huge_peak - base_peak) / decoded_mb, 2),
            "exit_codes": [base_code, huge_code],
        }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
