"""A local Kite Connect v3 server (aiohttp) on 127.0.0.1 for the real client, as strict as Kite.

It speaks Kite's REST envelope and the binary WebSocket ticker, and keeps an order book whose
orders live as at Kite: PUT ORDER REQ RECEIVED -> VALIDATION PENDING -> OPEN PENDING -> OPEN /
TRIGGER PENDING -> COMPLETE / CANCELLED / REJECTED, modifies and cancels through their own
transient states, one history row per state change. It refuses what Kite refuses, with Kite's
words (tick grid, stop-loss trigger side against its own last price, the day's circuits,
market protection, 25 modifications per order, order request rates, tags), and its RMS can reject
a chosen order after acknowledging it. Rows carry Kite's one-second timestamps, which several rows
share. The REST answer, the ticker's order message and the order book are independent
channels, each of which can be late, lagged or lost; faults are queued per endpoint or drawn from
a seeded RNG, so a chaos run repeats exactly given its seed. Tests act as the exchange with
``fill``/``complete``/``trigger``/``cancel_rest``/``match``, and move its price ahead of the
engine's ticks with ``set_ltp`` and ``push(..., late=True)``.
"""

import asyncio
import contextlib
import hashlib
import itertools
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
from aiohttp import WSMsgType, web

from engine.brokers.kite.ticker_codec import Tick, encode_frame

API_KEY, API_SECRET = "kitekey123", "kitesecret456"
CSV_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
              "instrument_type,segment,exchange\n")
INSTRUMENTS_CSV = (CSV_HEADER + "408065,1594,INFY,INFOSYS,0,,0,0.1,1,EQ,NSE,NSE\n"
                   "779521,3045,SBIN,STATE BANK OF INDIA,0,,0,0.05,1,EQ,NSE,NSE\n")  # the default instruments
QUOTES = {"NSE:INFY": 1074.35, "NSE:SBIN": 801.1}  # /quote/ltp before any tick or set_ltp
STATIC_IP_REFUSAL = "Order placement is allowed only from the static IP registered for this app."
MP_REFUSAL = ("Market orders without market protection are not allowed via API. "
              "Please set market protection or use a Limit order.")
MODIFICATIONS_REFUSAL = "Maximum allowed order modifications exceeded"
RATE_REFUSAL = "Too many requests"
DAY_CAP_REFUSAL = "Maximum allowed order requests exceeded"
MINUTE_CAP_REFUSAL = "Maximum allowed order requests per minute exceeded"
SELL_TRIGGER_REFUSAL = "Trigger price for stoploss sell orders should be lower than the last traded price."
BUY_TRIGGER_REFUSAL = "Trigger price for stoploss buy orders should be higher than the last traded price."
SELL_LIMIT_REFUSAL = "Price for stoploss sell orders should be lower than or equal to the trigger price."
BUY_LIMIT_REFUSAL = "Price for stoploss buy orders should be higher than or equal to the trigger price."
TAG_REFUSAL = "Invalid `tag`: at most 20 characters."
BELOW_FILLED_REFUSAL = "Quantity cannot be less than the filled quantity."
NETWORK_REFUSAL = "Couldn't connect to the OMS. Please try again."

WORKING = ("OPEN", "TRIGGER PENDING")
IN_FLIGHT = ("MODIFY VALIDATION PENDING", "MODIFY PENDING", "CANCEL PENDING")  # still resting at the exchange
FINAL = ("COMPLETE", "CANCELLED", "REJECTED")
PRE_EXCHANGE = ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING")
TRANSIENT = (*PRE_EXCHANGE, *IN_FLIGHT, "AMO REQ RECEIVED")
STOPS = ("SL", "SL-M")
ORDER_ENDPOINTS = ("place", "modify", "cancel")
ENDPOINTS = (*ORDER_ENDPOINTS, "orders", "history", "positions", "trades", "profile", "instruments", "historical",
             "quote", "ws")
# bare kinds act before the handler's work (nothing done), "-after" ones once it is done
BEFORE_KINDS = ("hang", "500-before", "429", "static-ip", "network", "reset", "timeout")
AFTER_KINDS = ("hang-after", "500-after", "503", "network-after", "reset-after", "timeout-after")
WS_KINDS = ("hang", "500-before", "503", "429", "reset", "drop")
CHAOS_KINDS = ("500-before", "500-after", "429", "reset", "reset-after")
WS_CHAOS_KINDS = ("503", "drop")
VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
VALIDITIES = ("DAY", "IOC", "TTL")
# Kite's historical range per request, in calendar days counted with both ends (2,001 "day" days are refused)
HISTORICAL_DAYS = {"minute": 60, "3minute": 100, "5minute": 100, "10minute": 100, "15minute": 200,
                   "30minute": 200, "60minute": 400, "day": 2000}


@dataclass
class Instrument:
    token: int
    exchange_token: int
    name: str
    tick_size: float
    lot_size: int = 1
    circuit: tuple[float, float] | None = None  # (lower, upper); None: no circuit check


@dataclass
class _Life:
    """What Kite knows of an order beyond its rows."""

    modifications: int = 0
    triggered: bool = False  # a stop whose trigger was reached: OPEN at the exchange


@dataclass(frozen=True)
class OrderCall:
    """One order request (place, modify, cancel) as it reached the server, and how it was answered."""

    at: float  # the server's clock on arrival
    endpoint: str
    status: int  # HTTP status of the answer (499: none, the connection was closed)
    message: str  # Kite's error message ('' on success)
    symbol: str = ""  # the instrument ("NSE:INFY") the call was about ('' when the server does not know it)
    answered: float = 0.0  # the server's clock when it answered (a hung call decides long after it arrived)


@dataclass
class _Rejection:
    """An RMS rejection waiting for the next placed order it matches (None: any)."""

    message: str
    symbol: str | None
    order_type: str | None
    side: str | None
    times: int

    def matches(self, symbol: str, order_type: str, side: str) -> bool:
        return (self.symbol in (None, symbol) and self.order_type in (None, order_type)
                and self.side in (None, side))


