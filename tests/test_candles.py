"""Candle timeframes: bars aligned to the session open, closed by the first tick at or after their
end, deciding after that tick's fills; the same rules in backtest and paper (live: test_strategy_api)."""

from pathlib import Path

import numpy as np
import pytest

from engine.core import layout as L
from engine.research import backtest
from engine.strategies import catalog_for
from engine.strategies.api import CLOSE, HIGH, LOW, OPEN, START, VOLUME
from tests.conftest import make_config, make_ticks
from tests.test_engine import feed, make_engine

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}
MIN = 60_000_000_000

# Long whenever flat, on 1-minute bars, counting its decisions; "wait": bars before its answers count.
PROBE = '''
from engine.core.indicators import ema
from engine.strategies.api import LONG, NONE, Param, Strategy

strategy = Strategy("probe", about="long whenever flat", timeframe=1, params={"wait": Param(0, low=0)},
                    indicators=lambda p: {"ema": ema(3, seed=1)}, memory={"asked": 0.0}, warmup=lambda p: p.wait,
                    reset_each_session=RESET)
ASKED = strategy.mem("asked")


@strategy.decision
def decide(x, pos):
    x[ASKED] += 1.0
    return LONG if pos == 0.0 else NONE
'''


def probe(tmp_path: Path, reset: bool = False, bracket: dict = WIDE, **params):
    """A config trading the probe, from a strategies folder of its own."""
    config = tmp_path / f"config{int(reset)}" / "otrade.json"
    (config.parent / "strategies").mkdir(parents=True)
    (config.parent / "strategies" / "probe.py").write_text(PROBE.replace("RESET", str(reset)))
    catalog_for(config)  # remembered: the config validated below finds the probe there
    return make_config(strategy={"kind": "probe", **params}, bracket=bracket, risk={"max_trades_per_day": 100})


def asked(engine) -> float:
    return engine.arrays.x[0, engine.arrays.strategies[0].mem("asked")]


def at(rows, day="2026-11-23"):
    """(HH:MM:SS[.f], price) rows, one day."""
    return [(day, t, p, "NSE:INFY") for t, p in rows]


def trades(cfg, rows):
    return [(t["entry_time"][11:19], t["entry_price"], t["exit_time"][11:19], t["exit_reason"])
            for t in backtest.run(cfg, make_ticks(rows)).trade_rows()]


@pytest.fixture(autouse=True)
def _own_folder(monkeypatch):
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)


def test_a_bar_is_the_ohlcv_of_its_ticks_from_its_start_after_the_open(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path, wait=99), tmp_path)
    feed(engine, clock, make_ticks(at([("09:16:05", 100.0), ("09:16:20", 102.0), ("09:16:40", 99.0),
                                       ("09:16:59.9", 101.0), ("09:17:00", 105.0)])))
    x = engine.arrays.x[0]
    assert (x[OPEN], x[HIGH], x[LOW], x[CLOSE], x[VOLUME], x[START]) == (100.0, 102.0, 99.0, 101.0, 4.0, 1 * MIN)


def test_a_minute_without_ticks_makes_no_bar(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path, wait=99), tmp_path)
    feed(engine, clock, make_ticks(at([("09:15:30", 100.0), ("09:18:30", 101.0), ("09:19:00", 102.0)])))
    assert engine.arrays.st[0, L.S_BARS] == 2  # 09:15's and 09:18's; none for 09:16 or 09:17
    assert engine.arrays.x[0, START] == 3 * MIN


def test_the_order_a_closed_bar_leaves_fills_at_the_next_tick(tmp_path):
    rows = at([("10:00:10", 100.0), ("10:00:50", 100.5), ("10:01:00", 101.0), ("10:01:05", 101.5)])
    assert trades(probe(tmp_path), rows) == [("10:01:05", 101.5, "10:01:05", "square_off")]


def test_ticks_inside_a_bar_decide_nothing(tmp_path):
    rows = at([("10:00:10", 100.0), ("10:00:20", 100.5), ("10:00:30", 101.0), ("10:00:40", 101.5)])
    assert trades(probe(tmp_path), rows) == []


def test_the_closing_tick_exits_at_the_stop_first_then_the_closed_bar_decides(tmp_path):
    cfg = probe(tmp_path, bracket={"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": None})
    rows = at([("10:00:10", 100.0), ("10:01:00", 100.0), ("10:01:05", 100.0),  # long from 100.00, stop 99.00
               ("10:02:00", 98.0), ("10:02:05", 98.5)])  # the tick closing 10:01's bar trades through the stop
    assert trades(cfg, rows) == [("10:01:05", 100.0, "10:02:00", "stop"), ("10:02:05", 98.5, "10:02:05", "square_off")]


def test_no_answer_counts_before_the_warmup_bars(tmp_path):
    rows = at([(f"10:0{k}:10", 100.0 + k) for k in range(6)])
    # the third bar (10:02's) is closed at 10:03:10: its answer fills at the next tick
    assert [t[0] for t in trades(probe(tmp_path, wait=3), rows)] == ["10:04:10"]


