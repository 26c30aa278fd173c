"""The eight ways live trading lost money, each against the strict local Kite server (issue 9)."""

import asyncio
import time
from datetime import datetime

import pytest

from config import ConfigError
from engine.brokers.kite.live import Credentials, KiteLive
from engine.brokers.kite.ticker_codec import Tick
from engine.core import layout as L
from engine.core.layout import IST
from engine.services.events import ALERT
from engine.services.journal import Journal
from tests.conftest import make_config
from tests.kite_engine import INFY, T0, enter, entry_sent, kite_engine, prices, settle, wait
from tests.kite_server import API_KEY, API_SECRET, FakeKite


def alerts(sub) -> list:
    return [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]


def working_stops(server) -> list[dict]:
    return [r for r in server.working().values() if r["order_type"] in ("SL", "SL-M")]


def net_at_kite(server, symbol="INFY") -> int:
    return sum(r[-1]["filled_quantity"] * (1 if r[-1]["transaction_type"] == "BUY" else -1)
               for r in server.orders.values() if r[-1]["tradingsymbol"] == symbol)


async def test_a_hung_entry_answer_delays_neither_the_stop_nor_keeps_it_from_being_a_stop(tmp_path):
    """1: the entry's place call hangs while the ticker already says COMPLETE: the stop and target
    go out at once, and an SL-M Kite has not triggered is never re-priced into a market sell."""
    server = FakeKite()
    server.hang_s = 1.5
    server.fault("place", "hang-after")
    async with kite_engine(tmp_path, server=server, timeout=3.0) as (server, engine, _):
        await prices(server, [100.0, 99.0, 101.0])
        [entry_id] = await wait(lambda: list(server.orders))
        started = time.monotonic()
        await server.complete(entry_id, 101.5)
        await wait(lambda: working_stops(server) and len(server.working()) == 2)
        assert time.monotonic() - started < 1.0  # the entry's call is still hanging
        start = engine.now_ns()
        engine.now_ns = lambda: start + 60 * 10**9
        assert engine.watch.reprice_exits() == 0
        await wait(lambda: engine.broker.in_flight == 0)  # the hung answer arrives
        assert [r["transaction_type"] for r in server.working().values()] == ["SELL", "SELL"]
        assert engine.positions()[0]["qty"] == 10 and server.place_calls == 3


async def test_an_accepted_order_whose_follow_up_look_fails_is_not_taken_for_rejected(tmp_path):
    """2: the place succeeds, the follow-up history GET answers 503: the order is still Kite's
    to decide, and its later fill opens a protected position."""
    server = FakeKite(ws_order_messages="final")
    server.fault("history", "503", times=10)
    async with kite_engine(tmp_path, server=server) as (server, engine, _):
        entry_id = await entry_sent(server)
        order = engine.broker.order(engine.brackets[0].entry)
        assert order.working and order.status != "REJECTED"
        await server.complete(entry_id, 101.5)
        await wait(lambda: len(working_stops(server)) == 1)
        assert engine.positions()[0]["qty"] == 10 == net_at_kite(server)


async def test_a_reconcile_racing_the_entrys_fill_report_counts_the_fill_once(tmp_path):
    """3: Kite's positions already show the entry's fill when the reconcile runs; the entry's own
    report arrives after it. The position is 10, not 20."""
    server = FakeKite(positions_from_fills=True, ws_order_messages="none")
    async with kite_engine(tmp_path, server=server) as (server, engine, _):
        entry_id = await entry_sent(server)
        book = await engine.broker.rest.orders()  # read before the fill
        await server.complete(entry_id, 101.5)
        positions = (await engine.broker.rest.positions())["net"]
        engine.reconcile(positions, book)
        engine.broker.update(server.orders[entry_id][-1])  # the entry's fill report, late
        [stop] = await wait(lambda: working_stops(server))
        assert engine.positions()[0]["qty"] == 10 == stop["quantity"] == net_at_kite(server)


