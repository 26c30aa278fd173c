"""What the chaos suite (issue 20) found, each reproduced against the strict local Kite server in a
few deterministic lines: the real engine, Kite's words, no stubs."""

import time

from engine.brokers.kite.ticker_codec import Tick
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
    real_time,
    restarted,
    settle,
    tending,
    trail,
    wait,
    working_of,
    working_stops,
)
from tests.kite_server import WORKING, FakeKite


async def test_a_trail_whose_answer_was_lost_is_never_overtaken_by_a_newer_one_that_kite_then_undoes(tmp_path):
    # chaos seed 157: a trail's modify hangs at Kite past the client's timeout; OTrade looked, saw the stop
    # unchanged and sent the next trail at once; Kite took it, then the hung older one: a looser stop
    async with kite_engine(tmp_path, bracket=TRAILING, tick_size=TICK, timeout=0.3) as (server, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        server.hang_s = 1.0
        server.fault("modify", "hang")
        await server.push([Tick(INFY, 102.0, "full", True, exchange_timestamp=T0 + 3)])  # trails to 101.50: hangs
        await wait(lambda: server.calls["modify"] == 1)
        await server.push([Tick(INFY, 102.6, "full", True, exchange_timestamp=T0 + 4)])  # trails to 102.10
        await wait(lambda: server.modifications(stop_id) == 2 and server.orders[stop_id][-1]["status"] in WORKING)
        await settle(engine, 102.6)
        triggers = [r["trigger_price"] for r in server.orders[stop_id] if r["status"] in WORKING]
        assert triggers == sorted(triggers) and triggers[-1] == 102.1, f"Kite's stop went {triggers}"
        assert kernel_stop(engine) == 102.1


async def test_an_exit_whose_place_answer_is_lost_is_alerted_at_once_not_after_the_look_up(tmp_path):
    # chaos seed 269: Kite answered an exit's place call with a 502 (nothing placed); OTrade looked for it
    # in the book for risk.order_lookup_seconds (15 s by default) before sending it again, and said nothing
    async with kite_engine(tmp_path, tick_size=TICK) as (server, engine, bus):
        await enter(server, engine)
        sub = bus.subscribe()
        server.fault("place", "500-before")
        started = time.monotonic()
        engine.flatten()
        said: list[str] = []

        def told_or_placed() -> bool:
            said.extend(a.data["text"] for a in alerts(sub) if a.critical)
            return bool(working_of(server, "MARKET") or [t for t in said if "NSE:INFY" in t and "exit" in t])

        await wait(told_or_placed, timeout=2.0)
        assert time.monotonic() - started <= 2.0
        assert not working_of(server, "MARKET")  # not at Kite: the trader was told


async def test_a_stop_lost_while_kites_answer_to_its_trail_was_lost_is_armed_again_no_looser_than_that_trail(
        tmp_path):
    # chaos seed 5034: Kite took a trail to 1055.40 but its answer was lost and OTrade's looks showed the
    # stop as before; the exchange then cancelled the stop, and OTrade armed it again at 1048.70
    async with kite_engine(tmp_path, bracket=TRAILING, tick_size=TICK) as (server, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        def unseen(row: dict) -> bool:  # no row of Kite's showing the trail reaches OTrade, by any channel
            return row["status"] == "CANCELLED" or row["trigger_price"] != 102.0

        server.ws_filter = server.book_filter = unseen
        server.fault("modify", "503")  # Kite takes the trail to 102.00, and its answer is a 503
        await server.push([Tick(INFY, 102.5, "full", True, exchange_timestamp=T0 + 3)])
        await wait(lambda: server.orders[stop_id][-1]["trigger_price"] == 102.0)
        await server.cancel_rest(stop_id, "price is outside the current allowed limit price protection range")
        [armed] = await wait(lambda: working_stops(server), timeout=10.0)
        assert armed["trigger_price"] >= 102.0, f"armed again at {armed['trigger_price']}, Kite had taken 102.00"


async def test_a_stop_armed_again_after_a_restart_is_never_looser_than_the_trail_kite_confirmed_before(tmp_path):
    # chaos seed 5419: OTrade restarted while Kite's book lagged; the book showed the position's stop at an
    # older, looser trigger though the exchange had cancelled it; once Kite's word that it was gone came,
    # the stop was armed again at that old trigger, not at the trail Kite had confirmed (and OTrade journaled)
    clock = ServerClock()  # what its lagging book shows is decided here
    server = FakeKite(clock=clock)
    await server.start()
    try:
        async with kite_engine(tmp_path, server, bracket=TRAILING, tick_size=TICK) as (_, engine, _):
            stop_id = (await enter(server, engine))["SL-M"][0]  # at 100.50, stamped 1000
            clock.t += 1
            await trail(server, engine, [102.5])  # Kite confirms 102.00, stamped 1001
        clock.t += 1
        await server.cancel_rest(stop_id, "price is outside the current allowed limit price protection range")
        server.book_lag_s = 1.5  # the book shows the day as at 1000.5: the stop placed, at 100.50
        async with restarted(tmp_path, server, bracket=TRAILING, tick_size=TICK) as (engine, _):
            assert engine.positions()[0]["qty"] == 10
            clock.t += 2  # the book catches up: the stop is gone
            [armed] = await wait(lambda: working_stops(server), timeout=10.0)
            assert armed["trigger_price"] >= 102.0, f"armed again at {armed['trigger_price']}, Kite had 102.00"
    finally:
        await server.stop()


async def test_a_stop_armed_again_on_a_coarser_tick_grid_is_never_looser_than_the_one_kite_confirmed(tmp_path):
    # chaos seed 5062: SBIN's tick went from 0.05 to 0.10 while a position's stop worked at 837.75; armed
    # again for the position, the stop went to 837.70, a tick's half looser than the one Kite had held
    server = FakeKite()
    server.set_tick_size("NSE:INFY", 0.05)
    async with kite_engine(tmp_path, server, bracket=TRAILING, tick_size=0.05) as (_, engine, _):
        await server.complete(await entry_sent(server), 101.55)  # its stop at 100.55, on the 0.05 grid
        [stop] = await wait(lambda: working_stops(server))
        assert stop["trigger_price"] == 100.55
        server.set_tick_size("NSE:INFY", 0.1)  # a price band change: the engine learns Kite's new tick
        engine.set_tick_sizes({"NSE:INFY": 0.1})
        await server.cancel_rest(stop["order_id"], "price is outside the current allowed limit price protection range")
        [armed] = await wait(lambda: working_stops(server), timeout=10.0)
        assert armed["trigger_price"] >= 100.55, f"armed again at {armed['trigger_price']}, Kite had held 100.55"


async def test_an_entry_filled_unseen_while_kites_book_does_not_answer_is_alerted_within_two_seconds(tmp_path):
    # chaos seed 5417: the ticker stayed up but lost the entry's fill message, and Kite's order book did not
    # answer; Kite held -10 with no stop for over 2 s, and OTrade said nothing (it took the entry as working)
    async with kite_engine(tmp_path, tick_size=TICK) as (server, engine, bus):
        sub = bus.subscribe()
        real_time(engine)
        async with tending(engine, every=0.2):
            server.ws_filter = lambda row: row["status"] != "COMPLETE"  # the fill's message is lost
            entry_id = await entry_sent(server)
            await wait(lambda: engine.broker.order(engine.brackets[0].entry).state == "ACCEPTED")
            server.fault("orders", "500-before", times=100)  # and Kite's book does not answer
            server.fault("history", "500-before", times=100)
            await server.complete(entry_id, 101.5)
            said: list[str] = []

            def told_or_protected() -> bool:
                said.extend(a.data["text"] for a in alerts(sub) if a.critical)
                return bool(working_stops(server) or [t for t in said if "NSE:INFY" in t])

            await wait(told_or_protected, timeout=3.0)
