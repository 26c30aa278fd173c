"""The local Kite server's own specification: Kite's order life, its refusals in its words, the
three channels (REST answer, ticker order message, order book) each under control, faults on
demand and the exchange-side actions. Driven with plain aiohttp so the server is tested, not a client."""

from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from engine.brokers.kite.ticker_codec import Tick
from tests.kite_engine import ServerClock
from tests.kite_server import (
    API_KEY,
    BUY_LIMIT_REFUSAL,
    BUY_TRIGGER_REFUSAL,
    DAY_CAP_REFUSAL,
    MINUTE_CAP_REFUSAL,
    MODIFICATIONS_REFUSAL,
    MP_REFUSAL,
    RATE_REFUSAL,
    SELL_LIMIT_REFUSAL,
    SELL_TRIGGER_REFUSAL,
    STATIC_IP_REFUSAL,
    TAG_REFUSAL,
    FakeKite,
)
from tests.waiting import until

INFY, SBIN = 408065, 779521
LIMIT = {"tradingsymbol": "INFY", "exchange": "NSE", "transaction_type": "BUY", "order_type": "LIMIT",
         "quantity": 10, "product": "MIS", "price": 1074.3, "validity": "DAY", "tag": "t1"}
STOP = {**LIMIT, "transaction_type": "SELL", "order_type": "SL-M", "price": None, "trigger_price": 1070.0,
        "market_protection": -1}
OPENING = ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"]


class Http:
    """Bare HTTP against the server: (status, envelope), nothing retried or interpreted."""

    def __init__(self, server: FakeKite) -> None:
        self.server = server
        self.session = aiohttp.ClientSession()

    async def __call__(self, method: str, path: str, form: dict | None = None,
                       timeout: float = 2.0) -> tuple[int, Any]:
        headers = {"X-Kite-Version": "3", "Authorization": f"token {API_KEY}:{self.server.access_token}"}
        data = {k: str(v) for k, v in (form or {}).items() if v is not None}
        async with self.session.request(method, self.server.base + path, data=data or None, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.read()
            if response.content_type == "application/json":
                return response.status, orjson.loads(body)
            return response.status, body.decode()

    async def place(self, form: dict | None = None, timeout: float = 2.0, **changes: Any) -> tuple[int, Any]:
        return await self("POST", "/orders/regular", {**(form or LIMIT), **changes}, timeout)

    async def placed(self, form: dict | None = None, **changes: Any) -> str:
        status, body = await self.place(form, **changes)
        assert status == 200, body
        return body["data"]["order_id"]

    async def modify(self, order_id: str, **changes: Any) -> tuple[int, Any]:
        return await self("PUT", f"/orders/regular/{order_id}", changes)

    async def cancel(self, order_id: str) -> tuple[int, Any]:
        return await self("DELETE", f"/orders/regular/{order_id}")


@asynccontextmanager
async def kite(**options: Any):
    server = FakeKite(**options)
    await server.start()
    http = Http(server)
    try:
        yield server, http
    finally:
        await http.session.close()
        await server.stop()


@pytest.fixture
async def env():
    async with kite() as pair:
        yield pair


@asynccontextmanager
async def ticker(server: FakeKite, tokens: tuple[int, ...] = (INFY,)):
    """A bare ticker socket in full mode on ``tokens``."""
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{server.base}/ws?api_key={API_KEY}&access_token={server.access_token}") as ws:
        await until(lambda: server.sockets)
        if tokens:
            await ws.send_str(orjson.dumps({"a": "mode", "v": ["full", list(tokens)]}).decode())
            await until(lambda: all(t in server.modes for t in tokens))
        yield ws


async def received(ws, quiet: float = 0.15) -> list:
    """What the socket got until ``quiet`` seconds pass with nothing: text as JSON, binary as bytes."""
    out = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return out
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(orjson.loads(msg.data))
        elif msg.type == aiohttp.WSMsgType.BINARY:
            out.append(msg.data)
        else:
            return out


def statuses(server: FakeKite, order_id: str) -> list[str]:
    return [r["status"] for r in server.orders[order_id]]


def refusal(body: dict) -> tuple[str, str]:
    assert body["status"] == "error" and body["data"] is None
    return body["error_type"], body["message"]


RMS = "RMS:Rule: Check circuit limit including square off order exceeds"
TICK_REFUSAL = "Tick size for this script is {:.2f}. Kindly enter price in the multiple of tick size for this script"


# --- the order's life ----------------------------------------------------------------------------
async def test_a_limit_order_passes_kites_transient_states_to_open(env):
    server, http = env
    order_id = await http.placed()
    assert statuses(server, order_id) == [*OPENING, "OPEN"]


async def test_a_stop_order_rests_in_trigger_pending(env):
    server, http = env
    order_id = await http.placed(STOP)
    assert statuses(server, order_id) == [*OPENING, "TRIGGER PENDING"]


async def test_the_next_matching_order_is_acknowledged_then_rejected_by_kites_rms(env):
    server, http = env
    server.reject_next(RMS, symbol="NSE:INFY", order_type="SL-M", side="SELL")
    limit = await http.placed()
    sbin = await http.placed(STOP, tradingsymbol="SBIN", trigger_price=800.0, tag="t2")
    status, body = await http.place(STOP, tag="t3")
    rejected = body["data"]["order_id"]
    again = await http.placed(STOP, tag="t4")
    assert status == 200  # acknowledged: Kite answered its order id
    assert statuses(server, rejected) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "REJECTED"]
    assert server.orders[rejected][-1]["status_message"] == RMS
    assert [server.orders[o][-1]["status"] for o in (limit, sbin, again)] == ["OPEN", "TRIGGER PENDING",
                                                                              "TRIGGER PENDING"]


