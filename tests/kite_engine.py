"""An engine trading through the local Kite server (REST worker and ticker), for live-mode tests."""

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.kite.ticker_codec import Tick
from engine.engine import Engine
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from tests.conftest import make_config
from tests.kite_server import API_KEY, FakeKite

INFY = 408065
T0 = int(datetime.fromisoformat("2026-11-23T10:00:00+05:30").timestamp())


async def wait(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return predicate()
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


@asynccontextmanager
async def kite_engine(tmp_path, server: FakeKite | None = None, bracket: dict | None = None, timeout: float = 2.0,
                      tick_size: float = 0.05):
    """Yields (server, engine, bus): INFY, 10 a trade, a 5% target and stop, the session open, a
    clock standing at 10:00 IST (tests move it by hand)."""
    server = server or FakeKite()
    await server.start()
    rest = KiteREST(API_KEY, server.access_token, server.base, timeout=timeout)
    cfg = make_config(bracket=bracket or {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None},
                      tick_size=tick_size)
    clock = lambda: T0 * 10**9  # noqa: E731
    bus = EventBus()
    journal = Journal(tmp_path, clock)
    broker = KiteBroker(rest, journal, {"NSE:INFY": tick_size}, clock)
    engine = Engine(cfg, broker, bus, journal, clock)
    broker.on_token_error = engine.token_expired
    broker.on_error = engine.alert
    engine.start_session()
    ticker = KiteTicker(API_KEY, lambda: rest.access_token, [INFY],
                        lambda t, p, ts, v, rcv: [engine.on_tick(0, int(x), float(y), float(q))
                                                   for x, y, q in zip(ts, p, v, strict=True)],
                        broker.update, url=f"{server.base.replace('http', 'ws')}/ws")
    tasks = [asyncio.create_task(broker.run()), asyncio.create_task(ticker.run())]
    await wait(lambda: server.modes)
    try:
        yield server, engine, bus
    finally:
        for task in tasks:
            task.cancel()
        await rest.close()
        await server.stop()


async def prices(server, values, start=0):
    for k, p in enumerate(values):
        await server.push([Tick(INFY, p, "full", True, exchange_timestamp=T0 + start + k)])
    await asyncio.sleep(0.05)


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


def real_time(engine) -> None:
    """The engine's clock runs from 10:00 IST in real time (tend()'s 1 s windows pass for real)."""
    start = time.monotonic_ns()
    engine.now_ns = lambda: T0 * 10**9 + time.monotonic_ns() - start
