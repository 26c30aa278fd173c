"""Kite Connect v3 REST: typed errors and throttled orders.

Errors are typed by what they mean for an order: ``Refused`` (Kite said no: nothing was done),
``OutcomeUnknown`` (timeout, 5xx, network: it may have been done) and ``SessionExpired``. Order
calls are never retried on an unknown outcome here; the order's owner looks it up instead. 429s
are refusals and are retried after a backoff; reads are retried with tenacity. Order calls (place,
modify, cancel) go on the order wire (``wire.py``: kept-alive connections, one send per request);
everything else on aiohttp.
"""

import asyncio
import csv
import hashlib
import io
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote, quote_plus

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.brokers.kite.wire import Answer, OrderWire, WireError
from engine.live.venue import BrokerError, OutcomeUnknown, Refused, SessionExpired

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://api.kite.trade"
LOGIN_URL = "https://kite.zerodha.com/connect/login?v=3&api_key={api_key}"
FORM = "application/x-www-form-urlencoded"
RATE_BACKOFF_S = 0.2  # first wait after a 429; doubled from there
RATE_MAX_WAIT_S = 5.0
ORDER_TRIES = 5  # an order request answered 429 is tried this many times in all
HISTORICAL_PER_SECOND = 3  # Kite's limit on the historical candle API
HISTORICAL_WINDOW_S = 1.05  # its "second", with a margin for its clock's granularity


class KiteError(BrokerError):
    """An error answer from Kite; ``message`` is Kite's own words, safe to show the trader."""

    def __init__(self, message: str, status: int = 0, error_type: str = "") -> None:
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type


class TokenException(KiteError, SessionExpired):
    """The session expired or was invalidated: log in again."""


class InputException(KiteError, Refused): ...


class OrderException(KiteError, Refused): ...


class MarginException(KiteError, Refused): ...


class PermissionException(KiteError, Refused): ...


class NetworkException(KiteError, OutcomeUnknown):
    """Kite could not reach the exchange/OMS: the outcome of an order call is unknown."""


class RateLimited(KiteError, Refused):
    """429: the request was refused, not executed."""


class ServerError(KiteError, OutcomeUnknown):
    """5xx: the outcome of an order call is unknown."""


class KiteRefusal(KiteError, Refused):
    """Any other error answer below 500: refused, not carried out."""


class Unreachable(KiteError, OutcomeUnknown):
    """No answer at all (timeout, connection reset): the outcome is unknown."""


ERRORS: dict[str, type[KiteError]] = {c.__name__: c for c in (
    TokenException, InputException, OrderException, MarginException, PermissionException, NetworkException)}
UNKNOWN_OUTCOME = (NetworkException, ServerError, Unreachable)


@dataclass(frozen=True)
class Instrument:
    token: int
    symbol: str  # EXCHANGE:TRADINGSYMBOL
    tick_size: float
    lot_size: int


class RollingLimit:
    """At most ``max_rate`` entries in any rolling second, as Kite counts (a leaky bucket lets a
    burst of the rate through and then more within the same second: 429s on an exit)."""

    def __init__(self, max_rate: int, window: float = 1.0) -> None:
        self.max_rate = max_rate
        self.window = window
        self._times: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()

    def has_capacity(self) -> bool:
        self._prune(time.monotonic())
        return len(self._times) < self.max_rate

    def take(self) -> bool:
        """A slot now, if there is one: an order's path takes it without suspending."""
        now = time.monotonic()
        self._prune(now)
        if len(self._times) < self.max_rate:
            self._times.append(now)
            return True
        return False

    async def wait(self) -> None:
        """Take the next slot, waiting for it."""
        while not self.take():
            await asyncio.sleep(self.window - (time.monotonic() - self._times[0]))


class AnsweredLimit:
    """At most ``max_rate`` requests in any rolling ``window`` as Kite counts them, however late
    that is. Kite counts a request somewhere between our sending it and our having its answer; a
    request holds its place from when it is let go until ``window`` after its answer (or failure).
    Stamped when let go (``RollingLimit``), a request held up on a busy event loop or a slow link
    was counted in the next second beside that second's own: 429s, each retry one more request."""

    def __init__(self, max_rate: int, window: float = 1.0) -> None:
        self.max_rate = max_rate
        self.window = window
        self._in_flight = 0
        self._answered: deque[float] = deque()
        self._turn = asyncio.Lock()  # places go in the order asked for: requests leave in plan order
        self._an_answer: asyncio.Future[None] | None = None  # awaited while every place is in flight

    async def __aenter__(self) -> None:
        async with self._turn:
            while True:
                now = time.monotonic()
                while self._answered and now - self._answered[0] >= self.window:
                    self._answered.popleft()
                if self._in_flight + len(self._answered) < self.max_rate:
                    self._in_flight += 1
                    return
                if self._answered:
                    await asyncio.sleep(self.window - (now - self._answered[0]))
                else:
                    self._an_answer = asyncio.get_running_loop().create_future()
                    await self._an_answer

    async def __aexit__(self, *exc: object) -> None:
        self._in_flight -= 1
        self._answered.append(time.monotonic())
        if self._an_answer is not None and not self._an_answer.done():
            self._an_answer.set_result(None)


