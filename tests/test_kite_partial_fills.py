"""Orders that fill in parts at Kite: the position follows every fill, the bracket follows the position,
and a fill the engine no longer wants is undone."""

import pytest

from bot.commands import CONSOLE, Commands, Services
from config import ConfigManager
from engine.services.events import ALERT, FILL
from engine.strategies import default_catalog
from tests.kite_engine import enter, entry_sent, kite_engine, prices, wait


@pytest.fixture
async def live(tmp_path):
    async with kite_engine(tmp_path) as env:
        yield env


def legs_of(server, symbol="INFY"):
    """The working orders other than the entry, by order type."""
    return {r["order_type"]: r for r in server.working().values()
            if r["tradingsymbol"] == symbol and r["order_type"] != "MARKET"}


def net_filled(server) -> int:
    """The account's position in INFY at Kite: what every order filled, bought minus sold."""
    return sum(r[-1]["filled_quantity"] * (1 if r[-1]["transaction_type"] == "BUY" else -1)
               for r in server.orders.values())


async def test_a_partly_filled_entry_is_protected_for_what_filled(live):
    server, engine, _ = live
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    legs = await wait(lambda: len(legs_of(server)) == 2 and legs_of(server))
    assert {t: r["quantity"] for t, r in legs.items()} == {"LIMIT": 4, "SL-M": 4}
    assert engine.positions()[0]["qty"] == 4


async def test_later_entry_fills_grow_the_position_and_resize_both_legs(live):
    server, engine, _ = live
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await wait(lambda: len(legs_of(server)) == 2)
    await server.fill(entry, 6, 101.75)
    await wait(lambda: {r["quantity"] for r in legs_of(server).values()} == {10})
    [position] = engine.positions()
    assert (position["qty"], position["entry_price"]) == (10, pytest.approx(101.65))
    assert len(server.orders) == 3  # resized in place, not re-sent


