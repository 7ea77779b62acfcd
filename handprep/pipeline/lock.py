"""One writer per output folder: an advisory lock held for the whole run."""
from __future__ import annotations

import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".handprep.lock"


class OutputLockedError(RuntimeError):
    """Another handprep run is writing to the same output folder."""


class OutputLock:
    """``with OutputLock(folder):`` — fails at once if another process holds it.

    Uses ``flock``, which the kernel releases when the holder dies (even by kill -9), so a
    crashed run never leaves a stale lock behind.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self._handle = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise OutputLockedError(
                    f"{self.path.parent}: another handprep run is writing here ({holder}). "
                    "Wait for it to finish or choose another --output."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            if fcntl is not None:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
