"""A paper engine with the process's own web server and monitoring page (``engine.runtime.app._serve``),
in the test's event loop: ticks go in by hand, on a clock the test sets, as the feed would send them."""

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from aiohttp import web

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.data.recorder import Recorder
from engine.engine import Engine
from engine.runtime.app import Runtime, _serve
from engine.runtime.monitor import Monitor
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import DEFAULT, ns

OWNER, MEMBER, GROUP = 77, 78, -1001  # the owner's private chat has the owner's id; the member is no admin
FAST = {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False}  # long on the 3rd of 100, 99, 101


class ManualClock:
    def __init__(self, at: str) -> None:
        self.ns = ns(at)

    def now_ns(self) -> int:
        return self.ns


@dataclass
class Desk:
    rt: Runtime
    runner: web.AppRunner
    clock: ManualClock
    task: asyncio.Task  # the page's task, as the process runs it

    @property
    def engine(self) -> Engine:
        return self.rt.engine

    @property
    def monitor(self) -> Monitor:
        return self.rt.tasks["monitor"].__self__  # the process's page model: its task is its ``run``

    @property
    def base(self) -> str:
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def link(self) -> str:
        return self.rt.web_link()[0]

    def tick(self, at: str, price: float, symbol: str = "NSE:INFY") -> None:
        """One tick as the feed pump hands it over (the time of the last tick for /healthz included)."""
        self.clock.ns = ts = ns(at)
        self.rt.last_tick_ns = ts
        self.engine.on_tick(self.engine.index[symbol], ts, price)

    def morning(self, start: str, seconds: int, every_s: int = 10, seed: int = 3) -> None:
        """A random walk for every instrument from ``start``, a tick each ``every_s`` seconds, each
        sampled into the charts as the page's task does once a second."""
        rng = np.random.default_rng(seed)
        h, m, s = (int(x) for x in start.split(":"))
        prices = {sym: 1500.0 if k == 0 else 800.0 for k, sym in enumerate(self.engine.arrays.symbols)}
        for step in range(0, seconds, every_s):
            t = h * 3600 + m * 60 + s + step
            at = f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"
            for sym in prices:
                prices[sym] = round((prices[sym] * (1 + rng.normal(0, 0.0012))) / 0.05) * 0.05
                self.tick(at, prices[sym], sym)
            self.monitor.sample()


def write_config(path: Path, symbols: tuple[str, ...], strategy: dict, server: dict) -> None:
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["instruments"] = [{"symbol": s, "tick_size": 0.05, "quantity": 10, "strategy": strategy,
                            "bracket": {"target_pct": 1.0, "stop_pct": 0.5, "trail_pct": None}} for s in symbols]
    data["bot"].update({"allowed_chats": [OWNER, GROUP], "admins": [OWNER]})
    data["server"].update(server)
    path.write_bytes(orjson.dumps(data))


@contextlib.asynccontextmanager
async def open_desk(tmp_path: Path, monkeypatch, symbols: tuple[str, ...] = ("NSE:INFY",), strategy: dict = FAST,
                    server: dict | None = None, at: str = "10:00:00",
                    recorded: tuple[tuple[str, float], ...] = ()) -> AsyncIterator[Desk]:
    """``recorded``: NSE:INFY's ticks of the day an earlier run recorded (time, price) before this start."""
    monkeypatch.setenv("PORT", "0")
    write_config(tmp_path / "otrade.json", symbols, strategy, server or {})
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    clock = ManualClock(at)
    bus = EventBus()
    journal = Journal(tmp_path / "data", clock.now_ns)
    engine = Engine(cfg, PaperBroker({s: 0.05 for s in symbols}, clock.now_ns), bus, journal, clock.now_ns)
    engine.start_session()
    rt = Runtime(argparse.Namespace(console=False, clock=None), manager, engine, bus, clock, tmp_path / "data",
                 LogBuffer(), started_ns=clock.now_ns())
    rt.health["feed"] = lambda: "synthetic"
    if recorded:
        rt.recorder = Recorder(tmp_path / "data", symbols, synthetic=True, now_ns=clock.now_ns)
        for when, price in recorded:
            rt.recorder.add((0, ns(when), price, 1.0))
        await rt.recorder.close()
    runner = await _serve(rt, cfg.server, None)
    assert runner is not None, "the web server did not start"
    task = asyncio.create_task(rt.tasks["monitor"]())
    try:
        yield Desk(rt, runner, clock, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        journal.close()