class Refusal(Exception):
    def __init__(self, message: str, error_type: str = "InputException", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.error_type, self.status = message, error_type, status


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as Kite shows it: without the server's own bookkeeping (keys starting with _)."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _on_grid(value: float, tick: float) -> bool:
    steps = value / tick
    return abs(steps - round(steps)) < 1e-6


class FakeKite:
    """Options (all attributes too, changeable at run time):
    transition_delay_s  0: every state change of a call is in before its answer; >0: the steps
                        after the first follow in the background, this far apart.
    ws_order_messages   which rows go out on the ticker: "all", "settled" (no transient states),
                        "final" (COMPLETE/CANCELLED/REJECTED) or "none"; ws_filter(row) -> bool per row.
    ws_drop_rate        chance (seeded) that an order message is lost; ws_delay_s: sent this much later.
    book_lag_s          GET /orders, /orders/:id and trades show the state of this long ago;
                        book_filter(row) -> bool hides rows. positions_lag_s: the same for derived positions.
    positions_from_fills  positions from the fills instead of the static ``net_positions``.
    auto_match          every pushed tick trades against the book (``match``);
    auto_fill_market    MARKET orders fill at the LTP once accepted.
    orders_per_second / _minute / _day, max_modifications: Kite's limits (None: unlimited). Every
                        order request its limiter admits counts (a place, modify or cancel refused
                        after that too; a retry is a request of its own); one answered 429 does not.
    quotes_per_second   /quote and /quote/ltp requests in a rolling second (Kite: 1), then 429.
    one_second_stamps   rows stamped as Kite does, to the second of the server's clock since the
                        day's start (rows of the same second share a stamp); False: each row a
                        second after the last, so stamps always order the rows.
    clock               the monotonic clock of the rate windows, lags and stamps (tests may move it by hand).
    """

    def __init__(self, *, seed: int = 0, transition_delay_s: float = 0.0, ws_order_messages: str = "all",
                 ws_drop_rate: float = 0.0, ws_delay_s: float = 0.0, book_lag_s: float = 0.0,
                 positions_lag_s: float = 0.0, positions_from_fills: bool = False, auto_match: bool = False,
                 auto_fill_market: bool = False, orders_per_second: int | None = 10,
                 orders_per_minute: int | None = 200, orders_per_day: int | None = 5000,
                 max_modifications: int = 25, quotes_per_second: int | None = 1, one_second_stamps: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 day: datetime = datetime(2026, 11, 23, 10, 0, 0)) -> None:
        self.access_token = "tok-day-1"
        self.orders: dict[str, list[dict[str, Any]]] = {}  # order id -> history rows, the last is current
        self.place_calls = 0
        # legacy fault list for the next place calls ("500-after", "hang-after", "429", ...); see fault()
        self.faults: list[str] = []
        self.reject_reason = ""  # when set, placed orders (of reject_types, if any) are REJECTED with it
        self.reject_types: set[str] = set()
        self.cancel_refusal = ""  # when set, cancels are refused with it
        self.hang_s = 3.0
        self.rng = random.Random(seed)  # the one source of chance (dropped messages, chaos) unless chaos is seeded
        # channels: the ticker's order messages and the book, each controllable
        self.transition_delay_s = transition_delay_s
        self.ws_order_messages = ws_order_messages  # "all" | "settled" (no transient rows) | "final" | "none"
        self.ws_filter: Callable[[dict[str, Any]], bool] | None = None  # per row: False keeps it off the ticker
        self.ws_drop_rate = ws_drop_rate
        self.ws_delay_s = ws_delay_s
        self.book_lag_s = book_lag_s
        self.book_filter: Callable[[dict[str, Any]], bool] | None = None  # per row: False keeps it out of the book
        self.positions_lag_s = positions_lag_s
        self.positions_from_fills = positions_from_fills
        self.auto_match = auto_match
        self.auto_fill_market = auto_fill_market
        # Kite's limits (None: unlimited)
        self.orders_per_second = orders_per_second
        self.orders_per_minute = orders_per_minute
        self.orders_per_day = orders_per_day
        self.max_modifications = max_modifications
        self.quotes_per_second = quotes_per_second
        self.one_second_stamps = one_second_stamps
        self.clock = clock
        self.day = day  # exchange time when the server was made (clock's start)
        self._clock0 = clock()
        self.instruments: dict[str, Instrument] = {
            "NSE:INFY": Instrument(408065, 1594, "INFOSYS", 0.1),
            "NSE:SBIN": Instrument(779521, 3045, "STATE BANK OF INDIA", 0.05)}
        self.last_prices: dict[int, float] = {}  # instrument token -> LTP (from push, match, set_ltp)
        self.fills: list[dict[str, Any]] = []  # trade rows, as GET /trades shows them
        self.order_requests = 0  # order calls admitted today (place + modify + cancel)
        self.order_calls: list[OrderCall] = []  # every order request that reached the server, faults included
        self.calls: Counter[str] = Counter()  # requests per endpoint (see ENDPOINTS)
        self.connections: Counter[tuple] = Counter()  # REST requests per client connection (its address)
        self.order_messages: list[dict[str, Any]] = []  # order rows sent on the ticker
        self.ws_lost: list[dict[str, Any]] = []  # order rows the ticker lost (ws_drop_rate)
        self.fault_log: list[tuple[str, str]] = []  # (endpoint, kind) of every fault served
        self._ids = itertools.count(250_000_000_000_001)
        self._trade_ids = itertools.count(10_000_001)
        self._exchange_ids = itertools.count(1_100_000_000_000_001)
        self._rows = itertools.count()
        self._life: dict[str, _Life] = {}
        self._queued_faults: dict[str, list[str]] = {e: [] for e in ENDPOINTS}
        self._chaos: tuple[float, tuple[str, ...] | None, tuple[str, ...], random.Random] | None = None
        self._order_times: deque[float] = deque()
        self._quote_times: deque[float] = deque()
        self._rejections: list[_Rejection] = []
        self._day_prices: dict[int, list[float]] = {}  # instrument token -> [open, high, low] of the day
        self._outbox: list[dict[str, Any]] = []  # rows due on the ticker, sent by _flush
        self._delayed: asyncio.Queue[tuple[float, str]] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._subs: dict[web.WebSocketResponse, dict[int, str]] = {}  # per socket: token -> mode
        self.sockets: list[web.WebSocketResponse] = []
        self.subscribed: set[int] = set()
        self.modes: dict[int, str] = {}
        self.requests: list[str] = []
        self.modifies: list[dict[str, str]] = []  # the form of every modify call
        self.net_positions: list[dict[str, Any]] = []  # GET /portfolio/positions unless positions_from_fills
        self.runner: web.AppRunner | None = None
        # historical candles: every request as (token, interval, from, to); IST spans left out of answers
        self.historical_calls: list[tuple[int, str, str, str]] = []
        self.candle_gaps: list[tuple[datetime, datetime]] = []
        self.historical_per_second: int | None = 3
        self._historical_times: deque[float] = deque()
        self._calendar: Any = None
        self.base = ""

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        r = app.router
        r.add_post("/session/token", self.session_token)
        r.add_delete("/session/token", self.logout)
        r.add_get("/user/profile", self.profile)
        r.add_get("/user/margins", self.margins)
        r.add_get("/orders", self.list_orders)
        r.add_get("/orders/{order_id}", self.history)
        r.add_get("/orders/{order_id}/trades", self.order_trades)
        r.add_post("/orders/{variety}", self.place)
        r.add_put("/orders/{variety}/{order_id}", self.modify)
        r.add_delete("/orders/{variety}/{order_id}", self.cancel)
        r.add_get("/trades", self.trades)
        r.add_get("/portfolio/positions", self.positions)
        r.add_get("/quote", self.quote)
        r.add_get("/quote/ltp", self.ltp)
        r.add_get("/instruments", self.instruments_csv)
        r.add_get("/instruments/{exchange}", self.instruments_csv)
        r.add_get("/instruments/historical/{instrument_token}/{interval}", self.historical)
        r.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # hung handlers must not stall stop
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self.base

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in list(self.sockets):
            await ws.close()
        if self.runner:
            await self.runner.cleanup()

    # --- configuration at run time -------------------------------------------------------------
    def set_tick_size(self, symbol: str, tick_size: float) -> None:
        """A price band change: the instruments file and the tick grid of every later call follow."""
        self._instrument(symbol)[1].tick_size = tick_size

    def set_circuit(self, symbol: str, lower: float, upper: float) -> None:
        """The day's price band (``/quote``'s lower_circuit_limit and upper_circuit_limit): every later
        price and trigger must lie inside it. Without one an instrument has no band (quoted as 0 and 0,
        as Kite quotes an index)."""
        if not 0 < lower < upper:
            raise ValueError(f"circuit {lower}..{upper}: need 0 < lower < upper")
        self._instrument(symbol)[1].circuit = (lower, upper)

    def set_ltp(self, instrument: str | int, price: float) -> None:
        """A trade at the exchange at ``price`` ("NSE:INFY" or a token): the last traded price the
        stop-loss rule is checked against, whatever ticks the engine has seen (``push(late=True)``)."""
        self._traded(self._instrument(instrument)[1].token, price)

    def reject_next(self, message: str, *, symbol: str | None = None, order_type: str | None = None,
                    side: str | None = None, times: int = 1) -> None:
        """Kite's RMS rejects the next ``times`` orders placed that match (``symbol`` "NSE:INFY",
        ``order_type`` "SL-M", ``side`` "SELL"; None matches any) with ``message``: each is
        acknowledged (the place call answers its order id), then VALIDATION PENDING -> REJECTED."""
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if symbol is not None:
            self._instrument(symbol)
        if order_type not in (None, *ORDER_TYPES) or side not in (None, "BUY", "SELL"):
            raise ValueError(f"unknown order type {order_type!r} or side {side!r}")
        self._rejections.append(_Rejection(message, symbol, order_type, side, times))

    def modifications(self, order_id: str) -> int:
        """The modifications Kite has taken for the order (its cap is ``max_modifications``)."""
        return self._life_of(order_id).modifications

    def listening(self, token: int) -> int:
        """How many ticker sockets are subscribed to ``token`` now."""
        return sum(token in subs for subs in self._subs.values())

    def fault(self, endpoint: str, kind: str, times: int = 1) -> None:
        """Serve the next ``times`` calls of ``endpoint`` with ``kind``. Bare kinds strike before the
        work (nothing done): "hang" (wait hang_s, then serve as usual), "500-before" (502), "429",
        "static-ip" (403, order calls), "network" (502 NetworkException), "reset" (connection closed,
        no answer), "timeout" (silence for hang_s, then closed). "-after" kinds strike once the work
        is done: "hang-after", "500-after"/"503" (503), "network-after", "reset-after",
        "timeout-after". The ticker ("ws") takes "hang", "500-before"/"503", "429", "reset" and
        "drop" (accepted, then closed)."""
        self._check_fault(endpoint, kind)
        self._queued_faults[endpoint].extend([kind] * times)

    def chaos(self, rate: float, kinds: Iterable[str] | None = None, endpoints: Iterable[str] | None = None,
              seed: int | None = None) -> None:
        """Each call of ``endpoints`` (all by default) meets a fault with probability ``rate``, its
        kind drawn from ``kinds`` (those that apply to the endpoint); ``rate`` 0 ends the chaos."""
        if rate <= 0:
            self._chaos = None
            return
        kinds = tuple(kinds) if kinds is not None else None
        endpoints = tuple(endpoints or ENDPOINTS)
        for endpoint in endpoints:
            if endpoint not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
            if kinds is not None and not any(k in self._kinds_for(endpoint) for k in kinds):
                raise ValueError(f"none of {kinds} applies to {endpoint}")
        self._chaos = (rate, kinds, endpoints, random.Random(seed) if seed is not None else self.rng)

    def seed_order(self, modifications: int = 0, **row: Any) -> str:
        """An order already in the book before the client starts (an earlier run's, or the trader's),
        as one row; ``modifications`` earlier modifications of it (which Kite counts against its cap)
        follow in its history as MODIFY VALIDATION PENDING -> MODIFY PENDING -> its status again."""
        if not 0 <= modifications <= self.max_modifications:
            raise ValueError(f"modifications must be 0..{self.max_modifications}, not {modifications}")
        order_id = str(next(self._ids))
        quantity = int(row.get("quantity", 0))
        base = {"order_id": order_id, "exchange_order_id": None, "status": "OPEN", "status_message": "",
                "tag": None, "exchange": "NSE", "tradingsymbol": "", "transaction_type": "BUY",
                "order_type": "LIMIT", "quantity": quantity, "price": 0.0, "trigger_price": 0.0,
                "filled_quantity": 0, "pending_quantity": quantity - int(row.get("filled_quantity", 0)),
                "cancelled_quantity": 0, "average_price": 0, "variety": "regular", "product": "MIS",
                "validity": "DAY", "order_timestamp": self._stamp(), "exchange_update_timestamp": None,
                "exchange_timestamp": None, "_at": -math.inf}  # in the book before any lag window
        base["exchange_update_timestamp"] = base["order_timestamp"]
        known = self.instruments.get(f"{row.get('exchange', 'NSE')}:{row.get('tradingsymbol')}")
        if known is not None:
            base["instrument_token"] = known.token
        first = {**base, **row}
        self.orders[order_id] = [first]
        for _ in range(modifications):
            for status in ("MODIFY VALIDATION PENDING", "MODIFY PENDING", first["status"]):
                stamp = self._stamp()
                self.orders[order_id].append({**self.orders[order_id][-1], "status": status, "modified": True,
                                              "exchange_update_timestamp": stamp, "exchange_timestamp": stamp})
        self._life[order_id] = _Life(modifications,
                                     triggered=row.get("status") == "OPEN" and row.get("order_type") in STOPS)
        return order_id

    async def close_connections(self) -> None:
        """Close every client connection (the ticker's too), as a server ends its keep-alive; returns once closed."""
        for handler in self.runner.server.connections:
            handler.force_close()
        async with asyncio.timeout(10):
            while self.runner.server.connections:
                await asyncio.sleep(0.01)

    def working(self) -> dict[str, dict]:
        """Orders resting at the exchange (a modify or cancel in flight included): id -> current row."""
        return {k: v[-1] for k, v in self.orders.items() if v[-1]["status"] in WORKING + IN_FLIGHT}

    # --- envelope ------------------------------------------------------------------------------
    @staticmethod
    def ok(data: Any) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "success", "data": data}), content_type="application/json")

    @staticmethod
    def error(status: int, error_type: str, message: str) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "error", "message": message, "error_type": error_type,
                                               "data": None}), status=status, content_type="application/json")

    def authorised(self, request: web.Request) -> bool:
        return (request.headers.get("X-Kite-Version") == "3"
                and request.headers.get("Authorization") == f"token {API_KEY}:{self.access_token}")

    def refuse(self) -> web.Response:
        return self.error(403, "TokenException", "Incorrect `api_key` or `access_token`.")

    # --- faults --------------------------------------------------------------------------------
    @staticmethod
    def _kinds_for(endpoint: str) -> tuple[str, ...]:
        if endpoint == "ws":
            return WS_KINDS
        kinds = BEFORE_KINDS + AFTER_KINDS
        return kinds if endpoint in ORDER_ENDPOINTS else tuple(k for k in kinds if k != "static-ip")

    def _check_fault(self, endpoint: str, kind: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        if kind not in self._kinds_for(endpoint):
            raise ValueError(f"fault {kind!r} does not apply to {endpoint}; one of {self._kinds_for(endpoint)}")

    def _next_fault(self, endpoint: str) -> str:
        kind = ""
        if endpoint == "place" and self.faults:
            kind = self.faults.pop(0)
        elif self._queued_faults[endpoint]:
            kind = self._queued_faults[endpoint].pop(0)
        elif self._chaos is not None:
            rate, kinds, endpoints, rng = self._chaos
            if endpoint in endpoints and rng.random() < rate:
                pool = [k for k in (kinds or (WS_CHAOS_KINDS if endpoint == "ws" else CHAOS_KINDS))
                        if k in self._kinds_for(endpoint)]
                kind = rng.choice(pool)
        if kind:
            self.fault_log.append((endpoint, kind))
        return kind

    @staticmethod
    def _hang_up(request: web.Request) -> web.Response:
        """No answer at all: the connection is closed under the request."""
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)

    async def _served(self, endpoint: str, request: web.Request,
                      work: Callable[[web.Request], Awaitable[web.Response]]) -> web.Response:
        """``work`` behind this call's fault, if any; an order request is logged with its answer."""
        await request.read()  # the whole request is in before any fault: a hung call still acts later
        self.calls[endpoint] += 1
        if request.transport is not None:
            self.connections[request.transport.get_extra_info("peername")] += 1
        if endpoint not in ORDER_ENDPOINTS:
            return await self._faulted(endpoint, request, work)
        at = self.clock()
        response = await self._faulted(endpoint, request, work)
        message = ""
        if response.status != 200 and isinstance(response.body, bytes):
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(response.body).get("message") or ""
        self.order_calls.append(OrderCall(at, endpoint, response.status, message, await self._symbol_of(request),
                                          self.clock()))
        return response

    async def _symbol_of(self, request: web.Request) -> str:
        """The instrument an order call is about: the place form's, or the order's it names."""
        rows = self.orders.get(request.match_info.get("order_id", ""))
        row = rows[-1] if rows else dict(await request.post())
        return f"{row.get('exchange')}:{row.get('tradingsymbol')}" if row.get("tradingsymbol") else ""

    async def _faulted(self, endpoint: str, request: web.Request,
                       work: Callable[[web.Request], Awaitable[web.Response]]) -> web.Response:
        kind = self._next_fault(endpoint)
        if kind == "hang":
            await asyncio.sleep(self.hang_s)
        elif kind == "500-before":
            return self.error(502, "", "Bad gateway")
        elif kind == "429":
            return self.error(429, "NetworkException", RATE_REFUSAL)
        elif kind == "static-ip":
            return self.error(403, "PermissionException", STATIC_IP_REFUSAL)
        elif kind == "network":
            return self.error(502, "NetworkException", NETWORK_REFUSAL)
        elif kind == "reset":
            return self._hang_up(request)
        elif kind == "timeout":
            await asyncio.sleep(self.hang_s)
            return self._hang_up(request)
        response = await work(request)
        if kind in ("500-after", "503"):
            return self.error(503, "", "Service unavailable")
        if kind == "network-after":
            return self.error(502, "NetworkException", NETWORK_REFUSAL)
        if kind == "hang-after":
            await asyncio.sleep(self.hang_s)
        elif kind == "reset-after":
            return self._hang_up(request)
        elif kind == "timeout-after":
            await asyncio.sleep(self.hang_s)
            return self._hang_up(request)
        return response

    def _admit_order_request(self) -> None:
        """Kite's order rate limits per API key: 10 a rolling second, 200 a minute, 5,000 a day."""
        now = self.clock()
        times = self._order_times
        while times and times[0] <= now - 60:
            times.popleft()
        if self.orders_per_day is not None and self.order_requests >= self.orders_per_day:
            raise Refusal(DAY_CAP_REFUSAL, "NetworkException", 429)
        if self.orders_per_minute is not None and len(times) >= self.orders_per_minute:
            raise Refusal(MINUTE_CAP_REFUSAL, "NetworkException", 429)
        if self.orders_per_second is not None and sum(t > now - 1 for t in times) >= self.orders_per_second:
            raise Refusal(RATE_REFUSAL, "NetworkException", 429)
        times.append(now)
        self.order_requests += 1

    # --- instruments and rules -----------------------------------------------------------------
    def _instrument(self, key: str | int) -> tuple[str, Instrument]:
        if isinstance(key, int):
            for symbol, inst in self.instruments.items():
                if inst.token == key:
                    return symbol, inst
        elif key in self.instruments:
            return key, self.instruments[key]
        raise KeyError(f"no instrument {key!r}")

    def _check_prices(self, inst: Instrument, side: str, order_type: str, price: float,
                      trigger: float, fields: set[str], armed: bool) -> None:
        """Tick grid and circuits of the ``fields`` given; for a stop not yet triggered (``armed``),
        the limit's side of the trigger and the trigger's side of the LTP."""
        checks = []
        if order_type in ("LIMIT", "SL") and "price" in fields:
            if price <= 0:
                raise Refusal("Invalid `price`.")
            checks.append(("Price", price))
        if order_type in STOPS and "trigger_price" in fields:
            if trigger <= 0:
                raise Refusal("Invalid `trigger_price`.")
            checks.append(("Trigger price", trigger))
        for _, value in checks:
            if not _on_grid(value, inst.tick_size):
                raise Refusal(f"Tick size for this script is {inst.tick_size:.2f}. Kindly enter price in the "
                              f"multiple of tick size for this script")
        if inst.circuit is not None:
            lower, upper = inst.circuit
            for name, value in checks:
                if value < lower:
                    raise Refusal(f"{name} cannot be below the lower circuit price")
                if value > upper:
                    raise Refusal(f"{name} cannot be above the upper circuit price")
        if not armed or order_type not in STOPS or not fields & {"price", "trigger_price"}:
            return
        sell = side == "SELL"
        if order_type == "SL" and (price > trigger if sell else price < trigger):
            raise Refusal(SELL_LIMIT_REFUSAL if sell else BUY_LIMIT_REFUSAL)
        ltp = self.last_prices.get(inst.token)
        if ltp is not None and "trigger_price" in fields and (trigger >= ltp if sell else trigger <= ltp):
            raise Refusal(SELL_TRIGGER_REFUSAL if sell else BUY_TRIGGER_REFUSAL)

    @staticmethod
    def _number(form: dict[str, str], name: str, kind: type = float) -> Any:
        value = form.get(name)
        if value in (None, ""):
            return kind(0)
        try:
            number = float(value)
        except ValueError:
            raise Refusal(f"Invalid `{name}`.") from None
        if not math.isfinite(number):
            raise Refusal(f"Invalid `{name}`.")
        if kind is int:
            if number != int(number):
                raise Refusal(f"Invalid `{name}`.")
            return int(number)
        return number

    def _check_protection(self, form: dict[str, str]) -> None:
        if form.get("market_protection") in (None, ""):
            raise Refusal(MP_REFUSAL)
        protection = self._number(form, "market_protection")
        if protection == 0:
            raise Refusal(MP_REFUSAL)
        if protection != -1 and not 0 < protection <= 100:
            raise Refusal("Invalid `market_protection`.")

    def _check_quantity(self, quantity: int, inst: Instrument) -> None:
        if quantity <= 0:
            raise Refusal("Invalid `quantity`.")
        if quantity % inst.lot_size:
            raise Refusal(f"Quantity should be a multiple of lot size ({inst.lot_size}).")

    # --- rows and the ticker's order messages ----------------------------------------------------
    def _stamp(self) -> str:
        """Kite's "YYYY-MM-DD HH:MM:SS" for a row made now."""
        seconds = int(self.clock() - self._clock0) if self.one_second_stamps else next(self._rows)
        return (self.day + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")

    def _append(self, order_id: str, **changes: Any) -> dict[str, Any]:
        """A state change: a new history row (and, by the ticker's policy, an order message)."""
        row = {**self.orders[order_id][-1], **changes}
        row["exchange_update_timestamp"] = self._stamp()
        if row["status"] not in (*PRE_EXCHANGE, "REJECTED"):  # the exchange has seen it
            row["exchange_timestamp"] = row["exchange_update_timestamp"]
        row["pending_quantity"] = 0 if row["status"] in FINAL else row["quantity"] - row["filled_quantity"]
        row["_at"] = self.clock()
        self.orders[order_id].append(row)
        self._post(row)
        return row

    def _post(self, row: dict[str, Any]) -> None:
        policy = self.ws_order_messages
        wanted = (policy == "all" or (policy == "settled" and row["status"] not in TRANSIENT)
                  or (policy == "final" and row["status"] in FINAL))
        if not wanted or (self.ws_filter is not None and not self.ws_filter(_public(row))):
            return
        if self.ws_drop_rate and self.rng.random() < self.ws_drop_rate:
            self.ws_lost.append(row)
            return
        self._outbox.append(row)

    async def _flush(self) -> None:
        """Send the order messages due: now, or ws_delay_s later (in order) from a sender task."""
        rows, self._outbox = self._outbox, []
        for row in rows:
            text = orjson.dumps({"type": "order", "data": _public(row)}).decode()
            if self.ws_delay_s > 0:
                if self._delayed is None:
                    self._delayed = asyncio.Queue()
                    self._spawn(self._send_delayed())
                self._delayed.put_nowait((self.clock() + self.ws_delay_s, text))
            else:
                self.order_messages.append(_public(row))
                await self.push_raw(text)

    async def _send_delayed(self) -> None:
        assert self._delayed is not None
        while True:
            due, text = await self._delayed.get()
            wait = due - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self.order_messages.append(orjson.loads(text)["data"])
            await self.push_raw(text)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance(self, steps: list[Callable[[], bool]]) -> None:
        """State changes after the first: at once (all rows in before the answer) or each
        transition_delay_s apart in the background. A step returns False to end the sequence."""
        if self.transition_delay_s <= 0:
            for step in steps:
                if not step():
                    break
            await self._flush()
            return
        await self._flush()  # the first row's message goes out with the answer

        async def later() -> None:
            for step in steps:
                await asyncio.sleep(self.transition_delay_s)
                if not step():
                    break
                await self._flush()

        self._spawn(later())

    def _status(self, order_id: str) -> str:
        return self.orders[order_id][-1]["status"]

    def _life_of(self, order_id: str) -> _Life:
        return self._life.setdefault(order_id, _Life())

    # --- the exchange --------------------------------------------------------------------------
    def _fill(self, order_id: str, qty: int, price: float) -> dict[str, Any]:
        last = self.orders[order_id][-1]
        if last["status"] not in WORKING + IN_FLIGHT:
            raise ValueError(f"order {order_id} is {last['status']}: the exchange cannot fill it")
        pending = last["quantity"] - last["filled_quantity"]
        if not 0 < qty <= pending:
            raise ValueError(f"order {order_id}: cannot fill {qty} of the {pending} pending")
        filled = last["filled_quantity"] + qty
        average = (float(last["average_price"] or 0) * last["filled_quantity"] + price * qty) / filled
        status = last["status"]
        if filled == last["quantity"]:
            status = "COMPLETE"
        elif status == "TRIGGER PENDING":  # a stop that fills has triggered
            status = "OPEN"
        if last["order_type"] in STOPS:
            self._life_of(order_id).triggered = True
        row = self._append(order_id, status=status, filled_quantity=filled, average_price=round(average, 2))
        self.fills.append({
            "trade_id": str(next(self._trade_ids)), "order_id": order_id,
            "exchange_order_id": row.get("exchange_order_id"), "tradingsymbol": row["tradingsymbol"],
            "exchange": row["exchange"], "instrument_token": row.get("instrument_token"),
            "product": row.get("product"), "transaction_type": row["transaction_type"], "quantity": qty,
            "average_price": price, "fill_timestamp": row["exchange_update_timestamp"],
            "order_timestamp": row.get("order_timestamp"), "exchange_timestamp": row["exchange_update_timestamp"],
            "_at": row["_at"]})
        return row

    def _trigger(self, order_id: str) -> dict[str, Any]:
        if self._status(order_id) != "TRIGGER PENDING":
            raise ValueError(f"order {order_id} is {self._status(order_id)}: nothing to trigger")
        self._life_of(order_id).triggered = True
        return self._append(order_id, status="OPEN")

    def _match(self, instrument: str | int, price: float) -> list[str]:
        symbol, inst = self._instrument(instrument)
        self._traded(inst.token, price)
        exchange, tradingsymbol = symbol.split(":", 1)
        touched = []
        for order_id, rows in list(self.orders.items()):
            row = rows[-1]
            if (row.get("exchange"), row.get("tradingsymbol")) != (exchange, tradingsymbol):
                continue
            sell, kind = row["transaction_type"] == "SELL", row["order_type"]
            pending = row["quantity"] - row["filled_quantity"]
            if row["status"] == "TRIGGER PENDING":
                trigger = row["trigger_price"]
                if not (price <= trigger if sell else price >= trigger):
                    continue
                self._trigger(order_id)
                if kind == "SL-M" or (price >= row["price"] if sell else price <= row["price"]):
                    self._fill(order_id, pending, price)
                touched.append(order_id)
            elif row["status"] == "OPEN" and pending > 0:
                if kind in ("MARKET", "SL-M"):
                    self._fill(order_id, pending, price)
                elif price >= row["price"] if sell else price <= row["price"]:
                    self._fill(order_id, pending, row["price"])
                else:
                    continue
                touched.append(order_id)
        return touched

    def _auto_fill(self, order_id: str) -> bool:
        row = self.orders[order_id][-1]
        if self.auto_fill_market and row["order_type"] == "MARKET" and row["status"] == "OPEN":
            ltp = self.last_prices.get(row.get("instrument_token") or -1)
            if ltp is not None:
                self._fill(order_id, row["quantity"] - row["filled_quantity"], ltp)
        return True

    async def complete(self, order_id: str, price: float) -> None:
        """The exchange fills an order: the book changes and the ticker says so (like a postback)."""
        last = self.orders[order_id][-1]
        await self.fill(order_id, last["quantity"] - last["filled_quantity"], price)

    async def fill(self, order_id: str, qty: int, price: float) -> None:
        """The exchange fills ``qty`` more of an order at ``price`` (COMPLETE once nothing is pending)."""
        self._fill(order_id, qty, price)
        await self._flush()

    async def trigger(self, order_id: str) -> None:
        """A stop's trigger price is reached: the order is OPEN at the exchange, not yet filled."""
        self._trigger(order_id)
        await self._flush()

    async def cancel_rest(self, order_id: str, message: str = "") -> None:
        """The exchange (or the trader, outside OTrade) cancels what is left of an order."""
        last = self.orders[order_id][-1]
        if last["status"] not in WORKING + IN_FLIGHT:
            raise ValueError(f"order {order_id} is {last['status']}: nothing to cancel")
        self._append(order_id, status="CANCELLED", status_message=message,
                     cancelled_quantity=last["quantity"] - last["filled_quantity"])
        await self._flush()

    async def match(self, instrument: str | int, price: float) -> list[str]:
        """A trade at ``price``: stops whose trigger it crosses trigger (and fill at it when they
        can), limits it crosses fill at their limit, market orders fill at it. Returns the orders
        that changed."""
        touched = self._match(instrument, price)
        await self._flush()
        return touched

    # --- positions and trades ------------------------------------------------------------------
    def derived_positions(self, lag_s: float = 0.0) -> list[dict[str, Any]]:
        """Net positions from the fills (as of ``lag_s`` ago): signed quantity, the open side's
        average price, realised and unrealised P&L at the LTP."""
        cutoff = self.clock() - lag_s if lag_s > 0 else math.inf
        books: dict[tuple[str, str, str], dict[str, Any]] = {}
        for t in self.fills:
            if t["_at"] > cutoff:
                continue
            p = books.setdefault((t["exchange"], t["tradingsymbol"], t["product"]), {
                "tradingsymbol": t["tradingsymbol"], "exchange": t["exchange"],
                "instrument_token": t["instrument_token"], "product": t["product"], "quantity": 0,
                "overnight_quantity": 0, "multiplier": 1, "average_price": 0.0, "realised": 0.0,
                "buy_quantity": 0, "buy_value": 0.0, "sell_quantity": 0, "sell_value": 0.0})
            price, qty = t["average_price"], t["quantity"] if t["transaction_type"] == "BUY" else -t["quantity"]
            side = "buy" if qty > 0 else "sell"
            p[f"{side}_quantity"] += abs(qty)
            p[f"{side}_value"] += abs(qty) * price
            held, average = p["quantity"], p["average_price"]
            if held == 0 or (held > 0) == (qty > 0):
                average = (average * abs(held) + price * abs(qty)) / (abs(held) + abs(qty))
            else:
                p["realised"] += min(abs(qty), abs(held)) * (price - average) * (1 if held > 0 else -1)
                if held + qty == 0:
                    average = 0.0
                elif (held + qty > 0) != (held > 0):  # flipped: the rest opened at this price
                    average = price
            p["quantity"], p["average_price"] = held + qty, average
        out = []
        for p in books.values():
            ltp = self.last_prices.get(p["instrument_token"] or -1, 0.0)
            unrealised = (ltp - p["average_price"]) * p["quantity"] if ltp and p["quantity"] else 0.0
            for side in ("buy", "sell"):
                p[f"{side}_price"] = p[f"{side}_value"] / p[f"{side}_quantity"] if p[f"{side}_quantity"] else 0.0
                p[f"day_{side}_quantity"], p[f"day_{side}_value"] = p[f"{side}_quantity"], p[f"{side}_value"]
            p.update(average_price=round(p["average_price"], 4), last_price=ltp, realised=round(p["realised"], 2),
                     unrealised=round(unrealised, 2), pnl=round(p["realised"] + unrealised, 2),
                     value=p["sell_value"] - p["buy_value"])
            out.append(p)
        return out

    def _visible(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows the order book shows: those older than book_lag_s (and not hidden by book_filter)."""
        cutoff = self.clock() - self.book_lag_s if self.book_lag_s > 0 else math.inf
        return [_public(r) for r in rows if r.get("_at", -math.inf) <= cutoff
                and (self.book_filter is None or self.book_filter(_public(r)))]

    # --- REST ----------------------------------------------------------------------------------
    async def session_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = hashlib.sha256(f"{API_KEY}{form['request_token']}{API_SECRET}".encode()).hexdigest()
        if form.get("api_key") != API_KEY or form.get("checksum") != expected:
            return self.error(403, "TokenException", "Token is invalid or has expired.")
        self.access_token = f"tok-{form['request_token']}"
        return self.ok({"user_id": "AB1234", "access_token": self.access_token, "public_token": "pub"})

    async def logout(self, request: web.Request) -> web.Response:
        if request.query.get("api_key") != API_KEY or request.query.get("access_token") != self.access_token:
            return self.refuse()
        self.access_token = ""  # invalidated: nothing authorises until the next login
        return self.ok(True)

    async def profile(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(_: web.Request) -> web.Response:
            return self.ok({"user_id": "AB1234", "user_name": "Test Trader", "exchanges": ["NSE", "BSE"]})

        return await self._served("profile", request, work)

    async def margins(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return self.ok({"equity": {"enabled": True, "net": 100000.0, "available": {"cash": 100000.0}}})

    async def place(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        self.place_calls += 1
        return await self._served("place", request, self._place)

    async def _place(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        try:
            self._admit_order_request()
            order_id, steps = self._new_order(request.match_info["variety"], form)
        except Refusal as r:
            return self.error(r.status, r.error_type, r.message)
        await self._advance(steps)
        return self.ok({"order_id": order_id})

    def _new_order(self, variety: str, form: dict[str, str]) -> tuple[str, list[Callable[[], bool]]]:
        """Validate a place call; on success the order exists (PUT ORDER REQ RECEIVED) and the
        steps of its life up to OPEN / TRIGGER PENDING / REJECTED are returned."""
        if variety not in VARIETIES:
            raise Refusal("Invalid `variety`.")
        symbol = f"{form.get('exchange')}:{form.get('tradingsymbol')}"
        if symbol not in self.instruments:
            raise Refusal("Invalid `tradingsymbol`.")
        inst = self.instruments[symbol]
        side, order_type = form.get("transaction_type"), form.get("order_type")
        for name, value, allowed in (("transaction_type", side, ("BUY", "SELL")),
                                     ("order_type", order_type, ORDER_TYPES),
                                     ("product", form.get("product"), PRODUCTS),
                                     ("validity", form.get("validity") or "DAY", VALIDITIES)):
            if value not in allowed:
                raise Refusal(f"Invalid `{name}`.")
        if len(form.get("tag") or "") > 20:
            raise Refusal(TAG_REFUSAL)
        quantity = self._number(form, "quantity", int)
        self._check_quantity(quantity, inst)
        if order_type in ("MARKET", "SL-M"):
            self._check_protection(form)
        price = self._number(form, "price") if order_type in ("LIMIT", "SL") else 0.0
        trigger = self._number(form, "trigger_price") if order_type in STOPS else 0.0
        self._check_prices(inst, side, order_type, price, trigger, {"price", "trigger_price"}, armed=True)
        order_id = str(next(self._ids))
        stamp = self._stamp()
        self.orders[order_id] = [{
            "order_id": order_id, "exchange_order_id": None, "parent_order_id": None,
            "status": "PUT ORDER REQ RECEIVED", "status_message": None, "tag": form.get("tag"),
            "tradingsymbol": form.get("tradingsymbol"), "exchange": form.get("exchange"),
            "instrument_token": inst.token, "transaction_type": side, "order_type": order_type,
            "quantity": quantity, "disclosed_quantity": self._number(form, "disclosed_quantity", int),
            "price": price, "trigger_price": trigger, "filled_quantity": 0, "pending_quantity": quantity,
            "cancelled_quantity": 0, "average_price": 0, "variety": variety, "product": form.get("product"),
            "validity": form.get("validity") or "DAY",
            "market_protection": self._number(form, "market_protection") if form.get("market_protection") else 0,
            "placed_by": "AB1234", "modified": False, "order_timestamp": stamp,
            "exchange_update_timestamp": stamp, "exchange_timestamp": None, "_at": self.clock()}]
        self._life[order_id] = _Life()
        self._post(self.orders[order_id][-1])
        rejected = bool(self.reject_reason) and (not self.reject_types or order_type in self.reject_types)
        reason = self.reject_reason
        chosen = next((r for r in self._rejections if r.matches(symbol, order_type, side)), None)
        if chosen is not None:
            rejected, reason = True, chosen.message
            chosen.times -= 1
            if not chosen.times:
                self._rejections.remove(chosen)

        def step(expect: str, **changes: Any) -> Callable[[], bool]:
            def go() -> bool:
                if self._status(order_id) != expect:
                    return False  # the exchange (a test) moved it on meanwhile
                self._append(order_id, **changes)
                return True
            return go

        steps = [step("PUT ORDER REQ RECEIVED", status="VALIDATION PENDING")]
        if rejected:
            steps.append(step("VALIDATION PENDING", status="REJECTED", status_message=reason))
        else:
            steps += [step("VALIDATION PENDING", status="OPEN PENDING"),
                      step("OPEN PENDING", status="TRIGGER PENDING" if order_type in STOPS else "OPEN",
                           exchange_order_id=str(next(self._exchange_ids))),
                      lambda: self._auto_fill(order_id)]
        return order_id, steps

    async def modify(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return await self._served("modify", request, self._modify)

    async def _modify(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        form = dict(await request.post())
        try:
            self._admit_order_request()
            if order_id not in self.orders:
                raise Refusal("Invalid order_id")
            self.modifies.append(form)
            steps = self._modification(order_id, form)
        except Refusal as r:
            return self.error(r.status, r.error_type, r.message)
        await self._advance(steps)
        return self.ok({"order_id": order_id})

    def _modification(self, order_id: str, form: dict[str, str]) -> list[Callable[[], bool]]:
        last, life = self.orders[order_id][-1], self._life_of(order_id)
        if last["status"] not in WORKING:
            raise Refusal(f"Order cannot be modified as it is {last['status']}", "OrderException")
        if life.modifications >= self.max_modifications:
            raise Refusal(MODIFICATIONS_REFUSAL)
        try:
            _, inst = self._instrument(f"{last['exchange']}:{last['tradingsymbol']}")
        except KeyError:
            raise Refusal("Invalid `tradingsymbol`.") from None
        changes: dict[str, Any] = {}
        order_type = last["order_type"]
        if "order_type" in form:
            order_type = form["order_type"]
            if order_type not in ORDER_TYPES:
                raise Refusal("Invalid `order_type`.")
            if order_type in ("MARKET", "SL-M"):
                self._check_protection(form)
                changes["market_protection"] = self._number(form, "market_protection")
            changes["order_type"] = order_type
        if "validity" in form:
            if form["validity"] not in VALIDITIES:
                raise Refusal("Invalid `validity`.")
            changes["validity"] = form["validity"]
        if "quantity" in form:
            quantity = self._number(form, "quantity", int)
            self._check_quantity(quantity, inst)
            if quantity < last["filled_quantity"]:
                raise Refusal(BELOW_FILLED_REFUSAL)
            changes["quantity"] = quantity
        if "disclosed_quantity" in form:
            changes["disclosed_quantity"] = self._number(form, "disclosed_quantity", int)
        price = self._number(form, "price") if "price" in form else float(last.get("price") or 0)
        trigger = (self._number(form, "trigger_price") if "trigger_price" in form
                   else float(last.get("trigger_price") or 0))
        fields = {f for f in ("price", "trigger_price") if f in form}
        if "order_type" in form and order_type != last["order_type"]:
            fields |= {"price", "trigger_price"}  # a new type is checked whole
        # a stop that has triggered stays OPEN: its trigger no longer counts, its limit does
        triggered = life.triggered and last["order_type"] in STOPS and order_type in STOPS
        self._check_prices(inst, last["transaction_type"], order_type, price, trigger, fields,
                           armed=not triggered)
        changes["price"] = price if order_type in ("LIMIT", "SL") else 0.0
        changes["trigger_price"] = trigger if order_type in STOPS else 0.0
        life.modifications += 1
        if order_type not in STOPS:
            life.triggered = False
        resting = "OPEN" if order_type not in STOPS or triggered else "TRIGGER PENDING"
        self._append(order_id, status="MODIFY VALIDATION PENDING")

        def pending() -> bool:
            if self._status(order_id) != "MODIFY VALIDATION PENDING":
                return False
            self._append(order_id, status="MODIFY PENDING", **changes, modified=True)
            return True

        def done() -> bool:
            if self._status(order_id) != "MODIFY PENDING":
                return False
            row = self.orders[order_id][-1]
            status = "COMPLETE" if row["filled_quantity"] >= row["quantity"] else resting
            self._append(order_id, status=status)
            return True

        return [pending, done, lambda: self._auto_fill(order_id)]

    async def cancel(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return await self._served("cancel", request, self._cancel)

    async def _cancel(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        try:
            self._admit_order_request()
            if order_id not in self.orders:
                raise Refusal("Invalid order_id")
            if self.cancel_refusal:
                raise Refusal(self.cancel_refusal, "OrderException")
            status = self._status(order_id)
            if status not in WORKING:
                raise Refusal(f"Order cannot be cancelled as it is {status}", "OrderException")
        except Refusal as r:
            return self.error(r.status, r.error_type, r.message)
        self._append(order_id, status="CANCEL PENDING")

        def cancelled() -> bool:
            row = self.orders[order_id][-1]
            if row["status"] != "CANCEL PENDING":
                return False  # filled meanwhile
            self._append(order_id, status="CANCELLED", cancelled_quantity=row["quantity"] - row["filled_quantity"])
            return True

        await self._advance([cancelled])
        return self.ok({"order_id": order_id})

    async def list_orders(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(_: web.Request) -> web.Response:
            return self.ok([shown[-1] for rows in self.orders.values() if (shown := self._visible(rows))])

        return await self._served("orders", request, work)

    async def history(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(r: web.Request) -> web.Response:
            shown = self._visible(self.orders.get(r.match_info["order_id"], []))
            return self.ok(shown) if shown else self.error(400, "InputException", "Invalid order_id")

        return await self._served("history", request, work)

    async def trades(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(_: web.Request) -> web.Response:
            return self.ok(self._visible(self.fills))

        return await self._served("trades", request, work)

    async def order_trades(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(r: web.Request) -> web.Response:
            order_id = r.match_info["order_id"]
            if not self._visible(self.orders.get(order_id, [])):
                return self.error(400, "InputException", "Invalid order_id")
            return self.ok([t for t in self._visible(self.fills) if t["order_id"] == order_id])

        return await self._served("trades", request, work)

    async def positions(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(_: web.Request) -> web.Response:
            net = self.derived_positions(self.positions_lag_s) if self.positions_from_fills else self.net_positions
            return self.ok({"net": net, "day": net})

        return await self._served("positions", request, work)

    async def ltp(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(r: web.Request) -> web.Response:
            out = {}
            for key in r.query.getall("i", []):
                if key in self.instruments:
                    out[key] = {"instrument_token": self.instruments[key].token, "last_price": self._ltp(key)}
            return self.ok(out)

        return await self._served("quote", request, self._quoting(work))

    async def quote(self, request: web.Request) -> web.Response:
        """``GET /quote?i=NSE:INFY&i=...``: Kite's full quote, the day's circuit limits with it."""
        if not self.authorised(request):
            return self.refuse()

        async def work(r: web.Request) -> web.Response:
            out, now = {}, self._stamp()
            for key in r.query.getall("i", []):
                if key not in self.instruments:
                    continue  # Kite leaves out what it does not know
                inst, ltp = self.instruments[key], self._ltp(key)
                open_, high, low = self._day_prices.get(inst.token, [ltp, ltp, ltp])
                lower, upper = inst.circuit or (0.0, 0.0)
                level = [{"price": 0.0, "quantity": 0, "orders": 0} for _ in range(5)]
                out[key] = {
                    "instrument_token": inst.token, "timestamp": now, "last_trade_time": now, "last_price": ltp,
                    "last_quantity": 0, "buy_quantity": 0, "sell_quantity": 0, "volume": 0, "average_price": ltp,
                    "oi": 0, "oi_day_high": 0, "oi_day_low": 0, "net_change": round(ltp - QUOTES.get(key, ltp), 2),
                    "lower_circuit_limit": lower, "upper_circuit_limit": upper,
                    "ohlc": {"open": open_, "high": high, "low": low, "close": QUOTES.get(key, 0.0)},
                    "depth": {"buy": level, "sell": [dict(x) for x in level]}}
            return self.ok(out)

        return await self._served("quote", request, self._quoting(work))

    def _quoting(self, work: Callable[[web.Request], Awaitable[web.Response]]
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``work`` within Kite's quote rate (``quotes_per_second`` in a rolling second, then 429)."""
        async def limited(request: web.Request) -> web.Response:
            now, times = self.clock(), self._quote_times
            while times and times[0] <= now - 1:
                times.popleft()
            if self.quotes_per_second is not None and len(times) >= self.quotes_per_second:
                return self.error(429, "NetworkException", RATE_REFUSAL)
            times.append(now)
            return await work(request)

        return limited

    def _ltp(self, symbol: str) -> float:
        return self.last_prices.get(self.instruments[symbol].token, QUOTES.get(symbol, 0.0))

    def _traded(self, token: int, price: float) -> None:
        """A trade at ``price``: the LTP and the day's open, high and low."""
        self.last_prices[token] = price
        day = self._day_prices.setdefault(token, [price, price, price])
        day[1], day[2] = max(day[1], price), min(day[2], price)

    def instruments_text(self, exchange: str | None = None) -> str:
        lines = [CSV_HEADER]
        for symbol, inst in self.instruments.items():
            ex, tradingsymbol = symbol.split(":", 1)
            if exchange in (None, ex):
                lines.append(f"{inst.token},{inst.exchange_token},{tradingsymbol},{inst.name},0,,0,"
                             f"{inst.tick_size:g},{inst.lot_size},EQ,{ex},{ex}\n")
        return "".join(lines)

    async def instruments_csv(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()

        async def work(r: web.Request) -> web.Response:
            return web.Response(text=self.instruments_text(r.match_info.get("exchange")), content_type="text/csv")

        return await self._served("instruments", request, work)

    # --- historical candles ----------------------------------------------------------------------
    async def historical(self, request: web.Request) -> web.Response:
        """``GET /instruments/historical/:token/:interval?from=&to=``: made-up but repeatable candles
        (a walk seeded by the token and the day) on the days NSE trades, in Kite's envelope, refusing
        what Kite refuses; ``historical_per_second`` requests in a rolling second, then 429s."""
        if not self.authorised(request):
            return self.refuse()
        q = request.query
        self.historical_calls.append((int(request.match_info["instrument_token"]), request.match_info["interval"],
                                      q.get("from", ""), q.get("to", "")))
        return await self._served("historical", request, self._historical)

    async def _historical(self, request: web.Request) -> web.Response:
        now, times = self.clock(), self._historical_times
        while times and times[0] <= now - 1:
            times.popleft()
        if self.historical_per_second is not None and len(times) >= self.historical_per_second:
            return self.error(429, "NetworkException", RATE_REFUSAL)
        times.append(now)
        token, interval = request.match_info["instrument_token"], request.match_info["interval"]
        limit = HISTORICAL_DAYS.get(interval)
        if limit is None:
            return self.error(400, "InputException", "invalid interval")
        if not token.isdigit() or all(i.token != int(token) for i in self.instruments.values()):
            return self.error(400, "InputException", "invalid token")
        try:
            start = datetime.strptime(request.query.get("from", ""), "%Y-%m-%d %H:%M:%S")
            end = datetime.strptime(request.query.get("to", ""), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return self.error(400, "InputException", "invalid from or to date: use yyyy-mm-dd hh:mm:ss")
        if end < start:
            return self.error(400, "InputException", "from date after to date")
        if (end.date() - start.date()).days + 1 > limit:
            return self.error(400, "InputException", f"interval exceeds max limit: {limit} days")
        candles = []
        day = start.date()
        while day <= end.date():
            for row in self._day_candles(int(token), interval, day):
                stamp = datetime.fromisoformat(row[0][:19])
                if start <= stamp <= end and not any(a <= stamp <= b for a, b in self.candle_gaps):
                    candles.append(row)
            day += timedelta(days=1)
        return self.ok({"candles": candles})

    def _day_candles(self, token: int, interval: str, day: Any) -> list[list[Any]]:
        """The day's candles, each N-minute (and the day's) one made of the minute candles it spans."""
        if self._calendar is None:
            from engine.services.calendar import (
                TradingCalendar,  # here: exchange_calendars loads slowly, most tests need none
            )

            self._calendar = TradingCalendar()
        session = self._calendar.session(day)
        if session is None:
            return []
        opened = session.open.replace(tzinfo=None)
        n = int((session.close - session.open).total_seconds() // 60)
        rng = np.random.default_rng([token, day.toordinal()])
        close = np.round((500 + token % 1000) * np.exp(np.cumsum(rng.normal(0, 5e-4, n))), 1)
        open_ = np.concatenate(([close[0]], close[:-1]))
        wick = np.round(np.abs(rng.normal(0, 0.3, (2, n))), 1)
        high, low = np.maximum(open_, close) + wick[0], np.minimum(open_, close) - wick[1]
        volume = rng.integers(100, 5000, n)
        size = n if interval == "day" else int(interval.removesuffix("minute") or 1)
        out = []
        for k in range(0, n, size):
            at = datetime.combine(day, datetime.min.time()) if interval == "day" else opened + timedelta(minutes=k)
            part = slice(k, k + size)
            out.append([f"{at:%Y-%m-%dT%H:%M:%S}+0530", float(open_[k]), round(float(high[part].max()), 2),
                        round(float(low[part].min()), 2), float(close[part][-1]), int(volume[part].sum())])
        return out

    # --- WebSocket ticker ----------------------------------------------------------------------
    async def ws(self, request: web.Request) -> web.StreamResponse:
        kind = self._next_fault("ws")
        if kind == "hang":
            await asyncio.sleep(self.hang_s)
        if request.query.get("api_key") != API_KEY or request.query.get("access_token") != self.access_token:
            return web.Response(status=403, text="Forbidden")
        if kind in ("500-before", "503"):
            return web.Response(status=503, text="Service unavailable")
        if kind == "429":
            return web.Response(status=429, text="Too many requests")
        if kind == "reset":
            return self._hang_up(request)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        if kind == "drop":
            await ws.close()
            return ws
        self.sockets.append(ws)
        subs = self._subs[ws] = {}
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = orjson.loads(msg.data)
                self.requests.append(req["a"])
                if req["a"] == "subscribe":
                    self.subscribed.update(req["v"])
                    for token in req["v"]:
                        subs.setdefault(token, "quote")  # a new subscription is in quote mode
                elif req["a"] == "unsubscribe":
                    for token in req["v"]:
                        subs.pop(token, None)
                        self.subscribed.discard(token)
                        self.modes.pop(token, None)
                elif req["a"] == "mode":
                    mode, tokens = req["v"]
                    self.subscribed.update(tokens)
                    self.modes.update(dict.fromkeys(tokens, mode))
                    subs.update(dict.fromkeys(tokens, mode))
        finally:
            self.sockets.remove(ws)
            self._subs.pop(ws, None)
        return ws

    async def push(self, ticks: list[Tick], *, late: bool = False) -> None:
        """Ticks to every socket subscribed to them; each sets its instrument's LTP (and, with
        auto_match, trades against the book). ``late``: the feed lags the exchange, whose price
        has already moved on (``set_ltp``): the ticks reach the engine and nothing else."""
        if not late:
            for tick in ticks:
                self._traded(tick.instrument_token, tick.last_price)
        frame = encode_frame(ticks)
        for ws in list(self.sockets):
            subs = self._subs.get(ws, {})
            mine = [t for t in ticks if t.instrument_token in subs]
            if mine:
                await self._send(ws, frame if len(mine) == len(ticks) else encode_frame(mine))
        if self.auto_match and not late:
            for tick in ticks:
                with contextlib.suppress(KeyError):  # an instrument the book does not know
                    self._match(tick.instrument_token, tick.last_price)
            await self._flush()

    async def push_raw(self, data: bytes | str) -> None:
        for ws in list(self.sockets):
            await self._send(ws, data)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, data: bytes | str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # a socket closing under us
            await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()


async def _serve(port: int) -> None:
    server = FakeKite()
    base = await server.start(port)
    print("A local Kite on 127.0.0.1 (made-up candles and prices; Ctrl-C stops it). In another shell:\n"
          f"  export KITE_API_BASE={base} KITE_WS_URL={base.replace('http', 'ws', 1)}/ws \\\n"
          f"         KITE_API_KEY={API_KEY} KITE_API_SECRET={API_SECRET} KITE_ACCESS_TOKEN={server.access_token}",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":  # python -m tests.kite_server [--port N]: the research loop without a Kite account
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.kite_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: %(default)s)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args().port))
