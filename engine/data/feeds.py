"""Tick sources for paper trading: async iterables of ``(instr, ts_ns, price, volume)``."""

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, time, timedelta

import numpy as np

from engine.core.layout import IST, NS_PER_DAY, NS_PER_S
from engine.data.synthetic import Market
from engine.data.ticks import Ticks
from engine.services.calendar import TradingCalendar
from engine.services.clock import Clock

Tick = tuple[int, int, float, float]
_MIN_SLEEP_NS = 1_000_000  # nearer targets are not worth a timer: the next sleep catches up
_YIELD_EVERY = 4096  # ticks between turns given to the loop when no sleep happens
_LATE_NS = 5 * NS_PER_S  # a synthetic tick this late is dropped: no burst of stale ticks after a stall


class _Paced:
    """Pacing against the clock, and a ``stop()`` that also cuts a sleep short."""

    symbols: tuple[str, ...]

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stopped = False
        self._sleep: asyncio.Future | None = None
        self._unslept = 0

    def stop(self) -> None:
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def _wait_until(self, ns: int) -> bool:
        """Sleeps until ``ns`` on the clock; False once the feed is stopped."""
        if ns - self._clock.now_ns() < _MIN_SLEEP_NS:
            self._unslept += 1
            if self._unslept % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            return not self._stopped
        self._sleep = asyncio.ensure_future(self._clock.sleep_until(ns))
        try:
            await self._sleep
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._stopped or (task is not None and task.cancelling()):
                raise  # the consumer itself is being cancelled
        finally:
            self._sleep = None
        return not self._stopped


class SyntheticFeed(_Paced):
    """Live ticks from the synthetic market (``synthetic.Market``: the model of ``ticks generate``),
    each at its own time on the clock, mean gap ``tick_interval_ms`` per instrument.

    With a calendar the market trades its sessions only (special ones at their hours): nothing comes
    on a day the exchange is closed, and each open gaps from the close before. The market starts
    at the start prices ``history_days`` calendar days before the clock's session, so ``history``
    can hand those earlier sessions to the strategies (their warm-up) and the feed then continues
    the same path. Without a calendar it never closes and starts at the clock's instant.

    The path follows from the seed and the sessions alone, not from when the feed is read: a feed
    made again later on the same day (a restart) continues the price path of the first, and a run
    with the same seed and clock repeats.
    """

    def __init__(self, symbols: Sequence[str], start_prices: Sequence[float], tick_sizes: Sequence[float],
                 seed: int, clock: Clock, tick_interval_ms: float, calendar: TradingCalendar | None = None,
                 history_days: int = 0) -> None:
        super().__init__(clock)
        now = clock.now_ns()
        sessions = _always_open(now) if calendar is None else _sessions(calendar, now, history_days)
        self._market = iter(Market(symbols, start_prices, tick_sizes, seed, tick_interval_ms, sessions))
        self.symbols = tuple(symbols)
        self._part: Ticks | None = None  # the part being read, from row ``_next`` on
        self._key = 0  # its session's
        self._next = 0

    def _reading(self) -> Ticks:
        """The part being read; the next one once this one is read to its end."""
        if self._part is None or self._next >= len(self._part):
            self._key, self._part = next(self._market)
            self._next = 0
        return self._part

    def _take(self, until_ns: int) -> Iterator[tuple[int, Ticks]]:
        """The market's ticks before ``until_ns`` not read yet, part by part; the rest stays to read."""
        while True:
            part, lo = self._reading(), self._next
            hi = int(np.searchsorted(part.ts, until_ns, side="left"))
            if hi <= lo:
                return
            self._next = hi
            yield self._key, Ticks(part.ts[lo:hi], part.price[lo:hi], part.volume[lo:hi], part.instr[lo:hi],
                                   part.symbols)

    def history(self, until_ns: int) -> Iterator[Ticks]:
        """The market before ``until_ns``, one session at a time (the feed goes on from there)."""
        chunks: list[Ticks] = []
        session = None
        for key, ticks in self._take(until_ns):
            if chunks and key != session:
                yield _joined(chunks)
                chunks = []
            session = key
            chunks.append(ticks)
        if chunks:
            yield _joined(chunks)

    async def __aiter__(self) -> AsyncIterator[Tick]:
        for _ in self._take(self._clock.now_ns()):
            pass  # before the start: the past, which ``history`` handed on if it was asked
        while not self._stopped:
            part = self._reading()
            ts, instr, price, volume = (part.ts.tolist(), part.instr.tolist(), part.price.tolist(),
                                        part.volume.tolist())
            for k in range(self._next, len(ts)):
                if not await self._wait_until(ts[k]):
                    return
                self._next = k + 1
                if self._clock.now_ns() - ts[k] <= _LATE_NS:  # older: the loop stalled and the market moved on
                    yield instr[k], ts[k], price[k], volume[k]


def _joined(chunks: list[Ticks]) -> Ticks:
    return Ticks(*(np.concatenate([getattr(c, n) for c in chunks]) for n in ("ts", "price", "volume", "instr")),
                 chunks[0].symbols)


def _always_open(start_ns: int) -> Iterator[tuple[int, int, int]]:
    for k in itertools.count():
        yield start_ns + k * NS_PER_DAY, start_ns + (k + 1) * NS_PER_DAY, k


def _sessions(calendar: TradingCalendar, now_ns: int, history_days: int) -> Iterator[tuple[int, int, int]]:
    """The calendar's sessions from ``history_days`` days before the one in progress or next at ``now_ns``."""
    now = datetime.fromtimestamp(now_ns / NS_PER_S, IST)
    first = calendar.current_or_next(now).day - timedelta(days=history_days)
    session = calendar.current_or_next(datetime.combine(first, time(0), IST))
    while True:
        yield int(session.open.timestamp()) * NS_PER_S, int(session.close.timestamp()) * NS_PER_S, \
            session.day.toordinal()
        session = calendar.current_or_next(session.close)


class ReplayFeed(_Paced):
    """The ticks of a file with their own timestamps, paced by their gaps / ``speed``; a ``speed`` of 0
    or infinity replays as fast as the consumer takes them."""

    def __init__(self, ticks: Ticks, speed: float, clock: Clock) -> None:
        if not speed >= 0:
            raise ValueError(f"replay speed {speed} must be >= 0 (0 or inf: as fast as possible)")
        super().__init__(clock)
        self.symbols = ticks.symbols
        self._ticks = ticks
        self._speed = speed

    async def __aiter__(self) -> AsyncIterator[Tick]:
        t, speed = self._ticks, self._speed
        paced = 0 < speed < math.inf
        first = int(t.ts[0]) if len(t) else 0
        start = self._clock.now_ns()
        for lo in range(0, len(t), 1 << 16):  # Python objects for one block at a time, not the whole file
            hi = lo + (1 << 16)
            block = zip(t.instr[lo:hi].tolist(), t.ts[lo:hi].tolist(), t.price[lo:hi].tolist(),
                        t.volume[lo:hi].tolist(), strict=True)
            for k, tick in enumerate(block, lo):
                if self._stopped:
                    return
                if paced:
                    if not await self._wait_until(start + int((tick[1] - first) / speed)):
                        return
                elif k % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                    if self._stopped:
                        return
                yield tick
