"""Synthetic NSE sessions: a made-up but plausible market for rehearsals, tests and benchmarks."""

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY, NS_PER_S
from engine.data.ticks import Ticks

SESSION_OPEN_S = 9 * 3600 + 15 * 60
SESSION_CLOSE_S = 15 * 3600 + 30 * 60
REGIME_VOL = np.array([0.5e-4, 1.0e-4, 3.0e-4])  # log-return volatility per √second: calm, normal, wild
REGIME_MEAN_S = np.array([1800.0, 1200.0, 240.0])  # mean stay in each regime, seconds of trading time
OVERNIGHT_VOL = 0.005  # log-return volatility from one close to the next open
VOLUME_MEDIAN, VOLUME_SIGMA = 50.0, 1.0  # lognormal traded quantity per tick
PART_S = 900  # the streamed market is made a quarter of an hour of trading at a time


def intraday_vol(tod_s):
    """A U-shape over the session with mean 1: busier after the open and before the close."""
    x = np.clip((tod_s - SESSION_OPEN_S) / (SESSION_CLOSE_S - SESSION_OPEN_S), 0.0, 1.0)
    return 0.7 + 0.9 * (2.0 * x - 1.0) ** 2


def next_regime(rng: np.random.Generator, state: int) -> int:
    """A switch always moves to one of the other regimes, with equal chance."""
    return (state + int(rng.integers(1, len(REGIME_VOL)))) % len(REGIME_VOL)


