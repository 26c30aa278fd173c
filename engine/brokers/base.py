"""The broker contract: every venue (paper, Kite, ...) implements ``Broker``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.orders import Fill, Order, OrderRequest


class BrokerError(Exception):
    """A broker refused or failed a call; the message is safe to show the trader."""


class OrderRejected(BrokerError):
    def __init__(self, order: Order) -> None:
        super().__init__(f"order {order.order_id} rejected: {order.status_message}")
        self.order = order


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: int  # signed: short positions are negative
    average_price: float
    realised: float


class Broker(Protocol):
    name: str
    # Set by the engine: called with every order whose status or fill changed.
    on_order: Callable[[Order], None] | None

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def place_order(self, request: OrderRequest) -> Order: ...

    async def modify_order(self, order_id: str, *, price: float | None = None,
                           trigger_price: float | None = None) -> Order: ...

    async def cancel_order(self, order_id: str) -> Order: ...

    async def orders(self) -> list[Order]: ...

    async def trades(self) -> list[Fill]: ...

    async def positions(self) -> list[Position]: ...
