"""RSI, Wilder's: RMA-smoothed gains over RMA-smoothed losses, as TradingView's ta.rsi."""

import numpy as np

from engine.core.indicators._base import KIND_RSI, NAN, NEED, VALUE, Indicator, jit, whole
from engine.core.indicators._parts import smooth, smoothing

_RSI_PREV = 3
_RSI_UP = 4
_RSI_DOWN = 9


def rsi(n: int = 14) -> Indicator:
    n = whole("RSI", "n", n)
    head = (KIND_RSI, n + 1, NAN, NAN, *smoothing(n, 1.0 / n), *smoothing(n, 1.0 / n))
    return Indicator(f"RSI({n})", head, (("value", VALUE),))


@jit
def rsi_update(s: np.ndarray, o: int, x: float) -> float:
    """Ready after n + 1 values (n changes). No losses in the average: 100; no gains: 0 (so a
    series flat from its start reads 100, as on TradingView)."""
    prev = s[o + _RSI_PREV]
    s[o + _RSI_PREV] = x
    if prev == prev:
        change = x - prev
        up = smooth(s, o + _RSI_UP, change if change > 0.0 else 0.0)
        down = smooth(s, o + _RSI_DOWN, -change if change < 0.0 else 0.0)
        if down == down:
            if down == 0.0:
                s[o + VALUE] = 100.0
            elif up == 0.0:
                s[o + VALUE] = 0.0
            else:
                s[o + VALUE] = 100.0 - 100.0 / (1.0 + up / down)
    if s[o + NEED] > 0.0:
        s[o + NEED] -= 1.0
    return s[o + VALUE]
