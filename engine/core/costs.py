"""Indian intraday equity charges of a trade, added up the way Zerodha's brokerage calculator does.

Each trade is two executed orders (entry and exit). Brokerage is a percentage of each order's
value, capped per order; STT is charged on the sell side, stamp duty on the buy side; exchange
transaction charges and the SEBI fee on the turnover; GST on brokerage + exchange + SEBI. Like the
calculator, every component is rounded to the paisa (half up) and STT to the rupee.

``trade_charges`` is a kernel: the tick path books a trade's charges with it (the daily loss limit
counts them), and ``round_trip_costs`` runs the same code over a backtest's trades.
"""

import math

import numpy as np

from engine.core.kernels import entry, kernel

# the rates vector, as fractions (0.03 % is 0.0003) except the cap, in rupees
BROKERAGE, BROKERAGE_CAP, STT, EXCHANGE, SEBI, GST, STAMP = range(7)
N_RATES = 7


@kernel
def _paise(x: float) -> float:
    """Half up to the paisa, as the calculator's toFixed(2) does."""
    return math.floor(x * 100.0 + 0.5) / 100.0


@kernel
def trade_charges(r, qty: float, buy: float, sell: float) -> float:
    """Charges of buying ``qty`` at ``buy`` and selling it at ``sell`` (0: that order is not
    executed yet), with the rates ``r``."""
    brokerage = _paise(min(_paise(buy * qty * r[BROKERAGE]), r[BROKERAGE_CAP])
                       + min(_paise(sell * qty * r[BROKERAGE]), r[BROKERAGE_CAP]))
    turnover = _paise((buy + sell) * qty)
    stt = math.floor(_paise(sell * qty * r[STT]) + 0.5)
    exchange = _paise(r[EXCHANGE] * turnover)
    sebi = _paise(turnover * r[SEBI])
    gst = _paise(r[GST] * (brokerage + exchange + sebi))
    stamp = _paise(buy * qty * r[STAMP])
    return _paise(brokerage + stt + exchange + sebi + gst + stamp)


@entry
def _each(r, side, qty, entry_, exit_, out):
    for n in range(len(out)):
        long = side[n] > 0
        out[n] = trade_charges(r, qty[n], entry_[n] if long else exit_[n], exit_[n] if long else entry_[n])


def round_trip_costs(side: np.ndarray, qty: np.ndarray, entry: np.ndarray, exit_: np.ndarray,
                     r: np.ndarray) -> np.ndarray:
    """Charges of each trade (side +1 long, -1 short) at the rates ``r`` (``engine.arrays.rates``)."""
    out = np.zeros(len(side))
    _each(r, np.asarray(side, dtype=np.float64), np.asarray(qty, dtype=np.float64),
          np.asarray(entry, dtype=np.float64), np.asarray(exit_, dtype=np.float64), out)
    return out
