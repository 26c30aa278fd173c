"""Moving averages of one series: SMA, EMA and MACD (EMAs as TradingView's ta.ema seeds them)."""

import numpy as np

from engine.core.indicators._base import KIND_EMA, KIND_MACD, KIND_SMA, NAN, NEED, VALUE, Indicator, jit, whole
from engine.core.indicators._parts import W_RING, smooth, smoothing, window, window_mean, window_push

# --- SMA(n): the mean of the last n values --------------------------------------------------
_SMA_WINDOW = 3


def sma(n: int) -> Indicator:
    n = whole("SMA", "n", n)
    return Indicator(f"SMA({n})", (KIND_SMA, n, NAN, *window(n)), (("value", VALUE),), n, _SMA_WINDOW + W_RING)


@jit
def sma_update(s: np.ndarray, o: int, x: float) -> float:
    window_push(s, o, o + _SMA_WINDOW, x, False)
    if s[o + NEED] == 0.0:
        s[o + VALUE] = window_mean(s, o + _SMA_WINDOW)
    return s[o + VALUE]


# --- EMA(n): alpha = 2/(n+1), seeded with the SMA of the first n values -------------------------
# The smoothing sub-block sits at slot 1, so its countdown is NEED and its value VALUE.


def ema(n: int, seed: int | None = None) -> Indicator:
    """``seed``: how many first values the seed averages, n unless told; 1 seeds it with the first
    value (then it is ready at once: a strategy waiting for n values says so in its warm-up)."""
    n = whole("EMA", "n", n)
    seed = n if seed is None else whole("EMA", "seed", seed)
    label = f"EMA({n})" if seed == n else f"EMA({n},seed={seed})"
    return Indicator(label, (KIND_EMA, *smoothing(seed, 2.0 / (n + 1.0))), (("value", VALUE),))


@jit
def ema_update(s: np.ndarray, o: int, x: float) -> float:
    return smooth(s, o + NEED, x)


# --- MACD(fast, slow, signal): EMA(fast) − EMA(slow), its EMA(signal), and their difference ----
MACD_LINE = 2
MACD_SIGNAL = 3
MACD_HIST = 4
_MACD_FAST = 5
_MACD_SLOW = 10
_MACD_SIG = 15


def macd(fast: int = 12, slow: int = 26, signal: int = 9) -> Indicator:
    fast, slow, signal = whole("MACD", "fast", fast), whole("MACD", "slow", slow), whole("MACD", "signal", signal)
    head = (KIND_MACD, max(fast, slow) + signal - 1, NAN, NAN, NAN, *smoothing(fast, 2.0 / (fast + 1.0)),
            *smoothing(slow, 2.0 / (slow + 1.0)), *smoothing(signal, 2.0 / (signal + 1.0)))
    return Indicator(f"MACD({fast},{slow},{signal})", head,
                     (("macd", MACD_LINE), ("signal", MACD_SIGNAL), ("hist", MACD_HIST)))


@jit
def macd_update(s: np.ndarray, o: int, x: float) -> float:
    """Returns the MACD line, defined from bar max(fast, slow); the signal ``signal - 1`` bars later."""
    line = smooth(s, o + _MACD_FAST, x) - smooth(s, o + _MACD_SLOW, x)
    if line == line:
        s[o + MACD_LINE] = line
        sig = smooth(s, o + _MACD_SIG, line)
        if sig == sig:
            s[o + MACD_SIGNAL] = sig
            s[o + MACD_HIST] = line - sig
    if s[o + NEED] > 0.0:
        s[o + NEED] -= 1.0
    return s[o + MACD_LINE]
