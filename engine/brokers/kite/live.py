"""Everything `otrade run --live` needs from Kite: credentials, the daily token, instruments, and
the tasks that keep the order worker and the ticker running."""

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from engine.brokers.kite.broker import CIRCUIT_EVERY_S, KiteBroker
from engine.brokers.kite.rest import DEFAULT_BASE, Instrument, KiteError, KiteREST
from engine.brokers.kite.ticker import DEFAULT_URL, KiteTicker
from engine.core.layout import IST
from engine.live.orders import Caps
from engine.services.journal import Journal
from engine.services.logs import add_secret

log = logging.getLogger(__name__)
TOKEN_FILE = "kite_access_token"


@dataclass(frozen=True)
class Credentials:
    api_key: str
    api_secret: str
    access_token: str


def token_day_start(now: datetime | None = None, flush_hour: int = 6) -> datetime:
    """The most recent 06:00 IST at or before ``now`` (a naive ``now`` is local time): Kite
    invalidates every access token around then, so a token issued before it is yesterday's."""
    now = (now or datetime.now(UTC)).astimezone(IST)
    flush = now.replace(hour=flush_hour, minute=0, second=0, microsecond=0)
    return flush if now >= flush else flush - timedelta(days=1)


def credentials(data_dir: Path, now: datetime | None = None) -> tuple[Credentials | None, list[str]]:
    """From the environment, else what is missing; the access token as ``access_token`` finds it."""
    key, secret = os.environ.get("KITE_API_KEY", ""), os.environ.get("KITE_API_SECRET", "")
    token = access_token(data_dir, now)
    missing = [name for name, value in (("KITE_API_KEY", key), ("KITE_API_SECRET", secret),
                                        ("KITE_ACCESS_TOKEN (or a token saved by /token)", token)) if not value]
    return (None, missing) if missing else (Credentials(key, secret, token), [])


def access_token(data_dir: Path, now: datetime | None = None) -> str:
    """One saved by /token since the last 06:00 IST (today's) wins over ``KITE_ACCESS_TOKEN``, which
    may be a stale one from the deploy; an older saved token is used only when the environment has
    none. "" when there is neither."""
    token = os.environ.get("KITE_ACCESS_TOKEN", "").strip()
    saved_path = Path(data_dir) / TOKEN_FILE
    try:
        saved, written = saved_path.read_text().strip(), saved_path.stat().st_mtime
    except FileNotFoundError:
        saved, written = "", 0.0
    if saved and (not token or written > token_day_start(now).timestamp()):
        if token and token != saved:
            log.info("using the access token saved by /token today instead of KITE_ACCESS_TOKEN")
        token = saved
    add_secret(token)  # the saved one is learned here, not from the environment
    return token


def save_token(data_dir: Path, token: str) -> None:
    """Owner-only file, replaced atomically: the next start (or restart) needs no login."""
    path = Path(data_dir) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def request_token_of(text: str) -> str:
    """The request_token from Kite's redirect URL, or the token itself."""
    text = text.strip()
    if "request_token=" in text:
        values = parse_qs(urlparse(text).query).get("request_token") or []
        if values and values[0]:
            return values[0]
        raise ValueError("that URL carries no request_token")
    if not text or any(c.isspace() for c in text):
        raise ValueError("send the redirect URL or the request_token from it")
    return text


