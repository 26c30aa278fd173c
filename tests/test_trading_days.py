"""Sessions open only on the calendar's trading days, at the calendar's hours: weekends, NSE holidays
and special sessions, on the rehearsal clock, in the process and in `otrade run` itself."""

import argparse
import asyncio
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.engine import Engine, State
from engine.runtime.app import Runtime, _schedule
from engine.runtime.session import OPEN, PRE_OPEN
from engine.services.calendar import TradingCalendar
from engine.services.clock import RehearsalClock
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import config_file, make_config, process_env

ROOT = Path(__file__).resolve().parent.parent
RISE = [100.0, 99.0, 101.0, 101.5]  # the tick strategy of make_config buys on the rise


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def runtime(tmp_path: Path, start: str, calendar: TradingCalendar | None = None) -> Runtime:
    """A paper runtime on the rehearsal clock, its sessions scheduled as `otrade run` schedules them."""
    clock = RehearsalClock(at(start))
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, clock.now_ns), EventBus(),
                    Journal(tmp_path, clock.now_ns, rehearsal=True), clock.now_ns)
    rt = Runtime(argparse.Namespace(), ConfigManager(tmp_path / "c.json", tmp_path, default_catalog()), engine,
                 engine.bus, clock, tmp_path, LogBuffer())
    _schedule(rt, calendar or TradingCalendar())
    return rt


def ticks_at(rt: Runtime, day: str, clock_text: str) -> list[int]:
    """The rise, one tick a second from ``clock_text``: what the kernel answered each."""
    base = int(at(f"{day}T{clock_text}+05:30").timestamp()) * 10**9
    return [rt.engine.on_tick(0, base + k * 10**9, price) for k, price in enumerate(RISE)]


async def test_a_saturday_opens_no_session_whatever_ticks_come_and_says_when_monday_opens(tmp_path):
    rt = runtime(tmp_path, "2026-12-05T14:21:00+05:30")
    rt.scheduler.start()
    try:
        await asyncio.sleep(0.3)
        acts = ticks_at(rt, "2026-12-05", "14:21:00")
        rt.engine.journal.flush()
        assert acts == [L.ACT_IGNORED] * len(RISE)
        assert rt.engine.state == State.IDLE and not rt.engine.orders(False) and not rt.engine.trades()
        assert rt.engine.status()["instruments"][0]["ltp"] == RISE[-1]  # the price shows all the same
        assert not (tmp_path / "journal").exists()
        assert rt.scheduler.plan() == ("Sat 05 Dec is not a trading day: next: open at Mon 07 Dec 09:15 IST "
                                       "(regular session 09:15–15:30 IST)")
        assert rt.next_event() == "pre_open at Mon 07 Dec 09:00 IST"
    finally:
        rt.scheduler.shutdown()


async def test_an_nse_holiday_opens_no_session_and_the_next_trading_day_is_planned(tmp_path):
    rt = runtime(tmp_path, "2026-11-24T10:00:00+05:30")  # Guru Nanak Jayanti, a Tuesday
    rt.scheduler.start()
    try:
        await asyncio.sleep(0.3)
        assert ticks_at(rt, "2026-11-24", "10:00:00") == [L.ACT_IGNORED] * len(RISE)
        rt.engine.journal.flush()
        assert rt.engine.state == State.IDLE and not rt.engine.orders(False)
        assert not (tmp_path / "journal").exists()
        assert rt.scheduler.plan().startswith("Tue 24 Nov is not a trading day: next: open at Wed 25 Nov 09:15 IST")
    finally:
        rt.scheduler.shutdown()


