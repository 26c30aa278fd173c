"""The Kite venue behind the engine: orders go out through one worker task, updates come back.

The engine's tick path only calls the synchronous methods, which record the order under its tag
and queue the request; the worker journals the intent to disk, then talks to Kite. Updates (the
ticker's order messages, or a poll of the order book) are matched by tag and handed to the
engine, which is what moves positions in live trading.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping

from engine.brokers.base import BrokerError, Position, VenueProtocol
from engine.brokers.kite.rest import KiteError, KiteREST, TokenException
from engine.journal import Journal
from engine.orders import FINAL, Fill, Order, OrderRequest, OrderType, Purpose, Side, Status

log = logging.getLogger(__name__)

STATUSES = {s.value: s for s in Status}
MARKET_PROTECTION = -1  # Kite's automatic protection, required on MARKET and SL-M since April 2026


def kite_params(request: OrderRequest) -> dict:
    exchange, symbol = request.symbol.split(":", 1)
    params = {"tradingsymbol": symbol, "exchange": exchange, "transaction_type": str(request.side),
              "order_type": str(request.order_type), "quantity": request.quantity, "product": request.product,
              "validity": "DAY", "tag": request.tag, "price": request.price, "trigger_price": request.trigger_price}
    if request.order_type in (OrderType.MARKET, OrderType.SL_M):
        params["market_protection"] = MARKET_PROTECTION
    return params


class KiteBroker(VenueProtocol):
    name = "kite"

    def __init__(self, rest: KiteREST, journal: Journal, tick_sizes: Mapping[str, float],
                 now_ns: Callable[[], int], on_token_error: Callable[[str], None] = lambda text: None,
                 on_error: Callable[[str], None] = lambda text: None) -> None:
        self.rest = rest
        self.journal = journal
        self.tick_sizes = dict(tick_sizes)
        self.on_order: Callable[[Order], None] | None = None
        self.on_token_error = on_token_error
        self.on_error = on_error  # a modify or cancel Kite refused: the trader must know
        self._now_ns = now_ns
        self._orders: dict[str, Order] = {}  # by tag: the engine's name for an order
        self._by_kite: dict[str, str] = {}  # Kite's order id -> tag
        self._queue: asyncio.Queue[tuple[str, str, dict]] = asyncio.Queue()

    # --- what the engine calls on the tick path (no I/O) ---------------------------------------
    def submit(self, request: OrderRequest, purpose: Purpose | None = None) -> Order:
        now = self._now_ns()
        order = Order(request.tag, request, Status.OPEN, now, now, purpose=purpose,
                      status_message="sent to Kite")
        self._orders[request.tag] = order
        self._queue.put_nowait(("place", request.tag, {}))
        return order

    def cancel(self, order_id: str) -> Order:
        self._queue.put_nowait(("cancel", order_id, {}))
        return self.order(order_id)

    def modify(self, order_id: str, price: float | None = None, trigger_price: float | None = None,
               quantity: int | None = None, order_type: OrderType | None = None) -> Order:
        order = self.order(order_id)
        changes = {"price": price, "trigger_price": trigger_price, "quantity": quantity, "order_type": order_type}
        for name, value in changes.items():
            if value is not None:
                setattr(order.request, name, value)
        if order_type is not None:
            changes["order_type"] = str(order_type)
            if order_type in (OrderType.MARKET, OrderType.SL_M):  # required on a modify into them too
                changes["market_protection"] = MARKET_PROTECTION
        self._queue.put_nowait(("modify", order_id, changes))
        return order

    def fill(self, order_id: str, price: float) -> Fill:
        raise BrokerError("Kite fills orders itself")

    # --- the worker ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            action, tag, extra = await self._queue.get()
            try:
                await self._do(action, tag, extra)
            except TokenException as exc:
                self.on_token_error(exc.message)
                if action == "place":
                    self._final(tag, Status.REJECTED, f"not sent: {exc.message}")
            except KiteError as exc:
                log.warning("kite %s %s: %s", action, tag, exc.message)
                if action == "place":
                    self._final(tag, Status.REJECTED, exc.message)
                else:
                    await self._refused(action, tag, exc.message)
            except Exception:
                log.exception("kite %s %s failed", action, tag)

    async def _do(self, action: str, tag: str, extra: dict) -> None:
        order = self._orders[tag]
        if action == "place":
            self.journal.flush()  # the intent is written before the order leaves (synced to disk within 50 ms)
            kite_id = await self.rest.place_order(kite_params(order.request))
            self._by_kite[kite_id] = tag
            order.status_message = f"Kite order {kite_id}"
            await self._refresh(kite_id)
        elif action == "cancel":
            kite_id = self._kite_id(tag)
            if kite_id and order.working:
                await self.rest.cancel_order(kite_id)
        elif action == "modify":
            kite_id = self._kite_id(tag)
            if kite_id and order.working:
                await self.rest.modify_order(kite_id, {k: v for k, v in extra.items() if v is not None})

    async def _refused(self, action: str, tag: str, message: str) -> None:
        """A modify or cancel Kite refused. Usually the order has just filled or ended, which its
        history shows and the engine then handles; otherwise the position may be mis-protected."""
        kite_id = self._kite_id(tag)
        try:
            if kite_id:
                await self._refresh(kite_id)
        except KiteError as exc:
            log.warning("kite order %s: history unavailable (%s)", kite_id, exc.message)
        order = self._orders[tag]
        if order.working:
            r = order.request
            self.on_error(f"Kite refused to {action} the {r.side} {r.quantity} {r.symbol} {r.order_type} "
                          f"order: {message}")

    def _kite_id(self, tag: str) -> str | None:
        return next((k for k, t in self._by_kite.items() if t == tag), None)

    async def _refresh(self, kite_id: str) -> None:
        history = await self.rest.order_history(kite_id)
        if history:
            self.update(history[-1])

    def _final(self, tag: str, status: Status, message: str) -> None:
        order = self._orders[tag]
        order.status, order.status_message = status, message
        self._changed(order)

    # --- updates from Kite ---------------------------------------------------------------------
    def update(self, row: dict) -> None:
        """An order row from Kite (ticker message, postback or order book); unknown tags are left
        alone: orders the engine did not create are the trader's."""
        tag = row.get("tag") or self._by_kite.get(str(row.get("order_id")))
        order = self._orders.get(tag or "")
        if order is None:
            return
        self._by_kite.setdefault(str(row["order_id"]), order.order_id)
        status = STATUSES.get(row.get("status", ""))
        if status is None:  # transient states: PUT ORDER REQ RECEIVED, VALIDATION PENDING, ...
            return
        filled = int(row.get("filled_quantity") or 0)
        if order.status in FINAL or filled < order.filled_quantity:
            return  # a stale report: fills only grow, and a final order stays final
        if (status, filled) == (order.status, order.filled_quantity):
            return
        order.status = status
        order.filled_quantity = filled
        order.average_price = float(row.get("average_price") or 0.0)
        order.status_message = row.get("status_message") or order.status_message
        self._changed(order)

    def _changed(self, order: Order) -> None:
        order.updated_ns = self._now_ns()
        order.history.append((order.updated_ns, order.status))
        if self.on_order is not None:
            self.on_order(order)

    async def sync(self) -> list[dict]:
        """Take every known order's state (fills missed while the ticker was away included) from
        Kite's order book; returns the book's rows."""
        rows = await self.rest.orders()
        for row in rows:
            if (row.get("tag") or "") in self._orders:
                self.update(row)
        return rows

    def adopt(self, row: dict, purpose: Purpose) -> Order:
        """Take a working order from Kite's book (sent by an earlier run) under the engine's care."""
        tag = row.get("tag") or f"kite-{row['order_id']}"
        request = OrderRequest(f"{row['exchange']}:{row['tradingsymbol']}", Side(row["transaction_type"]),
                               int(row["quantity"]), OrderType(row["order_type"]), price=row.get("price") or None,
                               trigger_price=row.get("trigger_price") or None, tag=tag)
        now = self._now_ns()
        order = Order(tag, request, STATUSES[row["status"]], now, now, purpose=purpose,
                      status_message=f"Kite order {row['order_id']} (adopted)")
        self._orders[tag] = order
        self._by_kite[str(row["order_id"])] = tag
        return order

    # --- the Broker protocol ---------------------------------------------------------------------
    async def connect(self) -> None:
        await self.rest.profile()

    async def close(self) -> None:
        await self.rest.close()

    async def trades(self) -> list[Fill]:
        return [Fill(str(t["order_id"]), f"{t['exchange']}:{t['tradingsymbol']}", t["transaction_type"],
                     int(t["quantity"]), float(t["average_price"]), 0) for t in await self.rest.trades()]

    async def positions(self) -> list[Position]:
        net = (await self.rest.positions())["net"]
        return [Position(f"{p['exchange']}:{p['tradingsymbol']}", int(p["quantity"]), float(p["average_price"]),
                         float(p.get("realised", 0.0))) for p in net]
