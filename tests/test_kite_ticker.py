"""The Kite ticker client (real aiohttp WebSocket) against the local Kite server."""

import asyncio

import pytest

from engine.brokers.kite.rest import TokenException
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.kite.ticker_codec import Tick
from tests.kite_server import API_KEY, FakeKite

INFY, SBIN = 408065, 779521


def full(token: int, price: float, stamp: int) -> Tick:
    return Tick(token, price, "full", True, exchange_timestamp=stamp, last_trade_time=stamp)


@pytest.fixture
async def feed():
    server = FakeKite()
    await server.start()
    got, orders = [], []
    ticker = KiteTicker(API_KEY, lambda: server.access_token, [INFY, SBIN],
                        lambda t, p, ts, v, rcv: got.extend(zip(t.tolist(), p.tolist(), ts.tolist(), strict=True)),
                        orders.append, url=f"{server.base.replace('http', 'ws')}/ws", max_backoff_s=0.2)
    task = asyncio.create_task(ticker.run())
    await wait(lambda: server.sockets and server.modes)
    yield server, ticker, got, orders
    task.cancel()
    await server.stop()


async def wait(predicate, timeout: float = 60.0):  # generous: it returns as soon as it holds
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_it_subscribes_every_instrument_in_full_mode(feed):
    server, *_ = feed
    assert server.modes == {INFY: "full", SBIN: "full"}


async def test_ticks_arrive_to_the_paise_stamped_with_the_exchange_time(feed):
    server, _, got, _ = feed
    await server.push([full(INFY, 1074.35, 1795405501), full(SBIN, 801.05, 1795405502)])
    await wait(lambda: len(got) == 2)
    assert got == [(INFY, 1074.35, 1795405501 * 10**9), (SBIN, 801.05, 1795405502 * 10**9)]


async def test_a_garbled_frame_is_counted_and_skipped_and_the_feed_lives_on(feed):
    server, ticker, got, _ = feed
    await server.push_raw(b"\x00\x01\x00\xb8" + b"\x00" * 20)
    await server.push([full(INFY, 1074.4, 1795405503)])
    await wait(lambda: got)
    assert ticker.garbled == 1 and got[0][1] == 1074.4


async def test_heartbeats_are_not_ticks(feed):
    server, ticker, got, _ = feed
    await server.push_raw(b"\x00")
    await server.push([full(INFY, 1074.45, 1795405504)])
    await wait(lambda: got)
    assert len(got) == 1 and ticker.frames == 2


async def test_order_updates_in_text_frames_reach_the_engine(feed):
    server, _, _, orders = feed
    await server.push_raw('{"type": "order", "data": {"order_id": "1", "status": "COMPLETE", "tag": "ot1"}}')
    await wait(lambda: orders)
    assert orders == [{"order_id": "1", "status": "COMPLETE", "tag": "ot1"}]


async def test_a_dropped_connection_reconnects_resubscribes_and_skips_the_snapshot(feed):
    server, ticker, got, _ = feed
    await server.push([full(INFY, 1074.35, 1795405501)])
    await wait(lambda: len(got) == 1)
    server.modes.clear()
    await server.drop()
    await wait(lambda: server.sockets and server.modes)
    await server.push([full(INFY, 1074.35, 1795405501)])  # Kite's snapshot on the new connection
    await server.push([full(INFY, 1074.5, 1795405502)])
    await wait(lambda: len(got) == 2)
    assert ticker.reconnects == 1 and [g[1] for g in got] == [1074.35, 1074.5] and ticker.duplicates == 1


async def test_a_reconnect_is_announced_so_missed_order_updates_can_be_caught_up(feed):
    server, ticker, _, _ = feed
    announced = []
    ticker.on_reconnect = lambda: announced.append(ticker.connected)
    server.modes.clear()
    await server.drop()
    await wait(lambda: server.sockets and server.modes)
    await wait(lambda: announced)
    assert announced == [True]


async def test_a_refused_token_is_a_token_exception_not_an_endless_retry():
    server = FakeKite()
    await server.start()
    ticker = KiteTicker(API_KEY, lambda: "expired", [INFY], lambda *a: None, lambda o: None,
                        url=f"{server.base.replace('http', 'ws')}/ws")
    try:
        with pytest.raises(TokenException, match="HTTP 403"):
            await asyncio.wait_for(ticker.run(), 60)  # an endless retry would hit this
    finally:
        await server.stop()


async def test_cancelling_the_ticker_stops_it_instead_of_reconnecting():
    server = FakeKite()
    await server.start()
    ticker = KiteTicker(API_KEY, lambda: server.access_token, [INFY], lambda *a: None, lambda o: None,
                        url=f"{server.base.replace('http', 'ws')}/ws", max_backoff_s=0.05)
    task = asyncio.create_task(ticker.run())
    await wait(lambda: server.sockets)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.3)
    try:
        assert task.cancelled() and ticker.reconnects == 0 and not server.sockets
    finally:
        await server.stop()


@pytest.fixture
async def volumes():
    """A ticker that records (token, quantity traded since that instrument's previous tick)."""
    server = FakeKite()
    await server.start()
    got = []
    ticker = KiteTicker(API_KEY, lambda: server.access_token, [INFY, SBIN],
                        lambda t, p, ts, v, rcv: got.extend(zip(t.tolist(), v.tolist(), strict=True)),
                        lambda row: None, url=f"{server.base.replace('http', 'ws')}/ws")
    task = asyncio.create_task(ticker.run())
    await wait(lambda: server.sockets and server.modes)
    yield server, got
    task.cancel()
    await server.stop()


def traded(token: int, stamp: int, volume: int, last_quantity: int) -> Tick:
    return Tick(token, 1074.35, "full", True, exchange_timestamp=stamp, volume=volume, last_quantity=last_quantity)


async def test_each_tick_weighs_what_traded_since_the_instruments_previous_tick(volumes):
    server, got = volumes
    await server.push([traded(INFY, 1795405501, 120_000, 5), traded(SBIN, 1795405501, 90_000, 7)])
    await server.push([traded(INFY, 1795405502, 120_250, 50)])
    await server.push([traded(INFY, 1795405503, 120_250, 50)])
    await wait(lambda: len(got) == 4)
    assert got == [(INFY, 5.0), (SBIN, 7.0), (INFY, 250.0), (INFY, 0.0)]


async def test_a_volume_that_starts_over_weighs_the_last_trade(volumes):
    server, got = volumes
    await server.push([traded(INFY, 1795405501, 120_000, 5)])
    await server.push([traded(INFY, 1795491901, 40, 40)])  # the next day
    await wait(lambda: len(got) == 2)
    assert got[1] == (INFY, 40.0)


async def test_ltp_mode_ticks_carry_no_volume_and_weigh_one(volumes):
    server, got = volumes
    await server.push([Tick(INFY, 1074.35, "ltp", True), Tick(INFY, 1074.4, "ltp", True)])
    await wait(lambda: len(got) == 2)
    assert got == [(INFY, 1.0), (INFY, 1.0)]
