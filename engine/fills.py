"""What each broker order has filled that the engine has not yet acted on.

A broker reports an order's cumulative ``filled_quantity`` and ``average_price``; a position moves
by the difference since the last report, at the price that difference implies. Reports can repeat
or arrive out of order (ticker, postback and order-book poll race), so a report that does not add
quantity adds nothing.
"""

from engine.orders import Order


class FillLedger:
    def __init__(self) -> None:
        self._applied: dict[str, tuple[int, float]] = {}  # order id -> (quantity, quantity × price)

    def new(self, order: Order) -> tuple[int, float]:
        """The quantity filled since the last call for this order and its average price."""
        qty, value = self._applied.get(order.order_id, (0, 0.0))
        filled = order.filled_quantity
        if filled <= qty:
            return 0, 0.0
        total = order.average_price * filled
        self._applied[order.order_id] = (filled, total)
        return filled - qty, (total - value) / (filled - qty)

    def filled(self, order_id: str) -> int:
        return self._applied.get(order_id, (0, 0.0))[0]
