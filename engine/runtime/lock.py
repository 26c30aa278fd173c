"""One ``otrade run`` per data directory: two would trade into one journal.

The guard is an exclusive ``flock`` on ``<data dir>/otrade.lock``. The kernel drops it when the
holder exits or dies (kill -9 included), so a crash never leaves a stale lock to clean up; the
file's text only names the holder's pid for the refusal message.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "otrade.lock"


class DataDirBusy(Exception):
    """Another live process holds the data directory."""


@contextmanager
def hold(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock for the block; raise DataDirBusy at once when another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown (still starting)"
            raise DataDirBusy(f"{data_dir.resolve()} is in use by another otrade run (pid {holder}); "
                              "stop it first, or give this one its own OTRADE_DATA_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