async def test_an_rms_rejection_arrives_after_the_answer_and_can_take_several_orders():
    async with kite(transition_delay_s=0.05) as (server, http):
        server.reject_next("RMS: blocked", order_type="SL-M", times=2)
        first, second = await http.placed(STOP), await http.placed(STOP, tag="t2")
        assert statuses(server, first)[0] == "PUT ORDER REQ RECEIVED"  # answered before its fate
        third = await http.placed(STOP, tag="t3")
        await until(lambda: all(server.orders[o][-1]["status"] not in OPENING for o in (first, second, third)))
    assert [server.orders[o][-1]["status"] for o in (first, second, third)] == ["REJECTED", "REJECTED",
                                                                               "TRIGGER PENDING"]


async def test_an_rms_rejection_asks_for_what_kite_knows(env):
    server, _http = env
    with pytest.raises(KeyError):
        server.reject_next("x", symbol="NSE:NOPE")
    with pytest.raises(ValueError):
        server.reject_next("x", order_type="STOP")
    with pytest.raises(ValueError):
        server.reject_next("x", times=0)


async def test_a_rejected_order_is_validated_then_rejected_with_the_reason(env):
    server, http = env
    server.reject_reason = "RMS: Margin Exceeds"
    order_id = await http.placed()
    assert statuses(server, order_id) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "REJECTED"]
    assert server.orders[order_id][-1]["status_message"] == "RMS: Margin Exceeds"


async def test_reject_types_limit_rejections_to_those_order_types(env):
    server, http = env
    server.reject_reason, server.reject_types = "static IP", {"MARKET"}
    assert server.orders[await http.placed()][-1]["status"] == "OPEN"


async def test_a_modify_passes_its_pending_states_back_to_the_working_status(env):
    server, http = env
    order_id = await http.placed(STOP)
    status, _ = await http.modify(order_id, trigger_price=1069.5)
    assert status == 200 and statuses(server, order_id)[4:] == [
        "MODIFY VALIDATION PENDING", "MODIFY PENDING", "TRIGGER PENDING"]
    assert server.orders[order_id][-1]["trigger_price"] == 1069.5 and server.modifies == [{"trigger_price": "1069.5"}]


async def test_a_cancel_passes_cancel_pending_to_cancelled(env):
    server, http = env
    order_id = await http.placed()
    status, _ = await http.cancel(order_id)
    last = server.orders[order_id][-1]
    assert status == 200 and statuses(server, order_id)[4:] == ["CANCEL PENDING", "CANCELLED"]
    assert (last["cancelled_quantity"], last["pending_quantity"]) == (10, 0)


async def test_rows_carry_kites_fields_and_exchange_times_that_never_go_back(env):
    _server, http = env
    order_id = await http.placed()
    _, body = await http("GET", f"/orders/{order_id}")
    rows = body["data"]
    for field in ("order_id", "status", "status_message", "tag", "tradingsymbol", "exchange", "transaction_type",
                  "order_type", "quantity", "price", "trigger_price", "filled_quantity", "pending_quantity",
                  "cancelled_quantity", "average_price", "variety", "product", "validity", "order_timestamp",
                  "exchange_update_timestamp"):
        assert all(field in r for r in rows), field
    stamps = [r["exchange_update_timestamp"] for r in rows]
    assert stamps == sorted(stamps) and stamps[0].startswith("2026-11-23 10:00:0")
    assert not any(k.startswith("_") for r in rows for k in r)


async def test_rows_are_stamped_to_the_second_and_rows_of_one_second_share_it():
    clock = ServerClock()
    async with kite(clock=clock) as (server, http):
        order_id = await http.placed(STOP)
        clock.t += 1.5
        await http.modify(order_id, trigger_price=1069.5)
        clock.t += 0.4  # still the same second
        await server.trigger(order_id)
        rows = (await http("GET", f"/orders/{order_id}"))[1]["data"]
    assert [(r["status"], r["exchange_update_timestamp"]) for r in rows] == [
        *((s, "2026-11-23 10:00:00") for s in OPENING), ("TRIGGER PENDING", "2026-11-23 10:00:00"),
        *((s, "2026-11-23 10:00:01") for s in ("MODIFY VALIDATION PENDING", "MODIFY PENDING", "TRIGGER PENDING",
                                              "OPEN"))]
    assert {r["order_timestamp"] for r in rows} == {"2026-11-23 10:00:00"}


async def test_with_sequence_stamps_every_row_is_a_second_after_the_last():
    clock = ServerClock()
    async with kite(clock=clock, one_second_stamps=False) as (server, http):
        order_id = await http.placed()
        stamps = [r["exchange_update_timestamp"] for r in server.orders[order_id]]
    assert stamps == [f"2026-11-23 10:00:0{k}" for k in range(4)]


async def test_with_a_transition_delay_the_answer_comes_before_the_order_is_open():
    async with kite(transition_delay_s=0.05) as (server, http):
        order_id = await http.placed()
        assert statuses(server, order_id) == ["PUT ORDER REQ RECEIVED"]
        await until(lambda: server.orders[order_id][-1]["status"] == "OPEN")
        assert statuses(server, order_id) == [*OPENING, "OPEN"]


async def test_a_seeded_order_carries_its_earlier_modifications_in_its_history_and_at_the_cap():
    async with kite(orders_per_second=None) as (server, http):
        order_id = server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                                     trigger_price=950.0, status="TRIGGER PENDING", tag="otabc", modifications=20)
        rows = (await http("GET", f"/orders/{order_id}"))[1]["data"]
        assert [r["status"] for r in rows] == ["TRIGGER PENDING", *["MODIFY VALIDATION PENDING", "MODIFY PENDING",
                                                                     "TRIGGER PENDING"] * 20]
        assert server.modifications(order_id) == 20
        answers = [(await http.modify(order_id, trigger_price=951.0 + k / 10))[0] for k in range(6)]
    assert answers == [200] * 5 + [400] and server.orders[order_id][-1]["trigger_price"] == 951.4


async def test_a_seeded_order_has_one_row_as_given(env):
    server, _http = env
    order_id = server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                                 trigger_price=950.0, status="TRIGGER PENDING", tag="otabc")
    [row] = server.orders[order_id]
    assert (row["status"], row["trigger_price"], row["tag"], row["filled_quantity"]) == (
        "TRIGGER PENDING", 950.0, "otabc", 0)
    assert server.working() == {order_id: row}


