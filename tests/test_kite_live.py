"""Live trading through the Kite adapter against the local Kite server: brackets at the broker."""

import asyncio

import pytest

from engine.engine import State
from engine.services.events import ALERT
from tests.kite_engine import enter, kite_engine, prices, wait
from tests.kite_server import STATIC_IP_REFUSAL


@pytest.fixture
async def live(tmp_path):
    async with kite_engine(tmp_path) as env:
        yield env


async def test_an_entry_fill_arms_a_limit_target_and_an_sl_m_stop_at_the_broker(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    assert legs["LIMIT"][1]["price"] == 106.6 and legs["SL-M"][1]["trigger_price"] == 96.4
    assert engine.positions()[0]["qty"] == 10


async def test_the_target_fill_cancels_the_stop_and_closes_the_trade(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    await server.complete(legs["LIMIT"][0], 106.6)
    await wait(lambda: not server.working())
    [trade] = engine.trades()
    assert (trade["exit_reason"], trade["exit_price"], trade["pnl"]) == ("target", 106.6, pytest.approx(51.0))
    assert server.orders[legs["SL-M"][0]][-1]["status"] == "CANCELLED" and engine.positions() == []


async def test_the_stop_fill_cancels_the_target(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    await server.complete(legs["SL-M"][0], 96.35)
    await wait(lambda: not server.working())
    assert [t["exit_reason"] for t in engine.trades()] == ["stop"]
    assert server.orders[legs["LIMIT"][0]][-1]["status"] == "CANCELLED"


async def test_market_orders_carry_market_protection(live):
    server, _engine, _ = live
    await prices(server, [100.0, 99.0, 101.0])
    await wait(lambda: server.working())
    assert server.place_calls == 1  # accepted: the server refuses MARKET orders without protection


async def test_a_rejected_entry_is_alerted_with_kites_reason_and_no_position_is_assumed(live):
    server, engine, bus = live
    sub = bus.subscribe()
    server.reject_reason = "RMS: Margin Exceeds, Required:1015.00, Available:0.00"
    await prices(server, [100.0, 99.0, 101.0])
    await wait(lambda: engine.orders(working_only=False) and not engine.orders())  # Kite's refusal taken
    texts = [str(e.data) for e in iter(sub.get_nowait, None)]
    assert any("Margin Exceeds" in t for t in texts) and engine.positions() == []


async def test_an_expired_token_pauses_entries_and_raises_a_critical_alert(live):
    server, engine, bus = live
    sub = bus.subscribe()
    server.access_token = "rotated-at-6am"
    await prices(server, [100.0, 99.0, 101.0])  # the ticker connection from before still delivers
    await wait(lambda: engine.state == State.PAUSED)
    alerts = [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert alerts[0].critical and "send /login" in alerts[0].data["text"] and server.orders == {}


async def test_reconcile_adopts_an_open_position_keeps_its_stop_and_rearms_the_target(live):
    server, engine, _ = live
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1000.0},
                            {"exchange": "NSE", "tradingsymbol": "TCS", "quantity": 5, "average_price": 3000.0}]
    server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                      status="COMPLETE", filled_quantity=10, average_price=1000.0, tag="otabc123000000")
    stop_id = server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                                trigger_price=950.0, status="TRIGGER PENDING", tag="otabc123000001")
    server.seed_order(tradingsymbol="SBIN", transaction_type="BUY", order_type="LIMIT", quantity=1, price=700.0,
                      status="OPEN", tag=None)
    rest = engine.broker.rest
    notes = engine.reconcile((await rest.positions())["net"], await rest.orders())
    targets = await wait(lambda: [r for r in server.working().values() if r["order_type"] == "LIMIT"
                                  and r["tradingsymbol"] == "INFY"])
    assert engine.positions()[0]["qty"] == 10 and targets[0]["price"] == 1050.0
    assert len([r for r in server.working().values() if r["tradingsymbol"] == "INFY"]) == 2  # no second stop
    assert notes[0] == "NSE:INFY: adopted position +10 @ 1000.00, kept its stop, bracket armed"
    assert any("TCS: position +5 not traded by OTrade" in n for n in notes)
    assert any("SBIN: order" in n and "not ours" in n for n in engine.status()["foreign"])
    await server.complete(stop_id, 949.0)
    await wait(lambda: engine.trades())
    assert engine.trades()[0]["exit_reason"] == "stop"


async def test_a_session_opening_with_an_expired_token_stays_paused_until_renewed(live):
    _server, engine, _ = live
    engine.end_session()
    engine.token_expired("Token is invalid or has expired.")
    engine.start_session()
    assert (engine.state, engine.state_reason) == (State.PAUSED, "broker token expired")
    engine.token_renewed()
    assert engine.state == State.RUNNING


def seconds_later(engine, s: float) -> None:
    start = engine.now_ns()
    engine.now_ns = lambda: start + int(s * 1e9)


async def test_a_market_exit_left_unfilled_is_repriced_at_market_with_protection(live):
    server, engine, bus = live
    await enter(server, engine)
    sub = bus.subscribe()
    engine.flatten()
    [(exit_id, _)] = await wait(lambda: [(k, r) for k, r in server.working().items() if r["order_type"] == "MARKET"])
    seconds_later(engine, 4)
    assert engine.watch.reprice_exits() == 0
    seconds_later(engine, 2)
    assert engine.watch.reprice_exits() == 1
    [form] = await wait(lambda: server.modifies)
    assert (form["order_type"], form["market_protection"]) == ("MARKET", "-1")
    assert any(e.kind == ALERT and "re-priced at market" in e.data["text"] for e in iter(sub.get_nowait, None))
    await server.complete(exit_id, 100.9)
    await wait(lambda: engine.trades())


