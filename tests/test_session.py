"""The session scheduler on a rehearsal clock, and the trading calendar."""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, time

import orjson
import pytest

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.core.layout import IST
from engine.engine import Engine, State
from engine.runtime.app import Runtime, _retime, _schedule, _session_hooks
from engine.runtime.session import CLOSE, OPEN, PRE_OPEN, REPORT, SQUARE_OFF, SessionScheduler
from engine.services.calendar import TradingCalendar
from engine.services.clock import RehearsalClock
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import make_config
from tests.waiting import until


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def make(start: str, fired: list):
    clock = RehearsalClock(at(start))
    hooks = {name: (lambda s, n=name: fired.append((n, datetime.fromtimestamp(clock.now_ns() / 1e9, IST))))
             for name in (PRE_OPEN, OPEN, SQUARE_OFF, CLOSE, REPORT)}
    return SessionScheduler(TradingCalendar(), clock, hooks)


async def fire(scheduler: SessionScheduler, fired: list, count: int) -> None:
    """``scheduler`` started until ``count`` events have fired, then shut down."""
    scheduler.start()
    try:
        await until(lambda: len(fired) >= count)
    finally:
        scheduler.shutdown()


async def test_the_session_opens_at_0915_on_the_rehearsal_clock():
    fired: list = []
    scheduler = make("2026-11-23T09:14:58.5+05:30", fired)
    await fire(scheduler, fired, 2)
    assert [n for n, _ in fired] == [PRE_OPEN, OPEN]  # warm-up at once: it was due at 09:00
    assert fired[1][1].strftime("%H:%M:%S") == "09:15:00"


async def test_a_late_start_joins_then_closes_at_1530():
    fired: list = []
    scheduler = make("2026-11-23T15:29:59+05:30", fired)
    await fire(scheduler, fired, 3)
    assert [n for n, _ in fired] == [PRE_OPEN, OPEN, CLOSE]
    assert fired[-1][1].strftime("%H:%M:%S") == "15:30:00"


def runtime(tmp_path, start: str, gated: bool = False):
    """A runtime on a rehearsal clock at ``start``, its scheduler's hooks those of ``otrade run``; ``gated``:
    wired as ``otrade run`` wires it, no tick reaching the kernel before a session opens."""
    clock = RehearsalClock(at(start))
    cfg = make_config(bracket={"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None})
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, clock.now_ns), EventBus(), Journal(tmp_path, clock.now_ns),
                    clock.now_ns)
    manager = ConfigManager(tmp_path / "c.json", tmp_path, default_catalog())
    rt = Runtime(argparse.Namespace(), manager, engine, engine.bus, clock, tmp_path, LogBuffer())
    if gated:
        _schedule(rt, TradingCalendar())
    else:
        rt.scheduler = SessionScheduler(TradingCalendar(), clock, {})
        rt.scheduler.hooks.update(_session_hooks(rt))
    return rt


@asynccontextmanager
async def session_running(rt: Runtime) -> AsyncIterator[Runtime]:
    """``rt``'s scheduler started and its engine RUNNING; the scheduler shut down on the way out."""
    rt.scheduler.start()
    try:
        await until(lambda: rt.engine.state == State.RUNNING)
        yield rt
    finally:
        rt.scheduler.shutdown()


def open_position(rt, clock_text: str):
    base = int(at(f"2026-11-23T{clock_text}+05:30").timestamp()) * 10**9
    for k, price in enumerate([100.0, 99.0, 101.0, 101.5]):
        rt.engine.on_tick(0, base + k * 10**9, price)


