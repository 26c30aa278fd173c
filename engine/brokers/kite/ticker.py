"""Kite's WebSocket ticker on aiohttp: subscribe, decode, reconnect, and never count a tick twice.

A refused handshake (HTTP 403) means the access token is dead: that is a ``TokenException`` for
the engine, not a network fault to retry forever. Everything else reconnects with exponential
backoff and jitter (tenacity), re-subscribes, and the snapshot Kite re-sends on a new
connection is not delivered again. Every lost connection is logged with its cause and wait,
counted, and announced (``on_reconnect``) once the new one is up, so the engine can resync. A
garbled frame is counted, logged and skipped; an exception from the engine's own callbacks is
logged, counted and reported (``on_callback_error``), and the connection stays up.
"""

import logging
import random
import time
from collections.abc import Callable

import aiohttp
import numpy as np
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_never,
)

from engine.brokers.kite.rest import TokenException
from engine.brokers.kite.ticker_codec import FrameError, PriceDecoder

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.kite.trade"
# tokens, prices, ts_ns, quantity traded since the instrument's previous tick, received ns
TickSink = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], None]
CALLBACK_LOG_BURST, CALLBACK_LOG_EVERY_S = 10, 10.0  # callback tracebacks: the first ones, then one per period


class KiteTicker:
    def __init__(self, api_key: str, access_token: Callable[[], str], tokens: list[int], on_ticks: TickSink,
                 on_order: Callable[[dict], None], url: str = DEFAULT_URL, mode: str = "full",
                 max_backoff_s: float = 30.0, on_reconnect: Callable[[], None] = lambda: None,
                 on_callback_error: Callable[[Exception], None] = lambda exc: None) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.tokens = list(tokens)
        self.on_ticks = on_ticks
        self.on_order = on_order
        self.url = url
        self.mode = mode
        self.max_backoff_s = max_backoff_s
        self.on_reconnect = on_reconnect  # order updates may have been missed while away
        self.on_callback_error = on_callback_error  # on_ticks or on_order raised (already logged)
        self.frames = self.garbled = self.reconnects = self.duplicates = self.callback_errors = 0
        self.connected = False
        self.last_tick_mono = 0.0
        self._decode = PriceDecoder(max(8, len(tokens)))
        # beside the arrays on_ticks gets, during that call: the last trade's quantity (-1: none) and
        # depth level 1 (NaN: none) of each tick, for the tick recorder
        self.quotes: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        self._last: dict[int, tuple[int, float]] = {}  # token -> (exchange ts, price) last delivered
        self._volume: dict[int, int] = {}  # token -> day volume at its last delivered tick
        self._fresh = False  # True until the first frame of a new connection has been seen
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # the live socket, for set_tokens
        self._up = False  # the current attempt got a connection (so its end is a lost connection)
        self._frames_at_up = 0  # self.frames when that connection came up
        self._failures = 0  # attempts failed since a connection last carried frames: the backoff's exponent
        self._resync = False  # a connection was lost: announce the next one with on_reconnect
        self._callback_logged_mono = 0.0

    async def run(self) -> None:
        # Exception only: a cancelled task must stop, not reconnect.
        retry = retry_if_exception_type(Exception) & retry_if_not_exception_type(TokenException)
        async for attempt in AsyncRetrying(retry=retry, reraise=True, wait=self._backoff, stop=stop_never,
                                           before_sleep=self._lost):
            with attempt:
                try:
                    await self._session()
                except Exception:
                    # a connection that carried frames starts the backoff over: one drop after hours
                    # of ticks reconnects at once, a server that accepts and hangs up backs off
                    carried = self._up and self.frames > self._frames_at_up
                    self._failures = 1 if carried else self._failures + 1
                    raise

    def _backoff(self, state: RetryCallState) -> float:
        """Exponential (0.2 s, 0.4 s, ...) plus up to 1 s of jitter, capped at ``max_backoff_s``."""
        return min(self.max_backoff_s, 0.2 * 2.0 ** (min(self._failures, 32) - 1) + random.uniform(0, 1))

    def _lost(self, state: RetryCallState) -> None:
        """tenacity's before_sleep: every failed attempt that will be retried (not a cancel, not a
        refused token). One that had a connection is a lost connection: counted, and the next
        connection is announced with ``on_reconnect``."""
        exc = state.outcome.exception() if state.outcome is not None else None
        cause = self._cause(exc) if exc is not None else "no cause given"
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if self._up:
            self._up = False
            self.reconnects += 1
            self._resync = True
            log.warning("ticker connection lost (%s); reconnecting in %.2f s (%d reconnects so far)",
                        cause, wait, self.reconnects)
        else:
            log.warning("ticker could not connect (%s); attempt %d, next in %.2f s", cause, self._failures, wait)

    def _cause(self, exc: BaseException) -> str:
        """What went wrong, for the log: never the URL, whose query carries the access token."""
        if isinstance(exc, aiohttp.ClientResponseError):  # a refused handshake: its text names the URL
            return f"{type(exc).__name__}: HTTP {exc.status} {exc.message}"
        text = f"{type(exc).__name__}: {exc}"
        try:
            token = self.access_token()
        except Exception:
            return text
        return text.replace(token, "<access token>") if token else text

    async def set_tokens(self, tokens: list[int]) -> None:
        """Stream exactly ``tokens`` from now on: on the live socket, unsubscribe what is no longer
        wanted and set the mode of (so subscribe) what is new; every later connection subscribes
        this set. What the dedupe and volume state knew of the tokens that change is forgotten."""
        new = list(dict.fromkeys(int(t) for t in tokens))
        old, wanted = set(self.tokens), set(new)
        gone = [t for t in self.tokens if t not in wanted]
        added = [t for t in new if t not in old]
        self.tokens = new
        for token in (*gone, *added):  # a re-added token's day volume may be hours old
            self._last.pop(token, None)
            self._volume.pop(token, None)
        log.info("ticker: %d instruments (%d removed, %d added)", len(new), len(gone), len(added))
        ws = self._ws
        if ws is None or ws.closed:
            return  # the next connection subscribes the new set
        try:
            if gone:
                await ws.send_str(orjson.dumps({"a": "unsubscribe", "v": gone}).decode())
            if added:
                await ws.send_str(orjson.dumps({"a": "mode", "v": [self.mode, added]}).decode())
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("ticker: subscription change not sent (%s); the next connection subscribes it", exc)

    async def _session(self) -> None:
        self._up = False
        url = f"{self.url}?api_key={self.api_key}&access_token={self.access_token()}"
        async with aiohttp.ClientSession() as session:
            try:
                ws = await session.ws_connect(url, heartbeat=None, autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 403:
                    raise TokenException("the ticker refused the access token (HTTP 403)", 403,
                                         "TokenException") from None
                raise
            async with ws:
                self._up, self._frames_at_up, self._ws = True, self.frames, ws
                try:
                    if self.tokens:  # set_tokens from here on sends its changes on this socket
                        await ws.send_str(orjson.dumps({"a": "mode", "v": [self.mode, self.tokens]}).decode())
                    self.connected, self._fresh = True, True
                    log.info("ticker %s; %d instruments in %s mode", "reconnected" if self._resync else "connected",
                             len(self.tokens), self.mode)
                    if self._resync:
                        self._resync = False
                        self._call(self.on_reconnect, "on_reconnect")
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            self._on_frame(msg.data)
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_text(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                finally:
                    self.connected, self._ws = False, None
        error = ws.exception()
        if error is not None:
            raise ConnectionError(f"ticker connection failed: {type(error).__name__}: {error}") from error
        raise ConnectionError(f"ticker connection closed by the server (code {ws.close_code})")

    def _call(self, callback: Callable[[], None], name: str) -> None:
        try:
            callback()
        except Exception as exc:
            self._callback_failed(name, exc)

    def _callback_failed(self, name: str, exc: Exception) -> None:
        """An engine callback raised: logged with its traceback (the first few, then one every
        ``CALLBACK_LOG_EVERY_S``, so a callback failing on every tick cannot flood the log or stall
        the loop), counted, and reported; the feed carries on with the next packet."""
        self.callback_errors += 1
        now = time.monotonic()
        if self.callback_errors <= CALLBACK_LOG_BURST or now - self._callback_logged_mono >= CALLBACK_LOG_EVERY_S:
            self._callback_logged_mono = now
            log.error("ticker: the %s callback raised; skipped, the feed carries on (%d callback errors so far)",
                      name, self.callback_errors, exc_info=exc)
        try:
            self.on_callback_error(exc)
        except Exception:
            log.exception("ticker: on_callback_error raised too")

    def _on_frame(self, frame: bytes) -> None:
        received = time.time_ns()
        self.frames += 1
        try:
            tokens, prices, stamps, volumes, quantities = self._decode(frame)
        except FrameError as exc:
            self.garbled += 1
            log.warning("ticker: garbled frame of %d bytes skipped (%s); %d so far", len(frame), exc, self.garbled)
            return
        if not len(tokens):
            return  # heartbeat
        ts = np.where(stamps > 0, stamps * 1_000_000_000, received)
        bids, asks = self._decode.bids[: len(tokens)], self._decode.asks[: len(tokens)]
        keep = self._new(tokens, prices, stamps)
        self._fresh = False
        if keep is not None:
            tokens, prices, ts, volumes, quantities, bids, asks = (tokens[keep], prices[keep], ts[keep], volumes[keep],
                                                                   quantities[keep], bids[keep], asks[keep])
        self.last_tick_mono = time.monotonic()
        if len(tokens):
            traded = self._traded(tokens, volumes, quantities)
            self.quotes = (np.where(volumes >= 0, quantities, -1), bids, asks)
            try:
                self.on_ticks(tokens, prices, ts, traded, received)
            except Exception as exc:  # the engine's: this packet is lost to it, the next is not
                self._callback_failed("on_ticks", exc)

    def _traded(self, tokens: np.ndarray, volumes: np.ndarray, quantities: np.ndarray) -> np.ndarray:
        """What traded since each instrument's previous tick: the rise in the day's volume (trades
        missed while disconnected included). With no earlier tick since start to compare, or a new
        day's volume, the last trade's quantity; an LTP-mode packet carries no volume and weighs 1."""
        traded = np.ones(len(tokens))
        for k in range(len(tokens)):
            volume = int(volumes[k])
            if volume < 0:
                continue
            token = int(tokens[k])
            last = self._volume.get(token)
            traded[k] = volume - last if last is not None and volume >= last else int(quantities[k])
            self._volume[token] = volume
        return traded

    def _new(self, tokens: np.ndarray, prices: np.ndarray, stamps: np.ndarray) -> np.ndarray | None:
        """Mask of ticks not delivered before (None: all are new). Kite re-sends the last tick of
        every instrument on a new connection: in the first frame, an unchanged (timestamp, price)
        is that snapshot. A tick older than one delivered is stale either way."""
        keep = None
        for k in range(len(tokens)):
            token, price, stamp = int(tokens[k]), float(prices[k]), int(stamps[k])
            last = self._last.get(token)
            # older than what was delivered, or the unchanged snapshot a new connection opens with
            seen = last is not None and ((stamp and stamp < last[0])
                                         or (self._fresh and stamp == last[0] and price == last[1]))
            if seen:
                if keep is None:
                    keep = np.ones(len(tokens), dtype=bool)
                keep[k] = False
                self.duplicates += 1
            else:
                self._last[token] = (stamp, price)
        return keep

    def _on_text(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.garbled += 1
            log.warning("ticker: text frame that is not JSON skipped")
            return
        if not isinstance(message, dict):
            self.garbled += 1
            log.warning("ticker: text frame that is not a JSON object skipped")
            return
        kind = message.get("type")
        if kind == "order":
            data = message.get("data")
            if not isinstance(data, dict):
                self.garbled += 1
                log.warning("ticker: order update without its order skipped")
                return
            try:
                self.on_order(data)
            except Exception as exc:
                self._callback_failed("on_order", exc)
        elif kind == "error":
            log.warning("ticker error from Kite: %s", message.get("data"))
        else:
            log.info("ticker message from Kite: %s", message.get("data"))
