"""Append-only JSON-lines journal, one file per IST day under ``<data_dir>/journal/``.

Records are buffered in memory on the tick path and written by ``flush`` (called by a background
task, on shutdown, and before anything is sent to a real broker), so the tick path never waits
on the disk while the order of records is kept exactly.
"""

import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.layout import IST

MAX_BUFFER = 10_000  # beyond this, flush on the spot: slower beats losing records


class Journal:
    def __init__(self, data_dir: Path, now_ns: Callable[[], int]) -> None:
        self.dir = Path(data_dir) / "journal"
        self._now_ns = now_ns
        self._buffer: list[bytes] = []
        self._dates: list[str] = []

    def record(self, kind: str, **fields: Any) -> None:
        ts = self._now_ns()
        when = datetime.fromtimestamp(ts / 1e9, IST)
        line = orjson.dumps({"ts": when.isoformat(timespec="microseconds"), "kind": kind, **fields},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        self._buffer.append(line + b"\n")
        self._dates.append(when.date().isoformat())
        if len(self._buffer) >= MAX_BUFFER:
            self.flush()

    def flush(self, fsync: bool = False) -> None:
        if not self._buffer:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        buffer, dates = self._buffer, self._dates
        self._buffer, self._dates = [], []
        start = 0
        while start < len(buffer):
            end = start
            while end < len(buffer) and dates[end] == dates[start]:
                end += 1
            with open(self.dir / f"{dates[start]}.jsonl", "ab") as fh:
                fh.write(b"".join(buffer[start:end]))
                if fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            start = end

    async def run(self, interval: float = 0.05) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            self.flush(fsync=True)

    def read_day(self, date: str) -> list[dict[str, Any]]:
        path = self.dir / f"{date}.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
