"""Kite's order calls on kept-alive HTTP/1.1 connections, a short way from the socket.

aiohttp took ~310 us (feed at 1 frame/ms; ~130 us back to back) from the place call to the request
written: its request machinery (URL and header objects, traces, the connector, a writer) is built
for any HTTP, and an order needs one POST, PUT or DELETE on a connection that is already open. Here a
request is one buffer written with one send on the connection that served the last one, and the
answer is parsed by httptools (llhttp, the parser uvicorn runs on). Reads stay on aiohttp.

Never sent twice: a connection found closed, gone stale or idle too long before a request is
written is replaced (nothing had left). Once the request's bytes are written, a lost connection,
an answer that cannot be read or a timeout is a ``WireError``: its outcome is unknown, and the
order's owner looks the order up; nothing here sends it again. ``prepare`` keeps a fresh connection
open ahead of the next order, so it does not wait for a handshake, and ``send_now`` writes a request
on it without suspending: an order leaves from the code that decided it, with no hop through the loop.
"""

import asyncio
import select
import socket
import ssl
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

# An idle connection older than this is not reused: servers and load balancers close idle ones after
# about a minute, and a request written just as the server closes is an order whose outcome is unknown.
KEEP_S = 30.0
USER_AGENT = "otrade (Kite Connect v3)"


class WireError(Exception):
    """No answer: no connection to send on, or none came for a request that had left."""


class Answer(NamedTuple):
    status: int
    content_type: str  # the media type alone, lower case ("application/json")
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_closed: Callable[["_Connection"], None],
                 on_idle: Callable[["_Connection"], None]) -> None:
        self._loop = loop
        self._on_closed = on_closed
        self._on_idle = on_idle
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._content_type = b""
        self._body: list[bytes] = []
        self._poll = select.poll()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio's side ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # a server speaking out of turn is not trusted with the next request
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"an answer that is not HTTP ({exc})")

    def eof_received(self) -> None:
        return None  # the transport closes; connection_lost fails a request waiting for its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(f"connection lost ({type(exc).__name__})" if exc else "connection closed by Kite")
        self._on_closed(self)

    # --- httptools' side -----------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        self._timer.cancel()
        if answer is None or not self._parser.should_keep_alive():  # (None: an answer nobody asked for)
            self.close()
        if answer is not None and not answer.done():
            media = self._content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
            answer.set_result(Answer(self._parser.get_status_code(), media, b"".join(self._body)))

    # --- the wire's side -----------------------------------------------------------------------
    def usable(self, now: float, keep_s: float) -> bool:
        """Closed, idle too long, or readable while idle (the server's close, not yet read): not reused."""
        return not self.closed and now - self.idle_since < keep_s and not self._poll.poll(0)

    def send(self, data: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Write ``data``; the future is its answer. The connection is idle again once that is in (before
        whoever awaits it resumes); an answer given up on (the future cancelled) closes it, never reused."""
        self.transport.write(data)  # first: nothing of the answer can arrive before this returns to the loop
        self._answer = answer = self._loop.create_future()
        self._content_type, self._body = b"", []
        self._timer = self._loop.call_at(deadline, self._fail, "no answer in time")
        answer.add_done_callback(self._answered)
        return answer

    def _answered(self, answer: asyncio.Future[Answer]) -> None:
        if answer.cancelled():
            self.close()  # its answer may still come: never read as the next request's
        elif not self.closed:
            self.idle_since = self._loop.time()
            self._on_idle(self)

    def _fail(self, why: str) -> None:
        answer, self._answer = self._answer, None
        if self._timer is not None:
            self._timer.cancel()
        if answer is not None:
            self.close()  # a late answer must never be read as the next request's
            if not answer.done():
                answer.set_exception(WireError(why))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class OrderWire:
    """Requests to one Kite host, each on an idle kept-alive connection (the most recently used
    first) or a new one when none is free: orders in flight side by side each have their own."""

    def __init__(self, base: str, timeout: float, keep_s: float = KEEP_S) -> None:
        url = urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"Kite's API base must be an http(s) URL, not {base!r}")
        self.tls = url.scheme == "https"
        self.host, self.port = url.hostname, url.port or (443 if self.tls else 80)
        self.timeout, self.keep_s = timeout, keep_s
        self._prefix = url.path.rstrip("/")
        self._head = f"Host: {url.netloc.rpartition('@')[2]}\r\nUser-Agent: {USER_AGENT}\r\n"
        self._ssl: ssl.SSLContext | None = None  # made with the first connection: it reads the CA certificates
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self.opened = 0  # connections opened so far

    def _data(self, method: str, path: str, headers: str, body: bytes) -> bytes:
        return (f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._head}{headers}Content-Length: {len(body)}"
                "\r\n\r\n").encode() + body

    def send_now(self, method: str, path: str, headers: str, body: bytes = b"") -> asyncio.Future[Answer] | None:
        """Write the request now on an idle connection, if one is fit to use; the future is its answer
        (cancelling it closes the connection). None, with nothing written, when there is none."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        connection = self._reuse(now)
        if connection is None:
            return None
        return connection.send(self._data(method, path, headers, body), now + self.timeout)

    async def request(self, method: str, path: str, headers: str, body: bytes = b"") -> Answer:
        """``headers``: lines of ``Name: value\\r\\n`` beside Host, User-Agent and Content-Length."""
        answer = self.send_now(method, path, headers, body)
        if answer is None:
            deadline = asyncio.get_running_loop().time() + self.timeout
            connection = await self._open(deadline)
            answer = connection.send(self._data(method, path, headers, body), deadline)
        return await answer  # a cancel here cancels the answer: its connection is closed

    async def prepare(self) -> None:
        """Have an idle connection ready, opened now if none is (one idle too long is closed): the next
        order does not wait for a handshake. A connection kept ready is never made to look younger."""
        loop = asyncio.get_running_loop()
        connection = self._reuse(loop.time())
        if connection is None:
            connection = await self._open(loop.time() + self.timeout)
            connection.idle_since = loop.time()
        self._idle.append(connection)

    def _reuse(self, now: float) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now, self.keep_s):
                return connection
            connection.close()
        return None

    async def _open(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        connection = _Connection(loop, self._closed, self._idle.append)
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(lambda: connection, self.host, self.port, ssl=self._ssl,
                                             server_hostname=self.host if self.tls else None)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            connection.close()
            raise WireError(f"could not connect ({type(exc).__name__})") from None
        self.opened += 1
        self._all.add(connection)
        return connection

    def _closed(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Close every connection; a request still waiting for its answer gets a ``WireError``."""
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
