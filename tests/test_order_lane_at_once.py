"""An order close to the wire (issue 23 §3): a new order whose request can leave at once (a connection
idle, a rate slot free) is written by ``submit`` itself, after its intent reached the journal file;
otherwise its lane writes it. Either way it is sent once, within Kite's rate."""

import socket
import threading
import time
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.brokers.kite.broker import MARKET_PROTECTION, KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.live.orders import OrderState
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.services.journal import Journal
from tests.kite_engine import wait
from tests.kite_server import API_KEY, FakeKite
from tests.waiting import LIMIT_S

ANSWER = orjson.dumps({"status": "success", "data": {"order_id": "1"}})
NOTHING = orjson.dumps({"status": "success", "data": []})


class Listener:
    """A bare HTTP/1.1 endpoint in a thread of its own: it sees a request arrive while the test holds
    the event loop, and notes what the journal's files held at that moment."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.placed = threading.Event()
        self.places: list[tuple[bytes, bytes]] = []  # (request, the journal's files as it arrived)
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        data = b""
        with sock:
            while chunk := sock.recv(65536):
                data += chunk
                while b"\r\n\r\n" in data:
                    head, rest = data.split(b"\r\n\r\n", 1)
                    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                       if line.lower().startswith(b"content-length:")), b"0"))
                    if len(rest) < length:
                        break
                    request, data = head + b"\r\n\r\n" + rest[:length], rest[length:]
                    body = ANSWER if request.startswith(b"POST /orders/") else NOTHING
                    if request.startswith(b"POST /orders/"):
                        self.places.append((request, b"".join(p.read_bytes() for p in self.journal.dir.glob("*"))))
                        self.placed.set()
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))

    def close(self) -> None:
        self._server.close()


def entry(tag: str) -> OrderRequest:
    return OrderRequest("NSE:INFY", Side.BUY, 10, OrderType.MARKET, tag=tag)


def intent(journal: Journal, request: OrderRequest) -> None:
    """As the engine journals an order before handing it over."""
    journal.record("intent", purpose=str(Purpose.ENTRY), **request.__dict__)


@pytest.fixture
async def listener(tmp_path):
    journal = Journal(tmp_path, time.time_ns)
    kite = Listener(journal)
    rest = KiteREST(API_KEY, "tok-day-1", kite.base, timeout=5.0)
    broker = KiteBroker(rest, journal, {"NSE:INFY": 0.05}, time.time_ns)
    errors: list[str] = []
    broker.on_error = errors.append
    yield kite, rest, broker, journal, errors
    await rest.close()
    kite.close()


async def test_with_a_connection_ready_the_request_leaves_from_submit_after_its_intent_is_on_file(listener):
    kite, rest, broker, journal, _ = listener
    await rest.prepare_orders()
    request = entry("ot00000000a001")
    intent(journal, request)
    order = broker.submit(request, Purpose.ENTRY)
    # the event loop gets no turn here: only a request written by submit itself can arrive
    assert kite.placed.wait(LIMIT_S)
    [(sent, on_file)] = kite.places
    assert b"tag=ot00000000a001" in sent and b'"kind":"intent"' in on_file and b'"tag":"ot00000000a001"' in on_file
    await wait(lambda: order.broker_id == "1")
    assert order.state == OrderState.SUBMITTED  # Kite's order id alone is not its acceptance


async def test_without_a_connection_ready_the_lane_connects_and_places_it_once(listener):
    kite, _rest, broker, journal, _ = listener
    request = entry("ot00000000a002")
    intent(journal, request)
    order = broker.submit(request, Purpose.ENTRY)
    assert kite.connections == 0  # nothing could leave from submit: no connection was open
    await wait(lambda: order.broker_id == "1")
    [(sent, on_file)] = kite.places
    assert b"tag=ot00000000a002" in sent and b'"tag":"ot00000000a002"' in on_file


async def test_a_request_that_cannot_be_made_is_the_lanes_error_never_the_engines(listener):
    kite, rest, broker, _journal, errors = listener
    await rest.prepare_orders()
    rest.access_token = "tok\r\nX-Evil: 1"
    order = broker.submit(entry("ot00000000a003"), Purpose.ENTRY)  # does not raise into the tick path
    await wait(lambda: errors)
    assert "line break" in errors[0] and order.state == OrderState.SUBMITTED and not kite.places


async def test_place_now_keeps_within_the_rate_and_writes_nothing_beyond_it():
    server = FakeKite()  # Kite's 10 order requests a second, 429 beyond
    base = await server.start()
    rest = KiteREST(API_KEY, server.access_token, base, timeout=5.0)
    rest.orders_per_second = 5  # 4 for orders at large, 1 kept for urgent ones
    try:
        await rest.prepare_orders()
        ids = []
        for k in range(4):
            sent = rest.place_now(form(f"ot00000000b00{k}"))
            assert sent is not None  # written at once: the connection is idle again after each answer
            ids.append(await rest.placed(sent))
        assert rest.place_now(form("ot00000000b004")) is None  # the rate's 4 are used: nothing written
        assert len(set(ids)) == 4 and server.place_calls == 4
        assert [c.status for c in server.order_calls] == [200] * 4  # Kite refused none (no 429)
    finally:
        await rest.close()
        await server.stop()


def form(tag: str) -> bytes:
    return urlencode({"tradingsymbol": "INFY", "exchange": "NSE", "transaction_type": "BUY",
                      "order_type": "MARKET", "quantity": 1, "product": "MIS", "validity": "DAY", "tag": tag,
                      "market_protection": -1}).encode()


prices = st.none() | st.floats(0.05, 1e6, allow_nan=False) | st.floats(1e15, 1e20)


@given(st.sampled_from(["NSE:INFY", "NSE:M&M", "BSE:BAJAJ-AUTO"]), st.sampled_from(list(Side)),
       st.sampled_from(list(OrderType)), st.integers(1, 10**6), prices, prices,
       st.sampled_from(["ot0123456789ab", "", "a b&c=d"]), st.sampled_from(["MIS", "CNC"]))
def test_the_place_form_is_kites_fields_as_urlencode_makes_them(symbol, side, kind, qty, price, trigger, tag, product):
    broker = KiteBroker(KiteREST(API_KEY, "tok"), None, {}, time.time_ns)
    request = OrderRequest(symbol, side, qty, kind, price=price, trigger_price=trigger, tag=tag, product=product)
    exchange, tradingsymbol = symbol.split(":")
    fields = {"tradingsymbol": tradingsymbol, "exchange": exchange, "transaction_type": side, "order_type": kind,
              "quantity": qty, "product": product, "validity": "DAY", "tag": tag, "price": price,
              "trigger_price": trigger}
    if kind in (OrderType.MARKET, OrderType.SL_M):
        fields["market_protection"] = MARKET_PROTECTION
    expected = urlencode([(k, str(v)) for k, v in fields.items() if v is not None]).encode()
    assert broker.order_form(request) == expected
    assert broker.order_form(request) == expected  # the same from the parts kept for the next order


async def test_two_orders_in_one_tick_each_leave_once_in_the_order_they_were_submitted(listener):
    kite, rest, broker, journal, _ = listener
    await rest.prepare_orders()
    first, second = entry("ot00000000c001"), entry("ot00000000c002")
    intent(journal, first)
    broker.submit(first, Purpose.ENTRY)
    # the event loop held, so still in the same tick: the first is on the wire before the second is submitted
    # (each goes on a connection of its own, whose arrivals the server may take in either order)
    assert kite.placed.wait(LIMIT_S)
    intent(journal, second)
    broker.submit(second, Purpose.ENTRY)
    await wait(lambda: len(kite.places) == 2)
    assert [b"tag=ot00000000c001" in p[0] for p in kite.places] == [True, False]
