"""Indian intraday equity charges per round trip, vectorised over trades.

Each trade is two executed orders (entry and exit). Brokerage is a percentage of each order's
turnover capped per order; STT is charged on the sell side, stamp duty on the buy side; exchange
transaction charges and the SEBI fee on all turnover; GST on brokerage + exchange + SEBI.
"""

import numpy as np

from config.models import Costs


def round_trip_costs(side: np.ndarray, qty: np.ndarray, entry: np.ndarray, exit_: np.ndarray,
                     c: Costs) -> np.ndarray:
    entry_value = qty * entry
    exit_value = qty * exit_
    buy_value = np.where(side > 0, entry_value, exit_value)
    sell_value = np.where(side > 0, exit_value, entry_value)
    turnover = buy_value + sell_value
    pct = c.brokerage_pct / 100.0
    brokerage = (np.minimum(entry_value * pct, c.brokerage_cap)
                 + np.minimum(exit_value * pct, c.brokerage_cap))
    stt = sell_value * c.stt_sell_pct / 100.0
    exchange = turnover * c.exchange_pct / 100.0
    sebi = turnover * c.sebi_per_crore / 1e7
    gst = (brokerage + exchange + sebi) * c.gst_pct / 100.0
    stamp = buy_value * c.stamp_buy_pct / 100.0
    return brokerage + stt + exchange + sebi + gst + stamp
