"""The engine's outbound events and the bus that fans them out without ever blocking the engine."""

import asyncio
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
