"""Kite's WebSocket ticker on aiohttp: subscribe, decode, reconnect, and never count a tick twice.

A refused handshake (HTTP 403) means the access token is dead: that is a ``TokenException`` for
the engine, not a network fault to retry forever. Everything else reconnects with exponential
backoff and jitter (tenacity), re-subscribes, and the snapshot Kite re-sends on a new
connection is not delivered again. A garbled frame is counted, logged and skipped.
"""

import logging
import time
from collections.abc import Callable

import aiohttp
import numpy as np
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_never,
    wait_exponential_jitter,
)

from engine.brokers.kite.rest import TokenException
from engine.brokers.kite.ticker_codec import FrameError, PriceDecoder

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.kite.trade"
# tokens, prices, ts_ns, quantity traded since the instrument's previous tick, received ns
TickSink = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], None]


class KiteTicker:
    def __init__(self, api_key: str, access_token: Callable[[], str], tokens: list[int], on_ticks: TickSink,
                 on_order: Callable[[dict], None], url: str = DEFAULT_URL, mode: str = "full",
                 max_backoff_s: float = 30.0, on_reconnect: Callable[[], None] = lambda: None) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.tokens = list(tokens)
        self.on_ticks = on_ticks
        self.on_order = on_order
        self.url = url
        self.mode = mode
        self.max_backoff_s = max_backoff_s
        self.on_reconnect = on_reconnect  # order updates may have been missed while away
        self.frames = self.garbled = self.reconnects = self.duplicates = 0
        self.connected = False
        self.last_tick_mono = 0.0
        self._decode = PriceDecoder(max(8, len(tokens)))
        self._last: dict[int, tuple[int, float]] = {}  # token -> (exchange ts, price) last delivered
        self._volume: dict[int, int] = {}  # token -> day volume at its last delivered tick
        self._fresh = False  # True until the first frame of a new connection has been seen

    async def run(self) -> None:
        # Exception only: a cancelled task must stop, not reconnect.
        retry = retry_if_exception_type(Exception) & retry_if_not_exception_type(TokenException)
        async for attempt in AsyncRetrying(retry=retry, reraise=True,
                                           wait=wait_exponential_jitter(multiplier=0.2, max=self.max_backoff_s),
                                           stop=stop_never):
            with attempt:
                await self._session()

    async def _session(self) -> None:
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
                if self.tokens:
                    await ws.send_str(orjson.dumps({"a": "mode", "v": [self.mode, self.tokens]}).decode())
                self.connected, self._fresh = True, True
                log.info("ticker connected; %d instruments in %s mode", len(self.tokens), self.mode)
                if self.reconnects:
                    self.on_reconnect()
                try:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            self._on_frame(msg.data)
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_text(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                finally:
                    self.connected = False
        self.reconnects += 1
        raise ConnectionError("ticker connection closed")

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
        keep = self._new(tokens, prices, stamps)
        self._fresh = False
        if keep is not None:
            tokens, prices, ts, volumes, quantities = (tokens[keep], prices[keep], ts[keep], volumes[keep],
                                                       quantities[keep])
        self.last_tick_mono = time.monotonic()
        if len(tokens):
            self.on_ticks(tokens, prices, ts, self._traded(tokens, volumes, quantities), received)

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
        kind = message.get("type")
        if kind == "order":
            self.on_order(message["data"])
        elif kind == "error":
            log.warning("ticker error from Kite: %s", message.get("data"))
        else:
            log.info("ticker message from Kite: %s", message.get("data"))
