"""Indicator library: O(1) jitted updates over plain float64 state, importing nothing of the project.

Each indicator is a block of a float64 row: a fixed-size header, then (for windowed ones) a ring
buffer laid after all headers of the row. The header starts with its kind, then ``NEED`` (updates
still needed; 0 = ready), then its outputs from ``VALUE`` on (NaN until defined), then its
parameters and working state. So one row holds a strategy's indicators side by side, allocated once.

- ``ema(9)``, ``rsi(14)``, ... declare one (parameters validated, errors naming the field) and say
  its size; ``IndicatorLayout(fast=ema(9), ...)`` places several in a row (see ``layout``).
- ``ema_update(s, o, close)`` and friends update the block at ``s[o]`` in place, allocate nothing
  and return its first output; ``update_all`` feeds a bar to every block of a row by kind.
- ``ready(s, o)`` / ``needed(s, o)`` read the warm-up; outputs sit at ``s[o + VALUE]`` and the
  named slots (``BB_UPPER``, ``ST_TREND``, ...), or ``layout.slot(name, output)`` in a row.

Definitions follow the charting tools traders use (TradingView's ta.*): EMA and RMA are seeded
with the simple mean of their first n values, standard deviations are population ones.
"""

from engine.core.indicators._base import NEED, VALUE, Indicator, needed, ready
from engine.core.indicators.averages import (
    MACD_HIST,
    MACD_LINE,
    MACD_SIGNAL,
    ema,
    ema_update,
    macd,
    macd_update,
    sma,
    sma_update,
)
from engine.core.indicators.channels import DC_LOWER, DC_MID, DC_UPPER, donchian, donchian_update
from engine.core.indicators.layout import IndicatorLayout, bars_needed, update_all
from engine.core.indicators.momentum import rsi, rsi_update
from engine.core.indicators.session import OR_HIGH, OR_LOW, opening_range, opening_range_update, vwap, vwap_update
from engine.core.indicators.volatility import (
    BB_LOWER,
    BB_MID,
    BB_STD,
    BB_UPPER,
    ST_ATR,
    ST_FLIP,
    ST_LINE,
    ST_LOWER,
    ST_TREND,
    ST_UPPER,
    atr,
    atr_update,
    bollinger,
    bollinger_update,
    supertrend,
    supertrend_update,
)

__all__ = [
    "BB_LOWER", "BB_MID", "BB_STD", "BB_UPPER", "DC_LOWER", "DC_MID", "DC_UPPER", "MACD_HIST", "MACD_LINE",
    "MACD_SIGNAL", "NEED", "OR_HIGH", "OR_LOW", "ST_ATR", "ST_FLIP", "ST_LINE", "ST_LOWER", "ST_TREND",
    "ST_UPPER", "VALUE", "Indicator", "IndicatorLayout", "atr", "atr_update", "bars_needed", "bollinger",
    "bollinger_update", "donchian", "donchian_update", "ema", "ema_update", "macd", "macd_update",
    "needed", "opening_range", "opening_range_update", "ready", "rsi", "rsi_update", "sma", "sma_update",
    "supertrend", "supertrend_update", "update_all", "vwap", "vwap_update",
]
