"""Kite's order calls on the order wire (kept-alive HTTP/1.1, engine/brokers/kite/wire.py) against the
strict local Kite server: orders go through, connections are reused and reopened, and a request whose
bytes left is never sent again blind."""

import asyncio
import contextlib
import re
import socket
import time
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import (
    InputException,
    KiteREST,
    NetworkException,
    PermissionException,
    ServerError,
    TokenException,
    Unreachable,
    form,
)
from engine.brokers.kite.wire import OrderWire
from engine.live.venue import OutcomeUnknown, Refused
from engine.services.journal import Journal
from tests.kite_rest_client import order, rest_on
from tests.kite_server import API_KEY, MP_REFUSAL, NETWORK_REFUSAL, STATIC_IP_REFUSAL, FakeKite


@pytest.fixture
async def kite():
    async with rest_on(FakeKite(orders_per_second=None)) as pair:
        yield pair


async def test_an_order_is_placed_modified_and_cancelled_through_the_wire(kite):
    server, client = kite
    order_id = await client.place_order(order("w1", order_type="SL-M", price=None, trigger_price=1070.0,
                                              transaction_type="SELL", market_protection=-1))
    assert await client.modify_order(order_id, {"trigger_price": 1071.5}) == order_id
    assert await client.cancel_order(order_id) == order_id
    rows = server.orders[order_id]
    assert (rows[-1]["status"], rows[-1]["trigger_price"], rows[-1]["tag"]) == ("CANCELLED", 1071.5, "w1")
    assert [c.endpoint for c in server.order_calls] == ["place", "modify", "cancel"]


async def test_one_kept_alive_connection_carries_every_order(kite):
    server, client = kite
    for k in range(20):
        await client.place_order(order(f"w-keep{k}"))
    assert len(server.orders) == 20
    assert list(server.connections.values()) == [20]  # one connection at the server, 20 requests on it


async def test_orders_in_flight_together_each_have_a_connection_and_keep_them_for_the_next(kite):
    server, client = kite
    server.fault("place", "hang", times=3)
    server.hang_s = 0.2
    await asyncio.gather(*(client.place_order(order(f"w-side{k}")) for k in range(3)))
    await asyncio.gather(*(client.place_order(order(f"w-again{k}")) for k in range(3)))
    assert len(server.orders) == 6 and len(server.connections) == 3


async def test_a_connection_kept_ready_is_replaced_once_idle_too_long(kite):
    _server, client = kite
    await client.prepare_orders()
    await client.prepare_orders()
    assert client._wire.opened == 1  # still fresh: kept
    client._wire.keep_s = 0.0  # from now on every idle connection is too old
    await client.prepare_orders()
    assert client._wire.opened == 2


async def test_a_connection_that_cannot_be_opened_ahead_is_reported():
    client = KiteREST(API_KEY, "t", "http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(Unreachable, match="order connection to Kite not opened: could not connect"):
        await client.prepare_orders()
    await client.close()


async def test_the_order_worker_has_the_connection_ready_before_the_first_order(kite, tmp_path):
    server, client = kite
    broker = KiteBroker(client, Journal(tmp_path, time.time_ns), {"NSE:INFY": 0.1}, time.time_ns)
    worker = asyncio.create_task(broker.run())
    async with asyncio.timeout(10):
        while not client._wire.opened:
            await asyncio.sleep(0.01)
    await client.place_order(order("w-ready"))
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    assert client._wire.opened == 1 and list(server.connections.values()) == [1]


async def test_a_connection_the_server_closed_between_requests_is_reopened(kite):
    server, client = kite
    first = await client.place_order(order("w-before"))
    await server.close_connections()
    second = await client.place_order(order("w-after"))
    assert list(server.orders) == [first, second] and server.place_calls == 2
    assert len(server.connections) == 2


async def test_a_connection_closed_just_before_an_order_leaves_is_replaced_before_anything_is_written():
    accepted = []

    async def answer_orders(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("socket"))
        body = orjson.dumps({"status": "success", "data": {"order_id": str(len(accepted))}})
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))

    server = await asyncio.start_server(answer_orders, "127.0.0.1", 0)
    client = KiteREST(API_KEY, "t", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=1.0)
    assert await client.place_order(order("w-first")) == "1"
    # the server's close reaches this machine, and the next order leaves before the event loop has read it
    accepted[0].shutdown(socket.SHUT_RDWR)
    assert await client.place_order(order("w-second")) == "2"
    assert client._wire.opened == 2
    await client.close()
    server.close()


async def test_an_idle_connection_older_than_the_keep_time_is_not_reused(kite):
    server, client = kite
    client._wire.keep_s = 0.0  # every idle connection is too old
    for k in range(3):
        await client.place_order(order(f"w-old{k}"))
    assert len(server.orders) == 3 and len(server.connections) == 3