# --- the ticker's order messages ------------------------------------------------------------------
async def test_every_state_change_is_an_order_message_on_the_ticker(env):
    server, http = env
    async with ticker(server) as ws:
        order_id = await http.placed()
        got = await received(ws)
    assert [(m["type"], m["data"]["order_id"], m["data"]["status"]) for m in got] == [
        ("order", order_id, s) for s in [*OPENING, "OPEN"]]


async def test_final_order_messages_only_are_sent_when_asked():
    async with kite(ws_order_messages="final") as (server, http), ticker(server) as ws:
        order_id = await http.placed()
        await server.complete(order_id, 1074.3)
        got = await received(ws)
    assert [m["data"]["status"] for m in got] == ["COMPLETE"]


async def test_settled_order_messages_leave_out_the_transient_states():
    async with kite(ws_order_messages="settled") as (server, http), ticker(server) as ws:
        order_id = await http.placed()
        await server.fill(order_id, 4, 1074.3)
        got = await received(ws)
    assert [(m["data"]["status"], m["data"]["filled_quantity"]) for m in got] == [("OPEN", 0), ("OPEN", 4)]


async def test_no_order_messages_while_the_book_still_shows_the_order():
    async with kite(ws_order_messages="none") as (server, http), ticker(server) as ws:
        order_id = await http.placed()
        got = await received(ws)
        _, body = await http("GET", "/orders")
    assert got == [] and [r["order_id"] for r in body["data"]] == [order_id]


async def test_the_ticker_loses_order_messages_at_the_drop_rate_the_same_way_for_a_seed():
    lost = []
    for _ in range(2):
        async with kite(ws_drop_rate=0.5, seed=7) as (server, http), ticker(server) as ws:
            for k in range(4):
                await http.placed(tag=f"d{k}")
            got = await received(ws)
        assert len(got) + len(server.ws_lost) == 16 and 0 < len(server.ws_lost) < 16
        assert [m["data"] for m in got] == server.order_messages
        lost.append([(r["order_id"], r["status"]) for r in server.ws_lost])
    assert lost[0] == lost[1]


async def test_delayed_order_messages_arrive_after_the_rest_answer_in_order():
    async with kite(ws_delay_s=0.2) as (server, http), ticker(server) as ws:
        order_id = await http.placed()
        assert server.orders[order_id][-1]["status"] == "OPEN"
        early = await received(ws, quiet=0.1)
        late = await received(ws, quiet=0.3)
    assert early == [] and [m["data"]["status"] for m in late] == [*OPENING, "OPEN"]


async def test_a_ws_filter_keeps_one_orders_messages_off_the_ticker(env):
    server, http = env
    server.ws_filter = lambda row: row["tag"] != "quiet"
    async with ticker(server) as ws:
        await http.placed(tag="quiet")
        loud = await http.placed(tag="loud")
        got = await received(ws)
    assert {m["data"]["order_id"] for m in got} == {loud}


async def test_fills_and_exchange_cancels_are_order_messages(env):
    server, http = env
    order_id = await http.placed()
    async with ticker(server) as ws:
        await server.fill(order_id, 4, 1074.3)
        await server.cancel_rest(order_id, "protection range")
        got = await received(ws)
    assert [(m["data"]["status"], m["data"]["filled_quantity"], m["data"]["status_message"]) for m in got] == [
        ("OPEN", 4, None), ("CANCELLED", 4, "protection range")]


# --- the order book ------------------------------------------------------------------------------
async def test_the_book_lags_new_orders_are_absent_and_old_states_shown():
    clock = ServerClock()
    async with kite(book_lag_s=1.0, clock=clock) as (server, http):
        order_id = await http.placed()
        assert (await http("GET", "/orders"))[1]["data"] == []
        assert (await http("GET", f"/orders/{order_id}"))[0] == 400
        clock.t += 1.5
        await server.complete(order_id, 1074.3)
        [row] = (await http("GET", "/orders"))[1]["data"]
        assert row["status"] == "OPEN"
        clock.t += 1.5
        assert [r["status"] for r in (await http("GET", f"/orders/{order_id}"))[1]["data"]] == [
            *OPENING, "OPEN", "COMPLETE"]


async def test_a_book_filter_hides_rows_from_the_book_but_not_from_the_ticker(env):
    server, http = env
    server.book_filter = lambda row: row["status"] != "COMPLETE"
    order_id = await http.placed()
    async with ticker(server) as ws:
        await server.complete(order_id, 1074.3)
        got = await received(ws)
    [row] = (await http("GET", "/orders"))[1]["data"]
    assert row["status"] == "OPEN" and got[0]["data"]["status"] == "COMPLETE"


async def test_the_history_of_an_unknown_order_is_refused(env):
    _server, http = env
    status, body = await http("GET", "/orders/123")
    assert status == 400 and refusal(body) == ("InputException", "Invalid order_id")


# --- positions and trades ------------------------------------------------------------------------
async def test_positions_from_fills_are_the_signed_sum_with_the_average_price():
    async with kite(positions_from_fills=True) as (server, http):
        buy = await http.placed()
        await server.fill(buy, 4, 1074.0)
        await server.fill(buy, 6, 1075.0)
        sell = await http.placed(transaction_type="SELL", quantity=3, price=1080.0, tag="s")
        await server.complete(sell, 1080.0)
        [p] = (await http("GET", "/portfolio/positions"))[1]["data"]["net"]
    assert (p["tradingsymbol"], p["quantity"], p["average_price"]) == ("INFY", 7, pytest.approx(1074.6))
    assert (p["buy_quantity"], p["sell_quantity"], p["realised"]) == (10, 3, pytest.approx(16.2))


async def test_a_position_closed_through_zero_reopens_at_the_fill_price():
    async with kite(positions_from_fills=True) as (server, http):
        await server.complete(await http.placed(quantity=5), 1074.0)
        await server.complete(await http.placed(transaction_type="SELL", quantity=8, price=1070.0, tag="s"), 1070.0)
        [p] = (await http("GET", "/portfolio/positions"))[1]["data"]["net"]
    assert (p["quantity"], p["average_price"], p["realised"]) == (-3, 1070.0, -20.0)


