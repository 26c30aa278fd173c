"""A session opens on its first tick inside the calendar's hours, not only when the scheduler's open job
runs: a live restart joining the session late, whose ticker streams before that job runs, or an
exchange clock a little ahead of this one, would otherwise record ticks the kernel never traded on,
and the backtest of the recording (the evening audit's) would trade them."""

from datetime import datetime, time

from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.core.layout import IST
from engine.data.synthetic import generate
from engine.engine import Engine, State
from engine.research import backtest
from engine.services.events import EventBus
from engine.services.journal import Journal
from tests.conftest import make_config

TICK_STRATEGY = {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": True}


def joining(tmp_path, cfg, ticks, job_at_tick: int, paused: bool = False) -> tuple[Engine, list[int]]:
    """An engine as the live process has it before its session opened (no day's ticks reach the kernel;
    ``paused``: a day restored paused), told the session the calendar plans, fed ``ticks``; the scheduler's
    open job runs before tick ``job_at_tick``. Returns it and the ticks at which the session was opened."""
    clock = [0]
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, lambda: clock[0]), EventBus(),
                    Journal(tmp_path, lambda: clock[0]), lambda: clock[0])
    if paused:
        engine.start_session()
        engine.pause("the trader's /pause")
    engine.trade_only(None)
    day = datetime.fromtimestamp(int(ticks.ts[0]) / 1e9, IST).date()
    open_, close = datetime.combine(day, time(9, 15), IST), datetime.combine(day, time(15, 30), IST)
    opened_at: list[int] = []

    def opens() -> None:  # what the app's open job does
        opened_at.append(k)
        engine.trade_only(day)
        engine.set_session_window(open_, close, datetime.combine(day, time(15, 15), IST))
        engine.start_session()

    engine.expect_session(open_, close, opens)
    for k in range(len(ticks)):
        if k == job_at_tick:
            opens()
        clock[0] = int(ticks.ts[k])
        engine.on_tick(0, int(ticks.ts[k]), float(ticks.price[k]), float(ticks.volume[k]))
    return engine, opened_at


def trades(engine: Engine) -> list[tuple]:
    return [(t["side"], t["entry_price"], t["exit_price"], backtest.iso(t["entry_time_ns"])) for t in engine.trades()]


def test_ticks_before_the_open_job_are_traded_as_the_backtest_of_the_recording_trades_them(tmp_path):
    cfg = make_config(strategy=TICK_STRATEGY, bracket={"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": None})
    ticks = generate(1, 3, ["NSE:INFY"], tick_sizes=[0.05])
    rows = backtest.run(cfg, ticks).trade_rows()
    want = [(t["side"], t["entry_price"], t["exit_price"], t["entry_time"]) for t in rows]
    late = 200
    assert want and want[0][3] < backtest.iso(int(ticks.ts[late]))  # the backtest trades before the job runs
    engine, opened_at = joining(tmp_path, cfg, ticks, job_at_tick=late)
    engine.end_session()
    assert opened_at[0] == 0  # by the session's first tick
    assert trades(engine) == want


def test_a_tick_before_the_planned_hours_does_not_open_the_session(tmp_path):
    cfg = make_config(strategy=TICK_STRATEGY)
    ticks = generate(1, 3, ["NSE:INFY"], tick_sizes=[0.05])
    early = ticks.slice(1)
    early.ts[0] -= 3600 * 10**9  # 08:15 IST: before the calendar's open
    engine, opened_at = joining(tmp_path, cfg, early, job_at_tick=5)
    assert opened_at == [] and engine.state == State.IDLE


def test_a_paused_day_takes_its_first_ticks_into_its_bars_and_stays_paused(tmp_path):
    ticks = generate(1, 3, ["NSE:INFY"], tick_sizes=[0.05]).slice(500)
    cfg = make_config(strategy=TICK_STRATEGY)
    engine, opened_at = joining(tmp_path, cfg, ticks, job_at_tick=len(ticks), paused=True)
    assert opened_at == [0] and engine.state == State.PAUSED and engine.trades() == []
    assert engine.arrays.st[0, L.S_BARS] == len(ticks)  # every tick reached the kernel: a bar each
