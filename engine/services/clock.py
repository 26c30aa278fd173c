"""Wall clocks: the system's, and a rehearsal clock that starts at a chosen instant."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...  # epoch ns (UTC)

    async def sleep_until(self, ns: int) -> None: ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep_until(self, ns: int) -> None:
        await asyncio.sleep(max(0.0, (ns - self.now_ns()) / 1e9))


class RehearsalClock(SystemClock):
    """Reads ``start`` at creation and runs at real speed from there (for rehearsing a session).

    Monotonic, so a system clock step (NTP) cannot move a rehearsal backwards. Made with
    ``running=False`` it stands at ``start`` until ``run()``: a process starts it once it is ready
    to trade, so compiling and warming up cost no rehearsed time.
    """

    def __init__(self, start: datetime, running: bool = True) -> None:
        if start.utcoffset() is None:
            raise ValueError(f"rehearsal clock start {start.isoformat()} needs a UTC offset, e.g. +05:30")
        self._origin = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
        self._mono: int | None = None
        if running:
            self.run()

    def run(self) -> None:
        """Starts the clock at ``start`` (once; later calls change nothing)."""
        if self._mono is None:
            self._mono = time.monotonic_ns()

    def now_ns(self) -> int:
        if self._mono is None:
            return self._origin
        return self._origin + time.monotonic_ns() - self._mono