def test_status_says_how_many_bars_the_strategy_still_needs(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path, wait=5), tmp_path)
    feed(engine, clock, make_ticks(at([("10:00:10", 100.0), ("10:01:10", 100.0), ("10:02:10", 100.0)])))
    status = engine.status()["instruments"][0]["strategy"]
    assert status == {"kind": "probe", "timeframe": 1, "bars_needed": 3, "indicators": {"ema": 0}}


def test_the_sessions_last_bar_updates_the_indicators_reaches_the_decision_and_orders_nothing(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path), tmp_path)  # the probe asks for a long whenever flat
    feed(engine, clock, make_ticks(at([("15:27:10", 100.0), ("15:28:10", 101.0), ("15:29:10", 102.0)])))
    assert (engine.arrays.st[0, L.S_BARS], asked(engine)) == (2, 2)
    engine.end_session()
    assert (engine.arrays.st[0, L.S_BARS], asked(engine)) == (3, 3)
    assert engine.arrays.st[0, L.S_PEND_SIDE] == 0.0 and engine.broker.all_orders() == []
    assert engine.arrays.x[0, engine.arrays.strategies[0].slot("ema")] == 101.25  # 100, then halfway to 101, to 102


def test_bars_carry_across_sessions(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path, wait=99), tmp_path)
    feed(engine, clock, make_ticks(at([("15:28:10", 100.0), ("15:29:10", 101.0)])
                                   + at([("09:15:10", 102.0), ("09:16:10", 103.0)], day="2026-11-24")))
    assert engine.arrays.st[0, L.S_BARS] == 3  # yesterday's two (the last closed by the session's end), today's first


def test_a_strategy_may_start_its_bars_again_each_session(tmp_path):
    engine, clock, _ = make_engine(probe(tmp_path, reset=True, wait=99), tmp_path)
    feed(engine, clock, make_ticks(at([("15:28:10", 100.0), ("15:29:10", 101.0)])
                                   + at([("09:15:10", 102.0), ("09:16:10", 103.0)], day="2026-11-24")))
    assert engine.arrays.st[0, L.S_BARS] == 1


def test_bars_align_to_a_special_sessions_own_open(tmp_path):
    cfg = probe(tmp_path, wait=99, timeframe=5)
    engine, clock, _ = make_engine(cfg.model_copy(update={"session": cfg.session.model_copy(
        update={"open": "09:17", "square_off": "15:15"})}), tmp_path)
    feed(engine, clock, make_ticks(at([("09:18:00", 100.0), ("09:21:59", 101.0), ("09:22:00", 102.0)])))
    assert (engine.arrays.st[0, L.S_BARS], engine.arrays.x[0, CLOSE]) == (1, 101.0)  # [09:17, 09:22)


def test_the_chats_status_says_how_many_bars_a_strategy_still_needs(tmp_path):
    from bot.commands import CONSOLE, Commands, Services

    engine, clock, _ = make_engine(probe(tmp_path, wait=5), tmp_path)
    feed(engine, clock, make_ticks(at([("10:00:10", 100.0), ("10:01:10", 100.0)])))
    text = Commands(Services(engine, None, tmp_path, clock)).handle_text(CONSOLE, "/status").text
    assert "NSE:INFY: 100.00" in text and " · probe (1 min) warming up: 4 bars to go" in text


def test_warmed_on_earlier_days_the_engine_trades_today_as_a_backtest_over_those_days(tmp_path):
    from engine.data.synthetic import generate
    from engine.data.ticks import Ticks

    cfg = make_config(strategy={"kind": "ema_cross", "fast": 5, "slow": 30, "timeframe": 5, "allow_short": True},
                      bracket={"target_pct": 0.4, "stop_pct": 0.2, "trail_pct": None}, tick_size=0.1)
    ticks = generate(2, 5, ["NSE:INFY"], tick_sizes=[0.1])
    day = (ticks.ts + L.IST_OFFSET_NS) // L.NS_PER_DAY
    first = int(np.argmax(day != day[0]))
    yesterday, today = (Ticks(ticks.ts[s], ticks.price[s], ticks.volume[s], ticks.instr[s], ticks.symbols)
                        for s in (slice(0, first), slice(first, None)))
    expected = [t for t in backtest.run(cfg, ticks).trade_rows() if t["entry_time"] >= backtest.iso(int(today.ts[0]))]
    engine, clock, _ = make_engine(cfg, tmp_path)
    assert engine.warm_strategies(yesterday) > 30
    feed(engine, clock, today)
    engine.end_session()
    got = [(backtest.iso(t["entry_time_ns"]), t["entry_price"], t["exit_reason"]) for t in engine.trades()]
    assert expected and got == [(t["entry_time"], t["entry_price"], t["exit_reason"]) for t in expected]
    # before its 30 bars of today: the EMAs came from yesterday
    assert expected[0]["entry_time"] < backtest.iso(int(today.ts[0]) + 30 * 5 * MIN)
