"""The ticker's reconnects against the local Kite server: an engine callback that raises costs its
packet, not the connection; every lost connection is logged, counted and announced once; and the
subscription can change on the live socket and survives a reconnect."""

import asyncio
import logging
import socket

import aiohttp
import orjson
import pytest
from aiohttp import web

from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.kite.ticker_codec import Tick
from tests.kite_server import API_KEY, FakeKite
from tests.test_kite_ticker import wait

INFY, SBIN, RELIANCE = 408065, 779521, 738561
LOGGER = "engine.brokers.kite.ticker"


def full(token: int, price: float, stamp: int, volume: int = 0, last_quantity: int = 0) -> Tick:
    return Tick(token, price, "full", True, exchange_timestamp=stamp, last_trade_time=stamp, volume=volume,
                last_quantity=last_quantity)


class Engine:
    """The engine's side of the ticker: what reached it, and callbacks that can be told to raise."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, float, float]] = []  # (token, price, traded)
        self.orders: list[dict] = []
        self.errors: list[Exception] = []
        self.resyncs = 0
        self.fail_ticks = self.fail_orders = 0  # raise on this many calls to come

    def on_ticks(self, tokens, prices, ts, traded, received) -> None:
        if self.fail_ticks:
            self.fail_ticks -= 1
            raise ZeroDivisionError("a bug in the engine's tick handler")
        self.ticks.extend(zip(tokens.tolist(), prices.tolist(), traded.tolist(), strict=True))

    def on_order(self, row: dict) -> None:
        if self.fail_orders:
            self.fail_orders -= 1
            raise KeyError("filled_quantity")
        self.orders.append(row)

    def on_reconnect(self) -> None:
        self.resyncs += 1


def ws_url(server: FakeKite) -> str:
    return f"{server.base.replace('http', 'ws')}/ws"


def ticker_for(engine: Engine, url: str, tokens: list[int], token=lambda: "tok-day-1") -> KiteTicker:
    return KiteTicker(API_KEY, token, tokens, engine.on_ticks, engine.on_order, url=url, max_backoff_s=0.2,
                      on_reconnect=engine.on_reconnect, on_callback_error=engine.errors.append)


@pytest.fixture
async def feed():
    server = FakeKite()
    await server.start()
    engine = Engine()
    ticker = ticker_for(engine, ws_url(server), [INFY, SBIN], lambda: server.access_token)
    task = asyncio.create_task(ticker.run())
    await wait(lambda: server.sockets and server.modes)
    yield server, ticker, engine
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.stop()


@pytest.fixture
def sent(monkeypatch):
    """Every text message the ticker sends on its socket, decoded."""
    messages = []
    send = aiohttp.ClientWebSocketResponse.send_str

    async def spy(self, data, *args, **kwargs):
        messages.append(orjson.loads(data))
        return await send(self, data, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "send_str", spy)
    return messages


async def test_a_tick_callback_that_raises_keeps_the_connection_and_later_ticks_arrive(feed, caplog):
    server, ticker, engine = feed
    socket_before = server.sockets[0]
    engine.fail_ticks = 1
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await server.push([full(INFY, 1074.35, 1795405501)])
        await wait(lambda: ticker.callback_errors == 1)
        await server.push([full(INFY, 1074.4, 1795405502), full(SBIN, 801.05, 1795405502)])
        await wait(lambda: len(engine.ticks) == 2)
    assert [(t, p) for t, p, _ in engine.ticks] == [(INFY, 1074.4), (SBIN, 801.05)]
    assert ticker.reconnects == 0 and engine.resyncs == 0 and server.sockets == [socket_before]
    assert ticker.connected and ticker.callback_errors == 1
    assert [type(e) for e in engine.errors] == [ZeroDivisionError]
    [record] = [r for r in caplog.records if "on_ticks" in r.getMessage()]
    assert record.exc_info is not None and "ZeroDivisionError" in caplog.text  # with its traceback


async def test_an_order_callback_that_raises_keeps_the_connection_and_later_updates_arrive(feed, caplog):
    server, ticker, engine = feed
    engine.fail_orders = 1
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await server.push_raw('{"type": "order", "data": {"order_id": "1", "status": "OPEN"}}')
        await server.push_raw('{"type": "order", "data": {"order_id": "1", "status": "COMPLETE"}}')
        await wait(lambda: engine.orders)
    await server.push([full(INFY, 1074.35, 1795405501)])
    await wait(lambda: engine.ticks)
    assert engine.orders == [{"order_id": "1", "status": "COMPLETE"}]
    assert ticker.reconnects == 0 and ticker.callback_errors == 1 and [type(e) for e in engine.errors] == [KeyError]
    assert any("on_order" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_callback_failing_on_every_tick_never_reconnects(feed):
    server, ticker, engine = feed
    engine.fail_ticks = 50
    for k in range(50):
        await server.push([full(INFY, 1074.35 + k / 20, 1795405501 + k)])
    await wait(lambda: ticker.callback_errors == 50)
    await server.push([full(INFY, 1080.0, 1795405600)])
    await wait(lambda: engine.ticks)
    assert ticker.reconnects == 0 and len(engine.errors) == 50 and engine.ticks[0][1] == 1080.0


async def test_a_hook_that_raises_too_does_not_take_the_feed_down(feed):
    server, ticker, engine = feed
    ticker.on_callback_error = lambda exc: 1 / 0
    engine.fail_ticks = 1
    await server.push([full(INFY, 1074.35, 1795405501)])
    await server.push([full(INFY, 1074.4, 1795405502)])
    await wait(lambda: engine.ticks)
    assert ticker.reconnects == 0 and ticker.callback_errors == 1


async def test_a_dropped_socket_is_logged_counted_and_announced_once_after_reconnecting(feed, caplog):
    server, ticker, engine = feed
    announced = []
    ticker.on_reconnect = lambda: announced.append((ticker.connected, len(server.sockets)))
    server.modes.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await server.drop()
        await wait(lambda: server.sockets and server.modes and announced)
    await server.push([full(INFY, 1074.35, 1795405501)])
    await wait(lambda: engine.ticks)
    await asyncio.sleep(0.3)  # nothing more is announced while the new connection lasts
    assert announced == [(True, 1)] and ticker.reconnects == 1
    [lost] = [r for r in caplog.records if "connection lost" in r.getMessage()]
    assert lost.levelno == logging.WARNING
    assert "closed by the server" in lost.getMessage() and "reconnecting in 0.20 s" in lost.getMessage()


async def test_each_drop_is_counted_and_announced(feed):
    server, ticker, engine = feed
    for n in (1, 2, 3):
        server.modes.clear()
        await server.drop()
        await wait(lambda: server.sockets and server.modes and engine.resyncs == n)  # noqa: B023
        assert ticker.reconnects == n
    await asyncio.sleep(0.3)
    assert engine.resyncs == 3 and ticker.reconnects == 3


async def test_a_resync_hook_that_raises_does_not_loop_the_reconnects(feed):
    server, ticker, engine = feed

    def broken() -> None:
        raise RuntimeError("resync failed to start")

    ticker.on_reconnect = broken
    server.modes.clear()
    await server.drop()
    await wait(lambda: server.sockets and server.modes and ticker.callback_errors == 1)
    await asyncio.sleep(0.4)
    assert ticker.reconnects == 1 and ticker.connected and isinstance(engine.errors[0], RuntimeError)


async def test_connect_attempts_that_fail_are_logged_but_are_not_lost_connections(caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = Engine()
    ticker = ticker_for(engine, f"ws://127.0.0.1:{port}/ws", [INFY])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        task = asyncio.create_task(ticker.run())
        await wait(lambda: sum("could not connect" in r.getMessage() for r in caplog.records) >= 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and ticker.reconnects == 0 and engine.resyncs == 0
    assert all(r.levelno == logging.WARNING for r in caplog.records if "could not connect" in r.getMessage())


async def test_set_tokens_unsubscribes_the_old_and_sets_the_mode_of_the_new_on_the_live_socket(feed, sent):
    server, ticker, _ = feed
    await ticker.set_tokens([SBIN, RELIANCE])
    await wait(lambda: RELIANCE in server.modes)
    assert sent == [{"a": "unsubscribe", "v": [INFY]}, {"a": "mode", "v": ["full", [RELIANCE]]}]
    assert server.requests[-2:] == ["unsubscribe", "mode"] and server.modes[RELIANCE] == "full"
    assert ticker.tokens == [SBIN, RELIANCE] and ticker.reconnects == 0


async def test_set_tokens_with_the_same_set_sends_nothing(feed, sent):
    _, ticker, _ = feed
    await ticker.set_tokens([SBIN, INFY, INFY])
    assert sent == []


async def test_a_reconnect_subscribes_the_new_set(feed, sent):
    server, ticker, engine = feed
    await ticker.set_tokens([SBIN, RELIANCE])
    await wait(lambda: RELIANCE in server.modes)
    server.modes.clear()
    sent.clear()
    await server.drop()
    await wait(lambda: server.sockets and server.modes and engine.resyncs)
    assert server.modes == {SBIN: "full", RELIANCE: "full"}
    assert sent == [{"a": "mode", "v": ["full", [SBIN, RELIANCE]]}]


async def test_set_tokens_while_not_connected_is_what_the_connection_subscribes(sent):
    server = FakeKite()
    await server.start()
    ticker = ticker_for(Engine(), ws_url(server), [INFY, SBIN], lambda: server.access_token)
    await ticker.set_tokens([RELIANCE])
    task = asyncio.create_task(ticker.run())
    try:
        await wait(lambda: server.sockets and server.modes)
        assert server.modes == {RELIANCE: "full"} and sent == [{"a": "mode", "v": ["full", [RELIANCE]]}]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


async def test_a_removed_token_is_forgotten_so_its_return_starts_afresh(feed):
    server, ticker, engine = feed
    await server.push([full(INFY, 1074.35, 1795405501, volume=120_000, last_quantity=5)])
    await wait(lambda: engine.ticks)
    await ticker.set_tokens([SBIN])
    await ticker.set_tokens([SBIN, INFY])
    # older than the tick delivered before INFY went, and the same day volume: kept, INFY starts over
    await server.push([full(INFY, 1074.3, 1795405500, volume=120_000, last_quantity=7)])
    await server.push([full(INFY, 1074.4, 1795405900, volume=180_000, last_quantity=9)])
    await wait(lambda: len(engine.ticks) == 3)
    assert engine.ticks == [(INFY, 1074.35, 5.0), (INFY, 1074.3, 7.0), (INFY, 1074.4, 60_000.0)]
    assert ticker.duplicates == 0


async def test_a_refused_handshake_is_logged_without_the_url_that_carries_the_token(caplog):
    async def busy(request):
        return web.Response(status=503, text="busy")

    app = web.Application()
    app.router.add_get("/ws", busy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    ticker = ticker_for(Engine(), f"ws://127.0.0.1:{port}/ws", [INFY], token=lambda: "secret-token-42")
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            task = asyncio.create_task(ticker.run())
            await wait(lambda: any("could not connect" in r.getMessage() for r in caplog.records))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
    assert "HTTP 503" in caplog.text and "secret-token-42" not in caplog.text