async def test_engine_runs_from_0915_squares_off_and_closes_at_1530(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T15:14:59+05:30")
    async with session_running(rt):
        open_position(rt, "15:14:00")
        await until(lambda: any(o["purpose"] == "exit" for o in rt.engine.orders()))
        assert [o["purpose"] for o in rt.engine.orders()] == ["exit"]  # square-off sent at 15:15


async def test_the_close_ends_the_session_and_exits_at_the_last_price(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T15:29:59+05:30")
    async with session_running(rt):
        open_position(rt, "15:10:00")
        await until(lambda: rt.engine.state == State.CLOSED)
        assert [(t["exit_reason"], t["exit_price"]) for t in rt.engine.trades()] == [("square_off", 101.5)]


async def test_a_mid_session_start_joins_at_once():
    fired: list = []
    scheduler = make("2026-11-23T11:00:00+05:30", fired)
    await fire(scheduler, fired, 2)
    assert [n for n, _ in fired] == [PRE_OPEN, OPEN]
    assert scheduler.next_event().name == SQUARE_OFF


async def test_a_mid_session_start_opens_on_a_tick_that_comes_before_its_open_job_runs(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T11:00:00+05:30", gated=True)
    rt.scheduler.start()  # its open job is due at once, but runs only when the event loop gets to it
    try:
        act = rt.engine.on_tick(0, int(at("2026-11-23T11:00:00+05:30").timestamp()) * 10**9, 100.0)
        assert act != L.ACT_IGNORED and rt.engine.state == State.RUNNING
        assert rt.engine.on_tick(0, int(at("2026-11-24T11:00:00+05:30").timestamp()) * 10**9, 100.0) == L.ACT_IGNORED
    finally:
        rt.scheduler.shutdown()


async def test_after_the_close_it_waits_for_the_next_session_skipping_the_holiday():
    scheduler = make("2026-11-23T16:00:00+05:30", [])
    scheduler.start()
    scheduler.shutdown()
    event = scheduler.next_event()
    assert (event.name, event.at) == (PRE_OPEN, at("2026-11-25T09:00:00+05:30"))  # 24 Nov: Guru Nanak Jayanti


def test_weekends_and_exchange_holidays_are_closed():
    calendar = TradingCalendar()
    assert calendar.session(date(2026, 11, 28)) is None  # Saturday
    assert calendar.session(date(2026, 1, 26)) is None  # Republic Day
    assert calendar.session(date(2026, 11, 25)).open == at("2026-11-25T09:15:00+05:30")


def test_special_sessions_come_from_the_overrides():
    session = TradingCalendar().session(date(2026, 11, 8))
    assert (session.open, session.close) == (at("2026-11-08T18:00:00+05:30"), at("2026-11-08T19:00:00+05:30"))


def test_a_special_session_keeps_the_square_off_margin():
    scheduler = make("2026-11-08T17:00:00+05:30", [])
    events = {e.name: e.at for e in scheduler.events_for(TradingCalendar().session(date(2026, 11, 8)))}
    assert events[SQUARE_OFF] == at("2026-11-08T18:45:00+05:30")


@pytest.mark.parametrize("day", ["2026-01-15", "2026-03-03", "2026-10-20", "2026-11-10", "2026-12-25"])
def test_nse_2026_holidays_are_skipped(day):
    assert TradingCalendar().session(date.fromisoformat(day)) is None


async def test_a_live_process_checks_the_broker_token_before_the_open():
    fired: list = []
    scheduler = make("2026-11-23T08:44:59.5+05:30", fired)
    scheduler.token_check = time(8, 45)
    scheduler.hooks["token_check"] = lambda s: fired.append(("token_check", None))
    await fire(scheduler, fired, 1)
    assert [n for n, _ in fired] == ["token_check"] and scheduler.next_event().name == PRE_OPEN


def wired(tmp_path, start: str):
    """A runtime whose config manager reaches the engine and the session times as ``otrade run`` wires it."""
    rt = runtime(tmp_path, start)
    rt.config.path.write_bytes(orjson.dumps(rt.engine.cfg.model_dump(mode="json")))
    rt.config.load()
    rt.config.subscribe(lambda old, new, changes: rt.engine.apply_config(new))
    rt.config.subscribe(lambda old, new, changes: _retime(rt, rt.scheduler.calendar, new.session))
    return rt


async def test_set_session_square_off_moves_the_scheduled_square_off(tmp_path):
    rt = wired(tmp_path, "2026-11-23T11:00:58.5+05:30")
    async with session_running(rt):
        open_position(rt, "10:59:00")
        rt.config.set("session.square_off", "11:01")
        assert rt.next_event() == "square_off at Mon 23 Nov 11:01 IST"
        await until(lambda: any(o["purpose"] == "exit" for o in rt.engine.orders()))
        assert [o["purpose"] for o in rt.engine.orders()] == ["exit"]  # sent at 11:01, no tick needed


async def test_a_config_change_keeps_a_special_sessions_window(tmp_path):
    rt = wired(tmp_path, "2026-11-08T18:10:00+05:30")  # Muhurat trading, 18:00-19:00
    async with session_running(rt):
        rt.config.set("risk.max_daily_loss", "2000")
        assert rt.engine.on_tick(0, int(at("2026-11-08T18:20:00+05:30").timestamp()) * 10**9, 100.0) != L.ACT_IGNORED
        assert rt.next_event() == "square_off at Sun 08 Nov 18:45 IST"


async def test_set_session_square_off_on_a_special_day_keeps_its_margin_to_the_special_close(tmp_path):
    rt = wired(tmp_path, "2026-11-08T18:10:00+05:30")
    async with session_running(rt):
        rt.config.set("session.square_off", "15:20")  # ten minutes before the regular close
        assert rt.next_event() == "square_off at Sun 08 Nov 18:50 IST"
