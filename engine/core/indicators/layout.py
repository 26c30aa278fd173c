"""Indicators side by side in one float64 row, and the one call that feeds them all a bar.

A strategy declares what it needs by name; the engine lays the blocks out once per instrument::

    layout = IndicatorLayout(fast=ema(9), slow=ema(21), rsi=rsi(14))
    state = layout.new(n_instruments)         # one row per instrument, every block initialised
    update_all(state[i], layout.offsets_array, session, since_open_ns, high, low, close, volume)
    fast = state[i, layout.slot("fast")]      # NaN until ready(state[i], layout.offsets["fast"])

Headers come first, in declaration order, then the ring buffers. A header's offset depends only on
the kinds declared before it, never on their parameters: a strategy's slots are constants while its
periods are swept. Every parameter lives in the state, so changing one recompiles nothing.
Resetting a row for a new session is ``row[:] = layout.fresh``.
"""

import numpy as np

from engine.core.indicators._base import (
    KIND,
    KIND_ATR,
    KIND_BOLLINGER,
    KIND_DONCHIAN,
    KIND_EMA,
    KIND_MACD,
    KIND_OPENING_RANGE,
    KIND_RSI,
    KIND_SMA,
    KIND_SUPERTREND,
    KIND_VWAP,
    NEED,
    VALUE,
    Indicator,
    jit,
)
from engine.core.indicators.averages import ema_update, macd_update, sma_update
from engine.core.indicators.channels import donchian_update
from engine.core.indicators.momentum import rsi_update
from engine.core.indicators.session import opening_range_update, vwap_update
from engine.core.indicators.volatility import atr_update, bollinger_update, supertrend_update


class IndicatorLayout:
    """Named indicators placed in one row; see the module docstring."""

    def __init__(self, **indicators: Indicator) -> None:
        self.indicators = indicators
        self.offsets: dict[str, int] = {}
        at = 0
        for name, ind in indicators.items():
            self.offsets[name] = at
            at += len(ind.head)
        self.size = at + sum(ind.ring for ind in indicators.values())
        self.fresh = np.zeros(self.size)
        ring = at
        for name, ind in indicators.items():
            ind.place(self.fresh, self.offsets[name], ring)
            ring += ind.ring
        self.offsets_array = np.array(list(self.offsets.values()), dtype=np.int64)

    def new(self, rows: int) -> np.ndarray:
        return np.tile(self.fresh, (rows, 1))

    def slot(self, name: str, output: str | None = None) -> int:
        """Index in the row of one output, e.g. ``slot("bb", "upper")``; the first output by default."""
        ind = self.indicators[name]
        if output is None:
            return self.offsets[name] + VALUE
        slots = dict(ind.outputs)
        if output not in slots:
            raise ValueError(f"{ind.label} has no output {output!r}; it has {', '.join(slots)}")
        return self.offsets[name] + slots[output]

    def needed(self, row: np.ndarray) -> dict[str, int]:
        """Updates each indicator still needs before it is ready (for /status)."""
        return {name: int(row[o + NEED]) for name, o in self.offsets.items()}

    def values(self, row: np.ndarray) -> dict[str, dict[str, float]]:
        return {name: {out: float(row[self.offsets[name] + k]) for out, k in ind.outputs}
                for name, ind in self.indicators.items()}


@jit
def update_all(s: np.ndarray, offsets: np.ndarray, session: float, since_open_ns: float, high: float,
               low: float, close: float, volume: float) -> None:
    """Feed one closed bar to every indicator of row ``s`` (a tick is a bar with high = low = close).

    Single-series indicators take the close, VWAP the typical price (h + l + c) / 3 and the opening
    range the bar's start, ``since_open_ns`` after the session open.
    """
    for k in range(offsets.shape[0]):
        o = offsets[k]
        kind = s[o + KIND]
        if kind == KIND_EMA:
            _ema(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_RSI:
            _rsi(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_SUPERTREND:
            _supertrend(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_VWAP:
            _vwap(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_ATR:
            _atr(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_SMA:
            _sma(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_BOLLINGER:
            _bollinger(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_MACD:
            _macd(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_DONCHIAN:
            _donchian(s, o, session, since_open_ns, high, low, close, volume)
        elif kind == KIND_OPENING_RANGE:
            _opening_range(s, o, session, since_open_ns, high, low, close, volume)


# --- each kind's update from a bar (update_all's branches), one signature for all: a loop compiled
# for its strategies (engine.strategies.compiled) calls FEEDS[kind] at each indicator's constant offset
@jit
def _ema(s, o, session, since_open_ns, high, low, close, volume):
    ema_update(s, o, close)


@jit
def _rsi(s, o, session, since_open_ns, high, low, close, volume):
    rsi_update(s, o, close)


@jit
def _supertrend(s, o, session, since_open_ns, high, low, close, volume):
    supertrend_update(s, o, high, low, close)


@jit
def _vwap(s, o, session, since_open_ns, high, low, close, volume):
    vwap_update(s, o, session, (high + low + close) / 3.0, volume)


@jit
def _atr(s, o, session, since_open_ns, high, low, close, volume):
    atr_update(s, o, high, low, close)


@jit
def _sma(s, o, session, since_open_ns, high, low, close, volume):
    sma_update(s, o, close)


@jit
def _bollinger(s, o, session, since_open_ns, high, low, close, volume):
    bollinger_update(s, o, close)


@jit
def _macd(s, o, session, since_open_ns, high, low, close, volume):
    macd_update(s, o, close)


@jit
def _donchian(s, o, session, since_open_ns, high, low, close, volume):
    donchian_update(s, o, high, low)


@jit
def _opening_range(s, o, session, since_open_ns, high, low, close, volume):
    opening_range_update(s, o, session, since_open_ns, high, low)


FEEDS = {KIND_EMA: _ema, KIND_RSI: _rsi, KIND_SUPERTREND: _supertrend, KIND_VWAP: _vwap, KIND_ATR: _atr,
         KIND_SMA: _sma, KIND_BOLLINGER: _bollinger, KIND_MACD: _macd, KIND_DONCHIAN: _donchian,
         KIND_OPENING_RANGE: _opening_range}


@jit
def bars_needed(s: np.ndarray, offsets: np.ndarray) -> int:
    """The most updates any indicator of row ``s`` still needs: 0 when all are ready."""
    most = 0.0
    for k in range(offsets.shape[0]):
        most = max(most, s[offsets[k] + NEED])
    return int(most)
