"""Append-only JSON-lines journal, one file per IST day under ``<data_dir>/journal/``.

Records are buffered in memory on the tick path and written by ``flush`` (called by a background
task, on shutdown, and before anything is sent to a real broker), so the tick path never waits
on the disk while the order of records is kept exactly. A flush hands the lines to the operating
system, which is enough to survive a crash of the process; ``run`` then syncs them to the disk in a
worker thread within one interval, so an order never waits for the disk either.

A rehearsal (the ``--clock`` rehearsal clock) keeps its own files, ``YYYY-MM-DD.rehearsal.jsonl``:
its made-up day never mixes with a real one. A line torn by a crash mid-write is skipped when the
day is read back (and reported by line number); the next record starts on a line of its own.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.core.layout import IST, IST_OFFSET_NS, NS_PER_DAY

log = logging.getLogger(__name__)
MAX_BUFFER = 10_000  # beyond this, flush on the spot: slower beats losing records


class Journal:
    def __init__(self, data_dir: Path, now_ns: Callable[[], int], rehearsal: bool = False) -> None:
        self.dir = Path(data_dir) / "journal"
        self.suffix = ".rehearsal.jsonl" if rehearsal else ".jsonl"
        self._now_ns = now_ns
        self._buffer: list[bytes] = []  # records of one IST day (``_record_day``): another day's flushes them first
        self._fh = None  # the open file of the day being written
        self._fd = -1  # its descriptor
        self._date: str | None = None
        self._unsynced = False
        self._record_day, self._day_start, self._day_end = "", 0, 0  # the IST day of the last record, in ns

    def record(self, kind: str, **fields: Any) -> None:
        ts = self._now_ns()
        if not self._day_start <= ts < self._day_end:
            self._new_day(ts)
        # orjson writes the datetime itself (RFC 3339, IST offset): half the cost of isoformat on
        # the order path
        self._buffer.append(orjson.dumps({"ts": datetime.fromtimestamp(ts / 1e9, IST), "kind": kind, **fields},
                                         option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
        if len(self._buffer) >= MAX_BUFFER:
            self.flush()

    def _new_day(self, ts: int) -> None:
        """A record of another IST day than the buffered ones: those go to their own day's file first, so a
        flush (on the order path) is one write to one file."""
        self.flush()
        day = (ts + IST_OFFSET_NS) // NS_PER_DAY
        self._day_start, self._day_end = day * NS_PER_DAY - IST_OFFSET_NS, (day + 1) * NS_PER_DAY - IST_OFFSET_NS
        self._record_day = datetime.fromtimestamp(ts / 1e9, IST).date().isoformat()

    def flush(self) -> None:
        buffer = self._buffer
        if not buffer:
            return
        self._buffer = []
        # one write(2) straight to the file (opened to append): an order's intent goes out in one call
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        fd = self._fd if self._date == self._record_day else self._file(self._record_day).fileno()
        written = os.write(fd, data)
        while written < len(data):  # a short write (a signal, a full disk): the rest after it
            written += os.write(fd, data[written:])
        self._unsynced = True

    def _file(self, date: str):
        if self._date != date:
            self.close()
            self.dir.mkdir(parents=True, exist_ok=True)
            # held open across flushes (closed by close()): reopening per flush costs the order path
            self._fh, self._date = open(self.path(date), "a+b"), date  # noqa: SIM115
            self._fd = self._fh.fileno()
            if self._fh.tell():
                self._fh.seek(-1, os.SEEK_END)
                if self._fh.read(1) != b"\n":  # a crash tore the last line: it must not swallow the next record
                    self._fh.write(b"\n")  # (appending writes at the end wherever the read left off)
                    self._fh.flush()  # before the records written to the descriptor itself
        return self._fh

    def path(self, date: str) -> Path:
        return self.dir / f"{date}{self.suffix}"

    def dates(self) -> list[str]:
        """The days this journal has files for (a rehearsal's or the real ones), oldest first."""
        return sorted(p.name[:10] for p in self.dir.glob(f"????-??-??{self.suffix}"))

    def sync(self) -> None:
        """Make what was flushed durable (blocks on the disk: call it off the event loop)."""
        fh = self._fh
        if fh is not None and self._unsynced:
            self._unsynced = False
            with contextlib.suppress(ValueError, OSError):  # closed by a day change meanwhile: close() synced it
                os.fsync(fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh, self._fd, self._date, self._unsynced = None, -1, None, False

    async def run(self, interval: float = 0.05) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
                if self._unsynced:
                    await asyncio.to_thread(self.sync)
        finally:
            self.flush()
            self.close()

    def read_day(self, date: str, torn: list[int] | None = None) -> list[dict[str, Any]]:
        """The day's records. A line that is not a record (torn by a crash mid-write) is skipped,
        logged, and its number (from 1) appended to ``torn``."""
        path = self.path(date)
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
                continue
            log.warning("journal %s line %d is not a whole record (torn by a crash?): skipped", path, number)
            if torn is not None:
                torn.append(number)
        return records
