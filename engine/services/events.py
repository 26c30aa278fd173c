"""The engine's outbound events and the bus that fans them out without ever blocking the engine."""

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Event kinds
ORDER_PLACED = "order_placed"
ORDER_UPDATED = "order_updated"
FILL = "fill"
TRADE_CLOSED = "trade_closed"
ALERT = "alert"
STATE_CHANGED = "state_changed"
CONFIG_CHANGED = "config_changed"
SESSION = "session"
REPORT = "report"


@dataclass(frozen=True)
class Event:
    kind: str
    ts_ns: int
    data: dict[str, Any] = field(default_factory=dict)
    critical: bool = False  # alerts a subscriber must not shed


class Subscription:
    """A bounded mailbox: when full, new non-critical events are dropped and counted; critical ones
    are always kept, so a slow consumer never stalls the tick path and never loses an alert."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()

    def push(self, event: Event) -> None:
        if len(self._items) >= self.maxsize and not event.critical:
            self.dropped += 1
            return
        self._items.append(event)
        self._ready.set()

    def get_nowait(self) -> Event | None:
        return self._items.popleft() if self._items else None

    async def get(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        for sub in self._subs:
            sub.push(event)


def describe(event: Event) -> str:
    """The event as one log line (a multi-line text is folded onto it)."""
    d = event.data
    if event.kind in (ORDER_PLACED, ORDER_UPDATED, FILL):
        price = d["average_price"] if event.kind == FILL else d["price"] or d["trigger_price"]
        text = (f"{d['purpose']} {d['side']} {d['quantity']} {d['symbol']} {d['order_type']}"
                f"{f' @ {price:.2f}' if price else ''} {d['status']} (order {d['order_id']})")
        if event.kind == FILL:
            text += f", {d['filled_quantity']} of {d['quantity']} filled"
        if d["status_message"]:
            text += f": {d['status_message']}"
    elif event.kind == TRADE_CLOSED:
        money = ", ".join(f"{label} {d[k]:.2f}" for k, label in (("pnl", "gross"), ("charges", "charges"),
                                                                   ("net_pnl", "net")) if k in d)
        text = (f"{d['side']} {d['qty']} {d['symbol']} {d['entry_price']:.2f} -> {d['exit_price']:.2f} "
                f"({d['exit_reason']}), {money}")
    elif event.kind == STATE_CHANGED:
        text = f"{d['old']} -> {d['new']}" + (f" ({d['reason']})" if d["reason"] else "")
    else:
        text = str(d.get("text") or d.get("event") or "")
    text = " / ".join(text.splitlines())
    return f"{event.kind}: {text}" if text else event.kind


LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


async def log_events(sub: Subscription, logger: logging.Logger) -> None:
    """Log every event the subscription gets, one line each, off the tick path; what is queued when
    the task is cancelled (a stopping process's last alert) is still logged."""

    def emit(event: Event) -> None:
        try:
            line = describe(event)
        except (KeyError, TypeError, ValueError):  # a shape this does not know: the raw data, still one line
            line = f"{event.kind}: {event.data}"
        level = LEVELS.get(event.data.get("level", ""), logging.WARNING) if event.kind == ALERT else logging.INFO
        logger.log(level, "%s", line)

    shed = 0
    try:
        while True:
            emit(await sub.get())
            if sub.dropped > shed:
                logger.warning("%d event(s) not logged: they came faster than the log took them", sub.dropped - shed)
                shed = sub.dropped
    finally:
        while (event := sub.get_nowait()) is not None:
            emit(event)
