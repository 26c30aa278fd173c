"""VWAP reversion: fade a close ``k`` rolling standard deviations (of the last ``window`` closes)
away from the session VWAP; leave when the price comes back to the VWAP.

It keeps its own exact arithmetic in its memory: the VWAP sums as plain Σ price·volume / Σ volume
(a bar weighs its typical price (h + l + c) / 3, a tick its price) and the rolling deviation in whole
paise, so a flat window is exactly 0 and the sums never drift over a long run.
"""

import math

import numpy as np

from engine.strategies.api import (
    CLOSE,
    EXIT,
    EXIT_LONG,
    EXIT_SHORT,
    HIGH,
    LONG,
    LOW,
    NAN,
    NONE,
    SCRATCH,
    SESSION,
    SHORT,
    VOLUME,
    Param,
    Strategy,
    helper,
)

strategy = Strategy(
    "vwap_reversion",
    about="fade a close k rolling deviations away from the session VWAP; out back at the VWAP",
    params={"window": Param(100, low=2, high=4096, about="closes in the rolling standard deviation"),
            "k": Param(2.0, low=0.0, about="deviations from the VWAP to enter at")},
    memory={"session": NAN, "pv": 0.0, "v": 0.0,  # the VWAP's session and sums
            "n": 0.0, "head": 0.0, "s1": 0.0, "s2": 0.0, "ref": 0.0,  # the window: count, next slot, sums
            "ring": SCRATCH},  # where the window's values sit
    scratch=lambda p: p.window,
    warmup=lambda p: p.window,
    rules=lambda p: [("k", f"{p.k} must be greater than 0")] if p.k <= 0 else [],
)

WINDOW, K = strategy.param("window"), strategy.param("k")
M_SESSION, PV, V = strategy.mem("session"), strategy.mem("pv"), strategy.mem("v")
N, HEAD, S1, S2, REF, RING = (strategy.mem(m) for m in ("n", "head", "s1", "s2", "ref", "ring"))


@helper
def session_vwap(x, price, volume):
    """Σ price·volume / Σ volume since this session's first bar."""
    if x[SESSION] != x[M_SESSION]:
        x[M_SESSION] = x[SESSION]
        x[PV] = 0.0
        x[V] = 0.0
    x[PV] += price * volume
    x[V] += volume
    return x[PV] / x[V]


@helper
def rolling_std(x, price, window):
    """Population standard deviation of the last ``window`` prices (fewer until the window fills),
    counted in whole paise from the window's first price: exact integer sums while prices stay
    within about ₹7,000 of it."""
    n = int(x[N])
    head = int(x[HEAD])
    s1 = np.int64(x[S1])
    s2 = np.int64(x[S2])
    paise = np.int64(round(price * 100.0))
    if n == 0:
        x[REF] = paise
    d = paise - np.int64(x[REF])
    ring = int(x[RING])
    if n < window:
        n += 1
    else:
        old = np.int64(x[ring + head])
        s1 -= old
        s2 -= old * old
    s1 += d
    s2 += d * d
    x[ring + head] = d
    head += 1
    if head == window:
        head = 0
    x[N] = n
    x[HEAD] = head
    x[S1] = s1
    x[S2] = s2
    return math.sqrt(n * s2 - s1 * s1) / (n * 100.0)


@strategy.decision
def decide(x, pos):
    price = x[CLOSE]
    typical = price if x[HIGH] == x[LOW] else (x[HIGH] + x[LOW] + price) / 3.0
    vwap = session_vwap(x, typical, x[VOLUME])
    std = rolling_std(x, price, int(x[WINDOW]))
    if std <= 0.0:
        return NONE
    band = x[K] * std
    if price <= vwap - band:
        return LONG
    if price >= vwap + band:
        return SHORT
    if price > vwap:
        return EXIT_LONG
    if price < vwap:
        return EXIT_SHORT
    return EXIT
