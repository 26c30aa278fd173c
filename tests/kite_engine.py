"""An engine trading through the local Kite server (REST worker and ticker), for live-mode tests."""

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.kite.ticker_codec import Tick
from engine.core import layout as L
from engine.engine import Engine
from engine.live.orders import Caps
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from tests.conftest import make_config
from tests.kite_server import API_KEY, IN_FLIGHT, STOPS, WORKING, FakeKite
from tests.waiting import LIMIT_S, T, until

INFY = 408065
T0 = int(datetime.fromisoformat("2026-11-23T10:00:00+05:30").timestamp())
TICK = 0.1  # INFY's grid at the server, in the protection tests
TRAILING = {"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": 0.5}  # fill 101.50: stop 100.50, target 106.60


class ServerClock:
    """The local Kite server's clock (``FakeKite(clock=...)``), moved by hand: rate windows, book
    lags and rows stamped in one second for as long as needed, without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def wait(predicate: Callable[[], T], timeout: float = LIMIT_S) -> T:
    """``until``, its limit named ``timeout`` as the live tests name it."""
    return await until(predicate, timeout, every=0.02)


async def connect(server: FakeKite, rest: KiteREST, broker: KiteBroker, engine: Engine) -> list[asyncio.Task]:
    """Wires ``engine`` and ``broker`` as the app does, opens the session and starts the broker's
    worker and a ticker on INFY at ``server``; returns their tasks once the ticker is subscribed."""
    broker.on_token_error = engine.token_expired
    broker.on_error = engine.alert
    engine.start_session()
    ticker = KiteTicker(API_KEY, lambda: rest.access_token, [INFY],
                        lambda t, p, ts, v, rcv: [engine.on_tick(0, int(x), float(y), float(q))
                                                   for x, y, q in zip(ts, p, v, strict=True)],
                        broker.update, url=f"{server.base.replace('http', 'ws')}/ws")
    tasks = [asyncio.create_task(broker.run()), asyncio.create_task(ticker.run())]
    await wait(lambda: server.listening(INFY))
    return tasks


async def disconnect(tasks: list[asyncio.Task]) -> None:
    """Stops what ``connect`` started, waiting until each task has ended."""
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def kite_engine(tmp_path, server: FakeKite | None = None, bracket: dict | None = None, timeout: float = 2.0,
                      tick_size: float = 0.05, caps: Caps | None = None):
    """Yields (server, engine, bus): INFY, 10 a trade, a 5% target and stop, the session open, a
    clock standing at 10:00 IST (tests move it by hand). A server already started is the caller's:
    it outlives this engine, so a second ``kite_engine`` on it and the same ``tmp_path`` (its
    journal) is OTrade restarted against the same Kite."""
    server = server or FakeKite()
    ours = server.runner is None
    if ours:
        await server.start()
    rest = KiteREST(API_KEY, server.access_token, server.base, timeout=timeout)
    cfg = make_config(bracket=bracket or {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None},
                      tick_size=tick_size)
    clock = lambda: T0 * 10**9  # noqa: E731
    bus = EventBus()
    journal = Journal(tmp_path, clock)
    broker = KiteBroker(rest, journal, {"NSE:INFY": tick_size}, clock, caps)
    engine = Engine(cfg, broker, bus, journal, clock)
    tasks = await connect(server, rest, broker, engine)
    try:
        yield server, engine, bus
    finally:
        await disconnect(tasks)
        journal.flush()
        journal.close()
        await rest.close()
        if ours:
            await server.stop()
        else:
            await wait(lambda: not server.listening(INFY))  # the next run's ticks are the next run's alone


@asynccontextmanager
async def restarted(tmp_path, server: FakeKite, **options):
    """Yields (engine, bus): OTrade started again (``kite_engine`` with ``options``) on the same Kite
    and journal, reconciled with Kite's book, then today restored from the journal, as the app starts."""
    async with kite_engine(tmp_path, server, **options) as (_, engine, bus):
        await engine.broker.resync(engine.reconcile, "start")
        engine.restore()
        yield engine, bus


