"""``otrade run``: the engine, its paper broker and feed, the journal, in one asyncio loop."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from config import ConfigError, ConfigManager
from engine.brokers.paper import PaperBroker
from engine.clock import RehearsalClock, SystemClock
from engine.engine import Engine, State
from engine.events import EventBus, Subscription
from engine.feeds import ReplayFeed, SyntheticFeed
from engine.journal import Journal
from engine.layout import IST, IST_OFFSET_NS, NS_PER_DAY
from engine.ticks import load

log = logging.getLogger("otrade")


def _setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _feed(cfg, clock):
    symbols = [i.symbol for i in cfg.instruments]
    if cfg.paper.feed == "replay":
        ticks, _ = load(cfg.paper.replay_file, symbols)
        return ReplayFeed(ticks, cfg.paper.speed, clock)
    prices = [1500.0 if i.tick_size >= 0.1 else 800.0 for i in cfg.instruments]
    return SyntheticFeed(symbols, prices, [i.tick_size for i in cfg.instruments], cfg.paper.seed, clock,
                         cfg.paper.tick_interval_ms)


async def _pump(feed, engine: Engine, close_at_end: bool) -> None:
    async for instr, ts, price, volume in feed:
        engine.on_tick(instr, ts, price, volume)
    if close_at_end:
        engine.end_session()
        log.info("replay finished: %d trades, day P&L %.2f", len(engine.trades()), engine.pnl()["day"])


async def _keep_session(engine: Engine, clock) -> None:
    """Open and close the session by the clock (weekdays, the configured window)."""
    session = engine.cfg.session
    while True:
        now = clock.now_ns()
        tod = (now + IST_OFFSET_NS) % NS_PER_DAY
        weekday = datetime.fromtimestamp(now / 1e9, IST).weekday() < 5
        inside = weekday and session.ns_after_midnight("open") <= tod < session.ns_after_midnight("close")
        if inside and engine.state in (State.IDLE, State.CLOSED):
            engine.start_session()
        elif not inside and engine.state in (State.RUNNING, State.PAUSED):
            engine.end_session()
        await asyncio.sleep(0.5)


async def _print_events(sub: Subscription) -> None:
    while True:
        event = await sub.get()
        print(f"[{datetime.fromtimestamp(event.ts_ns / 1e9, IST):%H:%M:%S}] {event.kind}: {event.data}",
              flush=True)


async def run(args: argparse.Namespace) -> int:
    _setup_logging()
    data_dir = Path(os.environ.get("OTRADE_DATA_DIR", "data"))
    manager = ConfigManager(Path(args.config), data_dir)
    try:
        cfg = manager.load()
    except ConfigError as exc:
        log.error("config %s is not valid:\n%s", args.config, exc)
        return 1
    clock = RehearsalClock(datetime.fromisoformat(args.clock)) if args.clock else SystemClock()
    bus = EventBus()
    journal = Journal(data_dir, clock.now_ns)
    broker = PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock.now_ns)
    engine = Engine(cfg, broker, bus, journal, clock.now_ns)
    manager.subscribe(lambda old, new, changes: engine.apply_config(new))
    log.info("paper trading %s; data in %s", ", ".join(i.symbol for i in cfg.instruments), data_dir.resolve())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A replay's sessions follow its ticks' own dates; a live feed's follow the clock.
    replay = cfg.paper.feed == "replay"
    coros = [journal.run(), _pump(_feed(cfg, clock), engine, replay)]
    if not replay:
        coros.append(_keep_session(engine, clock))
    tasks = [asyncio.create_task(coro) for coro in coros]
    if args.console:
        tasks.append(asyncio.create_task(_print_events(bus.subscribe())))
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], timeout=args.duration,
                                 return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception():
            log.error("task failed", exc_info=task.exception())
    log.info("stopping: %s", engine.status()["state"])
    for task in [waiter, *tasks]:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    journal.flush(fsync=True)
    return 0