async def test_positions_lag_behind_the_fills():
    clock = ServerClock()
    async with kite(positions_from_fills=True, positions_lag_s=2.0, clock=clock) as (server, http):
        await server.complete(await http.placed(), 1074.0)
        assert (await http("GET", "/portfolio/positions"))[1]["data"]["net"] == []
        clock.t += 2.5
        [p] = (await http("GET", "/portfolio/positions"))[1]["data"]["net"]
    assert p["quantity"] == 10


async def test_the_static_net_positions_are_served_by_default(env):
    server, http = env
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "TCS", "quantity": 5, "average_price": 3000.0}]
    await server.complete(await http.placed(), 1074.0)
    _, body = await http("GET", "/portfolio/positions")
    assert body["data"] == {"net": server.net_positions, "day": server.net_positions}


async def test_trades_list_each_fill_and_per_order(env):
    server, http = env
    first, second = await http.placed(), await http.placed(tag="t2")
    await server.fill(first, 4, 1074.0)
    await server.fill(first, 6, 1074.2)
    await server.complete(second, 1074.1)
    all_trades = (await http("GET", "/trades"))[1]["data"]
    mine = (await http("GET", f"/orders/{first}/trades"))[1]["data"]
    assert [(t["order_id"], t["quantity"], t["average_price"]) for t in all_trades] == [
        (first, 4, 1074.0), (first, 6, 1074.2), (second, 10, 1074.1)]
    assert [t["trade_id"] for t in mine] == [t["trade_id"] for t in all_trades[:2]]


# --- refusals in Kite's words ---------------------------------------------------------------------
async def test_a_price_off_the_tick_grid_is_refused_with_kites_words(env):
    server, http = env
    status, body = await http.place(price=1074.35)
    assert status == 400 and refusal(body) == ("InputException", TICK_REFUSAL.format(0.1)) and server.orders == {}


async def test_a_trigger_off_the_tick_grid_is_refused(env):
    _server, http = env
    status, body = await http.place(STOP, tradingsymbol="SBIN", trigger_price=800.02)
    assert status == 400 and refusal(body)[1] == TICK_REFUSAL.format(0.05)


async def test_a_new_tick_size_changes_the_grid_and_the_instruments_file(env):
    server, http = env
    server.set_tick_size("NSE:INFY", 0.05)
    assert (await http.place(price=1074.35))[0] == 200
    _, csv = await http("GET", "/instruments/NSE")
    assert "408065,1594,INFY,INFOSYS,0,,0,0.05,1,EQ,NSE,NSE" in csv.splitlines()
    server.set_tick_size("NSE:INFY", 0.5)
    assert refusal((await http.place(price=1074.3, tag="t2"))[1])[1] == TICK_REFUSAL.format(0.5)


async def test_a_sell_stop_triggering_at_or_above_the_ltp_is_refused(env):
    server, http = env
    server.set_ltp("NSE:INFY", 1070.0)
    status, body = await http.place(STOP, trigger_price=1070.0)
    assert status == 400 and refusal(body) == ("InputException", SELL_TRIGGER_REFUSAL)


async def test_a_buy_stop_triggering_at_or_below_the_ltp_is_refused(env):
    server, http = env
    server.set_ltp(INFY, 1070.0)
    status, body = await http.place(STOP, transaction_type="BUY", trigger_price=1069.9)
    assert status == 400 and refusal(body)[1] == BUY_TRIGGER_REFUSAL


async def test_without_a_known_ltp_the_trigger_side_is_not_checked(env):
    _server, http = env
    assert (await http.place(STOP, trigger_price=2000.0))[0] == 200


async def test_a_pushed_tick_is_the_ltp_the_stop_rule_uses(env):
    server, http = env
    await server.push([Tick(INFY, 1065.0, "ltp", True)])
    assert refusal((await http.place(STOP, trigger_price=1066.0))[1])[1] == SELL_TRIGGER_REFUSAL
    assert (await http.place(STOP, trigger_price=1064.0))[0] == 200


async def test_an_sl_limit_on_the_wrong_side_of_its_trigger_is_refused(env):
    _server, http = env
    sell = {**STOP, "order_type": "SL", "price": 1070.5, "market_protection": None}
    assert refusal((await http.place(sell))[1])[1] == SELL_LIMIT_REFUSAL
    buy = {**sell, "transaction_type": "BUY", "price": 1069.5}
    assert refusal((await http.place(buy))[1])[1] == BUY_LIMIT_REFUSAL
    assert (await http.place(sell, price=1069.5))[0] == 200


async def test_prices_and_triggers_outside_the_circuit_are_refused(env):
    server, http = env
    server.set_circuit("NSE:INFY", 1000.0, 1100.0)
    assert refusal((await http.place(price=1100.1))[1])[1] == "Price cannot be above the upper circuit price"
    assert refusal((await http.place(STOP, trigger_price=999.9))[1])[1] == (
        "Trigger price cannot be below the lower circuit price")
    assert server.orders == {}
    assert (await http.place(price=1100.0))[0] == 200


async def test_a_modify_outside_the_circuit_is_refused_and_changes_nothing(env):
    server, http = env
    target = await http.placed(transaction_type="SELL", price=1090.0)
    stop = await http.placed(STOP, trigger_price=1010.0, tag="t2")
    server.set_circuit("NSE:INFY", 1000.0, 1100.0)
    assert refusal((await http.modify(target, price=1100.5))[1])[1] == "Price cannot be above the upper circuit price"
    assert refusal((await http.modify(stop, trigger_price=995.0))[1])[1] == (
        "Trigger price cannot be below the lower circuit price")
    assert (server.orders[target][-1]["price"], server.orders[stop][-1]["trigger_price"]) == (1090.0, 1010.0)
    assert server.modifications(target) == server.modifications(stop) == 0


