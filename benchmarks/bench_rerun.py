"""Cold run, warm re-run and resume after a kill of the shipped chain, in one run.

Input: the first 100 radiographs of a folder (default ../shared/data/rsna-raw/images) plus
a handful of broken files (truncated PNG, text under .png, empty file, a non-image file),
copied into a temporary folder; 2 workers, as `handprep run` from a fresh process, so
start-up (imports, model loading) is counted as a user feels it.

  cold    — empty output folder
  warm    — the same command again (target: ≤ 5 % of cold)
  resume  — a fresh output killed (SIGKILL) once half the images are done, then run again
            (target: the resume costs no more than the images it still has to do:
            resume ≤ start-up + (cold − start-up) × remaining share, where start-up is
            the time of a run over a single radiograph: imports, workers, model loading)

It also prints where a warm run spends its time (cProfile of the warm run in-process).

    python benchmarks/bench_rerun.py [--data DIR] [--n 100]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_input(data: Path, n: int, folder: Path) -> int:
    folder.mkdir(parents=True)
    for p in sorted(data.glob("*.png"))[:n]:
        shutil.copy(p, folder / p.name)
    first = sorted(data.glob("*.png"))[0].read_bytes()
    (folder / "broken-truncated.png").write_bytes(first[: len(first) // 2])
    (folder / "broken-text.png").write_text("this is not an image")
    (folder / "broken-empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("a file that is not a radiograph")
    return n + 4


def run(images: Path, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "cli.main", "run", str(REPO / "pipelines.yaml"), "--input",
                            str(images), "--output", str(out), "--workers", "2"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started, code


def killed_half_way(images: Path, out: Path, n: int) -> int:
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "run", str(REPO / "pipelines.yaml"), "--input",
                                str(images), "--output", str(out), "--workers", "2"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    records = out / ".cache" / "records"
    while process.poll() is None and len(list(records.rglob("*.json"))) < n // 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return len(list(records.rglob("*.json")))


def warm_profile(images: Path, out: Path) -> str:
    from handprep.pipeline import load_config, run_pipeline

    profile = cProfile.Profile()
    profile.enable()
    run_pipeline(load_config(REPO / "pipelines.yaml", images=str(images), output=str(out), workers=2), progress=False)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(12)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rsna-raw" / "images")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handprep-rerun-") as tmp:
        tmp = Path(tmp)
        total = make_input(args.data, args.n, tmp / "in")
        cold, cold_code = run(tmp / "in", tmp / "out")
        warm, warm_code = run(tmp / "in", tmp / "out")
        done = killed_half_way(tmp / "in", tmp / "killed", args.n)
        resume, resume_code = run(tmp / "in", tmp / "killed")
        remaining = 1 - done / args.n
        (tmp / "one").mkdir()
        shutil.copy(sorted(args.data.glob("*.png"))[0], tmp / "one")
        startup, _ = run(tmp / "one", tmp / "out-one")
        expected = startup + (cold - startup) * remaining
        print(json.dumps({
            "inputs": total, "workers": 2,
            "cold_s": round(cold, 2), "warm_s": round(warm, 2),
            "warm_share_of_cold (target ≤ 0.05)": round(warm / cold, 3),
            "killed_after_images": done, "resume_s": round(resume, 2),
            "startup_s (one image)": round(startup, 2),
            "resume_over_startup_plus_remaining_work (target ≤ 1)": round(resume / expected, 2),
            "exit_codes": [cold_code, warm_code, resume_code],
        }, indent=2, ensure_ascii=False))
        print("\nwhere a warm re-run spends its time (in-process, cumulative):")
        print(warm_profile(tmp / "in", tmp / "out"))


if __name__ == "__main__":
    main()
