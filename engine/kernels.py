"""Indicator and bracket kernels: O(1) per tick, allocation-free, pure functions over numpy arrays.

State lives in caller-owned arrays so the same kernels run one tick at a time in live trading and
inside the jitted backtest loop. Nothing here imports the rest of the project.
"""

import math

import numpy as np
from numba import njit

# Kernels allocate nothing, so they compile without Numba's reference counting (_nrt=False): with
# it, every array handed between kernels costs an atomic incref/decref pair per tick, which made
# the backtest loop 4-5x slower. Inner kernels are inlined into the entry points, which are cached.
# error_model="numpy": no Python zero-division checks (and their exception paths) on the hot path.
kernel = njit(error_model="numpy", inline="always", _nrt=False)
entry = njit(cache=True, error_model="numpy", _nrt=False)

# bracket_step results
BRACKET_HOLD = 0
BRACKET_TARGET = 1
BRACKET_STOP = 2
BRACKET_TRAIL_MOVED = 3


@kernel
def round_to_tick(x: float, tick: float) -> float:
    # The second round strips float noise (1074.35 / 0.05 * 0.05 = 1074.3500000000001).
    return round(round(x / tick) * tick, 8)


@kernel
def ema_alpha(n: float) -> float:
    return 2.0 / (n + 1.0)


@kernel
def ema_update(prev: float, price: float, alpha: float) -> float:
    """Next EMA value; a NaN ``prev`` seeds the EMA with ``price``."""
    if prev != prev:
        return price
    return prev + alpha * (price - prev)


@kernel
def vwap_update(st, row: int, i_pv: int, i_v: int, price: float, volume: float) -> float:
    """Accumulate ``price * volume`` and ``volume`` in ``st[row, i_pv]``, ``st[row, i_v]``; return the VWAP."""
    st[row, i_pv] += price * volume
    st[row, i_v] += volume
    return st[row, i_pv] / st[row, i_v]


@kernel
def rolling_std_update(ring, st, row: int, base: int, price: float, window: int) -> float:
    """Population standard deviation of the last ``window`` prices (fewer until the window fills).

    Prices are counted in whole paise relative to the window's first price, so the running sums are
    exact integers: no drift over a long session, and a flat window is exactly 0 (a running float
    variance leaves ~1e-7 of noise there, enough to fake a signal). Exact while prices stay within
    about ₹7,000 of the first one. ``st[row, base:base+5]`` holds count, ring head, sum, sum of squares
    and the reference price in paise; ``ring`` holds at least ``window`` values.
    """
    n = int(st[row, base])
    head = int(st[row, base + 1])
    s1 = np.int64(st[row, base + 2])
    s2 = np.int64(st[row, base + 3])
    paise = np.int64(round(price * 100.0))
    if n == 0:
        st[row, base + 4] = paise
    d = paise - np.int64(st[row, base + 4])
    if n < window:
        n += 1
    else:
        old = np.int64(ring[row, head])
        s1 -= old
        s2 -= old * old
    s1 += d
    s2 += d * d
    ring[row, head] = d
    head += 1
    if head == window:
        head = 0
    st[row, base] = n
    st[row, base + 1] = head
    st[row, base + 2] = s1
    st[row, base + 3] = s2
    return math.sqrt(n * s2 - s1 * s1) / (n * 100.0)


@kernel
def rolling_extreme_update(dq_val, dq_idx, meta, price: float, window: int, sign: float) -> float:
    """Rolling maximum (``sign=1``) or minimum (``sign=-1``) of the last ``window`` prices.

    A monotonic deque in two ring arrays of capacity ``window`` (values, tick numbers); ``meta``
    holds the tick count, the deque head and its length. Amortised O(1), no allocation.
    """
    count = meta[0]
    head = int(meta[1])
    length = int(meta[2])
    if length > 0 and dq_idx[head] <= count - window:
        head = (head + 1) % window
        length -= 1
    key = sign * price
    while length > 0:
        last = (head + length - 1) % window
        if sign * dq_val[last] <= key:
            length -= 1
        else:
            break
    slot = (head + length) % window
    dq_val[slot] = price
    dq_idx[slot] = count
    length += 1
    meta[0] = count + 1
    meta[1] = head
    meta[2] = length
    return dq_val[head]


@kernel
def opening_range_update(st, row: int, i_high: int, i_low: int, price: float) -> None:
    """Widen the opening range held in ``st[row, i_high]``/``st[row, i_low]`` (NaN until the first price)."""
    hi = st[row, i_high]
    if hi != hi or price > hi:
        st[row, i_high] = price
    lo = st[row, i_low]
    if lo != lo or price < lo:
        st[row, i_low] = price


@kernel
def bracket_levels(side: float, fill: float, target_pct: float, stop_pct: float, tick: float):
    """Target and stop for a position of ``side`` (+1 long, -1 short) filled at ``fill``, on the tick
    grid and each at least one tick away from the fill: a level rounded onto the entry would exit on
    the next tick at zero (a long at 20.00 with 0.1 %/0.1 % on a 0.05 tick)."""
    target = _tick_away(side, fill, round_to_tick(fill * (1.0 + side * target_pct / 100.0), tick), tick)
    stop = _tick_away(-side, fill, round_to_tick(fill * (1.0 - side * stop_pct / 100.0), tick), tick)
    return target, stop


@kernel
def _tick_away(direction: float, fill: float, level: float, tick: float) -> float:
    """``level``, or the first grid price a whole tick past ``fill`` in ``direction`` when ``level`` is
    nearer. Rounded outwards: a live entry's average over partial fills may lie between grid prices."""
    edge = direction * math.ceil(direction * (fill + direction * tick) / tick - 1e-6) * tick
    return level if direction * (level - edge) >= -1e-9 else round(edge, 8)


@kernel
def bracket_step(side: float, price: float, target: float, stop: float, trail_pct: float,
                 tick: float, slip: float, min_step: float = 0.0):
    """One tick of a bracket: returns (BRACKET_* code, exit price, stop after this tick).

    Target first (fills at the target price when the tick trades at or through it), then the stop
    (fills at the tick's price moved by the slippage, so a gap through the stop costs the gap),
    then the trailing stop tightens to ``price * (1 -/+ trail_pct%)`` rounded to the tick, by at
    least ``min_step`` (NaN ``trail_pct``: no trailing, or not yet allowed to move again).
    """
    if side * (price - target) >= 0.0:
        return BRACKET_TARGET, target, stop
    if side * (price - stop) <= 0.0:
        return BRACKET_STOP, round_to_tick(price - side * slip, tick), stop
    new_stop = trail_stop(side, price, stop, trail_pct, tick, min_step)
    return (BRACKET_TRAIL_MOVED if new_stop != stop else BRACKET_HOLD), 0.0, new_stop


@kernel
def trail_stop(side: float, price: float, stop: float, trail_pct: float, tick: float,
               min_step: float = 0.0) -> float:
    """The stop after this tick: ``price * (1 -/+ trail_pct%)`` on the tick grid when tighter by at
    least ``min_step`` (a tick's float noise tolerated)."""
    if trail_pct == trail_pct:
        candidate = round_to_tick(price * (1.0 - side * trail_pct / 100.0), tick)
        move = side * (candidate - stop)
        if move > 0.0 and move >= min_step - 1e-9:
            return candidate
    return stop