async def test_a_circuit_must_be_a_band(env):
    server, _http = env
    for lower, upper in ((1100.0, 1000.0), (0.0, 10.0)):
        with pytest.raises(ValueError, match="lower < upper"):
            server.set_circuit("NSE:INFY", lower, upper)
    assert server.instruments["NSE:INFY"].circuit is None


async def test_market_and_sl_m_orders_without_market_protection_are_refused(env):
    server, http = env
    for form in ({**LIMIT, "order_type": "MARKET", "price": None}, {**STOP, "market_protection": None},
                 {**STOP, "market_protection": 0}):
        status, body = await http.place(form)
        assert status == 400 and refusal(body) == ("InputException", MP_REFUSAL)
    assert server.orders == {}


async def test_a_modify_into_market_without_protection_is_refused(env):
    server, http = env
    order_id = await http.placed()
    assert refusal((await http.modify(order_id, order_type="MARKET"))[1])[1] == MP_REFUSAL
    assert (await http.modify(order_id, order_type="MARKET", market_protection=-1))[0] == 200
    assert (server.orders[order_id][-1]["order_type"], server.orders[order_id][-1]["status"]) == ("MARKET", "OPEN")


async def test_the_26th_modification_is_refused_and_the_order_keeps_working():
    async with kite(orders_per_second=None, orders_per_minute=None) as (server, http):
        order_id = await http.placed()
        for k in range(25):
            assert (await http.modify(order_id, price=1070.0 + k / 10))[0] == 200
        status, body = await http.modify(order_id, price=1060.0)
        last = server.orders[order_id][-1]
    assert status == 400 and refusal(body) == ("InputException", MODIFICATIONS_REFUSAL)
    assert (last["status"], last["price"]) == ("OPEN", 1072.4) and order_id in server.working()


async def test_modification_counts_are_kites_per_order_and_outlive_the_client_that_made_them():
    async with kite(orders_per_second=None, orders_per_minute=None) as (server, http):
        order_id = await http.placed(STOP)
        other = await http.placed(STOP, tag="t2")
        for k in range(25):
            assert (await http.modify(order_id, trigger_price=1069.0 - k / 10))[0] == 200
        await http.session.close()
        again = Http(server)  # a new client (OTrade restarted): the count is Kite's
        try:
            status, body = await again.modify(order_id, trigger_price=1060.0)
            rows = (await again("GET", f"/orders/{order_id}"))[1]["data"]
            assert (await again.modify(other, trigger_price=1060.0))[0] == 200
        finally:
            await again.session.close()
    assert status == 400 and refusal(body) == ("InputException", MODIFICATIONS_REFUSAL)
    assert sum(r["status"] == "MODIFY VALIDATION PENDING" for r in rows) == 25 == server.modifications(order_id)
    assert rows[-1]["modified"] is True and rows[-1]["trigger_price"] == 1066.6
    assert server.modifications(other) == 1


async def test_a_modify_of_a_complete_order_is_an_order_exception(env):
    server, http = env
    order_id = await http.placed()
    await server.complete(order_id, 1074.3)
    status, body = await http.modify(order_id, price=1074.0)
    assert status == 400 and refusal(body) == ("OrderException", "Order cannot be modified as it is COMPLETE")


async def test_a_cancel_of_a_cancelled_order_is_an_order_exception(env):
    _server, http = env
    order_id = await http.placed()
    await http.cancel(order_id)
    status, body = await http.cancel(order_id)
    assert status == 400 and refusal(body) == ("OrderException", "Order cannot be cancelled as it is CANCELLED")


async def test_a_cancel_refusal_set_by_the_test_is_an_order_exception(env):
    server, http = env
    order_id = await http.placed()
    server.cancel_refusal = "the exchange is not accepting requests"
    assert refusal((await http.cancel(order_id))[1]) == ("OrderException", "the exchange is not accepting requests")
    assert order_id in server.working()


async def test_unknown_order_ids_are_invalid_for_modify_and_cancel(env):
    _server, http = env
    for status, body in (await http.modify("42", price=1.0), await http.cancel("42")):
        assert status == 400 and refusal(body) == ("InputException", "Invalid order_id")


async def test_a_modify_below_the_filled_quantity_is_refused(env):
    server, http = env
    order_id = await http.placed()
    await server.fill(order_id, 6, 1074.3)
    status, body = await http.modify(order_id, quantity=5)
    assert status == 400 and "filled quantity" in refusal(body)[1]
    assert server.orders[order_id][-1]["quantity"] == 10


async def test_a_refused_modify_leaves_the_order_as_it_was(env):
    server, http = env
    order_id = await http.placed(STOP)
    server.set_ltp("NSE:INFY", 1072.0)
    rows = len(server.orders[order_id])
    assert refusal((await http.modify(order_id, trigger_price=1072.5))[1])[1] == SELL_TRIGGER_REFUSAL
    assert len(server.orders[order_id]) == rows and server.orders[order_id][-1]["trigger_price"] == 1070.0


async def test_a_triggered_stops_trigger_no_longer_counts_on_a_modify(env):
    server, http = env
    order_id = await http.placed(STOP)
    await server.trigger(order_id)
    server.set_ltp("NSE:INFY", 1060.0)
    assert (await http.modify(order_id, order_type="MARKET", market_protection=-1))[0] == 200
    assert server.orders[order_id][-1]["status"] == "OPEN"


async def test_a_tag_longer_than_20_characters_is_refused(env):
    server, http = env
    status, body = await http.place(tag="x" * 21)
    assert status == 400 and refusal(body) == ("InputException", TAG_REFUSAL) and server.orders == {}
    assert (await http.place(tag="x" * 20))[0] == 200


async def test_an_unknown_instrument_is_refused(env):
    _server, http = env
    status, body = await http.place(tradingsymbol="NOPE")
    assert status == 400 and refusal(body)[0] == "InputException"