class KiteLive:
    def __init__(self, creds: Credentials, data_dir: Path, journal: Journal, now_ns: Callable[[], int],
                 symbols: list[str], tick_sizes: dict[str, float], orders_per_second: int,
                 caps: Caps | None = None, lookup_seconds: float = 15.0) -> None:
        self.creds = creds
        self.data_dir = Path(data_dir)
        self.symbols = list(symbols)
        self.rest = KiteREST(creds.api_key, creds.access_token, os.environ.get("KITE_API_BASE", DEFAULT_BASE),
                             orders_per_second=orders_per_second)
        self.broker = KiteBroker(self.rest, journal, tick_sizes, now_ns, caps, lookup_seconds)
        self.tokens: dict[int, int] = {}  # instrument token -> engine row
        self.known: dict[str, Instrument] = {}  # today's instruments file, for the exchanges traded
        self.renewed = asyncio.Event()  # set whenever the access token is known good again
        self.ticker: KiteTicker | None = None
        self.received_ns = 0  # time.time_ns() the frame being delivered arrived: where tick -> decision starts
        self._resubscribing: asyncio.Task | None = None

    async def prepare(self) -> list[str]:
        """Instrument tokens and tick sizes from today's instruments file, and the day's circuit limits
        (kept fresh by the order worker from then on); returns warnings."""
        for exchange in sorted({s.split(":")[0] for s in self.symbols}):
            self.known.update(await self.rest.instruments(exchange))
        warnings = []
        for symbol in self.symbols:
            configured = self.broker.tick_sizes.get(symbol)
            if symbol in self.known and configured and abs(self.known[symbol].tick_size - configured) > 1e-9:
                warnings.append(f"{symbol}: configured tick_size {configured} but Kite says "
                                f"{self.known[symbol].tick_size} today; using Kite's")
        self.use_symbols(self.symbols)
        try:
            await self.broker.read_circuits(self.symbols)
        except KiteError as exc:  # read again by the order worker; until then no price is clamped into a band
            warnings.append(f"the day's circuit limits could not be read ({exc}); trying again in "
                            f"{CIRCUIT_EVERY_S:g} s")
        return warnings

    def unknown(self, symbols: list[str]) -> list[str]:
        return [s for s in symbols if s not in self.known]

    @property
    def tick_sizes(self) -> dict[str, float]:
        """Kite's tick sizes for the symbols traded: the authority in live mode."""
        return {s: self.known[s].tick_size for s in self.symbols}

    def use_symbols(self, symbols: list[str]) -> None:
        """Trade these instruments (rows in this order): the token map and the ticker's subscription
        follow. Every symbol must be in today's instruments file."""
        missing = self.unknown(symbols)
        if missing:
            raise LookupError(f"{', '.join(missing)} not in Kite's instruments list")
        self.symbols = list(symbols)
        self.tokens.clear()  # in place: the ticker's callback holds this map
        self.tokens.update({self.known[s].token: row for row, s in enumerate(symbols)})
        self.broker.banded = list(symbols)  # their circuit limits read at the order worker's next refresh
        if self.ticker is not None:
            task = asyncio.get_running_loop().create_task(self.ticker.set_tokens(list(self.tokens)))
            self._resubscribing = task  # a reference, so the task is not collected mid-flight

    def ticker_for(self, on_tick: Callable[[int, int, float, float, int, float, float], None],
                   on_reconnect: Callable[[], None], on_fault: Callable[[Exception], None] = lambda exc: None
                   ) -> KiteTicker:
        """``on_tick(row, ts, price, volume, last_qty, bid, ask)``: last_qty -1, bid and ask NaN where
        the packet has none."""
        rows = self.tokens

        def ticks(tokens: np.ndarray, prices: np.ndarray, ts: np.ndarray, traded: np.ndarray, received: int) -> None:
            qty, bid, ask = self.ticker.quotes
            self.received_ns = received
            for token, price, stamp, volume, q, b, a in zip(tokens.tolist(), prices.tolist(), ts.tolist(),
                                                            traded.tolist(), qty.tolist(), bid.tolist(), ask.tolist(),
                                                            strict=True):
                row = rows.get(token)
                if row is not None:
                    on_tick(row, stamp, price, volume, q, b, a)

        self.ticker = KiteTicker(self.creds.api_key, lambda: self.rest.access_token, list(rows), ticks,
                                 self.broker.update, url=os.environ.get("KITE_WS_URL", DEFAULT_URL),
                                 on_reconnect=on_reconnect, on_callback_error=on_fault)
        self.broker.messages_flowing = lambda: self.ticker is not None and self.ticker.connected
        return self.ticker

    def login_url(self) -> str:
        return self.rest.login_url()

    async def exchange(self, text: str) -> str:
        """Turn the trader's redirect URL (or request token) into today's access token."""
        request_token = request_token_of(text)
        add_secret(request_token)
        session = await self.rest.create_session(request_token, self.creds.api_secret)
        add_secret(self.rest.access_token)
        save_token(self.data_dir, self.rest.access_token)
        self.renewed.set()
        return session.get("user_id", "")