async def test_a_refused_square_off_exit_is_retried_with_backoff_not_on_every_tick(tmp_path):
    """4: after a refused square-off exit, ticks do not each cancel the bracket and send another."""
    async with kite_engine(tmp_path) as (server, engine, bus):
        await enter(server, engine)
        sub = bus.subscribe()
        day = datetime(2026, 11, 23, tzinfo=IST)
        engine.set_session_window(day.replace(hour=9, minute=15), day.replace(hour=15, minute=30),
                                  day.replace(hour=9, minute=59))
        server.reject_reason, server.reject_types = "RMS: exits blocked", {"MARKET"}
        placed = len(server.orders)
        await prices(server, [101.6], start=10)
        await wait(lambda: len(working_stops(server)) == 1 and not engine.brackets[0].exit)
        await prices(server, [101.7, 101.8, 101.9, 102.0, 102.1], start=11)
        await settle(engine, 102.1)
        cancels = sum(1 for rows in server.orders.values() if rows[-1]["status"] == "CANCELLED")
        assert len(server.orders) - placed == 1 and cancels == 0  # one exit; the bracket kept protecting
        assert any("square-off waits" in a.data["text"] for a in alerts(sub))


async def test_kites_tick_size_reaches_the_kernel_and_both_legs_are_accepted(tmp_path, monkeypatch):
    """5: the instruments file says 0.10, the config 0.05: the bracket is on Kite's grid."""
    async with kite_engine(tmp_path, tick_size=0.05) as (server, engine, _):
        monkeypatch.setenv("KITE_API_BASE", server.base)
        live = KiteLive(Credentials(API_KEY, API_SECRET, server.access_token), tmp_path, engine.journal,
                        engine.now_ns, ["NSE:INFY"], {"NSE:INFY": 0.05}, 10)
        [warning] = await live.prepare()
        assert "using Kite's" in warning
        engine.set_tick_sizes(live.tick_sizes)
        await live.rest.close()
        assert engine.arrays.pr[0, L.P_TICK] == 0.1
        await server.complete(await entry_sent(server), 101.55)
        legs = await wait(lambda: len(server.working()) == 2 and server.working())
        levels = sorted((r["order_type"], r["price"] or r["trigger_price"]) for r in legs.values())
        assert levels == [("LIMIT", 106.6), ("SL-M", 96.5)]
        assert not [r for r in server.orders.values() if r[-1]["status"] == "REJECTED"]


async def test_an_exception_on_the_tick_path_is_alerted_pauses_the_instrument_and_keeps_the_feed(tmp_path):
    """6: a fault in the engine never escapes into the ticker loop (a silent reconnect losing ticks)."""
    async with kite_engine(tmp_path) as (server, engine, bus):
        sub = bus.subscribe()
        socket = server.sockets[0]

        def broken(*args):
            raise RuntimeError("a bug on the tick path")

        engine.protection.protect = broken
        await server.complete(await entry_sent(server), 101.5)
        await prices(server, [102.0, 102.5], start=5)
        await wait(lambda: engine.arrays.st[0, L.S_LTP] == 102.5)  # the ticks taken
        [fault] = [a for a in alerts(sub) if "Internal fault" in a.data["text"]]
        assert fault.critical and "entries paused" in fault.data["text"]
        assert server.sockets == [socket] and engine.arrays.st[0, L.S_LTP] == 102.5
        assert engine.arrays.st[0, L.S_BLOCKED] == 1.0


async def test_an_instrument_change_while_live_keeps_live_mode_and_kites_tick_sizes(tmp_path):
    """7: a new instrument list while live keeps the live flag (no simulated fills beside Kite's)
    and Kite's tick sizes; while a position is open it is refused with the reason."""
    async with kite_engine(tmp_path) as (server, engine, _):
        engine.set_tick_sizes({"NSE:INFY": 0.1, "NSE:SBIN": 0.05})
        await enter(server, engine)
        both = make_config(symbols=("NSE:INFY", "NSE:SBIN"))
        with pytest.raises(ConfigError, match="NSE:INFY busy"):
            engine.check_config(both)
        engine.apply_config(make_config(tick_size=0.05))  # same shape: applied in place
        assert engine.arrays.pr[0, L.P_TICK] == 0.1 and engine.arrays.acct[L.A_LIVE] == 1.0
    async with kite_engine(tmp_path / "flat") as (server, engine, _):
        engine.set_tick_sizes({"NSE:INFY": 0.1, "NSE:SBIN": 0.05})
        engine.apply_config(make_config(symbols=("NSE:SBIN", "NSE:INFY")))
        assert engine.arrays.acct[L.A_LIVE] == 1.0
        assert list(engine.arrays.pr[:, L.P_TICK]) == [0.05, 0.1]
        with pytest.raises(IndexError, match="out of range"):
            engine.on_tick(2, T0 * 10**9, 100.0)


