"""Engine events → chat messages: filtered by level, coalesced in bursts, delivered with retries.

The notifier reads its own bus subscription, so a slow or dead chat never blocks the engine. The
outbox keeps critical messages no matter what and sheds info messages past its bound, saying how
many it shed; delivery retries (tenacity) until the transport takes the message.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_never, wait_exponential

from config.models import Bot
from engine.charts import Picture
from engine.core.layout import IST
from engine.services import events as E

log = logging.getLogger(__name__)

DIGEST_AFTER = 6  # more events than this in one coalescing window become one digest (an entry makes 4)


@dataclass(frozen=True)
class Message:
    text: str  # with a picture: its caption
    silent: bool = False
    critical: bool = False
    picture: Picture | None = None


def notify_key(event: E.Event) -> str:
    """The ``bot.notify`` setting that governs the event; "" for kinds chat is never told of."""
    if event.kind == E.ORDER_UPDATED and event.data.get("status") == "REJECTED":
        return "rejected"
    if event.kind == E.STATE_CHANGED:
        return "session"
    return {E.ORDER_PLACED: "order_placed", E.FILL: "fill", E.TRADE_CLOSED: "trade_closed", E.ALERT: "alert",
            E.SESSION: "session", E.REPORT: "report"}.get(event.kind, "")


def _order(d: dict) -> str:
    price = f" @ {d['price']:.2f}" if d.get("price") else ""
    trigger = f" trigger {d['trigger_price']:.2f}" if d.get("trigger_price") else ""
    return f"{d['side']} {d['quantity']} {d['symbol']} {d['order_type']}{price}{trigger}"


def format_event(event: E.Event) -> str:
    d = event.data
    at = datetime.fromtimestamp(event.ts_ns / 1e9, IST).strftime("%H:%M:%S")
    if event.kind == E.ORDER_PLACED:
        return f"{at} → {_order(d)} ({d['purpose']})"
    if event.kind == E.FILL:
        if d["filled_quantity"] < d["quantity"]:  # a partial fill: say how much of the order is done
            return (f"{at} ◐ {d['side']} {d['last_quantity']} {d['symbol']} filled @ {d['last_price']:.2f}, "
                    f"{d['filled_quantity']} of {d['quantity']} done ({d['purpose']})")
        return f"{at} ✓ {d['side']} {d['quantity']} {d['symbol']} filled @ {d['average_price']:.2f} ({d['purpose']})"
    if event.kind == E.ORDER_UPDATED and d["status"] == "REJECTED":
        return f"{at} ✗ {d['side']} {d['quantity']} {d['symbol']} REJECTED: {d['status_message']}"
    if event.kind == E.ORDER_UPDATED:  # chat is told of rejections only; the console shows every update
        return (f"{at} · {_order(d)} {d['status']} ({d['purpose']})"
                + (f": {d['status_message']}" if d.get("status_message") else ""))
    if event.kind == E.TRADE_CLOSED:
        return (f"{at} Closed {d['side']} {d['qty']} {d['symbol']} {d['entry_price']:.2f} → {d['exit_price']:.2f} "
                f"({d['exit_reason']}) P&L ₹{d['net_pnl']:,.2f} net "
                f"(₹{d['pnl']:,.2f} gross, ₹{d['charges']:,.2f} charges)")
    if event.kind == E.STATE_CHANGED:
        return f"{at} Engine {d['old']} → {d['new']}" + (f" ({d['reason']})" if d.get("reason") else "")
    if event.kind == E.ALERT:
        return f"{at} ⚠ {d['text']}"
    return f"{at} {d.get('text') or event.kind}"


def digest(events: list[E.Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    closed = [e.data["net_pnl"] for e in events if e.kind == E.TRADE_CLOSED]
    parts = [f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items()]
    line = f"Burst of {len(events)} events: " + ", ".join(parts)
    if closed:
        line += f"; closed P&L ₹{sum(closed):,.2f} net"
    return line


class Outbox:
    """A bounded mailbox in front of a transport, drained by ``run`` with retries."""

    def __init__(self, send: Callable[[Message], Awaitable[None]], retriable: Callable[[BaseException], bool],
                 max_len: int = 200, retry_after: Callable[[BaseException], float | None] = lambda exc: None) -> None:
        self._send = send
        self._retriable = retriable
        self._retry_after = retry_after
        self.max_len = max_len
        self.shed = 0
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()

    def put(self, message: Message) -> None:
        if len(self._items) >= self.max_len and not message.critical:
            self.shed += 1
            return
        self._items.append(message)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def _wait(self, state) -> float:
        exc = state.outcome.exception()
        hinted = self._retry_after(exc) if exc else None
        return hinted if hinted is not None else wait_exponential(multiplier=0.5, max=30)(state)

    async def run(self) -> None:
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            if self.shed:
                note = Message(f"({self.shed} info message(s) dropped while the chat was unreachable)", silent=True)
                self.shed = 0
                self._items.appendleft(note)
            message = self._items[0]
            try:
                async for attempt in AsyncRetrying(retry=retry_if_exception(self._retriable), wait=self._wait,
                                                   stop=stop_never if message.critical else stop_after_attempt(20),
                                                   reraise=True):
                    with attempt:
                        await self._send(message)
            except Exception:
                log.exception("dropping a message the transport would not take")
            self._items.popleft()


class Notifier:
    def __init__(self, sub: E.Subscription, bot_config: Callable[[], Bot], outboxes: list[Outbox]) -> None:
        self._sub = sub
        self._config = bot_config
        self.outboxes = outboxes
        self._batch: list[E.Event] = []

    def _emit(self, message: Message) -> None:
        for outbox in self.outboxes:
            outbox.put(message)

    def pending(self) -> int:
        """Messages the transports hold, not yet delivered (the outbox depth /metrics shows)."""
        return sum(sink.pending() for sink in self.outboxes if hasattr(sink, "pending"))

    async def _pull(self) -> None:
        # Taking an event and holding it in the batch is one step, so flush() never misses one.
        self._batch.append(await self._sub.get())

    async def run(self) -> None:
        while True:
            await self._pull()
            window = self._config().coalesce_ms / 1000
            if window:
                deadline = asyncio.get_running_loop().time() + window
                while (left := deadline - asyncio.get_running_loop().time()) > 0:
                    try:  # not wait_for: on 3.11 it drops a cancel that comes as the event does (the stop then hung)
                        async with asyncio.timeout(left):
                            await self._pull()
                    except TimeoutError:
                        break
            self.flush()

    def flush(self) -> None:
        """Publish what is waiting now, coalescing window or not (shutdown must not lose it)."""
        while (event := self._sub.get_nowait()) is not None:
            self._batch.append(event)
        batch, self._batch = self._batch, []
        if batch:
            self.publish(batch)

    def publish(self, batch: list[E.Event]) -> None:
        levels = self._config().notify
        chosen = [(e, getattr(levels, notify_key(e))) for e in batch if notify_key(e)]
        chosen = [(e, lvl) for e, lvl in chosen if lvl != "off"]
        critical = [(e, lvl) for e, lvl in chosen if e.critical]
        routine = [(e, lvl) for e, lvl in chosen if not e.critical]
        for e, lvl in critical:
            self._emit(Message(format_event(e), silent=lvl == "silent", critical=True))
        if len(routine) > DIGEST_AFTER:
            self._emit(Message(digest([e for e, _ in routine]), silent=all(lvl == "silent" for _, lvl in routine)))
        else:
            for e, lvl in routine:
                self._emit(Message(format_event(e), silent=lvl == "silent"))
        for e, lvl in chosen:  # an event's picture (the end-of-day report's) follows its text, never folded
            if (picture := e.data.get("picture")) is not None:
                self._emit(Message(picture.caption, silent=lvl == "silent", critical=e.critical, picture=picture))


def as_seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