async def test_a_partial_target_fill_shrinks_the_stop_to_what_is_left(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    await server.fill(legs["LIMIT"][0], 4, 106.6)
    await wait(lambda: legs_of(server)["SL-M"]["quantity"] == 6)
    assert engine.positions()[0]["qty"] == 6 and engine.trades() == []


async def test_a_target_filled_in_parts_closes_one_trade_at_the_average_exit(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    await server.fill(legs["LIMIT"][0], 4, 106.6)
    await server.fill(legs["LIMIT"][0], 6, 106.8)
    [trade] = await wait(lambda: engine.trades())
    assert (trade["qty"], trade["exit_reason"]) == (10, "target")
    assert trade["exit_price"] == pytest.approx(106.72) and trade["pnl"] == pytest.approx(52.2)
    await wait(lambda: not server.working())
    assert server.orders[legs["SL-M"][0]][-1]["status"] == "CANCELLED" and engine.positions() == []


async def test_each_partial_fill_is_published_with_how_much_of_the_order_is_done(live):
    server, engine, bus = live
    sub = bus.subscribe()
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await server.fill(entry, 6, 101.75)
    await wait(lambda: engine.positions() and engine.positions()[0]["qty"] == 10)
    fills = [(e.data["last_quantity"], e.data["filled_quantity"]) for e in iter(sub.get_nowait, None)
             if e.kind == FILL and e.data["purpose"] == "entry"]
    assert fills == [(4, 4), (6, 10)]


async def test_an_entry_whose_rest_is_cancelled_keeps_what_filled_and_counts_one_trade(live):
    server, engine, _ = live
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await server.cancel_rest(entry, "Cancelled by the exchange: market protection price reached")
    await wait(lambda: len(legs_of(server)) == 2 and entry not in server.working())
    assert engine.positions()[0]["qty"] == 4 and engine.risk()["trades_today"] == 1
    assert {r["quantity"] for r in legs_of(server).values()} == {4}


async def test_a_flatten_while_the_entry_is_partly_filled_cancels_the_rest_and_exits_what_filled(live):
    server, engine, _ = live
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await wait(lambda: len(legs_of(server)) == 2)
    engine.flatten()
    [exit_row] = await wait(lambda: [r for r in server.working().values() if r["transaction_type"] == "SELL"
                                     and r["order_type"] == "MARKET"])
    assert exit_row["quantity"] == 4
    await wait(lambda: server.orders[entry][-1]["status"] == "CANCELLED" and len(server.working()) == 1)


async def test_an_entry_fill_that_races_its_cancel_is_undone_at_market(live):
    server, engine, bus = live
    sub = bus.subscribe()
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await wait(lambda: len(legs_of(server)) == 2)
    engine.flatten()
    await server.fill(entry, 3, 101.6)  # the exchange filled more before the cancel reached it
    exits = await wait(lambda: len([r for r in server.working().values() if r["order_type"] == "MARKET"]) == 2
                       and [r for r in server.working().values() if r["order_type"] == "MARKET"])
    assert sorted(r["quantity"] for r in exits) == [3, 4]
    for row in exits:  # the exit and the repair (the legs are being cancelled, as Kite took the exit)
        await server.complete(row["order_id"], 101.0)
    await wait(lambda: engine.trades() and not server.working())
    assert net_filled(server) == 0 and engine.positions() == []
    assert any(e.kind == ALERT and "undo the excess" in e.data["text"] for e in iter(sub.get_nowait, None))


async def test_a_stop_filling_beyond_a_partly_filled_target_undoes_only_the_excess(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    await server.fill(legs["LIMIT"][0], 4, 106.6)
    await server.fill(legs["SL-M"][0], 10, 96.35)  # triggered before the resize to 6 reached Kite
    [repair] = await wait(lambda: [r for r in server.working().values() if r["order_type"] == "MARKET"])
    assert (repair["transaction_type"], repair["quantity"]) == ("BUY", 4)
    [trade] = engine.trades()
    assert trade["qty"] == 10 and trade["pnl"] == pytest.approx(4 * 5.1 - 6 * 5.15)
    await server.complete(next(iter(server.working())), 96.5)
    await wait(lambda: not server.working())
    assert net_filled(server) == 0


async def test_a_refused_exit_leaves_the_bracket_protecting_and_alerts_with_kites_reason(live):
    server, engine, bus = live
    legs = await enter(server, engine)
    sub = bus.subscribe()
    server.reject_reason = "Order placement is allowed only from the registered static IP"
    server.reject_types = {"MARKET"}
    engine.flatten()
    await wait(lambda: not engine.brackets[0].exit)
    assert set(legs_of(server)) == {"LIMIT", "SL-M"} and all(oid in server.working() for oid, _ in legs.values())
    assert engine.positions()[0]["qty"] == 10
    alerts = [e.data["text"] for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert any("static IP" in t and "still open" in t for t in alerts)


async def test_after_a_refused_exit_strategy_exits_wait_and_flatten_tries_again(live):
    server, engine, _ = live
    await enter(server, engine)
    server.reject_reason = "Order placement is allowed only from the registered static IP"
    server.reject_types = {"MARKET"}
    engine.flatten()
    await wait(lambda: len(legs_of(server)) == 2 and not engine.brackets[0].exit)
    placed = len(server.orders)
    await prices(server, [99.0, 98.0, 97.0], start=10)  # the EMA cross turns: the strategy wants out
    assert len(server.orders) == placed
    server.reject_reason = ""
    engine.flatten()
    [exit_row] = await wait(lambda: [r for r in server.working().values() if r["order_type"] == "MARKET"])
    assert (exit_row["transaction_type"], exit_row["quantity"]) == ("SELL", 10)


async def test_orders_shows_how_much_of_a_working_order_has_filled(live, tmp_path):
    server, engine, _ = live
    entry = await entry_sent(server)
    await server.fill(entry, 4, 101.5)
    await wait(lambda: len(legs_of(server)) == 2)
    manager = ConfigManager(tmp_path / "cfg.json", tmp_path, default_catalog())
    commands = Commands(Services(engine, manager, tmp_path, engine.now_ns))
    [line] = [x for x in commands.orders(CONSOLE, []).text.splitlines() if "(entry)" in x]
    assert line.endswith("OPEN, 4 filled @ 101.50 (entry)")


async def test_a_stop_that_completes_short_of_the_position_is_replaced_for_the_rest(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    stop_id = legs["SL-M"][0]
    server.orders[stop_id].append({**server.orders[stop_id][-1], "quantity": 4})  # a resize that went wrong
    await server.complete(stop_id, 96.35)
    stops = await wait(lambda: [r for r in legs_of(server).values() if r["order_type"] == "SL-M"])
    assert stops[0]["quantity"] == 6 and engine.positions()[0]["qty"] == 6
    await wait(lambda: legs_of(server)["LIMIT"]["quantity"] == 6)


async def test_a_cancel_kite_refuses_for_a_working_order_is_alerted(live):
    server, engine, bus = live
    legs = await enter(server, engine)
    sub = bus.subscribe()
    server.cancel_refusal = "Order cannot be cancelled: the exchange is not accepting requests"
    await server.complete(legs["LIMIT"][0], 106.6)
    seen = []
    await wait(lambda: seen.extend(e for e in iter(sub.get_nowait, None) if e.kind == ALERT) or seen)
    assert "Kite refused to cancel the SELL 10 NSE:INFY SL-M order" in seen[0].data["text"] and seen[0].critical


async def test_a_cancel_refused_because_the_leg_just_filled_is_not_an_alarm_but_undone(live):
    server, engine, bus = live
    legs = await enter(server, engine)
    sub = bus.subscribe()
    stop_id = legs["SL-M"][0]
    last = server.orders[stop_id][-1]  # filled at the exchange; its news is not out yet
    server.orders[stop_id].append({**last, "status": "COMPLETE", "filled_quantity": 10, "average_price": 96.35})
    await server.complete(legs["LIMIT"][0], 106.6)
    [repair] = await wait(lambda: list(server.working().values()))
    assert (repair["transaction_type"], repair["quantity"], repair["order_type"]) == ("BUY", 10, "MARKET")
    alerts = [e.data["text"] for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert not any("Kite refused" in t for t in alerts) and any("undo the excess" in t for t in alerts)