async def test_a_triggered_stop_that_does_not_fill_is_repriced(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    stop_id = legs["SL-M"][0]
    await server.trigger(stop_id)
    await wait(lambda: engine.broker.order(engine.brackets[0].stop).status == "OPEN")
    seconds_later(engine, 6)
    assert engine.watch.reprice_exits() == 1
    await wait(lambda: server.orders[stop_id][-1]["order_type"] == "MARKET")


async def test_a_resting_target_and_an_untriggered_stop_are_never_repriced(live):
    server, engine, _ = live
    await enter(server, engine)
    seconds_later(engine, 600)
    assert engine.watch.reprice_exits() == 0


async def test_a_fill_missed_while_the_ticker_was_away_is_caught_up_from_the_order_book(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    target_id = legs["LIMIT"][0]
    last = server.orders[target_id][-1]
    server.orders[target_id].append({**last, "status": "COMPLETE", "filled_quantity": 10, "pending_quantity": 0,
                                     "average_price": 106.6})  # no ticker message: the socket was down
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 0, "average_price": 0.0}]
    rows = await engine.broker.sync()
    engine.reconcile(server.net_positions, rows)
    assert [t["exit_reason"] for t in engine.trades()] == ["target"]
    await wait(lambda: server.orders[legs["SL-M"][0]][-1]["status"] == "CANCELLED")


async def test_a_position_kite_shows_flat_is_alerted_and_its_orders_left_resting(live):
    server, engine, bus = live
    legs = await enter(server, engine)
    sub = bus.subscribe()
    server.net_positions = []  # squared off by hand in Kite
    notes = engine.reconcile(server.net_positions, await engine.broker.sync())
    [alert] = [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert alert.critical and "Kite shows no position" in alert.data["text"]
    assert any("OTrade holds +10" in n for n in engine.status()["foreign"]) and notes
    assert set(server.working()) == {legs["LIMIT"][0], legs["SL-M"][0]}


async def test_an_order_refused_for_the_static_ip_is_alerted_with_kites_words_and_never_retried(live):
    server, engine, bus = live
    sub = bus.subscribe()
    server.faults = ["static-ip"]
    await prices(server, [100.0, 99.0, 101.0])
    await wait(lambda: engine.orders(working_only=False) and not engine.orders())
    await asyncio.sleep(0.2)
    refusals = [e for e in iter(sub.get_nowait, None) if e.critical and STATIC_IP_REFUSAL in str(e.data)]
    assert refusals and server.place_calls == 1 and server.orders == {} and engine.positions() == []
    assert engine.risk()["trades_today"] == 0  # the refused entry does not count against the day's limit


async def test_the_square_off_cancels_the_bracket_and_exits_at_market(live):
    server, engine, _ = live
    legs = await enter(server, engine)
    assert engine.square_off() == 1
    [(exit_id, exit_row)] = await wait(lambda: [(k, r) for k, r in server.working().items()
                                               if r["order_type"] == "MARKET"])
    assert (exit_row["transaction_type"], exit_row["quantity"]) == ("SELL", 10)
    await wait(lambda: all(server.orders[oid][-1]["status"] == "CANCELLED" for oid, _ in legs.values()))
    await server.complete(exit_id, 102.0)
    [trade] = await wait(lambda: engine.trades())
    assert (trade["exit_reason"], trade["pnl"]) == ("square_off", pytest.approx(5.0))


async def test_reconcile_leaves_the_traders_own_stop_alone_and_arms_its_own(live):
    server, engine, _ = live
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1000.0}]
    server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                      status="COMPLETE", filled_quantity=10, average_price=1000.0, tag="otabc123000000")
    theirs = server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                               trigger_price=900.0, status="TRIGGER PENDING", tag=None)
    notes = engine.reconcile((await engine.broker.rest.positions())["net"], await engine.broker.rest.orders())
    ours = await wait(lambda: [k for k, r in server.working().items() if r["order_type"] == "SL-M" and k != theirs])
    assert server.orders[ours[0]][-1]["trigger_price"] == 950.0 and theirs in server.working()
    assert any(f"order {theirs}" in n and "not ours, left alone" in n for n in notes)


async def test_an_earlier_runs_working_entry_is_taken_over_and_its_fill_protected(live):
    server, engine, _ = live
    entry = server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                              status="OPEN", tag="otabc123000007")
    notes = engine.reconcile([], await engine.broker.rest.orders())
    assert notes == ["NSE:INFY: kept its entry"] and engine.brackets[0].entry == "otabc123000007"
    await server.complete(entry, 101.5)
    legs = await wait(lambda: len(server.working()) == 2 and server.working())
    assert {r["quantity"] for r in legs.values()} == {10} and engine.positions()[0]["qty"] == 10


async def test_a_second_stop_an_earlier_run_left_is_cancelled_not_kept_beside_the_first(live):
    server, engine, _ = live
    server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                      status="COMPLETE", filled_quantity=10, average_price=1000.0, tag="otabc123000000")
    stops = [server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                               trigger_price=950.0 + k, status="TRIGGER PENDING", tag=f"otabc12300000{k + 1}")
             for k in range(2)]
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1000.0}]
    engine.reconcile(server.net_positions, await engine.broker.rest.orders())
    await wait(lambda: server.orders[stops[1]][-1]["status"] == "CANCELLED")
    assert stops[0] in server.working() and engine.positions()[0]["stop"] == 950.0
