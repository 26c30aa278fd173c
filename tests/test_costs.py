"""Charges of intraday NSE equity trades, to the paisa, as Zerodha's brokerage calculator adds them up.

The calculator's published method (intraday equity, NSE): brokerage 0.03 % or ₹20 per executed
order, whichever is lower; STT 0.025 % of the sell value, rounded to the rupee; exchange transaction
charge 0.00297 % of the turnover; SEBI ₹10 a crore of turnover; GST 18 % on brokerage + exchange +
SEBI; stamp duty 0.003 % of the buy value; every other component rounded to the paisa, half up.
The expected figures are worked out by hand below, with the shipped rates (config/default.json).
"""

import numpy as np
import pytest

from config.models import Costs
from engine.arrays import rates
from engine.core.costs import round_trip_costs


def charges(side: int, qty: int, entry: float, exit_: float) -> float:
    return float(round_trip_costs(np.array([side]), np.array([qty]), np.array([entry]), np.array([exit_]),
                                  rates(Costs()))[0])


def test_a_small_long_pays_percentage_brokerage_and_stt_rounded_up_to_the_rupee():
    # buy 100 × 100.00 = 10,000.00; sell 100 × 101.00 = 10,100.00; turnover 20,100.00
    # brokerage 10,000 × 0.03 % = 3.00 + 10,100 × 0.03 % = 3.03 → 6.03 (cap not hit)
    # STT 10,100 × 0.025 % = 2.525 → ₹3 (the calculator shows 3.00 for this very trade)
    # exchange 20,100 × 0.00297 % = 0.59697 → 0.60; SEBI 20,100 × 10 / 1 crore = 0.0201 → 0.02
    # GST 18 % × (6.03 + 0.60 + 0.02) = 1.197 → 1.20; stamp 10,000 × 0.003 % = 0.30
    # total 6.03 + 3 + 0.60 + 0.02 + 1.20 + 0.30 = 11.15
    assert charges(1, 100, 100.0, 101.0) == 11.15


def test_a_large_long_pays_the_brokerage_cap_on_both_orders():
    # buy 100 × 1,500 = 1,50,000; sell 100 × 1,510 = 1,51,000; turnover 3,01,000
    # brokerage 45.00 and 45.30 are over the cap: 20 + 20 = 40.00
    # STT 1,51,000 × 0.025 % = 37.75 → ₹38
    # exchange 3,01,000 × 0.00297 % = 8.9397 → 8.94; SEBI 0.301 → 0.30
    # GST 18 % × (40 + 8.94 + 0.30) = 8.8632 → 8.86; stamp 1,50,000 × 0.003 % = 4.50
    # total 40 + 38 + 8.94 + 0.30 + 8.86 + 4.50 = 100.60
    assert charges(1, 100, 1500.0, 1510.0) == 100.60


def test_a_short_pays_stt_on_its_entry_and_stamp_on_its_exit_with_the_cap_hit_on_one_order():
    # sell 80 × 840 = 67,200 (entry); buy back 80 × 830 = 66,400 (exit); turnover 1,33,600
    # brokerage 67,200 × 0.03 % = 20.16 → cap 20.00; 66,400 × 0.03 % = 19.92; total 39.92
    # STT on the sell 67,200 × 0.025 % = 16.80 → ₹17
    # exchange 1,33,600 × 0.00297 % = 3.96792 → 3.97; SEBI 0.1336 → 0.13
    # GST 18 % × (39.92 + 3.97 + 0.13) = 7.9236 → 7.92; stamp on the buy 66,400 × 0.003 % = 1.992 → 1.99
    # total 39.92 + 17 + 3.97 + 0.13 + 7.92 + 1.99 = 70.93
    assert charges(-1, 80, 840.0, 830.0) == 70.93


def test_a_losing_short_costs_the_same_way_as_a_winning_one():
    # sell 40 × 250.50 = 10,020 (entry); buy back 40 × 252.30 = 10,092 (exit); turnover 20,112
    # brokerage 3.006 → 3.01 + 3.0276 → 3.03 = 6.04
    # STT 10,020 × 0.025 % = 2.505 → ₹3
    # exchange 20,112 × 0.00297 % = 0.5973264 → 0.60; SEBI 0.020112 → 0.02
    # GST 18 % × (6.04 + 0.60 + 0.02) = 1.1988 → 1.20; stamp 10,092 × 0.003 % = 0.30276 → 0.30
    # total 6.04 + 3 + 0.60 + 0.02 + 1.20 + 0.30 = 11.16
    assert charges(-1, 40, 250.50, 252.30) == 11.16


def test_stt_below_half_a_rupee_still_rounds_to_the_nearest_rupee():
    # buy 20 × 103.30 = 2,066; sell 20 × 103.55 = 2,071; turnover 4,137
    # brokerage 0.6198 → 0.62 + 0.6213 → 0.62 = 1.24
    # STT 2,071 × 0.025 % = 0.51775 → ₹1 (the calculator shows 1 here, not 0.52)
    # exchange 4,137 × 0.00297 % = 0.1228689 → 0.12; SEBI 0.004137 → 0.00
    # GST 18 % × (1.24 + 0.12) = 0.2448 → 0.24; stamp 2,066 × 0.003 % = 0.06198 → 0.06
    # total 1.24 + 1 + 0.12 + 0 + 0.24 + 0.06 = 2.66
    assert charges(1, 20, 103.30, 103.55) == 2.66


def test_stt_rounds_down_when_under_the_half_rupee():
    # buy 41 × 1,195 = 48,995; sell 41 × 1,200 = 49,200; turnover 98,195
    # brokerage 14.6985 → 14.70 + 14.76 = 29.46 (cap not hit)
    # STT 49,200 × 0.025 % = 12.30 → ₹12
    # exchange 98,195 × 0.00297 % = 2.9163915 → 2.92; SEBI 0.098195 → 0.10
    # GST 18 % × (29.46 + 2.92 + 0.10) = 5.8464 → 5.85; stamp 48,995 × 0.003 % = 1.46985 → 1.47
    # total 29.46 + 12 + 2.92 + 0.10 + 5.85 + 1.47 = 51.80
    assert charges(1, 41, 1195.0, 1200.0) == 51.80


def test_each_trade_of_a_batch_is_charged_on_its_own():
    got = round_trip_costs(np.array([1, -1]), np.array([100, 80]), np.array([1500.0, 840.0]),
                           np.array([1510.0, 830.0]), rates(Costs()))
    assert got.tolist() == pytest.approx([100.60, 70.93], abs=1e-9)