def regimes(rng: np.random.Generator, horizon_s: float, start: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The regime chain over ``horizon_s`` seconds, vectorised: (end of each stay in seconds, its regime)."""
    ends: list[np.ndarray] = []
    states: list[np.ndarray] = []
    t, state = 0.0, start
    while t <= horizon_s:
        m = int((horizon_s - t) / REGIME_MEAN_S.mean()) + 16
        s = (state + np.concatenate(([0], np.cumsum(rng.integers(1, len(REGIME_VOL), m - 1))))) % len(REGIME_VOL)
        e = t + np.cumsum(rng.exponential(REGIME_MEAN_S[s]))
        ends.append(e)
        states.append(s)
        t, state = float(e[-1]), next_regime(rng, int(s[-1]))
    return np.concatenate(ends), np.concatenate(states)


def on_grid(price, tick: float):
    """The nearest multiple of the tick, at least one tick, rounded so it prints short."""
    return np.round(np.maximum(np.round(price / tick), 1.0) * tick, 6)


def volumes(rng: np.random.Generator, n: int | None, busy):
    """Traded quantity per tick: lognormal whole shares, scaled by ``busy`` (the intraday U-shape)."""
    size = VOLUME_MEDIAN * busy * np.exp(VOLUME_SIGMA * rng.standard_normal(n))
    return np.maximum(1.0, np.round(size))


def _arrivals(rng: np.random.Generator, horizon_ms: float, mean_ms: float) -> np.ndarray:
    """Poisson arrival times in [0, horizon_ms)."""
    out: list[np.ndarray] = []
    t = 0.0
    while t < horizon_ms:
        a = t + np.cumsum(rng.exponential(mean_ms, int((horizon_ms - t) / mean_ms * 1.02) + 64))
        out.append(a)
        t = float(a[-1])
    a = np.concatenate(out) if out else np.zeros(0)
    return a[: np.searchsorted(a, horizon_ms)]


def weekdays(start: date, days: int) -> list[date]:
    out, d = [], start
    while len(out) < days:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def generate(days: int, seed: int, symbols: Sequence[str], start: date | None = None,
             tick_interval_ms: float = 1000.0, start_prices: Sequence[float] | None = None,
             tick_sizes: Sequence[float] | None = None) -> Ticks:
    """Synthetic NSE sessions on weekdays, 09:15 to before 15:30 IST, timestamps on the millisecond.

    Each symbol gets Poisson ticks (mean gap ``tick_interval_ms``) and a log random walk whose volatility
    follows a calm/normal/wild regime chain and an intraday U-shape, with a gap at each open. A symbol's
    path depends only on the seed and its name, so adding an instrument leaves the others as they were.
    """
    symbols = tuple(symbols)
    sizes = np.asarray([0.05] * len(symbols) if tick_sizes is None else tick_sizes, float)
    prices = np.asarray(np.where(sizes >= 0.1, 1500.0, 800.0) if start_prices is None else start_prices, float)
    if not len(sizes) == len(prices) == len(symbols):
        raise ValueError(f"{len(symbols)} symbols need as many tick sizes and start prices")
    if days < 0 or not (tick_interval_ms > 0 and math.isfinite(tick_interval_ms)) \
            or not np.all(sizes > 0) or not np.all(prices > 0):
        raise ValueError("days must be >= 0; tick interval, tick sizes and start prices must be positive")
    sessions = weekdays(start or date(2026, 11, 2), days)
    opens = np.array([(d - date(1970, 1, 1)).days for d in sessions], np.int64) * NS_PER_DAY \
        - IST_OFFSET_NS + SESSION_OPEN_S * NS_PER_S
    span_ms = (SESSION_CLOSE_S - SESSION_OPEN_S) * 1000
    parts = []
    for k, sym in enumerate(symbols):
        rng = np.random.default_rng([seed, zlib.crc32(sym.encode())])
        at = _arrivals(rng, span_ms * len(sessions), tick_interval_ms)  # ms of trading time
        ms = at.astype(np.int64)
        day, tod_ms = np.divmod(ms, span_ms)
        busy = intraday_vol(SESSION_OPEN_S + tod_ms / 1000)
        ends, states = regimes(rng, span_ms * len(sessions) / 1000)
        vol = REGIME_VOL[states[np.searchsorted(ends, at / 1000, side="right")]] * busy
        step = vol * np.sqrt(np.diff(at, prepend=0.0) / 1000) * rng.standard_normal(len(at))
        opening = np.flatnonzero(np.diff(day, prepend=0) != 0)
        step[opening] += OVERNIGHT_VOL * rng.standard_normal(len(opening))
        price = on_grid(prices[k] * np.exp(np.cumsum(step)), sizes[k])
        parts.append((opens[day] + tod_ms * 1_000_000, price, volumes(rng, len(at), busy),
                      np.full(len(at), k, np.int32)))
    if not parts:
        return Ticks(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), symbols)
    ts, price, volume, instr = (np.concatenate([p[c] for p in parts]) for c in range(4))
    if len(parts) == 1:
        return Ticks(ts, price, volume, instr, symbols)
    order = np.argsort(ts, kind="stable")  # timsort merges the per-symbol runs
    return Ticks(ts[order], price[order], volume[order], instr[order], symbols)


@dataclass
class _Walk:
    """One symbol's path between two parts of a ``Market``."""

    level: float  # log price, unrounded
    regime: int
    idle_ms: float  # trading time since its last tick


def _part(rng: np.random.Generator, start_ns: int, span_ms: float, mean_ms: float, walk: _Walk, tick: float,
          gap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One symbol's ticks over ``span_ms`` of trading from ``start_ns``: ``generate``'s model (Poisson
    arrivals and regime stays are memoryless, so cutting the time into parts changes nothing of their
    law); ``walk`` is carried on. ``gap``: the first tick opens a session after a close."""
    at = _arrivals(rng, span_ms, mean_ms)
    ends, states = regimes(rng, span_ms / 1000, walk.regime)
    ts = start_ns + at.astype(np.int64) * 1_000_000
    busy = intraday_vol(((ts + IST_OFFSET_NS) % NS_PER_DAY) / NS_PER_S)
    vol = REGIME_VOL[states[np.searchsorted(ends, at / 1000, side="right")]] * busy
    step = vol * np.sqrt(np.diff(at, prepend=-walk.idle_ms) / 1000) * rng.standard_normal(len(at))
    if gap and len(at):
        step[0] += OVERNIGHT_VOL * rng.standard_normal()
    levels = walk.level + np.cumsum(step)
    if len(at):
        walk.level, walk.idle_ms = float(levels[-1]), span_ms - float(at[-1])
    else:
        walk.idle_ms += span_ms
    walk.regime = int(states[np.searchsorted(ends, span_ms / 1000, side="right")])
    return ts, on_grid(np.exp(levels), tick), volumes(rng, len(at), busy)


class Market:
    """``generate``'s market as an endless stream over given sessions, one part (``PART_S`` of
    trading) at a time, so memory stays small however long it runs.

    ``sessions`` yields ``(open_ns, close_ns, key)`` in time order; the first opens at the start
    prices, each later one with an overnight gap from the close before. A part's randomness comes
    from the seed, the symbol, its session's key and its place in the session, so the same sessions
    make the same market every time, whatever instant it is read from. Iterating yields
    ``(key, ticks)`` per part, the instruments merged in time order.
    """

    def __init__(self, symbols: Sequence[str], start_prices: Sequence[float], tick_sizes: Sequence[float],
                 seed: int, tick_interval_ms: float, sessions: Iterable[tuple[int, int, int]]) -> None:
        self.symbols = tuple(symbols)
        if not len(self.symbols) == len(start_prices) == len(tick_sizes) > 0:
            raise ValueError(f"{len(self.symbols)} symbols need as many start prices and tick sizes")
        if not (tick_interval_ms > 0 and all(p > 0 for p in start_prices) and all(t > 0 for t in tick_sizes)):
            raise ValueError("tick interval, start prices and tick sizes must be positive")
        self._walks = [_Walk(math.log(p), 1, 0.0) for p in start_prices]
        self._tick_sizes = [float(t) for t in tick_sizes]
        self._seed = seed
        self._mean_ms = float(tick_interval_ms)
        self._sessions = sessions
        self._crc = [zlib.crc32(s.encode()) for s in self.symbols]

    def __iter__(self) -> Iterator[tuple[int, Ticks]]:
        first = True
        for open_ns, close_ns, key in self._sessions:
            span_ms = (close_ns - open_ns) / 1_000_000
            for part, lo in enumerate(np.arange(0.0, span_ms, PART_S * 1000.0)):
                cols = []
                for k, walk in enumerate(self._walks):
                    rng = np.random.default_rng([self._seed, self._crc[k], key, part])
                    if part == 0:
                        walk.idle_ms = 0.0  # the night is the gap's, not the walk's
                    cols.append(_part(rng, open_ns + int(lo) * 1_000_000, min(PART_S * 1000.0, span_ms - lo),
                                      self._mean_ms, walk, self._tick_sizes[k], part == 0 and not first))
                ts, price, volume = (np.concatenate([c[n] for c in cols]) for n in range(3))
                instr = np.concatenate([np.full(len(c[0]), k, np.int32) for k, c in enumerate(cols)])
                order = np.argsort(ts, kind="stable")
                yield key, Ticks(ts[order], price[order], volume[order], instr[order], self.symbols)
            first = False
