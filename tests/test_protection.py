"""Protection that Kite confirms (issue 20): the real engine against the strict local Kite server, in
the ways a position lost money there. What Kite refused never becomes the engine's stop; Kite's
working stop is never looser than the last one it confirmed; an exit the engine wants reaches Kite
within 2 s; after a restart the levels, entry price and modification counts are Kite's and the
journal's, never recomputed."""

import time

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker_codec import Tick
from engine.live.orders import Caps
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.services.journal import Journal
from tests.chaos.invariants import BookView, KernelCheck, LevelCheck
from tests.kite_engine import (
    INFY,
    T0,
    TICK,
    TRAILING,
    ServerClock,
    alerts,
    enter,
    entry_sent,
    kernel_stop,
    kite_engine,
    prices,
    real_time,
    restarted,
    settle,
    tending,
    trail,
    uncovered,
    wait,
    working_of,
    working_stops,
)
from tests.kite_server import API_KEY, MODIFICATIONS_REFUSAL, SELL_TRIGGER_REFUSAL, FakeKite

CIRCUIT_REFUSAL = "Price cannot be above the upper circuit price"
RMS_REFUSAL = "RMS:Rule: Check circuit limit including square off order exceeds"


def refused(server, endpoint: str, message: str) -> list:
    return [c for c in server.order_calls if c.endpoint == endpoint and message in c.message]


async def test_a_refused_trailing_modify_puts_the_engines_stop_back_to_kites_trigger(tmp_path):
    async with kite_engine(tmp_path, bracket=TRAILING, tick_size=TICK) as (server, engine, _):
        legs = await enter(server, engine)
        stop_id = legs["SL-M"][0]
        server.set_ltp("NSE:INFY", 103.0)  # the exchange trades at 103 ...
        await server.push([Tick(INFY, 104.0, "full", True, exchange_timestamp=T0 + 3)], late=True)  # ... the feed lags
        await wait(lambda: refused(server, "modify", SELL_TRIGGER_REFUSAL))
        await settle(engine, 104.0)
        assert server.orders[stop_id][-1]["trigger_price"] == 100.5  # Kite refused 103.50: its stop stays
        assert engine.positions()[0]["stop"] == 100.5
        assert kernel_stop(engine) == 100.5, "the kernel kept the stop Kite refused"
        await prices(server, [103.0], start=4)  # the feed catches up: the fast EMA crosses under the slow
        started = time.monotonic()
        [exit_] = await wait(lambda: working_of(server, "MARKET"), timeout=2.0)
        assert exit_["transaction_type"] == "SELL" and time.monotonic() - started <= 2.0


def up(start: float, n: int, step: float = 0.1) -> list[float]:
    """``n`` rising prices from ``start``: each moves a 0.5% trailing stop by at least a tick."""
    return [round(start + step * k, 2) for k in range(n)]


async def test_a_rejected_successor_leaves_the_stop_it_was_to_replace_working(tmp_path):
    async with kite_engine(tmp_path, bracket=TRAILING, tick_size=TICK) as (server, engine, _):
        legs = await enter(server, engine)
        stop_id = legs["SL-M"][0]
        await trail(server, engine, up(101.2, 24))  # 24 modifications: the next change replaces the stop
        assert server.modifications(stop_id) == 24
        confirmed = server.orders[stop_id][-1]["trigger_price"]
        # Kite's RMS refuses this scrip's new stops for a while: the successor, and a stop armed anew
        server.reject_next(RMS_REFUSAL, symbol="NSE:INFY", order_type="SL-M", times=2)
        since = server.clock()
        await trail(server, engine, [103.6], start=200)
        await wait(lambda: rejected_stops(server))
        await settle(engine, 103.6)
        gaps = uncovered(server, 10, since)
        assert gaps == [], f"Kite held no working stop for the position from {gaps[0][0] - since:.3f} s on"
        assert [r["trigger_price"] >= confirmed for r in working_stops(server)] == [True]


def rejected_stops(server) -> list[str]:
    return [k for k, rows in server.orders.items() if rows[-1]["order_type"] == "SL-M"
            and rows[-1]["status"] == "REJECTED"]


