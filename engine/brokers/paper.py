"""Paper broker: a simulated venue that keeps orders, trades and positions the way Kite does.

It validates and rejects like a broker (with a reason), moves orders through Kite's statuses and
books fills. *When* and *at what price* an order fills is decided by the engine's fill model (the
same jitted kernel the backtest runs), which calls ``fill`` — so paper and backtest cannot
disagree. The synchronous methods are the venue; the async ones are the ``Broker`` protocol.
"""

import itertools
from collections.abc import Callable, Iterable, Mapping

from engine.live.ledger import FillLedger
from engine.live.rules import on_grid
from engine.live.venue import BrokerError, OrderRejected, Position, VenueProtocol
from engine.orders import Fill, Order, OrderRequest, OrderType, Purpose, Side, Status


class PaperBroker(VenueProtocol):
    name = "paper"

    def __init__(self, tick_sizes: Mapping[str, float], now_ns: Callable[[], int]) -> None:
        self.tick_sizes = dict(tick_sizes)
        self.on_order: Callable[[Order, int, float], None] | None = None
        self.ledger = FillLedger()
        self._now_ns = now_ns
        self._ids = itertools.count(1)
        self._orders: dict[str, Order] = {}
        self._fills: list[Fill] = []
        self._net: dict[str, list[float]] = {}  # symbol -> [signed qty, average price, realised]

    # --- the venue (synchronous, no I/O) ---------------------------------------------------
    def submit(self, request: OrderRequest, purpose: Purpose | None = None) -> Order:
        now = self._now_ns()
        order = Order(f"P{next(self._ids):09d}", request, Status.OPEN, now, now, purpose=purpose)
        reason = self._invalid(request)
        if reason:
            order.status, order.status_message = Status.REJECTED, reason
        elif request.order_type in (OrderType.SL, OrderType.SL_M):
            order.status = Status.TRIGGER_PENDING
        self._orders[order.order_id] = order
        self._changed(order)
        return order

    def fill(self, order_id: str, price: float) -> Fill:
        order = self._working(order_id)
        request = order.request
        fill = Fill(order_id, request.symbol, request.side, request.quantity, price, self._now_ns())
        order.filled_quantity = request.quantity
        order.average_price = price
        order.status = Status.COMPLETE
        self._fills.append(fill)
        self._book(fill)
        self._changed(order)
        return fill

    def cancel(self, order_id: str) -> Order:
        order = self._working(order_id)
        order.status = Status.CANCELLED
        self._changed(order)
        return order

    def modify(self, order_id: str, price: float | None = None, trigger_price: float | None = None,
               quantity: int | None = None, order_type: OrderType | None = None) -> Order:
        order = self._working(order_id)
        tick = self.tick_sizes[order.request.symbol]
        for name, value in (("price", price), ("trigger price", trigger_price)):
            if value is not None and not on_grid(value, tick):
                raise BrokerError(f"{name} {value} is not a multiple of the tick size {tick}")
        if quantity is not None and quantity <= order.filled_quantity:
            raise BrokerError(f"quantity {quantity} must exceed the {order.filled_quantity} already filled")
        if price is not None:
            order.request.price = price
        if trigger_price is not None:
            order.request.trigger_price = trigger_price
        if quantity is not None:
            order.request.quantity = quantity
        if order_type is not None:
            order.request.order_type = order_type
        self._changed(order)
        return order

    def hold(self, symbol: str, qty: int, price: float) -> None:
        """Hold a position an earlier run of the day left (restored from the journal)."""
        self._net[symbol] = [qty, price, 0.0]

    def number_after(self, order_ids: Iterable[str]) -> None:
        """Number new orders after these (an earlier run's of the day): an id never repeats in a journal."""
        ours = [int(o[1:]) for o in order_ids if o[:1] == "P" and o[1:].isdigit()]
        self._ids = itertools.count(max(ours, default=0) + 1)

    def _working(self, order_id: str) -> Order:
        order = self.order(order_id)
        if not order.working:
            raise BrokerError(f"order {order_id} is already {order.status}")
        return order

    def _invalid(self, r: OrderRequest) -> str:
        tick = self.tick_sizes.get(r.symbol)
        if tick is None:
            return f"unknown symbol {r.symbol}"
        if r.quantity <= 0:
            return f"quantity {r.quantity} must be positive"
        needs_price = r.order_type in (OrderType.LIMIT, OrderType.SL)
        needs_trigger = r.order_type in (OrderType.SL, OrderType.SL_M)
        if needs_price and r.price is None:
            return f"a {r.order_type} order needs a price"
        if needs_trigger and r.trigger_price is None:
            return f"a {r.order_type} order needs a trigger price"
        for name, value in (("price", r.price), ("trigger price", r.trigger_price)):
            if value is not None and (value <= 0 or not on_grid(value, tick)):
                return f"{name} {value} is not a positive multiple of the tick size {tick}"
        return ""

    def _book(self, fill: Fill) -> None:
        qty, avg, realised = self._net.get(fill.symbol, [0, 0.0, 0.0])
        signed = fill.quantity if fill.side == Side.BUY else -fill.quantity
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (avg * abs(qty) + fill.price * abs(signed)) / (abs(qty) + abs(signed))
        else:
            closed = min(abs(qty), abs(signed))
            realised += closed * (fill.price - avg) * (1 if qty > 0 else -1)
            if abs(signed) > abs(qty):
                avg = fill.price
        qty += signed
        self._net[fill.symbol] = [qty, avg if qty else 0.0, realised]

    def _changed(self, order: Order) -> None:
        order.updated_ns = self._now_ns()
        order.history.append((order.updated_ns, order.status))
        qty, price = self.ledger.apply(order.order_id, order.filled_quantity, order.average_price)
        if self.on_order is not None:
            self.on_order(order, qty, price)

    # --- the Broker protocol ---------------------------------------------------------------
    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def place_order(self, request: OrderRequest) -> Order:
        """Like Kite, a refused order is an error to the caller (the engine itself uses submit)."""
        order = self.submit(request)
        if order.status == Status.REJECTED:
            raise OrderRejected(order)
        return order


    async def trades(self) -> list[Fill]:
        return list(self._fills)

    async def positions(self) -> list[Position]:
        return [Position(s, int(q), a, r) for s, (q, a, r) in self._net.items()]
