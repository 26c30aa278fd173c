"""A config change taken live (``/set``): what it must leave as it was."""

import math

import numpy as np
import pytest

from config import validate
from engine.strategies import default_catalog, vwap_reversion
from tests.conftest import make_config, make_ticks
from tests.parity import walk
from tests.test_engine import feed, make_engine

SYMBOLS = ("NSE:INFY", "NSE:SBIN")


def alternating(prices: list[float]) -> list[tuple[str, float, str]]:
    """One tick a second from 10:00, INFY and SBIN in turn."""
    return [(f"10:{k // 60:02d}:{k % 60:02d}", p, SYMBOLS[k % 2]) for k, p in enumerate(prices)]


def rolling_std(engine, j: int) -> float:
    """The rolling standard deviation ``vwap_reversion`` reads from row ``j``'s running sums."""
    n, s1, s2 = (engine.arrays.x[j, slot] for slot in (vwap_reversion.N, vwap_reversion.S1, vwap_reversion.S2))
    variance = n * s2 - s1 * s1
    return math.sqrt(variance) / (n * 100.0) if variance >= 0 else math.nan  # NaN: sums no prices could give


def test_growing_one_instruments_window_keeps_the_others_rolling_sums(tmp_path):
    cfg = make_config(strategy={"kind": "vwap_reversion", "window": 5, "k": 50.0, "allow_short": False},
                      symbols=SYMBOLS)
    engine, clock, _ = make_engine(cfg, tmp_path)
    prices = walk(40, seed=5, first=100.0, tick=0.05)
    ticks = make_ticks(alternating(prices), SYMBOLS)
    feed(engine, clock, ticks.slice(20))
    data = cfg.model_dump(mode="json")
    data["instruments"][0]["strategy"]["window"] = 50  # INFY's row outgrows the rows' width
    engine.apply_config(validate(data, default_catalog()))
    feed(engine, clock, make_ticks(alternating(prices)[20:], SYMBOLS))
    sbin = prices[1::2]
    assert rolling_std(engine, 1) == pytest.approx(np.std(sbin[-5:]), abs=1e-9)


def test_a_change_outside_the_strategy_keeps_its_rolling_sums(tmp_path):
    cfg = make_config(strategy={"kind": "vwap_reversion", "window": 5, "k": 50.0, "allow_short": False},
                      symbols=SYMBOLS)
    engine, clock, _ = make_engine(cfg, tmp_path)
    prices = walk(20, seed=5, first=100.0, tick=0.05)
    feed(engine, clock, make_ticks(alternating(prices), SYMBOLS))
    data = cfg.model_dump(mode="json")
    data["instruments"][1]["bracket"]["trail_step_ticks"] = 3
    engine.apply_config(validate(data, default_catalog()))
    assert rolling_std(engine, 1) == pytest.approx(np.std(prices[1::2][-5:]), abs=1e-9)
