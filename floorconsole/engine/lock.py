"""One engine per data directory: an exclusive lock file that names the process holding it."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path


class EngineAlreadyRunning(RuntimeError):
    """Another engine holds this data directory."""


class DataDirLock:
    """flock on DATA_DIR/engine.lock; the kernel drops it when the process dies, even on kill -9."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "engine.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return  # already ours (the CLI takes it before reading the snapshot store)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise EngineAlreadyRunning(
                f"another floorconsole engine is already running on {self.path.parent} "
                f"({holder}); attach to it or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
