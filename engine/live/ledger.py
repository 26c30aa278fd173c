"""The fill ledger: what every order has filled, keyed by the venue's order id.

A venue reports an order's cumulative filled quantity and average price. The ledger keeps the
largest report per order; an order's new fill is the difference, at the price that difference
implies. Reports repeat and race (ticker, order book, history), so one that adds no quantity adds
nothing, whatever the channel or the order of arrival. Positions are sums over the ledger; the new
fills, in the order they came, give an open trade's own entry price.
"""


class FillLedger:
    def __init__(self) -> None:
        self._filled: dict[str, tuple[int, float]] = {}  # order id -> (quantity, quantity × average price)
        self.fills: list[tuple[str, int, float]] = []  # (order id, quantity, price) of each new fill, in order

    def apply(self, order_id: str, filled: int, average: float) -> tuple[int, float]:
        """Take a cumulative report; returns the quantity it adds and that quantity's price."""
        qty, value = self._filled.get(order_id, (0, 0.0))
        if filled <= qty:
            return 0, 0.0
        total = average * filled
        self._filled[order_id] = (filled, total)
        price = (total - value) / (filled - qty)
        self.fills.append((order_id, filled - qty, price))
        return filled - qty, price

    def filled(self, order_id: str) -> int:
        return self._filled.get(order_id, (0, 0.0))[0]

    def average(self, order_id: str) -> float:
        qty, value = self._filled.get(order_id, (0, 0.0))
        return value / qty if qty else 0.0
