"""The built-in strategies, each a file on the public API, specified through the backtest and their
decisions on hand-made rows."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.research import backtest
from engine.strategies import BUILTIN, load_builtin
from engine.strategies import rsi_reversion as rsi_file
from engine.strategies import supertrend as st_file
from engine.strategies import vwap_reversion as vwap_file
from engine.strategies.api import CLOSE, EXIT, HIGH, LONG, LOW, NONE, SESSION, SHORT, VOLUME
from tests.conftest import make_config, make_ticks, seconds

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}


def row(module, **params):
    strategy = module.strategy
    x, _ = strategy.row(strategy.Params(kind=strategy.name, **params))
    return x


@pytest.mark.parametrize("name", BUILTIN)
def test_each_built_in_is_a_file_on_the_public_api_and_compiles(name):
    strategy = load_builtin(name)
    assert strategy.file.endswith(f"engine/strategies/{name}.py")
    strategy.check(strategy.defaults)


# --- supertrend ----------------------------------------------------------------------------------

def supertrend_answers(flips, positions):
    x = row(st_file)
    out = []
    for flip, pos in zip(flips, positions, strict=True):
        x[st_file.FLIP] = flip
        out.append(st_file.decide(x, pos))
    return out


def test_supertrend_goes_long_when_the_trend_turns_up_and_holds_it():
    assert supertrend_answers([1.0, 0.0, 0.0], [0.0, 1.0, 1.0]) == [LONG, NONE, NONE]


def test_supertrend_turning_down_leaves_the_long_then_goes_short_on_the_next_bar():
    assert supertrend_answers([-1.0, 0.0, 0.0], [1.0, 0.0, -1.0]) == [EXIT, SHORT, NONE]


def test_supertrend_does_not_enter_again_in_a_trend_a_bracket_closed():
    assert supertrend_answers([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) == [LONG, NONE, NONE]


def test_supertrend_trades_on_five_minute_candles_in_the_backtest():
    cfg = make_config(strategy={"kind": "supertrend", "period": 2, "factor": 0.5}, bracket=WIDE, tick_size=0.1)
    # one tick a 5-minute bar: down, then the 09:30 bar's jump turns the trend up; that bar is closed by
    # the 09:35 tick, so the entry fills at the 09:40 tick
    prices = [(f"09:{15 + 5 * k}:00", p) for k, p in enumerate([100.0, 99.0, 98.0, 103.0, 104.0, 105.0, 106.0])]
    [t] = backtest.run(cfg, make_ticks(prices)).trade_rows()
    assert (t["side"], t["entry_time"][11:19], t["entry_price"]) == ("long", "09:40:00", 105.0)


# --- rsi_reversion ---------------------------------------------------------------------------------

def rsi_answers(values, pos=0.0):
    x = row(rsi_file)
    out = []
    for v in values:
        x[rsi_file.RSI] = v
        out.append(rsi_file.decide(x, pos))
    return out


def test_rsi_reversion_goes_long_as_the_rsi_climbs_back_above_oversold():
    assert rsi_answers([35.0, 25.0, 31.0]) == [NONE, NONE, LONG]


def test_rsi_reversion_goes_short_as_the_rsi_falls_back_below_overbought():
    assert rsi_answers([65.0, 75.0, 69.0]) == [NONE, NONE, SHORT]


def test_rsi_reversion_leaves_a_long_at_overbought():
    assert rsi_answers([60.0, 71.0], pos=1.0) == [NONE, 2]  # EXIT_LONG


def test_rsi_reversion_wants_oversold_below_overbought():
    with pytest.raises(Exception, match=r"oversold: 80 must be below overbought \(70\)"):
        make_config(strategy={"kind": "rsi_reversion", "oversold": 80})


# --- vwap_reversion: its exact arithmetic ----------------------------------------------------------

paise = st.lists(st.integers(min_value=100, max_value=500_000), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None)
@given(paise, st.integers(min_value=2, max_value=50))
def test_vwap_reversions_rolling_std_matches_numpy_over_the_window(prices, window):
    xs = [p / 100 for p in prices]
    x = row(vwap_file, window=window)
    out = [vwap_file.rolling_std(x, p, window) for p in xs]
    expected = [np.std(xs[max(0, i + 1 - window): i + 1]) for i in range(len(xs))]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9)


def test_vwap_reversions_rolling_std_stays_exact_over_a_long_session():
    rng = np.random.default_rng(3)
    xs = np.round(1500 + np.cumsum(rng.normal(0, 0.5, 50_000)), 2)
    x = row(vwap_file, window=200)
    for p in xs:
        last = vwap_file.rolling_std(x, p, 200)
    assert abs(last - np.std(xs[-200:])) < 1e-9


def test_vwap_reversions_rolling_std_of_a_flat_window_is_exactly_zero():
    x = row(vwap_file, window=5)
    for p in [1074.35, 1080.15, 1074.35, 1074.35, 1074.35, 1074.35, 1074.35, 1074.35]:
        last = vwap_file.rolling_std(x, p, 5)
    assert last == 0.0


def test_vwap_reversions_vwap_is_the_sessions_volume_weighted_price():
    x = row(vwap_file)
    x[SESSION] = 1.0
    assert [vwap_file.session_vwap(x, p, v) for p, v in [(100.0, 1.0), (103.0, 2.0)]] == [100.0, 102.0]
    x[SESSION] = 2.0
    assert vwap_file.session_vwap(x, 90.0, 5.0) == 90.0


def test_vwap_reversion_weighs_a_bar_at_its_typical_price_and_a_tick_at_its_price():
    x = row(vwap_file)
    x[SESSION], x[HIGH], x[LOW], x[CLOSE], x[VOLUME] = 1.0, 0.1, 0.1, 0.1, 1.0
    vwap_file.decide(x, 0.0)
    assert x[vwap_file.PV] / x[vwap_file.V] == 0.1  # not (0.1 + 0.1 + 0.1) / 3
    x[HIGH], x[LOW], x[CLOSE] = 103.0, 97.0, 100.0
    vwap_file.decide(x, 0.0)
    assert math.isclose(x[vwap_file.PV], 0.1 + 100.0)


def test_vwap_reversion_on_candles_buys_a_deep_dip_and_exits_at_vwap():
    cfg = make_config(bracket=WIDE, strategy={"kind": "vwap_reversion", "window": 5, "k": 1.5, "timeframe": 1})
    closes = [100.0, 100.2, 99.8, 100.0, 100.1, 97.0, 97.5, 100.5, 100.6]
    # two ticks a bar at its close: a bar closes at the next one's first tick, its order fills at the second
    rows = [(f"10:{k:02d}:{s}", p) for k, p in enumerate(closes) for s in ("00", "30")]
    [t] = backtest.run(cfg, make_ticks(rows)).trade_rows()
    assert (t["entry_price"], t["exit_reason"], t["exit_price"]) == (97.5, "signal", 100.6)


def test_vwap_reversion_on_ticks_trades_as_before():
    cfg = make_config(bracket=WIDE, strategy={"kind": "vwap_reversion", "window": 5, "k": 1.5})
    [t] = backtest.run(cfg, make_ticks(seconds("10:00:00", [100.0, 100.2, 99.8, 100.0, 100.1, 97.0, 97.5, 100.5,
                                                               100.6]))).trade_rows()
    assert (t["entry_price"], t["exit_reason"], t["exit_price"]) == (97.5, "signal", 100.6)
