"""Peak memory of `handprep run` with a huge scan among normal ones, 2 workers, in one run.

Runs the shipped pipeline (U-Net segmentation included) twice as a subprocess:

  baseline: 6 phantom radiographs of 1040×800
  huge:     the same + one 12000×12000 scan (144 MP, 137 MiB decoded)

and reads each process's own peak resident memory (``VmHWM`` in /proc, the kernel's
high-water mark, so no short peak is missed between samples). The figure that matters is
the peak of the worker that decoded the huge scan, against the baseline workers' peak: the
extra is what one huge image costs a worker (the file's bytes, the decoded array, the
shrunk copy). Summing the whole tree instead would bury it under three copies of PyTorch.

Target: the huge scan adds at most 4× its decoded size to a worker's peak (it is shrunk to
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


def tree_peaks_mb(root_pid: int, peaks: dict[int, float]) -> None:
    """Update ``peaks`` with the VmHWM (peak RSS) of the process and every descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peaks[pid] = max(peaks.get(pid, 0.0), int(line.split()[1]) / 1024)
        except OSError:
            continue


def peak_run(images: Path, out: Path) -> tuple[float, float, float, int]:
    """(main process peak, largest worker peak, seconds, exit code) in MiB."""
    command = [sys.executable, "-m", "cli.main", "run", str(REPO / "pipelines.yaml"), "--input", str(images),
               "--output", str(out), "--workers", "2"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    peaks: dict[int, float] = {}

    def sample():
        while process.poll() is None:
            tree_peaks_mb(process.pid, peaks)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    sampler.join()
    main_peak = peaks.pop(process.pid, 0.0)
    return main_peak, max(peaks.values(), default=0.0), time.perf_counter() - started, code


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
        base_main, base_worker, base_seconds, base_code = peak_run(made["images"], tmp / "out-base")
        huge_main, huge_worker, huge_seconds, huge_code = peak_run(huge_dir, tmp / "out-huge")
        decoded_mb = 12000 * 12000 / 2**20
        print(json.dumps({
            "workers": 2,
            "baseline_worker_peak_mb": round(base_worker), "baseline_main_peak_mb": round(base_main),
            "with_huge_worker_peak_mb": round(huge_worker), "with_huge_main_peak_mb": round(huge_main),
            "huge_decoded_mb": round(decoded_mb),
            "worker_extra_over_decoded (target ≤ 4)": round((huge_worker - base_worker) / decoded_mb, 2),
            "seconds": [round(base_seconds, 1), round(huge_seconds, 1)],
            "exit_codes": [base_code, huge_code],
        }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
