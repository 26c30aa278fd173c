"""The synthetic market of a rehearsal (or of paper trading on it): the calendar's sessions only, and
the earlier sessions that warm the strategies up are the path the feed then continues."""

import tempfile
from datetime import date, datetime
from pathlib import Path

import numpy as np

from config import validate
from engine.brokers.paper import PaperBroker
from engine.core.layout import IST
from engine.data.feeds import SyntheticFeed
from engine.engine import Engine
from engine.runtime.app import WARM_DAYS, _warm_on_synthetic
from engine.services.calendar import TradingCalendar
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog
from tests.conftest import DEFAULT
from tests.test_feeds import VirtualClock

SYMBOLS, PRICES, SIZES = ["NSE:INFY", "NSE:SBIN"], [1500.0, 800.0], [0.1, 0.05]


def instant(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 10**9


def market(clock, interval_ms: float = 5000.0) -> SyntheticFeed:
    return SyntheticFeed(SYMBOLS, PRICES, SIZES, 7, clock, interval_ms, TradingCalendar(), WARM_DAYS)


async def play(feed: SyntheticFeed, until_ns: int) -> list[tuple]:
    out = []
    async for tick in feed:
        if tick[1] >= until_ns:
            feed.stop()
            break
        out.append(tick)
    return out


def ist_day(ns: int) -> date:
    return datetime.fromtimestamp(ns / 1e9, IST).date()


async def test_the_sessions_before_the_clock_are_the_path_the_feed_then_continues():
    start = instant("2026-11-23T09:14:30+05:30")
    warmed = market(VirtualClock(start))
    history = list(warmed.history(start))
    after = await play(warmed, instant("2026-11-23T09:45:00+05:30"))

    clock = VirtualClock(start)
    whole = market(clock)  # the same market, read from its first session on
    clock.ns = instant("2026-11-16T09:00:00+05:30")
    ticks = await play(whole, instant("2026-11-23T09:45:00+05:30"))

    before = [t for t in ticks if t[1] < start]
    assert [ist_day(h.ts[0]) for h in history] == [date(2026, 11, d) for d in (16, 17, 18, 19, 20)]
    assert before == [(int(k), int(ts), float(p), float(v)) for h in history
                      for k, ts, p, v in zip(h.instr, h.ts, h.price, h.volume, strict=True)]
    assert after == ticks[len(before):] and after[0][1] >= instant("2026-11-23T09:15:00+05:30")
    last_close = {k: p for k, _, p, _ in before}
    first_open = {k: p for k, _, p, _ in reversed(after)}
    assert all(abs(np.log(first_open[k] / last_close[k])) < 0.05 for k in (0, 1))  # an overnight gap, no jump


async def test_the_market_trades_only_the_calendars_sessions():
    clock = VirtualClock(instant("2026-11-20T15:20:00+05:30"))  # a Friday; Tuesday 24 Nov is a holiday
    ticks = await play(market(clock), instant("2026-11-25T09:20:00+05:30"))
    days = sorted({ist_day(ts) for _, ts, _, _ in ticks})
    assert days == [date(2026, 11, 20), date(2026, 11, 23), date(2026, 11, 25)]
    times = [datetime.fromtimestamp(ts / 1e9, IST).time() for _, ts, _, _ in ticks]
    assert all(datetime.strptime("09:15", "%H:%M").time() <= t < datetime.strptime("15:30", "%H:%M").time()
               for t in times)


async def test_a_special_session_trades_at_its_own_hours():
    clock = VirtualClock(instant("2026-11-08T17:00:00+05:30"))  # Sunday: Muhurat trading 18:00-19:00
    ticks = await play(market(clock), instant("2026-11-09T09:00:00+05:30"))
    assert ticks and instant("2026-11-08T18:00:00+05:30") <= ticks[0][1] and \
        ticks[-1][1] < instant("2026-11-08T19:00:00+05:30")


def test_the_shipped_strategies_are_ready_at_the_open_of_a_rehearsal():
    """The 5-minute strategies need 21 bars: the synthetic week before gives them, so the first bar
    closed after the open is the first decision, not the 22nd."""
    cfg = validate(DEFAULT, default_catalog())  # the shipped config
    clock = VirtualClock(instant("2026-11-23T09:14:30+05:30"))
    engine = Engine(cfg, PaperBroker(dict(zip(SYMBOLS, SIZES, strict=True)), clock.now_ns), EventBus(),
                    Journal(Path(tempfile.mkdtemp()), clock.now_ns), clock.now_ns)
    assert [i["strategy"]["bars_needed"] for i in engine.status()["instruments"]] != [0, 0]
    _warm_on_synthetic(engine, SyntheticFeed(SYMBOLS, PRICES, SIZES, 7, clock, 250, TradingCalendar(), WARM_DAYS),
                       clock.now_ns())
    assert [i["strategy"]["bars_needed"] for i in engine.status()["instruments"]] == [0, 0]