def _error_of(status: int, content_type: str, body: bytes) -> KiteError | None:
    """Kite's answer as the error it means; None for a success."""
    if status == 200 and content_type != "application/json":
        return None  # the instruments CSV
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        envelope = {}
    if status == 200 and envelope.get("status") == "success":
        return None
    message = envelope.get("message") or f"HTTP {status}"
    if status == 429:
        return RateLimited(message, status, envelope.get("error_type", ""))
    error = ERRORS.get(envelope.get("error_type", ""))
    if error is not None:
        return error(message, status, envelope["error_type"])
    if status >= 500:
        return ServerError(message, status)
    return KiteRefusal(message, status, envelope.get("error_type", ""))


_plain = re.compile(r"[\w.~-]*", re.ASCII).fullmatch  # what a form value keeps as it is


def form(data: Mapping[str, Any]) -> bytes:
    """``data`` as a form body (Kite's field names are plain); unset fields are left out, never sent
    as "None". urlencode's output, in a third of its time: on an order's path most values need no quoting."""
    return "&".join(f"{key}={form_value(str(value))}" for key, value in data.items() if value is not None).encode()


def form_value(value: str) -> str:
    """One form value, quoted only if it must be."""
    return value if (value.isascii() and value.isalnum()) or _plain(value) else quote_plus(value)


class Sent(NamedTuple):
    """An order request written already (``KiteREST.place_now``): what its answer is awaited with."""

    method: str
    path: str
    data: Mapping[str, Any] | bytes  # what a retry after a 429 sends again
    urgent: bool
    call: str
    started: int  # perf_counter_ns as it was written
    answer: "asyncio.Future[Answer]"


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


