"""A feed that goes quiet in session stops new entries until ticks flow again."""

import argparse
import asyncio

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.engine import Engine, State
from engine.runtime.app import Runtime, _watch_feed
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import make_config, ns
from tests.waiting import until


class Clock:
    def __init__(self) -> None:
        self.now = ns("10:00:00")

    def now_ns(self) -> int:
        return self.now


async def test_a_quiet_feed_pauses_entries_and_its_return_resumes_them(tmp_path):
    clock, bus = Clock(), EventBus()
    sub = bus.subscribe()
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, clock.now_ns), bus,
                    Journal(tmp_path, clock.now_ns), clock.now_ns)
    engine.start_session()
    manager = ConfigManager(tmp_path / "c.json", tmp_path, default_catalog())
    rt = Runtime(argparse.Namespace(), manager, engine, bus, clock, tmp_path,
                 LogBuffer(), started_ns=clock.now, last_tick_ns=clock.now - 31 * 10**9)
    watch = asyncio.create_task(_watch_feed(rt))
    try:
        await until(lambda: engine.state != State.RUNNING)  # the watch looks once a second
        assert (engine.state, engine.state_reason) == (State.PAUSED, "feed stalled")
        rt.last_tick_ns = clock.now
        await until(lambda: engine.state == State.RUNNING)
    finally:
        watch.cancel()
    texts = [e.data["text"] for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert texts == ["No tick for 31 s: new entries paused until the feed is back",
                     "Ticks are flowing again: entries resumed"]
