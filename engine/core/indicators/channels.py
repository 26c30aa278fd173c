"""Donchian channel: the highest high and lowest low of the last n bars (the current one included)."""

import numpy as np

from engine.core.indicators._base import KIND_DONCHIAN, NAN, NEED, Indicator, jit, whole

DC_UPPER = 2
DC_LOWER = 3
DC_MID = 4
_DC_N = 5
_DC_POS = 6  # position in the current block of n bars
_DC_RING = 7  # where the ring starts: n slots for the highs, then n for the lows (negated)
_DC_RUN = 8  # running maxima of the current block: highs, negated lows


def donchian(n: int = 20) -> Indicator:
    n = whole("Donchian", "n", n)
    head = (KIND_DONCHIAN, n, NAN, NAN, NAN, n, 0.0, -1.0, 0.0, 0.0)
    return Indicator(f"Donchian({n})", head, (("upper", DC_UPPER), ("lower", DC_LOWER), ("mid", DC_MID)),
                     2 * n, _DC_RING)


@jit
def _block_max(s: np.ndarray, ring: int, run_at: int, pos: int, n: int, x: float) -> float:
    """Maximum of the last n values (van Herk / Gil-Werman): the bars are cut into blocks of n;
    the window is the tail of the previous block, whose suffix maxima the ring holds, and the head
    of the current one, whose running maximum is kept. Slot ``pos`` of the ring is the only suffix
    no longer needed, so it takes the new value; a completed block is turned into its suffix
    maxima in place. Branch-free but once per block: O(1) amortised, n steps at a block's end."""
    s[ring + pos] = x
    run = x if pos == 0 else max(s[run_at], x)
    s[run_at] = run
    if pos == n - 1:
        for j in range(ring + n - 2, ring - 1, -1):
            s[j] = max(s[j], s[j + 1])
        return run
    return max(run, s[ring + pos + 1])


@jit
def donchian_update(s: np.ndarray, o: int, high: float, low: float) -> float:
    """Returns the upper band."""
    n = int(s[o + _DC_N])
    pos = int(s[o + _DC_POS])
    ring = int(s[o + _DC_RING])
    hi = _block_max(s, ring, o + _DC_RUN, pos, n, high)
    lo = -_block_max(s, ring + n, o + _DC_RUN + 1, pos, n, -low)
    s[o + _DC_POS] = 0.0 if pos == n - 1 else pos + 1.0
    if s[o + NEED] > 0.0:
        s[o + NEED] -= 1.0
    if s[o + NEED] == 0.0:
        s[o + DC_UPPER] = hi
        s[o + DC_LOWER] = lo
        s[o + DC_MID] = 0.5 * (hi + lo)
    return s[o + DC_UPPER]
