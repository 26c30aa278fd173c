"""The broker contract: every venue (paper, Kite, ...) implements ``Broker``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.live.ledger import FillLedger
from engine.orders import Fill, Order, OrderRequest, OrderType


class BrokerError(Exception):
    """A broker refused or failed a call; the message is safe to show the trader."""


class Refused(BrokerError):
    """The broker answered no: the request was not carried out."""


class OutcomeUnknown(BrokerError):
    """No clear answer (timeout, 5xx, network): the request may or may not have been carried out."""


class SessionExpired(Refused):
    """The broker refused our session: log in again."""


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
    # Set by the engine: called with every order whose status or fill changed, with the quantity
    # newly filled (0 for none) and that quantity's price, from the venue's fill ledger.
    on_order: Callable[[Order, int, float], None] | None

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def place_order(self, request: OrderRequest) -> Order: ...

    async def modify_order(self, order_id: str, *, price: float | None = None, trigger_price: float | None = None,
                           quantity: int | None = None, order_type: OrderType | None = None) -> Order: ...

    async def cancel_order(self, order_id: str) -> Order: ...

    async def orders(self) -> list[Order]: ...

    async def trades(self) -> list[Fill]: ...

    async def positions(self) -> list[Position]: ...

    def filled(self, order_id: str) -> int: ...


class VenueProtocol:
    """The order book and the async ``Broker`` order calls for a venue whose own calls are
    synchronous and queue or simulate the work (paper, and the Kite adapter's order worker)."""

    _orders: dict[str, Order]
    ledger: FillLedger

    def submit(self, request: OrderRequest, purpose=None) -> Order: ...
    def modify(self, order_id: str, price: float | None = None, trigger_price: float | None = None,
               quantity: int | None = None, order_type: OrderType | None = None) -> Order: ...
    def cancel(self, order_id: str) -> Order: ...

    def order(self, order_id: str) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise BrokerError(f"unknown order {order_id}") from None

    def filled(self, order_id: str) -> int:
        return self.ledger.filled(order_id)

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