async def test_a_special_session_opens_at_its_own_hours_on_a_day_otherwise_closed(tmp_path):
    overrides = tmp_path / "calendar.json"
    overrides.write_bytes(orjson.dumps({"holidays": [], "special_sessions": [
        {"date": "2026-12-05", "open": "14:22", "close": "14:40", "name": "Muhurat trading"}]}))
    rt = runtime(tmp_path, "2026-12-05T14:21:59+05:30", TradingCalendar(overrides=overrides))
    rt.scheduler.start()
    try:
        await asyncio.sleep(0.3)
        assert rt.engine.state == State.IDLE and rt.next_event() == "open at Sat 05 Dec 14:22 IST"
        assert ticks_at(rt, "2026-12-05", "14:21:56") == [L.ACT_IGNORED] * len(RISE)
        for _ in range(60):  # the open, on the rehearsal clock about a second from now
            if rt.engine.state == State.RUNNING:
                break
            await asyncio.sleep(0.1)
        opened = rt.clock.now_ns()
        assert rt.engine.state == State.RUNNING
        assert at("2026-12-05T14:22:00+05:30").timestamp() <= opened / 1e9 < at("2026-12-05T14:22:03+05:30").timestamp()
        ticks_at(rt, "2026-12-05", "14:22:10")
        assert [o["purpose"] for o in rt.engine.orders(False)][:1] == ["entry"]
        assert rt.engine.on_tick(0, int(at("2026-12-05T14:41:00+05:30").timestamp()) * 10**9, 101.0) \
            == L.ACT_IGNORED  # after the special close
        rt.engine.journal.flush()
        assert (tmp_path / "journal" / "2026-12-05.rehearsal.jsonl").exists()
    finally:
        rt.scheduler.shutdown()


def test_a_late_join_names_the_next_event_at_its_own_time(tmp_path):
    """Started after the pre-open time, the warm-up runs at once; what comes next is the 09:15 open."""
    rt = runtime(tmp_path, "2026-11-23T09:14:30+05:30")

    async def started():
        rt.scheduler.start()
        await asyncio.sleep(0)
        try:
            return rt.scheduler.next_event(), [(e.name, e.at) for e in rt.scheduler.pending]
        finally:
            rt.scheduler.shutdown()

    event, pending = asyncio.run(started())
    assert (event.name, event.at) == (OPEN, at("2026-11-23T09:15:00+05:30"))
    assert (PRE_OPEN, at("2026-11-23T09:00:00+05:30")) in pending  # joined late, under its own time
    assert rt.next_event() == "open at Mon 23 Nov 09:15 IST"


def otrade_run(tmp_path: Path, clock: str, seconds: float, **env: str) -> subprocess.CompletedProcess:
    config_file(tmp_path / "o.json", strategy={"kind": "ema_cross", "fast": 2, "slow": 5, "allow_short": False},
                bracket={"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}, tick_size=0.1,
                paper={"tick_interval_ms": 50})
    environ = process_env(tmp_path, **env)
    return subprocess.run([sys.executable, "-m", "engine", "run", "--console", "--config", str(tmp_path / "o.json"),
                           "--clock", clock, "--for", str(seconds)], cwd=tmp_path, env=environ,
                          stdin=subprocess.PIPE, capture_output=True, text=True, timeout=180)


def test_otrade_run_on_a_saturday_waits_for_mondays_open_without_trading(tmp_path):
    result = otrade_run(tmp_path, "2026-12-05T14:21:00+05:30", 4)
    assert result.returncode == 0, result.stderr
    assert "Sat 05 Dec is not a trading day: next: open at Mon 07 Dec 09:15 IST" in result.stdout  # the console
    assert "next: pre_open at Mon 07 Dec 09:00 IST" in result.stderr
    assert "RUNNING" not in result.stdout and " filled @ " not in result.stdout
    assert not list((tmp_path / "data").glob("journal/*"))
    assert not list((tmp_path / "data").glob("ticks/2026-12-05*"))  # the synthetic market was closed too


def test_otrade_run_trades_a_special_session_from_its_open(tmp_path):
    overrides = tmp_path / "calendar.json"
    overrides.write_bytes(orjson.dumps({"holidays": [], "special_sessions": [
        {"date": "2026-12-05", "open": "14:22", "close": "14:40", "name": "Muhurat trading"}]}))
    result = otrade_run(tmp_path, "2026-12-05T14:21:58+05:30", 20, OTRADE_CALENDAR=str(overrides))
    assert result.returncode == 0, result.stderr
    assert "14:22:00 Engine IDLE → RUNNING (session open)" in result.stdout and " filled @ " in result.stdout
    records = [orjson.loads(line) for line in
               (tmp_path / "data" / "journal" / "2026-12-05.rehearsal.jsonl").read_bytes().splitlines()]
    opened = next(r for r in records if r["kind"] == "state" and r["new"] == "RUNNING")
    assert "2026-12-05T14:22:00" <= opened["ts"] < "2026-12-05T14:22:02"
    fills = [r for r in records if r["kind"] == "order" and r["status"] == "COMPLETE"]
    assert fills and all(r["ts"] >= opened["ts"] for r in fills)
