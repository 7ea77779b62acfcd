"""Where cases run: this process, a pool of worker processes (loky), threads, or dask.

Each worker process is prepared once by :func:`prepare_worker` — one thread for OpenCV and
torch (several workers on few cores would oversubscribe them), and heavy stage state such as
the U-Net loaded before the first image. Loading it there, and not during the first image,
also keeps loky's memory-leak check (active with psutil) from taking the model for a leak
and restarting workers, which reloaded the model again and again.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import cv2

_WARMUP_ERRORS: dict[str, str] = {}  # stage name -> why its warm-up failed in this process


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler, docker stop): handled like Ctrl-C."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` in the main thread for the duration of a run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pin_threads() -> None:
    """One thread per library per worker; torch only if something already imported it."""
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _exit_with_parent(parent: int) -> None:
    """Poll the parent; when it is gone (kill -9 of the run), exit instead of idling on as an orphan
    holding a model in memory."""
    import os
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def prepare_worker(warmups: tuple[tuple[str, dict], ...], watch_parent: bool = False) -> None:
    """Run each stage's warm-up once in this process; remember failures to report per image."""
    import os

    from handprep.stages.registry import get_stage

    if watch_parent:
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    cv2.setNumThreads(1)
    for name, params in warmups:
        try:
            get_stage(name).warmup(params)
        except Exception as exc:  # reported on every image that needs the stage
            _WARMUP_ERRORS[name] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    pin_threads()


def warmup_error(name: str) -> str | None:
    return _WARMUP_ERRORS.get(name)


def map_cases(func: Callable, cases: list, plan, warmups: tuple, scratch: Path) -> Iterator[dict]:
    """Yield ``func(case, plan)`` for every case, in completion order, on the plan's backend."""
    config = plan.config
    if not cases:
        return
    if config.backend == "sequential" or (config.n_workers == 1 and config.backend != "dask"):
        yield from _in_process(func, cases, plan, warmups)
    elif config.backend == "loky":
        yield from _loky(func, cases, plan, warmups, config.n_workers)
    elif config.backend == "threading":
        yield from _joblib(func, cases, plan, warmups, config.n_workers, "threading")
    else:
        yield from _dask(func, cases, plan, warmups, config, scratch)


@contextlib.contextmanager
def _pinned_here(warmups):
    """Prepare this process as a worker for the run, then give back its thread settings."""
    threads = cv2.getNumThreads()
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        prepare_worker(warmups)
        yield
    finally:
        cv2.setNumThreads(threads)
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)


def _in_process(func, cases, plan, warmups):
    with _pinned_here(warmups):
        for case in cases:
            yield func(case, plan)


def _loky(func, cases, plan, warmups, workers: int):
    """A window of submitted cases (not all 14,000 at once); workers killed on interrupt."""
    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=workers, initializer=prepare_worker, initargs=(warmups, True),
                                     timeout=60)
    pending, queue = set(), iter(cases)
    clean = False
    try:
        for case in _take(queue, 4 * workers):
            pending.add(executor.submit(func, case, plan))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                for case in _take(queue, 1):
                    pending.add(executor.submit(func, case, plan))
        clean = True
    finally:
        if not clean:  # interrupted, stopped early or broken: leave no worker behind
            executor.shutdown(wait=True, kill_workers=True)


def _take(iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) == n:
            break
    return out


def _joblib(func, cases, plan, warmups, workers: int, backend: str):
    from joblib import Parallel, delayed

    tasks = (delayed(func)(case, plan) for case in cases)
    with _pinned_here(warmups):  # threads share this process's loaded state
        yield from Parallel(n_jobs=workers, backend=backend, return_as="generator_unordered")(tasks)


def _dask(func, cases, plan, warmups, config, scratch: Path):
    from joblib import Parallel, delayed, parallel_config

    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("backend 'dask' needs dask.distributed: pip install 'handprep[dask]'") from None
    cluster = None
    if config.scheduler:
        client = Client(config.scheduler)
    else:
        # dask's scratch space goes inside the output folder, not the system temp folder
        cluster = LocalCluster(n_workers=config.n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, local_directory=str(scratch))
        client = Client(cluster)
    try:
        client.run(prepare_worker, warmups)
        with parallel_config(backend="dask"):
            yield from Parallel(return_as="generator_unordered")(delayed(func)(c, plan) for c in cases)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
