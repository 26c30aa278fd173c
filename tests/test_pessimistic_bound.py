"""The pessimistic candle rule is a lower bound (issue 21 §2): each trade it makes is no better
than the same trade on any order of its candles' extremes, for every bracket (stop, target,
trailing, square-off) and slippage; what it cannot bound (a strategy deciding inside a candle) is
refused in one line.

The reference is the tick path: every order of every candle's extremes written out as explicit
ticks (open, low, high, close or open, high, low, close, a quarter of the candle apart) and
backtested as plain ticks through the same fill model, never the pessimistic rule's own code."""

import copy
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import candles
from engine.data.candles import CandleError, Candles, replay
from engine.data.ticks import Ticks
from engine.research import backtest
from engine.strategies import catalog_for
from tests.conftest import DEFAULT, make_config, ns

ROOT = Path(__file__).resolve().parent.parent
FIVE_MIN = 300 * 10**9
OPEN_NS, CLOSE_NS = (9 * 3600 + 15 * 60) * 10**9, (15 * 3600 + 30 * 60) * 10**9
LONG_, SHORT_, EXIT_, NOTHING = 1.0, 2.0, 3.0, 8.0  # what a candle's volume tells the signals strategy

# Answers what each 5-minute bar's volume says (one bar is one candle): 1 long, 2 short, 3 exit.
SIGNALS = '''
from engine.strategies.api import EXIT, LONG, NONE, SHORT, VOLUME, Strategy

strategy = Strategy("signals", about="answers what its bar's volume says", timeframe=5)


@strategy.decision
def decide(x, pos):
    v = x[VOLUME]
    if v == 1.0:
        return LONG
    if v == 2.0:
        return SHORT
    if v == 3.0:
        return EXIT
    return NONE
'''


@pytest.fixture(scope="module", autouse=True)
def _signals(tmp_path_factory):
    config = tmp_path_factory.mktemp("signals") / "otrade.json"
    (config.parent / "strategies").mkdir()
    (config.parent / "strategies" / "signals.py").write_text(SIGNALS)
    catalog_for(config)  # remembered: configs validated below find the strategy there


def signals_config(bracket, slippage_ticks=0, square_off="15:15"):
    return make_config(strategy={"kind": "signals", "allow_short": True}, bracket=bracket,
                       slippage_ticks=slippage_ticks, session={"square_off": square_off})


