"""Strategy kernels and their registry.

A strategy is one jitted function ``(st, pr, ring, i, tod_ns, price, volume) -> SIG_*`` that updates
its indicators in row ``i`` of the state and says what it wants on this tick, plus one
``Strategy`` entry in ``REGISTRY``. ``signal`` dispatches by kind id inside compiled code.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.kernels import ema_alpha, ema_update, kernel, opening_range_update, rolling_std_update, vwap_update
from engine.layout import (
    P_OPEN_NS,
    P_S0,
    P_S1,
    S_EMA_FAST,
    S_EMA_SLOW,
    S_OR_HIGH,
    S_OR_LOW,
    S_PREV_PRICE,
    S_STD_N,
    S_TICKS,
    S_VWAP_PV,
    S_VWAP_V,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    SIG_LONG,
    SIG_NONE,
    SIG_SHORT,
)

NS_PER_MIN = 60_000_000_000
SIG_EXIT_ANY = 3  # price sits exactly on the exit level: leave either side


@kernel
def ema_cross(st, pr, ring, i, tod_ns, price, volume):
    """Long when the fast EMA crosses above the slow one, short on the mirror.

    P_S0 = fast, P_S1 = slow. Signals only once ``slow`` ticks of the session have been seen.
    """
    prev_fast = st[i, S_EMA_FAST]
    prev_slow = st[i, S_EMA_SLOW]
    fast = ema_update(prev_fast, price, ema_alpha(pr[i, P_S0]))
    slow = ema_update(prev_slow, price, ema_alpha(pr[i, P_S1]))
    st[i, S_EMA_FAST] = fast
    st[i, S_EMA_SLOW] = slow
    if st[i, S_TICKS] < pr[i, P_S1] or prev_fast != prev_fast:
        return SIG_NONE
    if prev_fast <= prev_slow and fast > slow:
        return SIG_LONG
    if prev_fast >= prev_slow and fast < slow:
        return SIG_SHORT
    return SIG_NONE


@kernel
def orb(st, pr, ring, i, tod_ns, price, volume):
    """Opening-range breakout: the range is the high/low of the first P_S0 minutes after the open;
    afterwards a price crossing above the high goes long, crossing below the low goes short."""
    if tod_ns < pr[i, P_OPEN_NS] + pr[i, P_S0] * NS_PER_MIN:
        opening_range_update(st, i, S_OR_HIGH, S_OR_LOW, price)
        return SIG_NONE
    high = st[i, S_OR_HIGH]
    if high != high:  # no tick inside the opening range: no range, no trade today
        return SIG_NONE
    prev = st[i, S_PREV_PRICE]
    if prev <= high < price:
        return SIG_LONG
    low = st[i, S_OR_LOW]
    if prev >= low > price:
        return SIG_SHORT
    return SIG_NONE


@kernel
def vwap_reversion(st, pr, ring, i, tod_ns, price, volume):
    """Fade moves of P_S1 standard deviations (rolling, P_S0 ticks) away from the session VWAP;
    leave when the price comes back to the VWAP."""
    vwap = vwap_update(st, i, S_VWAP_PV, S_VWAP_V, price, volume)
    window = int(pr[i, P_S0])
    std = rolling_std_update(ring, st, i, S_STD_N, price, window)
    if st[i, S_STD_N] < window or std <= 0.0:
        return SIG_NONE
    band = pr[i, P_S1] * std
    if price <= vwap - band:
        return SIG_LONG
    if price >= vwap + band:
        return SIG_SHORT
    if price > vwap:
        return SIG_EXIT_LONG
    if price < vwap:
        return SIG_EXIT_SHORT
    return SIG_EXIT_ANY


@kernel
def signal(kind, st, pr, ring, i, tod_ns, price, volume):
    if kind == 0.0:
        return ema_cross(st, pr, ring, i, tod_ns, price, volume)
    if kind == 1.0:
        return orb(st, pr, ring, i, tod_ns, price, volume)
    if kind == 2.0:
        return vwap_reversion(st, pr, ring, i, tod_ns, price, volume)
    return SIG_NONE


@dataclass(frozen=True)
class Strategy:
    kind: int  # the id ``signal`` dispatches on
    params: Callable[[Any], tuple[float, ...]]  # config model -> (P_S0, P_S1, ...)
    ring: Callable[[Any], int]  # config model -> ring buffer length it needs


REGISTRY: dict[str, Strategy] = {
    "ema_cross": Strategy(0, lambda s: (s.fast, s.slow), lambda s: 1),
    "orb": Strategy(1, lambda s: (s.minutes,), lambda s: 1),
    "vwap_reversion": Strategy(2, lambda s: (s.window, s.k), lambda s: s.window),
}

__all__ = ["REGISTRY", "SIG_EXIT_ANY", "SIG_EXIT_LONG", "SIG_EXIT_SHORT", "Strategy", "signal"]