@pytest.mark.parametrize("kind", ["reset-after", "reset"])
async def test_a_connection_dropped_after_the_order_was_written_is_an_unknown_outcome_never_resent(kite, kind):
    server, client = kite
    server.fault("place", kind)
    with pytest.raises(Unreachable, match="no answer from Kite for POST /orders/regular") as lost:
        await client.place_order(order("w-lost"))
    assert isinstance(lost.value, OutcomeUnknown) and server.access_token not in str(lost.value)
    assert server.place_calls == 1 and len(server.orders) == (kind == "reset-after")
    order_id = await client.place_order(order("w-next"))  # the next order goes on a new connection
    assert server.orders[order_id][-1]["tag"] == "w-next" and len(server.connections) == 2


async def test_a_modify_dropped_after_it_was_written_is_an_unknown_outcome_never_resent(kite):
    server, client = kite
    order_id = await client.place_order(order("w-mod"))
    server.fault("modify", "reset-after")
    with pytest.raises(Unreachable):
        await client.modify_order(order_id, {"price": 1074.5})
    assert server.modifications(order_id) == 1 and server.calls["modify"] == 1


async def test_an_answer_too_late_is_an_unknown_outcome_and_never_taken_for_the_next_ones(kite):
    server, client = kite
    server.fault("place", "hang-after")
    server.hang_s = 2.0  # past the client's 1 s
    with pytest.raises(Unreachable, match="no answer in time"):
        await client.place_order(order("w-slow"))
    (slow,) = server.orders
    fresh = await client.place_order(order("w-fresh"))
    assert fresh != slow and server.orders[fresh][-1]["tag"] == "w-fresh" and server.place_calls == 2


async def test_a_call_cancelled_mid_flight_leaves_no_answer_behind_for_the_next(kite):
    server, client = kite
    server.fault("place", "hang-after")
    server.hang_s = 0.5
    call = asyncio.create_task(client.place_order(order("w-killed")))
    async with asyncio.timeout(10):
        while not server.place_calls:
            await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    fresh = await client.place_order(order("w-after-kill"))
    assert server.orders[fresh][-1]["tag"] == "w-after-kill"


@pytest.mark.parametrize(("kind", "error", "message", "made"), [
    ("500-before", ServerError, "Bad gateway", 0),
    ("500-after", ServerError, "Service unavailable", 1),
    ("network", NetworkException, NETWORK_REFUSAL, 0),
    ("static-ip", PermissionException, STATIC_IP_REFUSAL, 0),
])
async def test_kites_errors_map_as_on_every_other_call(kite, kind, error, message, made):
    server, client = kite
    server.fault("place", kind)
    with pytest.raises(error) as info:
        await client.place_order(order("w-err"))
    assert info.value.message == message and len(server.orders) == made and server.place_calls == 1


async def test_a_refusal_keeps_kites_words_and_type(kite):
    server, client = kite
    with pytest.raises(InputException) as info:
        await client.place_order(order("w-mp", order_type="MARKET", price=None))
    assert isinstance(info.value, Refused) and info.value.message == MP_REFUSAL and server.orders == {}


async def test_an_expired_token_is_a_token_exception_on_an_order_too(kite):
    server, client = kite
    server.access_token = "rotated-at-6am"
    with pytest.raises(TokenException, match="Incorrect `api_key` or `access_token`"):
        await client.place_order(order("w-token"))
    assert server.orders == {}


async def test_429s_back_off_and_the_order_is_placed_once(kite):
    server, client = kite
    server.fault("place", "429", times=2)
    order_id = await client.place_order(order("w-429"))
    assert list(server.orders) == [order_id] and server.place_calls == 3


async def test_form_values_are_encoded_as_a_browser_would(kite):
    server, client = kite
    server.instruments["NSE:M&M"] = server.instruments.pop("NSE:SBIN")
    order_id = await client.place_order(order("w-amp", tradingsymbol="M&M"))
    assert server.orders[order_id][-1]["tradingsymbol"] == "M&M"


@settings(deadline=None)  # a loaded machine: no time limit on an example
@given(st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1),
                       st.one_of(st.none(), st.text(), st.integers(), st.floats(allow_nan=False))))
def test_a_form_body_is_what_urlencode_makes_of_the_set_fields(fields):
    assert form(fields) == urlencode([(k, str(v)) for k, v in fields.items() if v is not None]).encode()


async def test_a_token_with_a_line_break_is_refused_before_anything_is_sent(kite):
    server, client = kite
    client.access_token = "tok\r\nX-Injected: 1"
    with pytest.raises(ValueError, match="line break"):
        await client.place_order(order("w-crlf"))
    assert server.place_calls == 0 and not server.connections


async def test_an_unreachable_host_is_an_unknown_outcome_naming_the_call():
    client = KiteREST(API_KEY, "t", "http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(Unreachable, match="no answer from Kite for POST /orders/regular: could not connect"):
        await client.place_order(order("w-nowhere"))
    await client.close()


def test_a_base_that_is_not_an_http_url_is_refused():
    with pytest.raises(ValueError, match="http"):
        OrderWire("ftp://api.kite.trade", 1.0)
