"""A restart changes nothing the strategy does: the restarted process catches its strategies up on
today's ticks before the crash (the day's recording), so it trades on as one that never stopped, and
a position open across the crash keeps its entry fill's own time."""

import logging
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from engine.brokers.kite.rest import Instrument, KiteREST
from engine.core import layout as L
from engine.data import store
from engine.data.synthetic import generate
from engine.data.ticks import Ticks
from engine.live.restore import rebuild
from engine.runtime.app import _catch_up
from tests.conftest import DAY, make_config, ns
from tests.kite_engine import INFY
from tests.kite_server import API_KEY, FakeKite
from tests.test_restore import Clock, crash, feed, process

STRATEGIES = {
    "on ticks": {"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True},
    "on 1-minute bars": {"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True, "timeframe": 1},
}
BRACKET = {"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": None}
RISK = {"max_trades_per_day": 1000, "max_daily_loss": 1e9}  # a busy day: the strategy, not a limit, decides


def never_stopped(cfg, data_dir, ticks: Ticks) -> tuple[list[dict], int]:
    """The day's trades of a process that ran through, and a tick in the second half at which it
    held a position (where the crash comes)."""
    clock = Clock(int(ticks.ts[0]))
    engine, _ = process(cfg, data_dir, clock)
    cut = None
    for k in range(len(ticks)):
        feed(engine, clock, ticks.slice(k + 1, k))
        if cut is None and k >= len(ticks) // 2 and engine.arrays.st[0, L.S_POS] != 0.0:
            cut = k + 1
    assert cut is not None, "the day should hold a position somewhere in its second half"
    return engine.trades(), cut


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_a_process_killed_mid_position_and_restarted_trades_on_as_one_that_never_stopped(tmp_path, strategy):
    cfg = make_config(strategy=strategy, bracket=BRACKET, risk=RISK)
    ticks = generate(1, 5, ["NSE:INFY"], tick_sizes=[0.05])
    whole, cut = never_stopped(cfg, tmp_path / "whole", ticks)
    clock = Clock(int(ticks.ts[0]))
    first, _ = process(cfg, tmp_path / "crashed", clock)
    feed(first, clock, ticks.slice(cut))
    crash(first)
    second, _ = process(cfg, tmp_path / "crashed", clock)  # restored from the journal, as otrade run does
    assert second.catch_up(ticks.slice(cut)) > 0  # the recording of today before the crash
    feed(second, clock, ticks.slice(len(ticks), cut))
    assert len(whole) > 5 and second.trades() == whole


def test_catching_up_changes_nothing_once_the_day_has_ticks_of_another_day(tmp_path):
    cfg = make_config(strategy=STRATEGIES["on ticks"], bracket=BRACKET, risk=RISK)
    ticks = generate(2, 5, ["NSE:INFY"], tick_sizes=[0.05])
    clock = Clock(int(ticks.ts[-1]))  # the second day
    engine, _ = process(cfg, tmp_path, clock)
    first_day = ticks.slice(int((ticks.ts < ticks.ts[-1] - 12 * 3600 * 10**9).sum()))
    assert engine.catch_up(first_day) == 0 and engine.arrays.acct[L.A_DAY] == -1.0


def test_a_restored_position_keeps_its_entry_fills_own_time_not_the_journal_records():
    entry = {"kind": "order", "order_id": "p1", "symbol": "NSE:INFY", "side": "BUY", "status": "COMPLETE",
             "filled_quantity": 10, "average_price": 1500.0, "purpose": "entry",
             "ts": "2026-11-23T10:00:00.001+05:30", "fill_ns": ns("10:00:00")}  # journalled 1 ms after its tick
    held = rebuild([entry], make_config().costs, frozenset()).held["NSE:INFY"]
    assert (held.qty, held.price, held.opened_ns) == (10, 1500.0, ns("10:00:00"))


async def test_live_the_minutes_the_recording_misses_come_from_kites_minute_candles(tmp_path, caplog):
    """Down from 10:30:20 to 11:00:05: the recording's ticks, then Kite's minute candles of 10:31 to
    10:59 (the whole minutes between), each as its candle's four ticks; the seconds left are named.
    (Kite's candles are stamped at their minute's IST start; minute boundaries are the same in UTC.)"""
    server = FakeKite()
    await server.start()
    rest = KiteREST(API_KEY, server.access_token, server.base)
    try:
        cfg = make_config(strategy=STRATEGIES["on 1-minute bars"], bracket=BRACKET, risk=RISK)
        clock = Clock(ns("11:00:05"))
        engine, _ = process(cfg, tmp_path, clock)
        recorded = Ticks(np.array([ns("10:29:10"), ns("10:30:20")]), np.array([1500.0, 1501.0]), np.ones(2),
                         np.zeros(2), ("NSE:INFY",))
        store.append_part(store.tick_file(tmp_path, recorded_day(), store.MARKET),
                          pa.table({"ts": recorded.ts, "symbol": ["NSE:INFY"] * 2, "price": recorded.price,
                                    "volume": recorded.volume}), 1)
        live = SimpleNamespace(rest=rest, known={"NSE:INFY": Instrument(INFY, "NSE:INFY", 0.05, 1)})
        with caplog.at_level(logging.INFO):
            await _catch_up(engine, tmp_path, clock.ns, store.MARKET, None, live)
        [(_, interval, start, end)] = server.historical_calls
        assert (interval, start, end) == ("minute", f"{DAY} 10:31:00", f"{DAY} 10:59:59")
        assert "29 minute candle(s) from Kite fill the minutes" in caplog.text
        assert "the ticks of the 5 s from 11:00:00 IST to this start are in no bar" in caplog.text
        assert engine.arrays.clk[0, L.C_LTP] == ns("10:59:45")  # the last candle's close, its last tick
    finally:
        await rest.close()
        await server.stop()


def recorded_day():
    return datetime.fromisoformat(f"{DAY}T10:00:00+05:30").date()
