"""Tick sources for paper trading: async iterators of (instrument, ts_ns, price, volume)."""

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

import numpy as np

from engine.clock import Clock
from engine.ticks import REGIME_STAY, REGIME_VOL, Ticks

Tick = tuple[int, int, float, float]


class SyntheticFeed:
    """Live random-walk ticks with volatility regimes, stamped by the clock, paced in real time."""

    def __init__(self, symbols: Sequence[str], start_prices: Sequence[float], tick_sizes: Sequence[float],
                 seed: int, clock: Clock, tick_interval_ms: float) -> None:
        self.symbols = tuple(symbols)
        self._levels = np.log(np.asarray(start_prices, dtype=float))
        self._ticks = np.asarray(tick_sizes, dtype=float)
        self._regime = np.ones(len(symbols), dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        self._mean_gap_s = tick_interval_ms / 1000.0 / max(1, len(symbols))
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def _next(self) -> Tick:
        rng = self._rng
        k = int(rng.integers(len(self.symbols)))
        if rng.random() > REGIME_STAY:
            self._regime[k] = rng.integers(len(REGIME_VOL))
        self._levels[k] += rng.standard_normal() * REGIME_VOL[self._regime[k]]
        tick = self._ticks[k]
        price = max(round(round(math.exp(self._levels[k]) / tick) * tick, 6), tick)
        return k, self._clock.now_ns(), price, float(rng.integers(1, 500))

    async def __aiter__(self) -> AsyncIterator[Tick]:
        while not self._stopped:
            await asyncio.sleep(self._rng.exponential(self._mean_gap_s))
            yield self._next()


class ReplayFeed:
    """The ticks of a file with their own timestamps, paced by their gaps / ``speed``
    (``speed`` of 0 or infinity: as fast as possible, yielding to the loop now and then)."""

    def __init__(self, ticks: Ticks, speed: float, clock: Clock) -> None:
        self.symbols = ticks.symbols
        self._ticks = ticks
        self._speed = speed
        self._clock = clock
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def __aiter__(self) -> AsyncIterator[Tick]:
        t = self._ticks
        paced = 0 < self._speed < math.inf
        first = int(t.ts[0]) if len(t) else 0
        started = self._clock.now_ns()
        for k, (ts, instr, price, volume) in enumerate(zip(t.ts.tolist(), t.instr.tolist(), t.price.tolist(),
                                                           t.volume.tolist(), strict=True)):
            if self._stopped:
                return
            if paced:
                await self._clock.sleep_until(started + int((ts - first) / self._speed))
            elif k % 4096 == 0:
                await asyncio.sleep(0)
            yield instr, ts, price, volume
