"""Session indicators: VWAP and the opening range. Each restarts by itself on a new session (the
caller's session key changes), whether or not the strategy carries its other indicators across."""

import numpy as np

from engine.core.indicators._base import KIND_OPENING_RANGE, KIND_VWAP, NAN, NEED, VALUE, Indicator, jit, whole
from engine.core.indicators._parts import add_exact

# --- session VWAP: Σ price·volume / Σ volume since the session opened ----------------------------
_VWAP_SESSION = 3
_VWAP_PV = 4  # compensated sums: a session of ticks is long
_VWAP_V = 6


def vwap() -> Indicator:
    return Indicator("VWAP", (KIND_VWAP, 1.0, NAN, NAN, 0.0, 0.0, 0.0, 0.0), (("value", VALUE),))


@jit
def vwap_update(s: np.ndarray, o: int, session: float, price: float, volume: float) -> float:
    """Ready from the session's first update with volume; NaN until then."""
    if session != s[o + _VWAP_SESSION]:
        s[o + _VWAP_SESSION] = session
        s[o + NEED] = 1.0
        s[o + VALUE] = NAN
        s[o + _VWAP_PV] = 0.0
        s[o + _VWAP_PV + 1] = 0.0
        s[o + _VWAP_V] = 0.0
        s[o + _VWAP_V + 1] = 0.0
    if volume > 0.0:
        add_exact(s, o + _VWAP_PV, price * volume, 0.0)
        add_exact(s, o + _VWAP_V, volume, 0.0)
        s[o + VALUE] = (s[o + _VWAP_PV] + s[o + _VWAP_PV + 1]) / (s[o + _VWAP_V] + s[o + _VWAP_V + 1])
        s[o + NEED] = 0.0
    return s[o + VALUE]


# --- opening range(minutes): the high and low of the session's first minutes ------------------
OR_HIGH = 2
OR_LOW = 3
_OR_LENGTH_NS = 4
_OR_SESSION = 5
NS_PER_MIN = 60_000_000_000


def opening_range(minutes: int = 15) -> Indicator:
    minutes = whole("OpeningRange", "minutes", minutes)
    head = (KIND_OPENING_RANGE, 1.0, NAN, NAN, minutes * NS_PER_MIN, NAN)
    return Indicator(f"OpeningRange({minutes})", head, (("high", OR_HIGH), ("low", OR_LOW)))


@jit
def opening_range_update(s: np.ndarray, o: int, session: float, since_open_ns: float, high: float,
                         low: float) -> float:
    """A tick, or a bar by its start, less than ``minutes`` after the open widens the range; the
    first one at or after that fixes it (ready), so a breakout can be tested on that very bar. The
    range shows while it forms; a session with nothing inside the window gets no range. Returns the high."""
    if session != s[o + _OR_SESSION]:
        s[o + _OR_SESSION] = session
        s[o + NEED] = 1.0
        s[o + OR_HIGH] = NAN
        s[o + OR_LOW] = NAN
    if s[o + NEED] == 0.0:
        return s[o + OR_HIGH]
    if since_open_ns < s[o + _OR_LENGTH_NS]:
        hi = s[o + OR_HIGH]
        if hi != hi or high > hi:
            s[o + OR_HIGH] = high
        lo = s[o + OR_LOW]
        if lo != lo or low < lo:
            s[o + OR_LOW] = low
    elif s[o + OR_HIGH] == s[o + OR_HIGH]:
        s[o + NEED] = 0.0
    return s[o + OR_HIGH]