async def test_the_11th_order_request_in_a_second_is_429():
    clock = ServerClock()
    async with kite(clock=clock) as (server, http):
        order_id = await http.placed()
        for _ in range(5):
            await http.modify(order_id, price=1074.0)
        for _ in range(4):
            assert (await http.cancel("42"))[0] == 400  # refused, yet an order request all the same
        status, body = await http.place(tag="t11")
        clock.t += 1.01
        assert (await http.place(tag="t12"))[0] == 200
    assert status == 429 and refusal(body) == ("NetworkException", RATE_REFUSAL) and len(server.orders) == 2


async def test_the_order_rate_window_rolls():
    clock = ServerClock()
    async with kite(clock=clock, orders_per_second=2) as (_server, http):
        await http.placed()
        clock.t += 0.5
        await http.placed()
        assert (await http.place())[0] == 429
        clock.t += 0.6  # the first has left the window
        assert (await http.place())[0] == 200


async def test_the_per_minute_order_cap():
    clock = ServerClock()
    async with kite(clock=clock, orders_per_second=None, orders_per_minute=3) as (_server, http):
        for _ in range(3):
            await http.placed()
            clock.t += 10
        status, body = await http.place()
        assert status == 429 and refusal(body)[1] == MINUTE_CAP_REFUSAL
        clock.t += 31
        assert (await http.place())[0] == 200


async def test_modifies_and_cancels_count_against_the_per_minute_cap_too():
    clock = ServerClock()
    async with kite(clock=clock, orders_per_second=None, orders_per_minute=3) as (_server, http):
        order_id = await http.placed()
        clock.t += 10
        await http.modify(order_id, price=1074.0)
        clock.t += 10
        await http.cancel(order_id)
        status, body = await http.place(tag="t4")
        clock.t += 41  # the place has left the minute
        assert (await http.place(tag="t5"))[0] == 200
    assert status == 429 and refusal(body) == ("NetworkException", MINUTE_CAP_REFUSAL)


async def test_every_order_request_is_logged_with_its_answer_retries_and_refusals_included():
    clock = ServerClock()
    async with kite(clock=clock, orders_per_second=2) as (server, http):
        server.fault("place", "429")
        assert (await http.place())[0] == 429  # Kite's 429: the request reached it all the same
        order_id = await http.placed()  # the retry
        clock.t += 0.5
        await http.modify(order_id, price=1074.0)
        status, _ = await http.cancel(order_id)  # the third admitted in a second: refused
        clock.t += 0.6
        assert (await http.cancel(order_id))[0] == 200  # its retry, a request of its own
    assert status == 429
    assert [(c.at, c.endpoint, c.status, c.message) for c in server.order_calls] == [
        (1000.0, "place", 429, RATE_REFUSAL), (1000.0, "place", 200, ""), (1000.5, "modify", 200, ""),
        (1000.5, "cancel", 429, RATE_REFUSAL), (1001.1, "cancel", 200, "")]
    assert (server.calls["place"], server.calls["modify"], server.calls["cancel"]) == (2, 1, 2)


async def test_the_daily_order_cap():
    async with kite(orders_per_second=None, orders_per_day=2) as (_server, http):
        await http.placed()
        await http.placed()
        status, body = await http.place()
    assert status == 429 and refusal(body) == ("NetworkException", DAY_CAP_REFUSAL)


# --- faults --------------------------------------------------------------------------------------
async def unanswered_place(server: FakeKite, http: Http, kind: str, error: Any = TimeoutError, hang_s: float = 0.3,
                           timeout: float = 0.1) -> None:
    """A place call under fault ``kind`` (hangs and silences lasting ``hang_s``) that gets no
    answer within ``timeout`` s, only ``error``."""
    server.hang_s = hang_s
    server.fault("place", kind)
    with pytest.raises(error):
        await http.place(timeout=timeout)


async def test_a_hang_waits_before_doing_anything(env):
    server, http = env
    await unanswered_place(server, http, "hang")
    assert server.orders == {}
    await until(lambda: server.orders)  # the order is made once the hang is over


async def test_a_hang_after_makes_the_order_then_waits(env):
    server, http = env
    await unanswered_place(server, http, "hang-after")
    assert len(server.orders) == 1


async def test_a_reset_closes_the_connection_without_making_the_order(env):
    server, http = env
    await unanswered_place(server, http, "reset", aiohttp.ServerDisconnectedError, timeout=2.0)
    assert server.orders == {} and server.fault_log == [("place", "reset")]


async def test_a_reset_after_makes_the_order_and_closes_the_connection(env):
    server, http = env
    await unanswered_place(server, http, "reset-after", aiohttp.ServerDisconnectedError, timeout=2.0)
    assert len(server.orders) == 1


async def test_a_timeout_after_makes_the_order_and_never_answers(env):
    server, http = env
    await unanswered_place(server, http, "timeout-after", (aiohttp.ServerDisconnectedError, TimeoutError),
                           hang_s=0.2, timeout=1.0)
    assert len(server.orders) == 1


async def test_a_timeout_never_answers_and_makes_nothing(env):
    server, http = env
    await unanswered_place(server, http, "timeout", aiohttp.ServerDisconnectedError, hang_s=0.2, timeout=1.0)
    assert server.orders == {}


@pytest.mark.parametrize(("kind", "status", "made"), [
    ("500-before", 502, False), ("500-after", 503, True), ("503", 503, True), ("429", 429, False),
    ("static-ip", 403, False), ("network", 502, False), ("network-after", 502, True)])
async def test_error_faults_answer_their_status_and_do_the_action_or_not(env, kind, status, made):
    server, http = env
    server.fault("place", kind)
    got, body = await http.place()
    assert got == status and body["status"] == "error" and bool(server.orders) == made
    if kind == "static-ip":
        assert refusal(body) == ("PermissionException", STATIC_IP_REFUSAL)


async def test_a_modify_fault_after_the_change_leaves_it_made(env):
    server, http = env
    order_id = await http.placed()
    server.fault("modify", "500-after")
    assert (await http.modify(order_id, price=1074.0))[0] == 503
    assert server.orders[order_id][-1]["price"] == 1074.0


