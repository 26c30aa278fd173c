"""The Kite REST client (real aiohttp) against the local Kite server: envelopes, errors, no double orders."""

import asyncio
import time

import pytest

from engine.brokers.kite.rest import InputException, KiteREST, TokenException, Unreachable, checksum
from engine.live.venue import OutcomeUnknown
from tests.kite_rest_client import order, rest_on
from tests.kite_server import API_KEY, API_SECRET, MP_REFUSAL, FakeKite


@pytest.fixture
async def kite():
    async with rest_on(FakeKite()) as pair:
        yield pair


async def test_requests_carry_the_version_and_the_token(kite):
    _server, client = kite
    assert (await client.profile())["user_id"] == "AB1234"


async def test_an_expired_token_is_a_token_exception(kite):
    server, client = kite
    server.access_token = "rotated-at-6am"
    with pytest.raises(TokenException, match="Incorrect `api_key` or `access_token`"):
        await client.orders()


async def test_a_request_token_is_exchanged_with_the_sha256_checksum(kite):
    _server, client = kite
    session = await client.create_session("req-42", API_SECRET)
    assert session["access_token"] == client.access_token == "tok-req-42"
    assert (await client.profile())["user_name"] == "Test Trader"
    assert checksum("a", "b", "c") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_a_lost_answer_after_the_order_was_made_is_an_unknown_outcome_not_a_second_order(kite):
    server, client = kite
    server.faults = ["500-after"]
    with pytest.raises(OutcomeUnknown):
        await client.place_order(order("ot1"))
    assert len(server.orders) == 1 and server.place_calls == 1


async def test_a_timeout_after_the_order_was_made_is_an_unknown_outcome_not_a_second_order(kite):
    server, client = kite
    server.faults, server.hang_s = ["hang-after"], 2.0
    with pytest.raises(OutcomeUnknown):
        await client.place_order(order("ot2"))
    assert len(server.orders) == 1 and server.place_calls == 1


async def test_a_5xx_before_the_order_was_made_is_not_retried_blindly(kite):
    server, client = kite
    server.faults = ["500-before"]
    with pytest.raises(OutcomeUnknown, match="Bad gateway"):
        await client.place_order(order("ot3"))
    assert server.orders == {} and server.place_calls == 1


async def test_429_backs_off_and_places_once(kite):
    server, client = kite
    server.faults = ["429", "429"]
    order_id = await client.place_order(order("ot5"))
    assert list(server.orders) == [order_id] and server.place_calls == 3


async def test_a_market_order_without_protection_is_refused_with_kites_message(kite):
    server, client = kite
    with pytest.raises(InputException) as info:
        await client.place_order(order("ot6", order_type="MARKET", price=None))
    assert info.value.message == MP_REFUSAL and server.place_calls == 1


async def test_a_market_order_with_protection_is_placed(kite):
    server, client = kite
    order_id = await client.place_order({**order("ot7", order_type="MARKET"), "market_protection": -1})
    assert server.orders[order_id][-1]["status"] == "OPEN"


async def test_a_rejected_order_keeps_kites_reason(kite):
    server, client = kite
    server.reject_reason = "Insufficient funds. Required margin is 10743.00 but available margin is 0.00."
    order_id = await client.place_order(order("ot8"))
    *_, row = await client.order_history(order_id)
    assert (row["status"], row["status_message"]) == ("REJECTED", server.reject_reason)


async def test_modify_and_cancel_move_the_order_through_its_history(kite):
    _server, client = kite
    order_id = await client.place_order(order("ot9", order_type="SL-M", price=None, trigger_price=1070.0,
                                              transaction_type="SELL", market_protection=-1))
    await client.modify_order(order_id, {"trigger_price": 1071.5})
    await client.cancel_order(order_id)
    history = await client.order_history(order_id)
    assert [(r["status"], r["trigger_price"]) for r in history] == [
        ("PUT ORDER REQ RECEIVED", 1070.0), ("VALIDATION PENDING", 1070.0), ("OPEN PENDING", 1070.0),
        ("TRIGGER PENDING", 1070.0), ("MODIFY VALIDATION PENDING", 1070.0), ("MODIFY PENDING", 1071.5),
        ("TRIGGER PENDING", 1071.5), ("CANCEL PENDING", 1071.5), ("CANCELLED", 1071.5)]


async def test_instruments_give_tokens_and_tick_sizes(kite):
    _server, client = kite
    instruments = await client.instruments("NSE")
    assert (instruments["NSE:INFY"].token, instruments["NSE:INFY"].tick_size) == (408065, 0.1)
    assert instruments["NSE:SBIN"].tick_size == 0.05


async def test_ltp_quotes_several_instruments(kite):
    _server, client = kite
    assert await client.ltp("NSE:INFY", "NSE:SBIN") == {"NSE:INFY": 1074.35, "NSE:SBIN": 801.1}


async def test_an_unreachable_server_is_reported_not_hidden():
    client = KiteREST(API_KEY, "t", "http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(Unreachable, match="no answer from Kite for GET /user/profile"):
        await client.profile()
    await client.close()


async def test_orders_are_throttled_to_the_rate_set_at_run_time(kite):
    server, client = kite
    client.orders_per_second = 2  # risk.max_orders_per_second changed by /set
    started = time.monotonic()
    for k in range(4):
        await client.place_order(order(f"ot-rate{k}"))
    assert time.monotonic() - started >= 0.75 and len(server.orders) == 4  # the last two waited their turn


async def test_an_urgent_order_does_not_wait_behind_a_burst_of_others(kite):
    _server, client = kite
    client.orders_per_second = 10
    burst = [asyncio.create_task(client.place_order(order(f"ot-burst{k}"))) for k in range(16)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await client.place_order({**order("ot-stop", transaction_type="SELL", order_type="SL-M", trigger_price=1000.0,
                                      price=None), "market_protection": -1}, urgent=True)
    assert time.monotonic() - started < 0.3 and client.orders_per_second == 10
    await asyncio.gather(*burst)
