"""What the live parts (protection, fills, reconcile, watch, the day book) need of the engine, and
nothing more: each part is handed the engine as this interface and never reaches past it."""

from collections.abc import Callable
from typing import Protocol

from config import Config
from engine.arrays import Arrays
from engine.live.venue import VenueProtocol
from engine.orders import Order, OrderType, Purpose, Side
from engine.services.journal import Journal
from engine.strategies.compiled import Kernels

NS = 1_000_000_000


class Host(Protocol):
    arrays: Arrays  # the kernel's state: replaced on a new instrument list, so read it on each use
    kernels: Kernels  # those compiled for its strategies (engine.strategies.compiled): read on each use too
    broker: VenueProtocol
    journal: Journal
    cfg: Config
    live: bool
    index: dict[str, int]  # symbol -> row
    now_ns: Callable[[], int]

    def send_order(self, j: int, side: Side, kind: OrderType, purpose: Purpose, price: float | None = None,
                   trigger: float | None = None, qty: int | None = None) -> Order:
        """Journal the intent, then hand the order to the venue (``qty`` None: the instrument's)."""
        ...

    def act(self, j: int, act: int) -> None:
        """Carry out row ``j``'s kernel decisions ``act``."""
        ...

    def alert(self, text: str, critical: bool = True) -> None: ...