async def test_a_cancel_429_leaves_the_order_working(env):
    server, http = env
    order_id = await http.placed()
    server.fault("cancel", "429")
    assert (await http.cancel(order_id))[0] == 429 and order_id in server.working()


async def test_read_endpoints_take_faults_too(env):
    server, http = env
    order_id = await http.placed()
    server.hang_s = 0.3
    server.fault("history", "503")
    server.fault("orders", "hang")
    assert (await http("GET", f"/orders/{order_id}"))[0] == 503
    with pytest.raises(TimeoutError):
        await http("GET", "/orders", timeout=0.1)
    assert (await http("GET", f"/orders/{order_id}"))[0] == 200


async def test_a_fault_repeats_for_the_times_asked(env):
    server, http = env
    server.fault("positions", "500-before", times=2)
    assert [(await http("GET", "/portfolio/positions"))[0] for _ in range(3)] == [502, 502, 200]


async def test_the_legacy_faults_list_still_drives_place_calls(env):
    server, http = env
    server.faults = ["429", "500-after"]
    assert [(await http.place())[0] for _ in range(3)] == [429, 503, 200]
    assert server.place_calls == 3 and len(server.orders) == 2


async def test_a_ticker_fault_refuses_the_handshake(env):
    server, _http = env
    server.fault("ws", "503")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{server.base}/ws?api_key={API_KEY}&access_token={server.access_token}")
    assert info.value.status == 503


async def test_a_ticker_drop_fault_closes_the_socket_at_once(env):
    server, _http = env
    server.fault("ws", "drop")
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{server.base}/ws?api_key={API_KEY}&access_token={server.access_token}") as ws:
        msg = await ws.receive(timeout=1)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and server.sockets == []


async def test_unknown_fault_kinds_and_endpoints_are_errors(env):
    server, _http = env
    with pytest.raises(ValueError, match="does not apply"):
        server.fault("orders", "static-ip")
    with pytest.raises(ValueError, match="unknown endpoint"):
        server.fault("quotes", "429")


async def test_chaos_draws_the_same_faults_for_the_same_seed():
    logs = []
    for _ in range(2):
        async with kite(orders_per_second=None) as (server, http):
            server.chaos(0.5, kinds=["500-before", "429", "500-after"], endpoints=["place", "orders"], seed=3)
            for k in range(12):
                await http.place(tag=f"c{k}")
                await http("GET", "/orders")
            logs.append(list(server.fault_log))
            server.chaos(0)
            assert (await http.place(tag="calm"))[0] == 200
    assert logs[0] == logs[1] and 4 < len(logs[0]) < 20 and {e for e, _ in logs[0]} == {"place", "orders"}


# --- the exchange --------------------------------------------------------------------------------
async def test_fills_in_parts_average_and_complete(env):
    server, http = env
    order_id = await http.placed()
    await server.fill(order_id, 4, 1074.0)
    await server.complete(order_id, 1074.5)
    last = server.orders[order_id][-1]
    assert (last["status"], last["filled_quantity"], last["pending_quantity"], last["average_price"]) == (
        "COMPLETE", 10, 0, 1074.3)


async def test_the_exchange_cannot_fill_a_final_order_or_more_than_is_pending(env):
    server, http = env
    order_id = await http.placed()
    with pytest.raises(ValueError, match="pending"):
        await server.fill(order_id, 11, 1074.0)
    await http.cancel(order_id)
    with pytest.raises(ValueError, match="CANCELLED"):
        await server.fill(order_id, 1, 1074.0)


async def test_a_trigger_moves_a_stop_to_open(env):
    server, http = env
    order_id = await http.placed(STOP)
    await server.trigger(order_id)
    assert statuses(server, order_id)[-2:] == ["TRIGGER PENDING", "OPEN"]
    with pytest.raises(ValueError):
        await server.trigger(order_id)


async def test_an_exchange_cancel_keeps_the_fill_and_cancels_the_rest(env):
    server, http = env
    order_id = await http.placed()
    await server.fill(order_id, 4, 1074.0)
    await server.cancel_rest(order_id, "outside the limit price protection range")
    last = server.orders[order_id][-1]
    assert (last["status"], last["filled_quantity"], last["cancelled_quantity"], last["status_message"]) == (
        "CANCELLED", 4, 6, "outside the limit price protection range")


async def test_a_trade_through_a_sell_stop_triggers_and_fills_it_at_the_trade_price(env):
    server, http = env
    order_id = await http.placed(STOP)
    assert await server.match("NSE:INFY", 1070.5) == []
    assert await server.match("NSE:INFY", 1069.0) == [order_id]
    assert statuses(server, order_id)[-2:] == ["OPEN", "COMPLETE"]
    assert server.orders[order_id][-1]["average_price"] == 1069.0


async def test_a_trade_through_a_limit_fills_it_at_its_limit(env):
    server, http = env
    buy = await http.placed()
    sell = await http.placed(transaction_type="SELL", price=1080.0, tag="s")
    assert await server.match("NSE:INFY", 1074.4) == []
    assert await server.match("NSE:INFY", 1074.0) == [buy]
    assert await server.match("NSE:INFY", 1081.0) == [sell]
    assert [server.orders[o][-1]["average_price"] for o in (buy, sell)] == [1074.3, 1080.0]


async def test_a_triggered_sl_whose_limit_the_trade_misses_waits_open(env):
    server, http = env
    order_id = await http.placed(STOP, order_type="SL", price=1069.0, market_protection=None)
    assert await server.match("NSE:INFY", 1068.0) == [order_id]
    assert server.orders[order_id][-1]["status"] == "OPEN"
    assert await server.match("NSE:INFY", 1069.5) == [order_id]
    assert server.orders[order_id][-1]["average_price"] == 1069.0


async def test_a_trade_fills_market_orders_at_its_price(env):
    server, http = env
    order_id = await http.placed(order_type="MARKET", price=None, market_protection=-1)
    assert await server.match(INFY, 1075.5) == [order_id]
    assert server.orders[order_id][-1]["average_price"] == 1075.5


