"""Tick sources for paper trading: async iterables of ``(instr, ts_ns, price, volume)``."""

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

import numpy as np

from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY, NS_PER_S
from engine.data.synthetic import REGIME_MEAN_S, REGIME_VOL, intraday_vol, next_regime, on_grid, volumes
from engine.data.ticks import Ticks
from engine.services.clock import Clock

Tick = tuple[int, int, float, float]
_MIN_SLEEP_NS = 1_000_000  # nearer targets are not worth a timer: the next sleep catches up
_YIELD_EVERY = 4096  # ticks between turns given to the loop when no sleep happens


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
    """Live ticks from the model of ``ticks.generate`` (regime chain, intraday U-shape, tick grid), stamped
    with ``clock.now_ns()`` and paced in real time, mean gap ``tick_interval_ms`` per instrument.

    Instruments, prices and volumes follow from the seed and the clock's start alone (the model runs on
    the scheduled times, not the measured ones), so a run with the same seed and clock start repeats.
    """

    def __init__(self, symbols: Sequence[str], start_prices: Sequence[float], tick_sizes: Sequence[float],
                 seed: int, clock: Clock, tick_interval_ms: float) -> None:
        super().__init__(clock)
        self.symbols = tuple(symbols)
        if not len(self.symbols) == len(start_prices) == len(tick_sizes) > 0:
            raise ValueError(f"{len(self.symbols)} symbols need as many start prices and tick sizes")
        if not (tick_interval_ms > 0 and all(p > 0 for p in start_prices) and all(t > 0 for t in tick_sizes)):
            raise ValueError("tick interval, start prices and tick sizes must be positive")
        self._start_prices = [float(p) for p in start_prices]
        self._tick_sizes = [float(t) for t in tick_sizes]
        self._seed = seed
        self._mean_gap_s = tick_interval_ms / 1000 / len(self.symbols)  # merged stream of all instruments

    async def __aiter__(self) -> AsyncIterator[Tick]:
        rng = np.random.default_rng(self._seed)
        n = len(self.symbols)
        level = [math.log(p) for p in self._start_prices]
        regime = [1] * n
        regime_end = [float(rng.exponential(REGIME_MEAN_S[1])) for _ in range(n)]
        last_t = [0.0] * n
        origin = self._clock.now_ns()
        lag = 0  # pacing shift after the loop stalled, so a stall does not end in a burst of ticks
        last_stamp = origin
        t = 0.0  # scheduled seconds since origin
        while not self._stopped:
            t += float(rng.exponential(self._mean_gap_s))
            k = int(rng.integers(n))
            while regime_end[k] <= t:
                regime[k] = next_regime(rng, regime[k])
                regime_end[k] += float(rng.exponential(REGIME_MEAN_S[regime[k]]))
            busy = float(intraday_vol(((origin + int(t * NS_PER_S) + IST_OFFSET_NS) % NS_PER_DAY) / NS_PER_S))
            level[k] += REGIME_VOL[regime[k]] * busy * math.sqrt(t - last_t[k]) * float(rng.standard_normal())
            last_t[k] = t
            price = float(on_grid(math.exp(level[k]), self._tick_sizes[k]))
            volume = float(volumes(rng, None, busy))
            target = origin + lag + int(t * NS_PER_S)
            if not await self._wait_until(target):
                return
            now = self._clock.now_ns()
            if now - target > NS_PER_S:
                lag += now - target
            last_stamp = max(last_stamp, now)  # a system clock stepped back must not reorder ticks
            yield k, last_stamp, price, volume


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
