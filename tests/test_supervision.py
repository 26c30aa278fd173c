"""A crashed task is logged, alerted and restarted; it never takes the process down silently."""

import argparse
import asyncio

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.engine import Engine
from engine.runtime.app import Runtime, _supervise
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import make_config


async def test_a_crashing_task_is_alerted_and_restarted(tmp_path):
    bus = EventBus()
    sub = bus.subscribe()
    clock = lambda: 0  # noqa: E731
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, clock), bus, Journal(tmp_path, clock), clock)
    rt = Runtime(argparse.Namespace(), ConfigManager(tmp_path / "c.json", tmp_path, default_catalog()), engine, bus,
                 type("C", (), {"now_ns": staticmethod(clock)})(), tmp_path, LogBuffer())
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("bot fell over")

    await asyncio.wait_for(_supervise(rt, "bot", flaky), 60)
    alerts = [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert len(runs) == 3 and len(alerts) == 2 and "bot crashed (RuntimeError: bot fell over)" in alerts[0].data["text"]