def explicit_ticks(starts, o, h, lo, c, v, high_first) -> Ticks:
    """Each 5-minute candle as four ticks a quarter apart, its extremes in the order given."""
    ts = (starts[:, None] + FIVE_MIN * np.arange(4) // 4).ravel()
    price = np.column_stack((o, np.where(high_first, h, lo), np.where(high_first, lo, h), c)).ravel()
    return Ticks(ts, price, np.repeat(v / 4.0, 4), np.zeros(len(ts), np.int32), ("NSE:INFY",))


def by_day(result) -> dict[int, float]:
    """Each day's trade (one at most here): its gross P&L, by the IST day of its entry."""
    day = (result.ti[:, backtest.TI_ENTRY] + 19_800 * 10**9) // (86_400 * 10**9)
    assert len(np.unique(day)) == len(day)
    return dict(zip(day.tolist(), result.tf[:, backtest.T_PNL].tolist(), strict=True))


def worst_orders(cfg, starts, o, h, lo, c, v, rank) -> dict[int, float]:
    """Each day's trade on every order of its candles' extremes: candle ``k`` of its day (``rank``)
    takes the high first in the runs whose bit ``k`` is set; the least P&L a day's trade made."""
    worst: dict[int, float] = {}
    for bits in range(2 ** (int(rank.max()) + 1)):
        ticks = explicit_ticks(starts, o, h, lo, c, v, (bits >> rank) & 1 == 1)
        for d, pnl in by_day(backtest.run(cfg, ticks)).items():
            worst[d] = min(worst.get(d, np.inf), pnl)
    return worst


def pessimistic(cfg, starts, o, h, lo, c, v, interval="5minute") -> dict[int, float]:
    r = replay({"NSE:INFY": Candles(starts, o, h, lo, c, v)}, ["NSE:INFY"], interval, "pessimistic", OPEN_NS,
               CLOSE_NS)
    return by_day(backtest.run(cfg, r.ticks, partner=r.partner))


def one_day(*rows, day="2026-11-23"):
    """rows: (HH:MM, open, high, low, close, volume code) -> the arrays of one day's 5-minute candles."""
    starts = np.array([ns(f"{r[0]}:00", day) for r in rows], np.int64)
    return (starts, *(np.array([r[k] for r in rows], float) for k in range(1, 6)))


def test_a_trailing_stop_under_the_pessimistic_rule_is_no_better_than_the_high_first_path():
    # long at 100 (stop 99, trail 0.5%); at 10:10 the low-first path keeps the long (the stop, trailed to
    # 100.5 at the open, is under the low), trails it to 101.0 at the high and holds it over the close;
    # the high-first path trails it to 101.0 first and meets the low under it: out at 100.8
    cfg = signals_config({"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": 0.5})
    day = one_day(("10:00", 100, 100, 100, 100, LONG_), ("10:05", 100, 100, 100, 100, NOTHING),
                  ("10:10", 101.0, 101.5, 100.8, 101.2, NOTHING), ("10:15", 101.2, 103.0, 101.1, 102.8, NOTHING))
    ohlc = replay({"NSE:INFY": Candles(*day)}, ["NSE:INFY"], "5minute", "ohlc", OPEN_NS, CLOSE_NS)
    assert backtest.run(cfg, ohlc.ticks).tf[0, backtest.T_PNL] == pytest.approx(28.0)  # held to 102.8
    rank = np.arange(4)
    assert list(worst_orders(cfg, *day, rank).values()) == pytest.approx([8.0])  # out at 100.8, 10 shares
    assert list(pessimistic(cfg, *day).values()) == pytest.approx([8.0])


def test_an_entry_bought_at_the_high_is_not_the_worst_trade_when_a_later_gap_passes_its_stop():
    # bought at 101 (the high first) the stop is 99.5 and 10:15's open, 99.4, takes it; bought at 100
    # (the low first) the stop is 98.5, the trade lives on and 10:20's open gaps to 95
    cfg = signals_config({"target_pct": 5.0, "stop_pct": 1.5, "trail_pct": None})
    day = one_day(("10:00", 100, 100, 100, 100, LONG_), ("10:05", 100.5, 101.0, 100.0, 100.5, NOTHING),
                  ("10:10", 100.5, 100.5, 100.5, 100.5, NOTHING), ("10:15", 99.4, 99.4, 99.4, 99.4, NOTHING),
                  ("10:20", 95.0, 95.0, 95.0, 95.0, NOTHING))
    assert list(worst_orders(cfg, *day, np.arange(5)).values()) == pytest.approx([-50.0])
    assert list(pessimistic(cfg, *day).values()) == pytest.approx([-50.0])


@st.composite
def brackets(draw):
    trail = draw(st.one_of(st.none(), st.sampled_from([0.2, 0.5, 1.0, 2.0])))
    return {"target_pct": draw(st.sampled_from([0.3, 0.8, 1.5, 3.0])),
            "stop_pct": draw(st.sampled_from([0.2, 0.5, 1.0, 2.0])), "trail_pct": trail,
            "trail_step_ticks": draw(st.integers(1, 3)), "trail_interval_s": draw(st.sampled_from([0, 0, 90, 200]))}


@st.composite
def days(draw):
    """One day's 2 to 4 candles from 14:55, 15:00 or 15:05 on, moved by small steps and now and then
    a gap, on a 0.05 grid; one entry signal, filled before the earliest square-off (15:12), and
    maybe an exit signal: the square-off falls among the trade's candles or after them."""
    n = draw(st.integers(2, 4))
    signal = draw(st.integers(0, n - 2))
    first = draw(st.integers(0, max(0, 2 - signal)))
    moves = draw(st.lists(st.integers(-40, 40), min_size=3 * n, max_size=3 * n))
    close, rows = 2000, []
    for k in range(n):
        gap, body, wick = moves[3 * k : 3 * k + 3]
        o = close + (gap if abs(gap) > 30 else gap // 8)  # mostly the last close, sometimes a gap
        close = o + body
        rows.append((o, max(o, close) + abs(wick), min(o, close) - abs(wick) // 2, close))
    leave = draw(st.one_of(st.none(), st.integers(signal + 1, n)))
    codes = [NOTHING] * n
    codes[signal] = draw(st.sampled_from([LONG_, SHORT_]))
    if leave is not None and leave < n:
        codes[leave] = EXIT_
    return first, [(*(round(p * 0.05, 2) for p in r), v) for r, v in zip(rows, codes, strict=True)]


@settings(max_examples=100, deadline=None)
@given(bracket=brackets(), slippage=st.integers(0, 2),
       square_off=st.sampled_from(["15:12", "15:13", "15:16", "15:21", "15:22"]),  # on one extreme or a close
       scenarios=st.lists(days(), min_size=100, max_size=100))
def test_every_trade_under_the_pessimistic_rule_is_no_better_than_on_any_order_of_its_candles(
        bracket, slippage, square_off, scenarios):
    """100 brackets × 100 days, a trade each: 10,000 trades, each against all 2ⁿ orders of its day's
    n candles."""
    cfg = signals_config(bracket, slippage, square_off)
    rows, rank = [], []
    for d, (first, candles_of_day) in enumerate(scenarios):
        day = (date(2026, 1, 5) + timedelta(days=d)).isoformat()
        for k, candle in enumerate(candles_of_day):
            minute = 55 + 5 * (first + k)
            rows.append((ns(f"{14 + minute // 60}:{minute % 60:02d}:00", day), *candle))
            rank.append(k)
    starts = np.array([r[0] for r in rows], np.int64)
    o, h, lo, c, v = (np.array([r[k] for r in rows]) for k in range(1, 6))
    worst = worst_orders(cfg, starts, o, h, lo, c, v, np.array(rank))
    bound = pessimistic(cfg, starts, o, h, lo, c, v)
    assert bound.keys() == worst.keys() and len(bound) == len(scenarios)  # the same trades, one a day
    beaten = {d: (bound[d], worst[d]) for d in bound if bound[d] > worst[d] + 1e-9}
    assert not beaten


def test_bars_that_close_inside_candles_are_refused_by_the_pessimistic_rule():
    cfg = make_config(strategy={"kind": "ema_cross", "fast": 1, "slow": 2, "timeframe": 3})
    day = one_day(("09:15", 100, 101, 99, 100.5, 4), ("09:20", 100.5, 102, 100, 101.5, 4))
    with pytest.raises(CandleError, match=r"cannot bound NSE:INFY's trades: its 3-minute bars close inside "
                                          r"candles \(the bar ending 09:18 inside the candle from 2026-11-23 09:15\)"):
        pessimistic(cfg, *day)


def test_a_strategy_deciding_on_ticks_is_refused_by_the_pessimistic_rule_and_not_by_ohlc():
    cfg = make_config(strategy={"kind": "ema_cross", "fast": 1, "slow": 2, "timeframe": "tick"})
    day = one_day(("09:15", 100, 101, 99, 100.5, 4), ("09:20", 100.5, 102, 100, 101.5, 4))
    with pytest.raises(CandleError, match="its strategy decides on every tick"):
        pessimistic(cfg, *day)
    ohlc = replay({"NSE:INFY": Candles(*day)}, ["NSE:INFY"], "5minute", "ohlc", OPEN_NS, CLOSE_NS)
    assert backtest.run(cfg, ohlc.ticks).ticks == 8


def test_the_cli_says_what_the_pessimistic_rule_refuses_in_one_line(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [i for i in data["instruments"] if i["symbol"] == "NSE:INFY"]
    data["instruments"][0]["strategy"]["timeframe"] = "tick"
    config = tmp_path / "infy.json"
    config.write_bytes(orjson.dumps(data))
    candles.write(candles.path(tmp_path / "data", "minute", "NSE:INFY"),
                  Candles(*one_day(("09:15", 100, 101, 99, 100.5, 4), ("09:16", 100.5, 102, 100, 101.5, 4))))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTRADE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "engine", "backtest", "--config", str(config), "--candles",
                             "--candle-rule", "pessimistic"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert result.stderr.startswith("error: the pessimistic rule cannot bound NSE:INFY's trades: its strategy "
                                    "decides on every tick") and result.stderr.count("\n") == 1
