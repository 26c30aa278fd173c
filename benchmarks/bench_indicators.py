"""Indicator kernels: nanoseconds per update, inside a jitted loop over 1M bars, as a backtest runs them.

No goals of their own (issue 11's are end to end): these say what each indicator adds to a bar.
Each figure is the best of 5 runs and includes the loop reading the bar, measured alone beside them.
"""

import time

import numpy as np
from numba import njit

from benchmarks.common import report
from engine.core.indicators import (
    IndicatorLayout,
    atr,
    atr_update,
    bollinger,
    bollinger_update,
    donchian,
    donchian_update,
    ema,
    ema_update,
    macd,
    macd_update,
    opening_range,
    opening_range_update,
    rsi,
    rsi_update,
    sma,
    sma_update,
    supertrend,
    supertrend_update,
    update_all,
    vwap,
    vwap_update,
)

N_BARS = 1_000_000
REPEATS = 5
step = njit(inline="always")  # one bar into one indicator; inlined into the timed loop

CASES = [
    ("loop alone (reads the close)", None, step(lambda s, hi, lo, c, v, q, t, k: c[k])),
    ("SMA(20)", sma(20), step(lambda s, hi, lo, c, v, q, t, k: sma_update(s, 0, c[k]))),
    ("EMA(9)", ema(9), step(lambda s, hi, lo, c, v, q, t, k: ema_update(s, 0, c[k]))),
    ("RSI(14)", rsi(14), step(lambda s, hi, lo, c, v, q, t, k: rsi_update(s, 0, c[k]))),
    ("ATR(14)", atr(14), step(lambda s, hi, lo, c, v, q, t, k: atr_update(s, 0, hi[k], lo[k], c[k]))),
    ("SuperTrend(10,3)", supertrend(10, 3.0),
     step(lambda s, hi, lo, c, v, q, t, k: supertrend_update(s, 0, hi[k], lo[k], c[k]))),
    ("Bollinger(20,2)", bollinger(20, 2.0), step(lambda s, hi, lo, c, v, q, t, k: bollinger_update(s, 0, c[k]))),
    ("MACD(12,26,9)", macd(), step(lambda s, hi, lo, c, v, q, t, k: macd_update(s, 0, c[k]))),
    ("VWAP (session)", vwap(), step(lambda s, hi, lo, c, v, q, t, k: vwap_update(s, 0, q[k], c[k], v[k]))),
    ("Donchian(20)", donchian(20), step(lambda s, hi, lo, c, v, q, t, k: donchian_update(s, 0, hi[k], lo[k]))),
    ("OpeningRange(15)", opening_range(15),
     step(lambda s, hi, lo, c, v, q, t, k: opening_range_update(s, 0, q[k], t[k], hi[k], lo[k]))),
]

STRATEGY_SET = IndicatorLayout(fast=ema(9), slow=ema(21), rsi=rsi(14), st=supertrend(10, 3.0), vwap=vwap())


def bars(n: int) -> tuple[np.ndarray, ...]:
    """5-minute bars of a random walk around ₹1,500 on the tick grid, 75 to a session."""
    rng = np.random.default_rng(11)
    close = np.round(1500.0 + np.cumsum(rng.normal(0.0, 1.5, n)), 1)
    high = close + np.round(rng.exponential(1.0, n), 1)
    low = close - np.round(rng.exponential(1.0, n), 1)
    volume = rng.integers(0, 20_000, n).astype(float)
    k = np.arange(n)
    return high, low, close, volume, (k // 75).astype(float), (k % 75) * 300e9


def timed_loop(one_bar):
    @njit(error_model="numpy", _nrt=False)
    def run(s, hi, lo, c, v, q, t):
        acc = 0.0  # returned, so nothing is optimised away
        for k in range(c.shape[0]):
            acc += one_bar(s, hi, lo, c, v, q, t, k)
        return acc

    return run


@njit(error_model="numpy", _nrt=False)
def run_set(s, offsets, hi, lo, c, v, q, t):
    for k in range(c.shape[0]):
        update_all(s, offsets, q[k], t[k], hi[k], lo[k], c[k], v[k])
    return s[0]


def ns_per_bar(run, state, data) -> float:
    run(state.copy(), *(a[:1000] for a in data))  # compile outside the timing
    best = np.inf
    for _ in range(REPEATS):
        s = state.copy()
        t0 = time.perf_counter_ns()
        run(s, *data)
        best = min(best, time.perf_counter_ns() - t0)
    return best / len(data[0])


def main() -> None:
    data = bars(N_BARS)
    rows = []
    for label, ind, one_bar in CASES:
        state = np.zeros(1) if ind is None else ind.new()
        rows.append({"metric": label, "value": f"{ns_per_bar(timed_loop(one_bar), state, data):.1f} ns/update"})
    offsets = STRATEGY_SET.offsets_array
    per_bar = ns_per_bar(lambda s, *d: run_set(s, offsets, *d), STRATEGY_SET.fresh, data)
    rows.append({"metric": "update_all: EMA(9), EMA(21), RSI(14), SuperTrend(10,3), VWAP",
                 "value": f"{per_bar:.1f} ns/bar"})
    report("indicators", rows)


if __name__ == "__main__":
    main()