class KiteREST:
    def __init__(self, api_key: str, access_token: str = "", base: str = DEFAULT_BASE, timeout: float = 7.0,
                 orders_per_second: int = 10) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.base = base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._wire = OrderWire(self.base, timeout)
        self._order_headers = ("", "")  # (access token, the order calls' header lines made for it)
        self.orders_per_second = orders_per_second
        self._historical_limiter = AnsweredLimit(HISTORICAL_PER_SECOND, HISTORICAL_WINDOW_S)
        self.historical_requests = 0  # tries sent, retries included
        # every request: (call, nanoseconds to its answer or to giving up, the error it was or None), for metrics
        self.on_request: Callable[[str, int, KiteError | None], None] = lambda call, ns, error: None

    @property
    def orders_per_second(self) -> float:
        urgent = self._urgent_limiter
        return self._order_limiter.max_rate + (urgent.max_rate if urgent is not self._order_limiter else 0)

    @orders_per_second.setter
    def orders_per_second(self, rate: float) -> None:
        """A new throttle (risk.max_orders_per_second changed); calls waiting on the old one finish.
        A fifth of the rate is kept for urgent orders (a stop for a filled entry), so a burst of
        other order calls never makes protection wait for a slot."""
        rate = int(rate)
        reserve = rate // 5
        self._order_limiter = RollingLimit(rate - reserve)
        self._urgent_limiter = RollingLimit(reserve) if reserve else self._order_limiter

    def _limiter(self, urgent: bool) -> RollingLimit:
        """Urgent calls (protection, exits) take the reserved slots while there are any."""
        return self._urgent_limiter if urgent and self._urgent_limiter.has_capacity() else self._order_limiter

    async def __aenter__(self) -> "KiteREST":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._wire.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def prepare_orders(self) -> None:
        """Have an order connection open and ready before the next order (its handshake off the order's
        path); ``Unreachable`` when it cannot be opened now (the next order then connects itself)."""
        try:
            await self._wire.prepare()
        except WireError as exc:
            raise Unreachable(f"order connection to Kite not opened: {exc}") from None

    def login_url(self) -> str:
        return LOGIN_URL.format(api_key=self.api_key)

    # --- transport -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"X-Kite-Version": "3"}
        if self.access_token:
            headers["Authorization"] = f"token {self.api_key}:{self.access_token}"
        return headers

    def _new_session(self, **options: Any) -> aiohttp.ClientSession:
        # Kite sets no cookies worth keeping; a dummy jar saves work on every request.
        return aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(), **options)

    async def _raw(self, method: str, path: str, params: Any = None, data: Mapping | None = None, *,
                   call: str) -> bytes:
        headers = self._headers()
        body = None
        if data is not None:
            body = form(data)
            headers["Content-Type"] = FORM
        if self._session is None:
            self._session = self._new_session()
        started = time.perf_counter_ns()
        try:
            async with self._session.request(method, self.base + path, params=params, data=body,
                                             headers=headers) as response:
                body = await response.read()
                status = response.status
                content_type = response.content_type
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._lost(method, path, call, started, type(exc).__name__)
        return self._answered(call, started, status, content_type, body)

    def _order_request(self, data: Mapping | bytes | None) -> tuple[str, bytes]:
        """An order call's header lines and body (``data``: form fields, or a form body made already)."""
        token, headers = self._order_headers
        if token != self.access_token or not headers:  # made once per token: every order sends them
            credentials = f"{self.api_key}:{self.access_token}"
            if "\r" in credentials or "\n" in credentials:  # it would end the header: never sent
                raise ValueError("the API key or access token has a line break in it")
            headers = f"X-Kite-Version: 3\r\nAuthorization: token {credentials}\r\n" if self.access_token else \
                "X-Kite-Version: 3\r\n"
            self._order_headers = (self.access_token, headers)
        if data is None:
            return headers, b""
        return f"{headers}Content-Type: {FORM}\r\n", data if isinstance(data, bytes) else form(data)

    async def _order_raw(self, method: str, path: str, data: Mapping | bytes | None, call: str) -> bytes:
        """An order call on the order wire: Kite's answer, or the error it means."""
        headers, body = self._order_request(data)
        started = time.perf_counter_ns()
        try:
            answer = await self._wire.request(method, path, headers, body)
        except WireError as exc:
            self._lost(method, path, call, started, str(exc))
        return self._answered(call, started, answer.status, answer.content_type, answer.body)

    async def _order_answer(self, sent: Sent) -> bytes:
        """The answer to an order request written already, or the error it means."""
        try:
            answer = await sent.answer
        except WireError as exc:
            self._lost(sent.method, sent.path, sent.call, sent.started, str(exc))
        return self._answered(sent.call, sent.started, answer.status, answer.content_type, answer.body)

    def _lost(self, method: str, path: str, call: str, started: int, why: str) -> NoReturn:
        lost = Unreachable(f"no answer from Kite for {method} {path}: {why}")
        self.on_request(call, time.perf_counter_ns() - started, lost)
        raise lost from None

    def _answered(self, call: str, started: int, status: int, content_type: str, body: bytes) -> bytes:
        error = _error_of(status, content_type, body)
        self.on_request(call, time.perf_counter_ns() - started, error)
        if error is not None:
            raise error
        return body

    async def _call(self, method: str, path: str, params: Any = None, data: Mapping | None = None,
                    retry: bool = True, *, call: str) -> Any:
        """One call; idempotent ones are retried on 429, 5xx and silence with exponential backoff."""
        retriable = (RateLimited, *UNKNOWN_OUTCOME) if retry else (RateLimited,)
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(retriable), reraise=True,
                                           wait=wait_exponential(multiplier=0.2, max=5), stop=stop_after_attempt(5)):
            with attempt:
                body = await self._raw(method, path, params, data, call=call)
        if path.startswith("/instruments"):
            return body
        return orjson.loads(body)["data"]

    # --- session -------------------------------------------------------------------------------
    async def create_session(self, request_token: str, api_secret: str) -> dict[str, Any]:
        data = await self._call("POST", "/session/token", data={
            "api_key": self.api_key, "request_token": request_token,
            "checksum": checksum(self.api_key, request_token, api_secret)}, retry=False, call="session")
        self.access_token = data["access_token"]
        return data

    async def invalidate_session(self) -> None:
        await self._call("DELETE", "/session/token", params={"api_key": self.api_key,
                                                              "access_token": self.access_token}, retry=False,
                         call="session")

    # --- reads ---------------------------------------------------------------------------------
    async def profile(self) -> dict[str, Any]:
        return await self._call("GET", "/user/profile", call="profile")

    async def margins(self) -> dict[str, Any]:
        return await self._call("GET", "/user/margins", call="margins")

    async def orders(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/orders", call="orders")

    async def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return await self._call("GET", f"/orders/{order_id}", call="order_history")

    async def trades(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/trades", call="trades")

    async def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return await self._call("GET", f"/orders/{order_id}/trades", call="order_trades")

    async def positions(self) -> dict[str, list[dict[str, Any]]]:
        return await self._call("GET", "/portfolio/positions", call="positions")

    async def quote(self, *symbols: str) -> dict[str, dict[str, Any]]:
        """Kite's full quote of each symbol (the day's circuit limits among its fields)."""
        return await self._call("GET", "/quote", params=[("i", s) for s in symbols], call="quote")

    async def ltp(self, *symbols: str) -> dict[str, float]:
        data = await self._call("GET", "/quote/ltp", params=[("i", s) for s in symbols], call="ltp")
        return {s: v["last_price"] for s, v in data.items()}

    async def instruments(self, exchange: str = "NSE") -> dict[str, Instrument]:
        body = await self._call("GET", f"/instruments/{exchange}", call="instruments")
        out = {}
        for row in csv.DictReader(io.StringIO(body.decode())):
            symbol = f"{row['exchange']}:{row['tradingsymbol']}"
            out[symbol] = Instrument(int(row["instrument_token"]), symbol, float(row["tick_size"]),
                                     int(row["lot_size"]))
        return out

    async def historical(self, token: int, interval: str, start: str, end: str) -> list[list[Any]]:
        """Kite's candles ``[timestamp, open, high, low, close, volume]`` of instrument ``token``
        from ``start`` to ``end`` (``yyyy-mm-dd hh:mm:ss`` IST). Every try, a retry too, waits for
        its place within the 3 a second (held until a second after its answer: ``AnsweredLimit``);
        429s, 5xx and silence are retried with a backoff."""
        path = f"/instruments/historical/{token}/{interval}"
        params = {"from": start, "to": end, "continuous": 0, "oi": 0}
        async for attempt in AsyncRetrying(retry=retry_if_exception_type((RateLimited, *UNKNOWN_OUTCOME)),
                                           reraise=True, wait=wait_exponential(multiplier=0.5, max=8),
                                           stop=stop_after_attempt(6)):
            with attempt:
                async with self._historical_limiter:
                    self.historical_requests += 1
                    body = await self._raw("GET", path, params, call="historical")
        return orjson.loads(body)["data"]["candles"]

    # --- orders --------------------------------------------------------------------------------
    async def _order_call(self, method: str, path: str, data: Mapping[str, Any] | bytes | None, urgent: bool,
                          call: str, sent: Sent | None = None) -> str:
        """One order request (its first try ``sent`` already, if given); returns Kite's order id. A 429 is
        a refusal (nothing was done), so it is tried again after a backoff, each try in a slot of its own:
        Kite counts every request it gets against its 10 a second. A lost answer (``OutcomeUnknown``) is
        raised, never retried here: only a look at the order can tell whether it was done. ``urgent``
        ones take the reserved slots first."""
        for attempt in range(ORDER_TRIES):
            try:
                if attempt == 0 and sent is not None:
                    body = await self._order_answer(sent)
                    break
                limiter = self._limiter(urgent)
                if not limiter.take():
                    await limiter.wait()
                body = await self._order_raw(method, path, data, call)
                break
            except RateLimited:
                if attempt == ORDER_TRIES - 1:
                    raise
            await asyncio.sleep(min(RATE_MAX_WAIT_S, RATE_BACKOFF_S * 2**attempt))
        return orjson.loads(body)["data"]["order_id"]

    async def place_order(self, params: Mapping[str, Any] | bytes, variety: str = "regular",
                          urgent: bool = False) -> str:
        """Place once (a 429 tried again); returns Kite's order id. ``params``: the order's fields, or
        its form body made already."""
        return await self._order_call("POST", f"/orders/{variety}", params, urgent, "place")

    def place_now(self, params: Mapping[str, Any] | bytes, variety: str = "regular",
                  urgent: bool = False) -> Sent | None:
        """Write the place request now, if that needs no wait (a slot free within the rate, a connection
        open and idle): what ``placed`` then awaits. None, with nothing written or counted, when it would
        wait: ``place_order`` then. The request is written last: what raises here left nothing behind."""
        path = f"/orders/{variety}"
        headers, body = self._order_request(params)
        limiter = self._limiter(urgent)
        if not limiter.has_capacity():
            return None
        started = time.perf_counter_ns()
        answer = self._wire.send_now("POST", path, headers, body)
        if answer is None:
            return None
        limiter.take()  # (there was room a moment ago, and nothing ran since)
        return Sent("POST", path, body, urgent, "place", started, answer)

    async def placed(self, sent: Sent) -> str:
        """Kite's order id for a place request ``place_now`` wrote (a 429 tried again, as ``place_order``)."""
        return await self._order_call(sent.method, sent.path, sent.data, sent.urgent, sent.call, sent)

    async def modify_order(self, order_id: str, params: Mapping[str, Any], variety: str = "regular") -> str:
        """One modify (each one Kite takes counts towards its 25 per order; a 429 tried again)."""
        return await self._order_call("PUT", f"/orders/{variety}/{quote(order_id, safe='')}", params, False,
                                      "modify")

    async def cancel_order(self, order_id: str, variety: str = "regular", urgent: bool = False) -> str:
        return await self._order_call("DELETE", f"/orders/{variety}/{quote(order_id, safe='')}", None, urgent,
                                      "cancel")