async def test_an_adopted_stop_keeps_trailing_past_kites_modification_cap_after_a_restart(tmp_path):
    server = FakeKite()
    await server.start()
    try:
        async with kite_engine(tmp_path, server, bracket=TRAILING, tick_size=TICK) as (_, engine, _):
            stop_id = (await enter(server, engine))["SL-M"][0]
            await trail(server, engine, up(101.2, 20))  # the stop at 102.60 after 20 modifications
        assert server.modifications(stop_id) == 20
        async with restarted(tmp_path, server, bracket=TRAILING, tick_size=TICK) as (engine, _):
            await trail(server, engine, up(103.2, 6), start=200)  # 103.70: the stop trails to 103.20
        assert ([c.message for c in refused(server, "modify", MODIFICATIONS_REFUSAL)],
                [r["trigger_price"] for r in working_stops(server)]) == ([], [103.2])
    finally:
        await server.stop()


FAR_TARGET = {**TRAILING, "target_pct": 10.0}  # the target at 111.65, out of the way


async def trailed_to_107_80(tmp_path, server) -> str:
    """A run that bought at 101.50 and trailed its stop to 107.80 at Kite, then stopped; the stop's id."""
    async with kite_engine(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (_, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        await trail(server, engine, [108.35])
    assert server.orders[stop_id][-1]["trigger_price"] == 107.8
    return stop_id


async def test_a_restart_never_loosens_the_stop_kite_trailed(tmp_path):
    server = FakeKite()
    await server.start()
    try:
        stop_id = await trailed_to_107_80(tmp_path, server)
        async with restarted(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (engine, _):
            assert engine.positions()[0]["stop"] == 107.8
            await trail(server, engine, [108.1], start=200)  # a 0.5% trail from here is 107.60: looser
            triggers = [r["trigger_price"] for r in server.orders[stop_id] if r["status"] == "TRIGGER PENDING"]
            assert min(triggers[triggers.index(107.8):]) == 107.8, f"Kite's stop went {triggers}"
            assert kernel_stop(engine) == 107.8
    finally:
        await server.stop()


async def test_a_restart_on_a_lagging_book_takes_the_trailed_stop_once_the_book_shows_it(tmp_path):
    """Chaos seed 40167: restarted while Kite's order book lagged behind the earlier run's entry, OTrade
    saw no position at first; when the book caught up, the entry's fill armed a bracket recomputed from
    the entry price (looser than the stop Kite had trailed) and cancelled Kite's stop as a stray."""
    server = FakeKite()
    await server.start()
    try:
        await trailed_to_107_80(tmp_path, server)
        server.book_lag_s, before = 3600.0, set(server.orders)  # the book shows none of the earlier run's orders yet
        async with restarted(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (engine, _):
            server.book_lag_s = 0.0  # it catches up: the entry's fill reaches OTrade by a book read
            await wait(lambda: engine.positions() and engine.broker.in_flight == 0 and not any(
                r[-1]["status"] in ("CANCEL PENDING", "MODIFY PENDING", "VALIDATION PENDING", "OPEN PENDING",
                                    "PUT ORDER REQ RECEIVED") for r in server.orders.values()), timeout=30)
            rested = [r["trigger_price"] for oid, rows in server.orders.items() if oid not in before for r in rows
                      if r["order_type"] == "SL-M" and r["status"] == "TRIGGER PENDING"]
            assert all(t >= 107.8 for t in rested), f"a stop armed again rested at {rested}"
            assert [r["trigger_price"] for r in working_stops(server)] == [107.8]
            assert kernel_stop(engine) == 107.8 and engine.positions()[0]["qty"] == 10
    finally:
        await server.stop()


async def test_a_restart_keeps_the_open_positions_own_entry_price(tmp_path):
    server = FakeKite()
    await server.start()
    try:
        async with kite_engine(tmp_path, server, tick_size=TICK) as (_, engine, _):
            await server.complete(await entry_sent(server), 101.0)  # a first trade, bought at 101.00 ...
            legs = await wait(lambda: len(server.working()) == 2 and server.working())
            [target] = [k for k, r in legs.items() if r["order_type"] == "LIMIT"]
            await server.complete(target, server.orders[target][-1]["price"])  # ... closed at its target
            await wait(lambda: not server.working() and engine.trades())
            await prices(server, [104.0, 102.0, 105.5], start=10)  # the EMAs cross down, then up: a second entry
            [entry] = await wait(lambda: working_of(server, "MARKET"))
            await server.complete(entry["order_id"], 105.0)
            await wait(lambda: len(server.working()) == 2)
            assert engine.positions()[0]["entry_price"] == 105.0
        async with restarted(tmp_path, server, tick_size=TICK) as (engine, _):
            [held] = engine.positions()
            assert (held["qty"], held["entry_price"]) == (10, 105.0)
    finally:
        await server.stop()


async def test_a_target_beyond_the_circuit_never_holds_back_the_stops_resize(tmp_path):
    async with kite_engine(tmp_path, tick_size=TICK) as (server, engine, _):  # a 5% target and stop
        server.set_circuit("NSE:INFY", 95.0, 105.0)  # a 5% band: the target of a fill at 101.50 (106.60) is outside
        real_time(engine)
        async with tending(engine):
            entry_id = await entry_sent(server)
            await server.fill(entry_id, 4, 101.5)
            await wait(lambda: len(refused(server, "place", CIRCUIT_REFUSAL)) >= 4, timeout=8.0)  # backing off 4 s
            await server.fill(entry_id, 6, 101.5)
            started = time.monotonic()
            try:
                await wait(lambda: [r["quantity"] for r in working_stops(server)] == [10], timeout=2.0)
            except AssertionError:
                covered = sum(r["quantity"] - r["filled_quantity"] for r in working_stops(server))
                raise AssertionError(f"after 2 s Kite's stops cover {covered} of the 10 held") from None
            assert time.monotonic() - started <= 2.0


async def test_trailing_never_spends_the_order_requests_an_exit_needs(tmp_path):
    server = FakeKite(orders_per_minute=20)  # Kite's 200 a minute, scaled down; OTrade told the same
    async with kite_engine(tmp_path, server, bracket=TRAILING, tick_size=TICK, caps=Caps(12, per_minute=20)) as (
            _, engine, _):
        await enter(server, engine)  # 3 requests: the entry, its stop and its target
        await trail(server, engine, up(101.2, 17))  # 17 modifications of the stop: 20 requests in the minute
        await prices(server, [102.5], start=300)  # the fast EMA crosses under the slow: the strategy exits
        try:
            [exit_] = await wait(lambda: working_of(server, "MARKET"), timeout=2.0)
        except AssertionError:
            answers = [c.message for c in server.order_calls if c.status != 200]
            raise AssertionError(f"no exit at Kite after 2 s; Kite answered {answers}") from None
        assert exit_["transaction_type"] == "SELL"


async def test_order_requests_retries_included_stay_within_kites_ten_a_second(tmp_path):
    server = FakeKite()
    await server.start()
    rest = KiteREST(API_KEY, server.access_token, server.base, timeout=2.0)
    broker = KiteBroker(rest, Journal(tmp_path, time.time_ns), {"NSE:INFY": TICK}, time.time_ns)
    try:
        server.set_ltp("NSE:INFY", 1000.0)
        server.fault("place", "429")  # one refused: Kite's count holds what the key's other calls sent
        tags = [broker.submit(OrderRequest("NSE:INFY", Side.SELL, 1, OrderType.SL_M, trigger_price=990.0,
                                           tag=broker.tags()), Purpose.STOP).order_id for _ in range(10)]
        await wait(lambda: all(broker.order(t).broker_id for t in tags))
        arrivals = [c.at for c in server.order_calls]
        # Kite counts a rolling second; 0.8 s leaves the loop's jitter out of the measure
        busiest = max(sum(a <= t < a + 0.8 for t in arrivals) for a in arrivals)
        assert busiest <= 10, f"{busiest} order requests reached Kite within 0.8 s"
    finally:
        await rest.close()
        await server.stop()


async def test_a_stale_row_of_the_same_second_never_undoes_a_modify_kite_confirmed(tmp_path):
    clock = ServerClock()
    server = FakeKite(clock=clock, book_lag_s=0.5)  # the book shows Kite's orders as they were half a second ago
    async with kite_engine(tmp_path, server, bracket=TRAILING, tick_size=TICK) as (_, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        clock.t += 0.6  # the same second: the book now shows the stop as placed, at 100.50
        await trail(server, engine, [102.5])  # the stop trails to 102.00, every row of it on the ticker
        assert server.orders[stop_id][-1]["trigger_price"] == 102.0
        assert [m["trigger_price"] for m in server.order_messages if m["order_id"] == stop_id][-1] == 102.0
        assert len({r["exchange_update_timestamp"] for r in server.orders[stop_id]}) == 1  # all of one second
        reads = server.calls["orders"]
        await wait(lambda: server.calls["orders"] >= reads + 2)  # the lagging book read twice since
        assert engine.positions()[0]["stop"] == 102.0, "a row from before the modify was taken for Kite's word"


async def test_an_exit_decided_on_a_tick_through_the_stop_is_sent_when_kite_never_confirms_the_stop_triggered(
        tmp_path):
    bracket = {"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": None}  # fill 101.50: stop 100.50
    async with kite_engine(tmp_path, bracket=bracket, tick_size=TICK) as (server, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        real_time(engine)
        async with tending(engine):
            # the feed shows a trade through the stop that Kite's stop never saw; the EMAs cross down on it
            await server.push([Tick(INFY, 100.4, "full", True, exchange_timestamp=T0 + 3)], late=True)
            [exit_] = await wait(lambda: working_of(server, "MARKET"), timeout=5.0)
        assert exit_["transaction_type"] == "SELL" and exit_["quantity"] == 10
        assert server.orders[stop_id][1]["status"] != "OPEN"  # Kite never triggered it


def circuit_alerts(sub) -> list[str]:
    return [a.data["text"] for a in alerts(sub) if "circuit band" in a.data["text"]]


async def test_a_target_and_a_stop_beyond_the_days_circuit_are_placed_inside_it_and_alerted_once(tmp_path):
    async with kite_engine(tmp_path, tick_size=TICK) as (server, engine, bus):  # a 5% target and stop
        server.set_circuit("NSE:INFY", 97.0, 105.0)  # fill 101.50: target 106.60 above it, stop 96.40 below
        assert await engine.broker.read_circuits(["NSE:INFY"]) == {"NSE:INFY": (97.0, 105.0)}
        sub = bus.subscribe()
        legs = await enter(server, engine)
        assert (legs["LIMIT"][1]["price"], legs["SL-M"][1]["trigger_price"]) == (105.0, 97.0)
        await wait(lambda: (engine.positions()[0]["target"], kernel_stop(engine)) == (105.0, 97.0))
        assert refused(server, "place", "circuit") == []
        assert len(circuit_alerts(sub)) == 2


def test_the_chaos_level_check_catches_a_stop_kite_holds_looser_than_one_it_held_for_the_position():
    check = LevelCheck()
    held = {"NSE:INFY": 10}
    assert check.check(1.0, BookView(positions=held, stops={"NSE:INFY": [(0.5, "SELL", 100.5, "1")]})) == []
    assert check.check(2.0, BookView(positions=held, stops={"NSE:INFY": [(0.5, "SELL", 107.8, "1")]})) == []  # trailed
    [v] = check.check(3.0, BookView(positions=held, stops={"NSE:INFY": [(2.5, "SELL", 106.3, "2")]}))  # a restart's
    assert v.invariant == "level" and "106.3" in v.detail and "107.8" in v.detail
    later = BookView(positions=held, stops={"NSE:INFY": [(9.5, "SELL", 100.0, "3")]}, flat_at={"NSE:INFY": 9.0})
    assert check.check(10.0, later) == []  # a new position since it was flat: its own stop


def test_the_chaos_kernel_check_catches_otrade_trading_on_a_stop_kite_does_not_hold_once_settled():
    check = KernelCheck()
    assert check.check(1.0, False, {"NSE:INFY": (103.5, 100.5)}) == []  # a modify may still be on its way
    assert check.check(2.0, True, {"NSE:INFY": (100.5, 100.5)}) == []
    [v] = check.check(3.0, True, {"NSE:INFY": (103.5, 100.5)})
    assert v.invariant == "kernel" and check.check(4.0, True, {"NSE:INFY": (103.5, 100.5)}) == []  # once