async def test_auto_match_trades_every_pushed_tick():
    async with kite(auto_match=True) as (server, http):
        order_id = await http.placed(STOP)
        await server.push([Tick(INFY, 1071.0, "ltp", True), Tick(INFY, 1069.5, "ltp", True)])
    assert server.orders[order_id][-1]["status"] == "COMPLETE" and server.fills[0]["average_price"] == 1069.5


async def test_auto_fill_market_fills_at_the_ltp_right_after_acceptance():
    async with kite(auto_fill_market=True) as (server, http):
        server.set_ltp("NSE:INFY", 1074.6)
        order_id = await http.placed(order_type="MARKET", price=None, market_protection=-1)
    assert statuses(server, order_id)[-2:] == ["OPEN", "COMPLETE"]
    assert server.orders[order_id][-1]["average_price"] == 1074.6


# --- the ticker's ticks --------------------------------------------------------------------------
async def test_ticks_reach_only_the_sockets_subscribed_to_them(env):
    server, _http = env
    async with ticker(server, (SBIN,)) as ws:
        await server.push([Tick(INFY, 1074.3, "ltp", True)])
        assert await received(ws, quiet=0.1) == []
        await server.push([Tick(INFY, 1074.3, "ltp", True), Tick(SBIN, 801.05, "ltp", True)])
        [frame] = await received(ws, quiet=0.1)
    assert int.from_bytes(frame[:2], "big") == 1  # one packet: SBIN's


async def test_ltp_quotes_follow_the_pushed_ticks():
    clock = ServerClock()
    async with kite(clock=clock) as (server, http):
        assert (await http("GET", "/quote/ltp?i=NSE:INFY"))[1]["data"]["NSE:INFY"]["last_price"] == 1074.35
        await server.push([Tick(INFY, 1080.0, "ltp", True)])
        clock.t += 1.0
        assert (await http("GET", "/quote/ltp?i=NSE:INFY"))[1]["data"]["NSE:INFY"]["last_price"] == 1080.0


async def test_late_ticks_reach_the_ticker_and_leave_the_exchanges_price_where_it_is(env):
    server, http = env
    server.set_ltp("NSE:INFY", 1072.0)  # the exchange has moved on
    async with ticker(server) as ws:
        await server.push([Tick(INFY, 1080.0, "ltp", True)], late=True)
        [frame] = await received(ws, quiet=0.1)
    assert int.from_bytes(frame[8:12], "big") == 108000  # the engine sees 1080 ...
    assert (await http("GET", "/quote/ltp?i=NSE:INFY"))[1]["data"]["NSE:INFY"]["last_price"] == 1072.0


async def test_a_late_tick_trades_nothing_in_the_book():
    async with kite(auto_match=True) as (server, http):
        order_id = await http.placed(STOP)
        await server.push([Tick(INFY, 1069.0, "ltp", True)], late=True)
    assert server.orders[order_id][-1]["status"] == "TRIGGER PENDING" and server.fills == []


async def test_a_stops_trigger_is_checked_against_the_exchanges_price_not_the_engines_late_ticks(env):
    server, http = env
    order_id = await http.placed(STOP, trigger_price=1060.0)
    server.set_ltp("NSE:INFY", 1062.0)
    await server.push([Tick(INFY, 1064.0, "ltp", True)], late=True)  # what the engine trails on
    assert refusal((await http.modify(order_id, trigger_price=1063.0))[1]) == ("InputException",
                                                                              SELL_TRIGGER_REFUSAL)
    assert refusal((await http.place(STOP, trigger_price=1062.0, tag="t2"))[1])[1] == SELL_TRIGGER_REFUSAL
    assert server.orders[order_id][-1]["trigger_price"] == 1060.0 and server.modifications(order_id) == 0
    assert (await http.modify(order_id, trigger_price=1061.5))[0] == 200


async def test_the_full_quote_carries_the_days_circuit_limits_and_prices():
    clock = ServerClock()
    async with kite(clock=clock) as (server, http):
        server.set_circuit("NSE:INFY", 966.95, 1181.75)
        for price in (1074.0, 1080.5, 1070.0):
            server.set_ltp("NSE:INFY", price)
        status, body = await http("GET", "/quote?i=NSE:INFY&i=NSE:SBIN&i=NSE:NOPE")
    quote, sbin = body["data"]["NSE:INFY"], body["data"]["NSE:SBIN"]
    assert status == 200 and set(body["data"]) == {"NSE:INFY", "NSE:SBIN"}
    assert (quote["instrument_token"], quote["last_price"], quote["lower_circuit_limit"],
            quote["upper_circuit_limit"]) == (INFY, 1070.0, 966.95, 1181.75)
    assert quote["ohlc"] == {"open": 1074.0, "high": 1080.5, "low": 1070.0, "close": 1074.35}
    assert len(quote["depth"]["buy"]) == len(quote["depth"]["sell"]) == 5
    assert quote["timestamp"] == "2026-11-23 10:00:00"
    assert (sbin["lower_circuit_limit"], sbin["upper_circuit_limit"]) == (0.0, 0.0)  # no band set: none checked


async def test_quotes_take_faults_too():
    clock = ServerClock()
    async with kite(clock=clock) as (server, http):
        server.fault("quote", "500-before")
        assert (await http("GET", "/quote?i=NSE:INFY"))[0] == 502
        assert (await http("GET", "/quote?i=NSE:INFY"))[0] == 200
    assert server.fault_log == [("quote", "500-before")] and server.calls["quote"] == 2


async def test_quotes_are_one_request_a_second():
    clock = ServerClock()
    async with kite(clock=clock) as (_server, http):
        assert (await http("GET", "/quote?i=NSE:INFY"))[0] == 200
        status, body = await http("GET", "/quote/ltp?i=NSE:INFY")
        clock.t += 1.0
        assert (await http("GET", "/quote/ltp?i=NSE:INFY"))[0] == 200
    assert status == 429 and refusal(body) == ("NetworkException", RATE_REFUSAL)
