"""The pessimistic candle rule's in-loop half (``engine.data.candles`` documents the rule): which of
a candle's two extremes its replay reaches first depends on the position when it gets there."""

from numba import njit


@njit(error_model="numpy", inline="always", _nrt=False)
def adverse_first(price, k, m, pos, pending_entry_side):
    """Ticks ``k`` and ``m`` are one candle's two extremes: order them in ``price`` against the
    exposure. A position ``pos`` held (or being sold) meets its adverse extreme first, a long the
    low, a short the high; flat, an entry pending (``pending_entry_side`` ±1) fills at the first
    one, so a buy meets the high, a sell the low; flat with nothing pending, the order stays."""
    side = pos if pos != 0.0 else -pending_entry_side
    if side * (price[k] - price[m]) > 0.0:  # a long's high (a short's low) would come first: swap
        price[k], price[m] = price[m], price[k]
