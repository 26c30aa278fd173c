"""Volatility: ATR, Bollinger bands, and SuperTrend (ATR bands that ratchet with the trend)."""

import numpy as np

from engine.core.indicators._base import (
    KIND_ATR,
    KIND_BOLLINGER,
    KIND_SUPERTREND,
    NAN,
    NEED,
    VALUE,
    Indicator,
    jit,
    positive,
    whole,
)
from engine.core.indicators._parts import (
    W_RING,
    smooth,
    smoothing,
    window,
    window_mean,
    window_push,
    window_variance,
)

# --- ATR(n): Wilder's RMA of the true range, seeded with the simple mean of the first n ----------
# The smoothing sub-block sits at slot 1 (its countdown is NEED, its value VALUE).
_ATR_PREV_CLOSE = 6


def atr(n: int = 14) -> Indicator:
    n = whole("ATR", "n", n)
    return Indicator(f"ATR({n})", (KIND_ATR, *smoothing(n, 1.0 / n), NAN), (("value", VALUE),))


@jit
def atr_update(s: np.ndarray, o: int, high: float, low: float, close: float) -> float:
    """The first bar's true range is its high − low: there is no previous close."""
    prev = s[o + _ATR_PREV_CLOSE]
    tr = high - low
    if prev == prev:
        tr = max(tr, abs(high - prev), abs(low - prev))
    s[o + _ATR_PREV_CLOSE] = close
    return smooth(s, o + NEED, tr)


# --- Bollinger(n, k): SMA(n) ± k population standard deviations of the same window ---------------
BB_MID = 2
BB_UPPER = 3
BB_LOWER = 4
BB_STD = 5
_BB_K = 6
_BB_WINDOW = 7


def bollinger(n: int = 20, k: float = 2.0) -> Indicator:
    n, k = whole("Bollinger", "n", n), positive("Bollinger", "k", k)
    head = (KIND_BOLLINGER, n, NAN, NAN, NAN, NAN, k, *window(n))
    outputs = (("mid", BB_MID), ("upper", BB_UPPER), ("lower", BB_LOWER), ("std", BB_STD))
    return Indicator(f"Bollinger({n},{k:g})", head, outputs, n, _BB_WINDOW + W_RING)


@jit
def bollinger_update(s: np.ndarray, o: int, x: float) -> float:
    """Returns the middle band."""
    w = o + _BB_WINDOW
    window_push(s, o, w, x, True)
    if s[o + NEED] == 0.0:
        mid = window_mean(s, w)
        std = np.sqrt(window_variance(s, w))
        band = s[o + _BB_K] * std
        s[o + BB_MID] = mid
        s[o + BB_UPPER] = mid + band
        s[o + BB_LOWER] = mid - band
        s[o + BB_STD] = std
    return s[o + BB_MID]


# --- SuperTrend(n, factor), as traders' charting tools define it ----------------------------------
ST_LINE = 2  # the lower band in an up trend, the upper band in a down trend
ST_TREND = 3  # +1 up, -1 down
ST_FLIP = 4  # +1 the trend turned up on this bar, -1 turned down, 0 neither
ST_UPPER = 5
ST_LOWER = 6
_ST_FACTOR = 7
_ST_ATR = 8  # a whole ATR block, which also keeps the previous close
ST_ATR = _ST_ATR + VALUE


def supertrend(n: int = 10, factor: float = 3.0) -> Indicator:
    n, factor = whole("SuperTrend", "n", n), positive("SuperTrend", "factor", factor)
    head = (KIND_SUPERTREND, n, NAN, NAN, NAN, NAN, NAN, factor, *atr(n).head)
    outputs = (("line", ST_LINE), ("trend", ST_TREND), ("flip", ST_FLIP), ("upper", ST_UPPER),
               ("lower", ST_LOWER), ("atr", ST_ATR))
    return Indicator(f"SuperTrend({n},{factor:g})", head, outputs)


@jit
def supertrend_update(s: np.ndarray, o: int, high: float, low: float, close: float) -> float:
    """hl2 ± factor·ATR; the lower band keeps its previous value unless the new one is higher or
    the previous close was below it, the upper band unless the new one is lower or the previous
    close was above it. The trend starts down on the first bar with an ATR; after a down bar (the
    line was the upper band) it is up when the close is above the upper band, after an up bar it
    is down when the close is below the lower band. Returns the line."""
    prev_close = s[o + _ST_ATR + _ATR_PREV_CLOSE]
    a = atr_update(s, o + _ST_ATR, high, low, close)
    s[o + NEED] = s[o + _ST_ATR + NEED]
    if a != a:
        return NAN
    hl2 = 0.5 * (high + low)
    upper = hl2 + s[o + _ST_FACTOR] * a
    lower = hl2 - s[o + _ST_FACTOR] * a
    prev_trend = s[o + ST_TREND]
    if prev_trend != prev_trend:
        trend = -1.0
        s[o + ST_FLIP] = 0.0
    else:
        prev_upper = s[o + ST_UPPER]
        prev_lower = s[o + ST_LOWER]
        if not (lower > prev_lower or prev_close < prev_lower):
            lower = prev_lower
        if not (upper < prev_upper or prev_close > prev_upper):
            upper = prev_upper
        # after a down bar only a close above the upper band turns it up; after an up bar only a
        # close below the lower band turns it down
        up = close > upper if prev_trend < 0.0 else not close < lower
        trend = 1.0 if up else -1.0
        s[o + ST_FLIP] = 0.5 * (trend - prev_trend)
    s[o + ST_TREND] = trend
    s[o + ST_UPPER] = upper
    s[o + ST_LOWER] = lower
    s[o + ST_LINE] = lower if trend > 0.0 else upper
    return s[o + ST_LINE]
