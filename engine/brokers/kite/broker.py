"""The Kite venue: the live order state machine (``engine.live.orders``) speaking Kite Connect v3.

What is Kite's here: the form of an order, which status of Kite's is which state, and the calls.
Everything about an order's life (lanes, look-ups, the ledger) is the state machine's.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from engine.brokers.kite.rest import KiteError, KiteREST, Sent, form, form_value
from engine.live.orders import LOOK_EVERY_S, Caps, LiveOrder, LiveOrders, OrderState, Report
from engine.live.venue import Position, SessionExpired
from engine.orders import Fill, OrderRequest, OrderType, Purpose, Side, Status
from engine.services.journal import Journal

log = logging.getLogger(__name__)

RESYNC_MAX_WAIT_S = 5.0  # a reconcile Kite keeps refusing is tried again at least this often
CIRCUIT_EVERY_S = 60.0  # the day's circuit limits are read again this often (revised intraday for some)
READY_EVERY_S = 1.0  # the order connection is checked this often (replaced once idle too long to trust)
_MODIFYING = frozenset({"MODIFY VALIDATION PENDING", "MODIFY PENDING"})
MARKET_PROTECTION = -1  # Kite's automatic protection, required on MARKET and SL-M since April 2026
_RECEIVED = frozenset({"PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "AMO REQ RECEIVED"})
_STATES = {"TRIGGER PENDING": OrderState.ACCEPTED, "MODIFY VALIDATION PENDING": OrderState.PENDING_UPDATE,
           "MODIFY PENDING": OrderState.PENDING_UPDATE, "CANCEL PENDING": OrderState.PENDING_CANCEL,
           "COMPLETE": OrderState.FILLED, "CANCELLED": OrderState.CANCELED, "REJECTED": OrderState.REJECTED}


def _form_parts(request: OrderRequest) -> tuple[str, str, str]:
    """An order's form body around its quantity and tag, and after its prices: the same for every order of
    one symbol, side, type and product."""
    exchange, symbol = request.symbol.split(":", 1)
    head = form({"tradingsymbol": symbol, "exchange": exchange, "transaction_type": str(request.side),
                 "order_type": str(request.order_type)}).decode()
    tail = f"&market_protection={MARKET_PROTECTION}" if request.order_type in (OrderType.MARKET, OrderType.SL_M) else ""
    return f"{head}&quantity=", f"&product={form_value(request.product)}&validity=DAY&tag=", tail


def state_of(status: str, order_type: str, filled: int) -> OrderState | None:
    if status in _RECEIVED:
        return OrderState.SUBMITTED
    if status == "OPEN":
        if filled:
            return OrderState.PARTIALLY_FILLED
        # an SL or SL-M order is OPEN once its trigger was reached
        return OrderState.TRIGGERED if order_type in ("SL", "SL-M") else OrderState.ACCEPTED
    return _STATES.get(status)


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, KiteError) and not isinstance(exc, SessionExpired)


def _price(value: Any) -> float | None:
    return float(value) if value else None


class KiteBroker(LiveOrders):
    name = "kite"

    def __init__(self, rest: KiteREST, journal: Journal, tick_sizes: Mapping[str, float],
                 now_ns: Callable[[], int], caps: Caps | None = None, lookup_seconds: float = 15.0) -> None:
        super().__init__(journal, dict(tick_sizes), now_ns, caps, lookup_seconds)
        self.rest = rest
        self.circuits: dict[str, tuple[float, float]] = {}  # symbol -> the day's (lower, upper) circuit limits
        self.banded: list[str] = []  # the symbols whose circuit limits are kept fresh
        self._forms: dict[tuple, tuple[str, str, str]] = {}  # (symbol, side, type, product) -> _form_parts

    def order_form(self, request: OrderRequest) -> bytes:
        """The place request's form body: Kite's fields of ``request`` (unset prices left out; ``market_protection``
        on MARKET and SL-M), from parts made once per symbol, side, type and product."""
        key = (request.symbol, request.side, request.order_type, request.product)
        parts = self._forms.get(key)
        if parts is None:
            parts = self._forms[key] = _form_parts(request)
        head, middle, tail = parts
        price = "" if request.price is None else f"&price={form_value(str(request.price))}"
        trigger = "" if request.trigger_price is None else f"&trigger_price={form_value(str(request.trigger_price))}"
        return f"{head}{request.quantity}{middle}{form_value(request.tag)}{price}{trigger}{tail}".encode()

    # --- calls ---------------------------------------------------------------------------------
    async def _place_call(self, request: OrderRequest, urgent: bool) -> str:
        return await self.rest.place_order(self.order_form(request), urgent=urgent)

    def _place_now(self, request: OrderRequest, urgent: bool) -> Sent | None:
        return self.rest.place_now(self.order_form(request), urgent=urgent)

    async def _placed(self, sent: Sent) -> str:
        return await self.rest.placed(sent)

    async def _modify_call(self, broker_id: str, changes: dict[str, Any]) -> None:
        params = {k: str(v) for k, v in changes.items()}
        if changes.get("order_type") in (OrderType.MARKET, OrderType.SL_M):  # required on a modify into them too
            params["market_protection"] = str(MARKET_PROTECTION)
        await self.rest.modify_order(broker_id, params)

    async def _cancel_call(self, broker_id: str, urgent: bool) -> None:
        await self.rest.cancel_order(broker_id, urgent=urgent)

    async def _history(self, broker_id: str) -> list[dict]:
        return await self.rest.order_history(broker_id)

    async def _book(self) -> list[dict]:
        return await self.rest.orders()

    def through_trigger(self, message: str) -> bool:
        """Kite's "Trigger price for stoploss sell orders should be lower than the last traded price."
        (and the buy mirror)."""
        return "last traded price" in message and message.startswith("Trigger price for stoploss")

    def modifications_in(self, rows: list[dict]) -> int:
        """Kite's count against its cap of 25 per order: each modification passes MODIFY VALIDATION PENDING /
        MODIFY PENDING in the order's history (one or both rows)."""
        count, modifying = 0, False
        for row in rows:
            now = row.get("status") in _MODIFYING
            count += now and not modifying
            modifying = now
        return count

    def report(self, row: dict) -> Report | None:
        try:
            filled = int(row.get("filled_quantity") or 0)
            state = state_of(row.get("status", ""), row.get("order_type", ""), filled)
            if state is None:
                return None
            return Report(str(row["order_id"]), row.get("tag") or "", state, row["status"], filled,
                          float(row.get("average_price") or 0.0), int(row.get("quantity") or 0),
                          _price(row.get("price")), _price(row.get("trigger_price")),
                          OrderType(row.get("order_type") or "MARKET"), row.get("status_message") or "",
                          str(row.get("exchange_update_timestamp") or row.get("order_timestamp") or ""))
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("order row not understood (%s): skipped", exc)
            return None

    # --- the day's price band ------------------------------------------------------------------
    async def read_circuits(self, symbols: list[str]) -> dict[str, tuple[float, float]]:
        """The day's circuit limits of ``symbols`` from Kite's full quote (every price and trigger must
        lie inside them), kept fresh from then on by ``run``; an instrument quoted without a band (0, 0)
        has none. Returns them."""
        self.banded = list(symbols)
        # the quote endpoint is read through the client's one call path (its retries on 429 and silence)
        quotes = await self.rest.quote(*symbols)
        for symbol in symbols:
            quote = quotes.get(symbol) or {}
            lower = float(quote.get("lower_circuit_limit") or 0.0)
            upper = float(quote.get("upper_circuit_limit") or 0.0)
            if 0.0 < lower < upper:
                self.circuits[symbol] = (lower, upper)
            else:
                self.circuits.pop(symbol, None)
        return {s: self.circuits[s] for s in symbols if s in self.circuits}

    async def _keep_circuits(self) -> None:
        while True:
            await asyncio.sleep(CIRCUIT_EVERY_S)
            if not self.banded:
                continue
            try:
                await self.read_circuits(self.banded)
            except KiteError as exc:  # the last ones known stay; a token error is the look-up's to report
                log.warning("circuit limits not refreshed (%s); keeping the last ones", exc)

    async def _keep_ready(self) -> None:
        """An order connection always open and fresh: no order waits for a handshake, however long the
        quiet before it. A failure is logged once until one opens again."""
        failing = False
        while True:
            try:
                await self.rest.prepare_orders()
                failing = False
            except KiteError as exc:
                if not failing:
                    log.warning("%s; trying again every %g s (an order meanwhile connects itself)", exc,
                                READY_EVERY_S)
                failing = True
            await asyncio.sleep(READY_EVERY_S)

    async def run(self, every: float = LOOK_EVERY_S) -> None:
        """The order look-up (``LiveOrders.run``), and beside it the circuit limits and the order
        connection kept fresh."""
        loop = asyncio.get_running_loop()
        beside = [loop.create_task(self._keep_ready()), loop.create_task(self._keep_circuits())]
        try:
            await super().run(every)
        finally:
            for task in beside:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*beside)

    # --- reconciliation ------------------------------------------------------------------------
    async def sync(self) -> list[dict]:
        """Every known order's state (fills missed while the ticker was away included) from Kite's
        order book; returns the book's rows."""
        rows = await self.rest.orders()
        self.sync_rows(rows)
        return rows

    async def resync(self, reconcile: Callable[[list[dict], list[dict]], list[str]], why: str) -> list[str]:
        """Catch up with Kite (start, ticker reconnect, new token): the book's news first, then its
        positions and orders for the engine's ``reconcile``; returns its notes. Reads Kite cannot
        answer now are tried again until it does (the first failure alerted): a process that has
        not seen Kite's book would protect positions it does not know of. A token error ends it."""
        def failed(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            log.warning("reconcile (%s): %s; trying again in %.1f s", why, exc, state.next_action.sleep)
            if state.attempt_number == 1:
                self.on_error(f"Could not reconcile with Kite after {why} ({exc}); trying again until it answers")

        # Kite's errors only: tenacity would otherwise take a cancel (the process stopping) for a failure
        async for attempt in AsyncRetrying(retry=retry_if_exception(_worth_retrying),
                                           wait=wait_exponential(multiplier=0.25, max=RESYNC_MAX_WAIT_S),
                                           before_sleep=failed, reraise=True):
            with attempt:
                rows = await self.rest.orders()
                positions = (await self.rest.positions())["net"]
        self.sync_rows(rows, unknown_too=False)  # an earlier run's orders: reconcile adopts them, with its notes
        return reconcile(positions, rows)

    def adopt(self, row: dict, purpose: Purpose | None) -> LiveOrder:
        """Take an order from Kite's book (sent by an earlier run) under the state machine's care;
        its fills go into the ledger, its state is Kite's."""
        tag = row.get("tag") or f"kite-{row['order_id']}"
        if tag in self._orders:
            return self._orders[tag]
        request = OrderRequest(f"{row['exchange']}:{row['tradingsymbol']}", Side(row["transaction_type"]),
                               int(row["quantity"]), OrderType(row["order_type"]), price=_price(row.get("price")),
                               trigger_price=_price(row.get("trigger_price")), tag=tag)
        now = self._now_ns()
        # its modifications so far are counted from its history before it is next modified
        order = LiveOrder(tag, request, Status.SUBMITTED, now, now, purpose=purpose,
                          status_message=f"Kite order {row['order_id']} (adopted)", state=OrderState.SUBMITTED,
                          word_mono=self._mono(), counted=False)
        self._orders[tag] = order
        report = self.report(row)
        if report is not None:
            self._bind(order, report.broker_id)
            self.ledger.apply(tag, report.filled, report.average)
            order.filled_quantity = self.ledger.filled(tag)
            order.average_price = self.ledger.average(tag)
            self._take(order, report)
        return order

    # --- the Broker protocol -------------------------------------------------------------------
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
