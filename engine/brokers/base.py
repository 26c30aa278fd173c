"""The broker contract: every venue (paper, Kite, ...) implements ``Broker``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.orders import Fill, Order, OrderRequest, OrderType


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

    async def modify_order(self, order_id: str, *, price: float | None = None, trigger_price: float | None = None,
                           quantity: int | None = None, order_type: OrderType | None = None) -> Order: ...

    async def cancel_order(self, order_id: str) -> Order: ...

    async def orders(self) -> list[Order]: ...

    async def trades(self) -> list[Fill]: ...

    async def positions(self) -> list[Position]: ...


class VenueProtocol:
    """The order book and the async ``Broker`` order calls for a venue whose own calls are
    synchronous and queue or simulate the work (paper, and the Kite adapter's order worker)."""

    _orders: dict[str, Order]

    def submit(self, request: OrderRequest, purpose=None) -> Order: ...
    def modify(self, order_id: str, price: float | None = None, trigger_price: float | None = None,
               quantity: int | None = None, order_type: OrderType | None = None) -> Order: ...
    def cancel(self, order_id: str) -> Order: ...

    def order(self, order_id: str) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise BrokerError(f"unknown order {order_id}") from None

    def all_orders(self) -> list[Order]:
        return list(self._orders.values())

    async def place_order(self, request: OrderRequest) -> Order:
        return self.submit(request)

    async def modify_order(self, order_id: str, *, price: float | None = None, trigger_price: float | None = None,
                           quantity: int | None = None, order_type: OrderType | None = None) -> Order:
        return self.modify(order_id, price, trigger_price, quantity, order_type)

    async def cancel_order(self, order_id: str) -> Order:
        return self.cancel(order_id)

    async def orders(self) -> list[Order]:
        return self.all_orders()
