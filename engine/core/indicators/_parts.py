"""Building blocks shared by several indicators: exact running sums, the rolling window, smoothing.

Running sums are compensated (a float64 pair: the sum and its accumulated rounding error, kept
exactly) and squares are formed exactly (Dekker's product): a value added and later removed
leaves ~1e-32 of the sum behind, so a rolling window does not drift over a long run. A window of
equal values reads exactly that value and a deviation of exactly 0, as pandas' rolling windows do
(a plain float running variance leaves ~1e-7 of noise there, enough to fake a signal).
"""

import numpy as np

from engine.core.indicators._base import NAN, NEED, jit

_SPLIT = 134217729.0  # 2**27 + 1: splits a float64 into two halves whose products are exact


@jit
def _two_product(a: float, b: float) -> tuple[float, float]:
    """``a * b`` as a rounded product and its exact rounding error."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@jit
def _two_sum(a: float, b: float) -> tuple[float, float]:
    """``a + b`` as a rounded sum and its exact rounding error."""
    t = a + b
    z = t - a
    return t, (a - (t - z)) + (b - z)


@jit
def add_exact(s: np.ndarray, at: int, x: float, x_err: float) -> None:
    """Add ``x + x_err`` to the compensated sum ``s[at] + s[at + 1]``. Each addition's rounding
    error is kept exactly in the second slot, which never feeds back into the first (Neumaier):
    the loop carries one addition, not a double-double's chain of six."""
    t, e = _two_sum(s[at], x)
    s[at] = t
    s[at + 1] += e + x_err


# --- smoothing: EMA and Wilder's RMA, seeded with the simple mean of the first n ------------
# A 5-slot sub-block: values still needed for the seed, value (NaN until seeded), alpha, n, seed sum.
SM_LEFT = 0
SM_VALUE = 1
SM_ALPHA = 2
SM_N = 3
SM_SUM = 4


def smoothing(n: int, alpha: float) -> tuple[float, ...]:
    return (float(n), NAN, alpha, float(n), 0.0)


@jit
def smooth(s: np.ndarray, c: int, x: float) -> float:
    """Feed ``x`` to the smoothing sub-block at ``s[c]``; its value (NaN until n values are in)."""
    left = s[c + SM_LEFT]
    if left > 0.0:
        s[c + SM_SUM] += x
        s[c + SM_LEFT] = left - 1.0
        if left == 1.0:
            s[c + SM_VALUE] = s[c + SM_SUM] / s[c + SM_N]
    else:
        v = s[c + SM_VALUE]
        s[c + SM_VALUE] = v + s[c + SM_ALPHA] * (x - v)
    return s[c + SM_VALUE]


# --- rolling window: the last n values in a ring, with exact sums -------------------------------
# A sub-block: n, next ring slot, ring start in the row, sum (2 slots), sum of squares (2 slots),
# the last value and how many equal values end the window.
W_N = 0
W_POS = 1
W_RING = 2
W_SUM = 3
W_SQUARES = 5
W_LAST = 7
W_RUN = 8


def window(n: int) -> tuple[float, ...]:
    return (float(n), 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, NAN, 0.0)


@jit
def window_push(s: np.ndarray, o: int, c: int, x: float, squares: bool) -> None:
    """Put ``x`` into the window sub-block at ``s[c]`` of the indicator at ``s[o]``, dropping the
    oldest value once the window is full (counted down in the indicator's NEED slot). The sums take
    the new value less the dropped one, formed exactly, in one addition."""
    pos = int(s[c + W_POS])
    at = int(s[c + W_RING]) + pos
    old = 0.0
    if s[o + NEED] > 0.0:
        s[o + NEED] -= 1.0
    else:
        old = s[at]
    s[at] = x
    d, d_err = _two_sum(x, -old)
    add_exact(s, c + W_SUM, d, d_err)
    if squares:
        p, p_err = _two_product(x, x)
        q, q_err = _two_product(old, old)
        d, d_err = _two_sum(p, -q)
        add_exact(s, c + W_SQUARES, d, d_err + (p_err - q_err))
    pos += 1
    s[c + W_POS] = 0.0 if pos == s[c + W_N] else pos
    s[c + W_RUN] = s[c + W_RUN] + 1.0 if x == s[c + W_LAST] else 1.0
    s[c + W_LAST] = x


@jit
def window_mean(s: np.ndarray, c: int) -> float:
    if s[c + W_RUN] >= s[c + W_N]:
        return s[c + W_LAST]
    return (s[c + W_SUM] + s[c + W_SUM + 1]) / s[c + W_N]


@jit
def window_variance(s: np.ndarray, c: int) -> float:
    """Population variance of a full window: (n·Σx² − (Σx)²) / n², the difference taken in
    exactly paired arithmetic so nothing cancels away."""
    n = s[c + W_N]
    if s[c + W_RUN] >= n:
        return 0.0
    h1 = s[c + W_SUM]
    p, pe = _two_product(n, s[c + W_SQUARES])
    pe += n * s[c + W_SQUARES + 1]
    q, qe = _two_product(h1, h1)
    qe += 2.0 * h1 * s[c + W_SUM + 1]
    d, d_err = _two_sum(p, -q)
    var = (d + (d_err + (pe - qe))) / (n * n)
    return var if var > 0.0 else 0.0