async def prices(server, values, start=0):
    for k, p in enumerate(values):
        await server.push([Tick(INFY, p, "full", True, exchange_timestamp=T0 + start + k)])
    await asyncio.sleep(0.05)


async def settle(engine, price: float) -> None:
    """Until the engine has taken a tick at ``price`` and no order request of its is with Kite."""
    await wait(lambda: engine.arrays.st[0, L.S_LTP] == price and engine.broker.in_flight == 0)


async def trail(server, engine, values, start: int = 100) -> None:
    """Ticks one at a time (exchange and feed agreeing), each taken and its order requests
    answered before the next: a trailing stop moves once per tick."""
    for k, price in enumerate(values):
        await server.push([Tick(INFY, price, "full", True, exchange_timestamp=T0 + start + k)])
        await settle(engine, price)


def kernel_stop(engine, j: int = 0) -> float:
    """The stop level the kernel trades on (crossed or not, trailed from): by the protection
    contract, only what Kite confirmed."""
    return float(engine.arrays.st[j, L.S_STOP])


def working_stops(server, symbol: str = "INFY", side: str = "SELL") -> list[dict]:
    return [r for r in server.working().values() if r["tradingsymbol"] == symbol
            and r["transaction_type"] == side and r["order_type"] in STOPS]


def uncovered(server, quantity: int, since: float, symbol: str = "INFY", side: str = "SELL"
              ) -> list[tuple[float, float]]:
    """Spans of the server's clock since ``since`` (to now) in which Kite's working ``side`` stops for
    ``symbol`` left less than ``quantity`` covered, from the orders' history rows."""
    events = sorted(((row["_at"], order_id, row["quantity"] - row["filled_quantity"]
                      if row["status"] in WORKING + IN_FLIGHT else 0)
                     for order_id, rows in server.orders.items() for row in rows
                     if row["tradingsymbol"] == symbol and row["transaction_type"] == side
                     and row["order_type"] in STOPS), key=lambda e: e[0])  # stable: an order's rows in order
    cover: dict[str, int] = {}
    spans, gap = [], None
    for at, order_id, left in events:
        cover[order_id] = left
        short = sum(cover.values()) < quantity
        if short and gap is None:
            gap = max(at, since)
        elif not short and gap is not None:
            if at > gap:
                spans.append((gap, at))
            gap = None
    if gap is not None:
        spans.append((gap, server.clock()))
    return spans


async def entry_sent(server) -> str:
    """Ticks that make the EMA cross buy; returns the MARKET entry's Kite order id."""
    await prices(server, [100.0, 99.0, 101.0])
    [(entry_id, entry)] = (await wait(lambda: server.working())).items()
    assert (entry["order_type"], entry["transaction_type"]) == ("MARKET", "BUY")
    return entry_id


async def enter(server, engine):
    """An entry filled at 101.50; returns the bracket legs by order type: {type: (id, row)}."""
    await server.complete(await entry_sent(server), 101.5)
    legs = await wait(lambda: len(server.working()) == 2 and server.working())
    return {row["order_type"]: (oid, row) for oid, row in legs.items()}


def alerts(sub) -> list:
    return [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]


def net_at_kite(server, symbol="INFY") -> int:
    """The account's position at Kite: what every order filled, bought minus sold."""
    return sum(r[-1]["filled_quantity"] * (1 if r[-1]["transaction_type"] == "BUY" else -1)
               for r in server.orders.values() if r[-1]["tradingsymbol"] == symbol)


def working_of(server, order_type: str) -> list[dict]:
    return [r for r in server.working().values() if r["order_type"] == order_type]


@asynccontextmanager
async def tending(engine, every: float = 1.0):
    """``engine.tend()`` every ``every`` s in the background, as the app runs it."""
    async def tend() -> None:
        while True:
            await asyncio.sleep(every)
            engine.tend()

    task = asyncio.create_task(tend())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def real_time(engine) -> None:
    """The engine's clock runs from 10:00 IST in real time (tend()'s 1 s windows pass for real)."""
    start = time.monotonic_ns()
    engine.now_ns = lambda: T0 * 10**9 + time.monotonic_ns() - start