async def test_a_changed_instrument_list_changes_the_tickers_subscription(tmp_path, monkeypatch):
    """7: the token map is rebuilt and the ticker subscribes what is traded now."""
    server = FakeKite()
    await server.start()
    monkeypatch.setenv("KITE_API_BASE", server.base)
    monkeypatch.setenv("KITE_WS_URL", server.base.replace("http", "ws") + "/ws")
    live = KiteLive(Credentials(API_KEY, API_SECRET, server.access_token), tmp_path, Journal(tmp_path, time.time_ns),
                    time.time_ns, ["NSE:INFY"], {"NSE:INFY": 0.1}, 10)
    await live.prepare()
    rows = []
    ticker = live.ticker_for(lambda row, ts, price, volume, *quote: rows.append((row, price)), lambda: None)
    task = asyncio.create_task(ticker.run())
    try:
        await wait(lambda: server.modes)
        live.use_symbols(["NSE:SBIN", "NSE:INFY"])
        await wait(lambda: 779521 in server.modes and "unsubscribe" not in server.requests)
        await server.push([Tick(779521, 800.0, "full", True, exchange_timestamp=T0), Tick(INFY, 1000.0, "full", True,
                                                                                           exchange_timestamp=T0)])
        await wait(lambda: len(rows) == 2)
        assert rows == [(0, 800.0), (1, 1000.0)]
        with pytest.raises(LookupError, match="NSE:FOO not in Kite's instruments list"):
            live.use_symbols(["NSE:FOO"])
    finally:
        task.cancel()
        await live.rest.close()
        await server.stop()


async def test_a_trailing_stop_never_exceeds_kites_25_modifications_and_shows_kites_level(tmp_path):
    """8: near the cap the stop is replaced (placed anew, then the old one cancelled): never
    refused, never two stops left, and the level shown is the one working at Kite."""
    bracket = {"target_pct": 50.0, "stop_pct": 1.0, "trail_pct": 1.0}
    async with kite_engine(tmp_path, bracket=bracket, tick_size=0.1) as (server, engine, bus):
        sub = bus.subscribe()
        await server.complete(await entry_sent(server), 101.5)
        await wait(lambda: working_stops(server))
        for k in range(60):
            await prices(server, [102.0 + 0.5 * k], start=10 + k)
        await settle(engine, 131.5)  # the last tick taken: the stop below is the final one, not one on the way
        await wait(lambda: len(working_stops(server)) == 1
                   and working_stops(server)[0]["trigger_price"] == engine.arrays.st[0, L.S_STOP])
        [stop] = working_stops(server)
        assert engine.positions()[0]["stop"] == stop["trigger_price"] == pytest.approx(round(131.5 * 0.99, 1))
        assert max(server._life_of(k).modifications for k in server.orders) <= 25
        assert not [a for a in alerts(sub) if "refused" in a.data["text"]]
        assert len([r for r in server.orders.values() if r[0]["order_type"] == "SL-M"]) >= 2  # replaced


async def test_the_trailing_stop_moves_in_steps_of_at_least_the_configured_ticks(tmp_path):
    bracket = {"target_pct": 50.0, "stop_pct": 1.0, "trail_pct": 1.0, "trail_step_ticks": 30}
    async with kite_engine(tmp_path, bracket=bracket) as (server, engine, _):
        server.set_tick_size("NSE:INFY", 0.05)  # the engine's grid: Kite takes the trail
        await server.complete(await entry_sent(server), 101.5)
        await wait(lambda: working_stops(server))
        first = engine.arrays.st[0, L.S_STOP]
        await prices(server, [102.0, 102.2, 102.4], start=10)  # each would tighten by less than 30 ticks
        await settle(engine, 102.4)
        assert engine.arrays.st[0, L.S_STOP] == first
        await prices(server, [103.2], start=20)
        await wait(lambda: engine.arrays.st[0, L.S_STOP] != first)  # the kernel's stop is the one Kite confirmed
        assert engine.arrays.st[0, L.S_STOP] == pytest.approx(round(103.2 * 0.99 / 0.05) * 0.05)
