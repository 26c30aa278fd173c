"""Every live order's life, on the broker's word: the one owner of live order state.

An order moves through an explicit state machine (NautilusTrader's): INITIALIZED → SUBMITTED →
ACCEPTED → TRIGGERED / PARTIALLY_FILLED → FILLED, or CANCELED / REJECTED, with PENDING_UPDATE and
PENDING_CANCEL; DENIED is an order refused here, before it was sent. Local state never runs ahead
of the broker: an order without an answer is SUBMITTED, its fate unknown; only the broker's word (a
REST answer, a ticker order message, an order-book or history row) moves it, and only that word
makes it final. A lost answer is resolved by looking the order up by its tag, never by assuming;
a failed look changes nothing. Fills go into one ledger keyed by the broker's order id.

Requests run concurrently, one lane per order: an order's own requests stay in order (place →
modify → cancel), and a hung call never delays another order. A lane that has work is run by a
standing runner task (one is made when none is idle): handing an order to a waiting runner costs a
few microseconds on the order path, where making a task costs tens. A new order whose place request
the broker can write at once (``_place_now``: a connection idle, a slot free) is written by
``submit`` itself, the journal flushed first; its lane then only waits for the answer. A modify or
cancel of an order the broker has not accepted yet waits for it. Changes asked for while one is in
flight are merged: the broker gets the latest wish, once.

Near the broker's modification cap an order is replaced: its successor is placed, and the old order
cancelled only once the successor works at the broker; a successor that ends before that is
abandoned and the old order keeps working. An adopted order's modifications are counted from its
history before it is next modified. Rows carry one-second stamps that several share: a row showing
an order as it was before a change the broker confirmed, stamped no later than it, is stale.

The broker side (which calls, which rows mean what) is a subclass's: ``_place_call`` (and
``_place_now`` / ``_placed``), ``_modify_call``, ``_cancel_call``, ``_history``, ``_book``, ``report``,
``modifications_in`` and ``through_trigger``.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any

from engine.live import rules
from engine.live.ledger import FillLedger
from engine.live.venue import OutcomeUnknown, Refused, SessionExpired, VenueProtocol
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, Status, TagMaker
from engine.services.journal import Journal

log = logging.getLogger(__name__)
# Kite refusing a change while the order is between states: its word on an earlier change is still to come
_BUSY = re.compile(r"cannot be modified as it is [A-Z ]*(PENDING|RECEIVED)", re.IGNORECASE)


class OrderState(StrEnum):
    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"  # refused here, never sent
    SUBMITTED = "SUBMITTED"  # sent; the broker has not accepted it (or its answer was lost)
    ACCEPTED = "ACCEPTED"
    TRIGGERED = "TRIGGERED"  # a stop whose trigger was reached: working at the exchange
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_CANCEL = "PENDING_CANCEL"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


FINAL_STATES = frozenset({OrderState.DENIED, OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED})
# the broker has the order resting at the exchange (a modify or cancel in flight leaves it there)
AT_KITE = frozenset({OrderState.ACCEPTED, OrderState.TRIGGERED, OrderState.PENDING_UPDATE, OrderState.PENDING_CANCEL,
                     OrderState.PARTIALLY_FILLED})
# how far along an order is: a report never moves it back (rows race across channels)
_RANK = {OrderState.INITIALIZED: 0, OrderState.SUBMITTED: 1, OrderState.DENIED: 3, OrderState.FILLED: 3,
         OrderState.CANCELED: 3, OrderState.REJECTED: 3}
SETTLE_S = 1.0  # an order unconfirmed this long is looked up
LOOK_EVERY_S = 0.5
BOOK_EVERY_S = 1.0  # the book is read this often while an order of ours works: ticker messages get lost
BOOK_FAILING_S = 1.0  # the book unread this long past its due while orders work: blind to a lost ticker message
# and this often when none does: a request of an earlier run that was still in flight when it died
# reaches Kite later, with no one waiting for its answer
IDLE_BOOK_S = 5.0
FIELDS = ("quantity", "price", "trigger_price", "order_type")
STANDBY_RUNNERS = 4  # lane runners kept idle from the start: a bracket's orders go out without making one
URGENT = frozenset({Purpose.STOP, Purpose.EXIT, Purpose.REPAIR})  # orders that take the reserved slots
CAPPED_RETRY_S = 1.0  # a modify or cancel our caps held back is tried again this much later


@dataclass(frozen=True)
class Report:
    """One order row from the broker, in the state machine's words."""

    broker_id: str
    tag: str
    state: OrderState
    status: str  # the broker's own word, shown to the trader
    filled: int
    average: float
    quantity: int
    price: float | None
    trigger_price: float | None
    order_type: OrderType
    message: str
    stamp: str  # the broker's time of this row ('' when it gives none): older rows are stale


@dataclass(eq=False)
class LiveOrder(Order):
    state: OrderState = OrderState.INITIALIZED
    broker_id: str | None = None
    cancel_wanted: bool = False
    cancel_refusals: int = 0  # refused cancels in a row: the next try waits 1, 2, 4 ... 30 s
    retry_mono: float = 0.0  # when a refused or unanswered modify or cancel may be tried again
    reprice: bool = False  # wanted: modified to MARKET again (a new protection price), even if it is one
    modifications: int = 0  # modifications the broker took
    counted: bool = True  # False for an adopted order until its history at the broker has counted them
    capped: bool = False  # a change of it is held back by the caps (alerted once)
    lost_mono: float = 0.0  # when the place call's answer was lost (0: it was not)
    word_mono: float = 0.0  # when the broker last said something about it (or it was sent)
    stamp: str = ""
    # (quantity, price, trigger_price, order_type) the order had before a change the broker confirmed ->
    # the newest stamp known then: a row showing them, stamped no later, is older than that change
    superseded: dict[tuple, str] = field(default_factory=dict)
    # its lane: the requests still to run, the first one running (by a runner: no task of its own, no lock)
    steps: deque = field(default_factory=deque)
    acked: asyncio.Event = field(default_factory=asyncio.Event)  # set once the broker accepted or ended it
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # clear while a modify or cancel is with Kite
    # near the broker's modification cap: the order placed to replace it, until that one works (it then
    # takes over and this one is cancelled) or ends unfilled (abandoned: this one keeps working)
    successor: "LiveOrder | None" = None
    predecessor: "LiveOrder | None" = None  # the order it is to replace, until it takes over or is abandoned
    replace_failures: int = 0  # successors in a row that never worked: the next waits 1, 2, 4 ... 30 s

    @property
    def working(self) -> bool:
        return self.state not in FINAL_STATES

    @property
    def unsure(self) -> bool:
        """Its fate or its last request's is not known yet."""
        return self.working and (self.broker_id is None or self.state in (
            OrderState.SUBMITTED, OrderState.PENDING_UPDATE, OrderState.PENDING_CANCEL))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "state": str(self.state), "broker_id": self.broker_id,
                "modifications": self.modifications}


def _values(order: Order) -> tuple:
    r = order.request
    return r.quantity, r.price, r.trigger_price, r.order_type


def _supersede(order: "LiveOrder", values: tuple, stamp: str) -> None:
    """The order changed from ``values``, confirmed when ``stamp`` was the newest stamp known of it."""
    order.superseded.pop(_values(order), None)  # what it is now is no longer stale, whenever it was before
    if stamp:
        order.superseded[values] = stamp


# the last orders of a cap that an order of this purpose leaves for what protects and closes a
# position: an entry leaves its stop, its target and an exit; a target the stop and an exit; a stop an exit
RESERVE = {Purpose.ENTRY: 3, Purpose.TARGET: 2, Purpose.STOP: 1}


def _kept(reserve: int) -> str:
    return f" ({reserve} kept for what protects and closes a position)" if reserve else ""


class Caps:
    """Order requests within the broker's caps and ours. Kite's per minute and per day count every
    request it takes (placements, modifications, cancels, a retry too); ours per position counts
    placements (a runaway re-placing loop, not a trailing stop)."""

    def __init__(self, per_position_minute: int, per_minute: int = 200, per_day: int = 5000) -> None:
        self.per_position_minute, self.per_minute, self.per_day = per_position_minute, per_minute, per_day
        self._minute: deque[float] = deque()
        self._by_symbol: dict[str, deque[float]] = {}
        self.today = 0

    def sent_before(self, symbol: str, at: float, placement: bool = True) -> None:
        """An order request an earlier run sent today at ``at`` (this clock): the caps count it, so a
        restart does not start them afresh."""
        self.today += 1
        self._minute.append(at)
        if placement:
            self._by_symbol.setdefault(symbol, deque()).append(at)

    def refusal(self, symbol: str, now: float, purpose: Purpose | None = None, placement: bool = True) -> str:
        """Why one more order request for ``symbol`` may not be sent now ('' when it may); counts it if
        so (a modify or cancel: ``placement`` False). The last requests of every cap are kept for what
        protects and closes a position (``RESERVE``): an entry must leave room for its stop, its target
        and an exit, a target for the stop and an exit, a stop for an exit; exits, repairs and cancels
        may take the last one."""
        mine = self._by_symbol.get(symbol)
        if mine is None:
            mine = self._by_symbol[symbol] = deque()
        for window in (self._minute, mine):
            while window and now - window[0] >= 60.0:
                window.popleft()
        reserve = RESERVE.get(purpose, 0)  # on the order path: the message is made only for a refusal
        if self.today + min(reserve, self.per_day - 1) >= self.per_day:
            return f"{self.today} of Kite's daily cap of {self.per_day} orders used today{_kept(reserve)}"
        if len(self._minute) + min(reserve, self.per_minute - 1) >= self.per_minute:
            return (f"{len(self._minute)} of Kite's cap of {self.per_minute} orders in the last minute used"
                    f"{_kept(reserve)}")
        if placement and len(mine) + min(reserve, self.per_position_minute - 1) >= self.per_position_minute:
            return (f"{len(mine)} orders for {symbol} in the last minute, of at most {self.per_position_minute} "
                    f"(risk.max_orders_per_position_minute){_kept(reserve)}")
        self.today += 1
        self._minute.append(now)
        if placement:
            mine.append(now)
        return ""


class LiveOrders(VenueProtocol):
    name = "live"

    def __init__(self, journal: Journal, tick_sizes: dict[str, float], now_ns: Callable[[], int],
                 caps: Caps | None = None, lookup_seconds: float = 15.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.tick_sizes = dict(tick_sizes)
        self.caps = caps or Caps(12)
        self.lookup_seconds = lookup_seconds
        self.replace_at = rules.REPLACE_AT  # modifications at which an order is replaced (lower for a lower cap)
        self.ledger = FillLedger()
        self.tags = TagMaker()
        self.on_order: Callable[[Order, int, float], None] | None = None
        self.on_token_error: Callable[[str], None] = lambda text: None
        self.on_error: Callable[[str], None] = lambda text: None  # the trader must know (critical)
        # a successor works at the broker and takes over (old, new); or ended before it did (abandoned)
        self.on_replaced: Callable[[LiveOrder, LiveOrder], None] = lambda old, new: None
        self.on_abandoned: Callable[[LiveOrder, LiveOrder], None] = lambda old, new: None
        # a modify the broker refused (the order, the changes it refused, its words): the order is as it was
        self.on_modify_refused: Callable[[LiveOrder, dict[str, Any], str], None] = lambda order, changes, why: None
        # rows of OTrade's orders this process does not know (an earlier run's, which a lagging book
        # hid at start): the engine gives them their roles
        self.on_unknown: Callable[[list[dict]], None] = lambda rows: None
        self._now_ns = now_ns
        self._mono = monotonic
        self._orders: dict[str, LiveOrder] = {}  # by tag: the engine's name for an order
        self._by_broker: dict[str, str] = {}  # broker's order id -> tag
        self._tasks: set[asyncio.Task] = set()  # the lane runners
        self._idle: deque[asyncio.Future] = deque()  # runners waiting for a lane with work
        self._busy = 0  # lanes running a request
        self.book_every_s = BOOK_EVERY_S
        self.messages_flowing: Callable[[], bool] = lambda: True  # the ticker's order messages reach us
        self._book_read = 0.0  # when the book was last read (monotonic)
        self._book_seen = 0.0  # when a read of the book last succeeded
        self._dark_since: float | None = None  # since when the ticker's order messages have not reached us
        self._back_at = 0.0  # when they flowed again (a book read after that is needed to see again)

    # --- the broker's side (a subclass) --------------------------------------------------------
    async def _place_call(self, request: OrderRequest, urgent: bool) -> str: ...

    def _place_now(self, request: OrderRequest, urgent: bool) -> Any:
        """Write the place request now if that needs no wait: what ``_placed`` awaits its answer with.
        None (the default), with nothing written, when it would wait: the lane calls ``_place_call``."""
        return None

    async def _placed(self, sent: Any) -> str: ...
    async def _modify_call(self, broker_id: str, changes: dict[str, Any]) -> None: ...
    async def _cancel_call(self, broker_id: str, urgent: bool) -> None: ...
    async def _history(self, broker_id: str) -> list[dict]: ...
    async def _book(self) -> list[dict]: ...
    def report(self, row: dict) -> Report | None: ...

    def through_trigger(self, message: str) -> bool:
        """Whether the broker refused a stop's trigger because its last price is already through it."""
        return False

    def modifications_in(self, rows: list[dict]) -> int:
        """How many modifications an order's history rows show (its count against the broker's cap)."""
        return 0

    # --- what the engine calls (synchronous, no I/O) -------------------------------------------
    def submit(self, request: OrderRequest, purpose: Purpose | None = None) -> LiveOrder:
        if request.price is not None or request.trigger_price is not None:
            tick = self.tick_sizes.get(request.symbol)
            if tick:
                rules.on_the_grid(request, tick)
        refusal = self.caps.refusal(request.symbol, self._mono(), purpose)
        if refusal:
            order = self._file(request, purpose)
            self._deny(order, f"not sent: {refusal}")
            return order
        self.journal.flush()  # the intent is written before the order leaves (synced to disk within 50 ms)
        try:
            sent = self._place_now(request, purpose in URGENT)
        except Exception:  # nothing was written (a request is written last): the lane's place meets it again
            sent = None
        # filed once the request is out (its answer cannot arrive before this returns to the loop): what the
        # order's record costs is not paid before the request is written
        order = self._file(request, purpose)
        order.state = OrderState.SUBMITTED
        self._lane(order, self._place if sent is None else partial(self._place, sent=sent))
        return order

    def _file(self, request: OrderRequest, purpose: Purpose | None) -> LiveOrder:
        now = self._now_ns()
        order = LiveOrder(request.tag, request, Status.SUBMITTED, now, now, purpose=purpose, word_mono=self._mono())
        self._orders[request.tag] = order
        return order

    def expect(self, request: OrderRequest, purpose: Purpose | None) -> LiveOrder:
        """An order an earlier run sent today (its journal says so) that Kite's book does not show:
        its fate is unknown, as if its answer was lost. The look-up looks for it by its tag; after
        ``lookup_seconds`` it is taken for never placed."""
        now, mono = self._now_ns(), self._mono()
        order = LiveOrder(request.tag, request, Status.SUBMITTED, now, now, purpose=purpose,
                          status_message="sent by an earlier run; not in Kite's book yet",
                          state=OrderState.SUBMITTED, lost_mono=mono, word_mono=mono - SETTLE_S)
        self._orders[request.tag] = order
        return order

    def sent_before(self, symbol: str, ago_s: float, placement: bool = True) -> None:
        """An earlier run sent an order request for ``symbol`` ``ago_s`` seconds ago (a placement, or a
        modify or cancel): the caps count it."""
        self.caps.sent_before(symbol, self._mono() - ago_s, placement)

    def modify(self, order_id: str, price: float | None = None, trigger_price: float | None = None,
               quantity: int | None = None, order_type: OrderType | None = None) -> LiveOrder:
        """Ask for a change; ``request`` keeps what the broker confirmed until it confirms this."""
        order = self.order(order_id)
        tick = self.tick_sizes.get(order.request.symbol)
        if tick:
            sell = order.request.side == Side.SELL
            price = None if price is None else rules.snap(price, tick, up=sell)
            trigger_price = None if trigger_price is None else rules.snap(trigger_price, tick, up=not sell)
        wanted = {"price": price, "trigger_price": trigger_price, "quantity": quantity, "order_type": order_type}
        order.pending.update({k: v for k, v in wanted.items() if v is not None})
        if order.working and len(order.steps) < 2:  # one running, one to pick up more
            self._lane(order, self._sync)
        return order

    def reprice(self, order_id: str) -> LiveOrder:
        """Ask for the order at market again: Kite sets a new protection price on every such modify."""
        order = self.order(order_id)
        order.reprice = True
        return self.modify(order_id, order_type=OrderType.MARKET)

    def cancel(self, order_id: str) -> LiveOrder:
        order = self.order(order_id)
        successor = order.successor
        if successor is not None and successor.predecessor is order:
            self.cancel(successor.order_id)  # the replacement of an order no longer wanted is not wanted either
        if order.working and not order.cancel_wanted:
            order.cancel_wanted = True
            self._lane(order, self._sync)
        return order

    def position(self, symbol: str) -> int:
        """The signed quantity our orders for ``symbol`` have filled, from the ledger."""
        return sum(self.ledger.filled(o.order_id) * (1 if o.request.side == Side.BUY else -1)
                   for o in self._orders.values() if o.request.symbol == symbol)

    def blind_for(self) -> float:
        """Seconds for which OTrade has not seen Kite's orders (0 when it sees them): the ticker's
        order messages stopped and no read of the book has succeeded since; a ticker back again
        does not tell what it missed, so a book read after its return is needed too. With the
        ticker up, a book read asked for and not answered ``BOOK_FAILING_S`` past its due while orders
        work counts too: a message the ticker lost only the book would show. Fills of working orders in that time are
        unknown to OTrade."""
        now = self._mono()
        if not self.messages_flowing():
            if self._dark_since is None:
                self._dark_since = now
            self._back_at = 0.0
        elif self._dark_since is not None:
            self._back_at = self._back_at or now
            if self._book_seen >= self._back_at:
                self._dark_since = None
        if (self._book_read > self._book_seen and now - self._book_seen >= self.book_every_s + BOOK_FAILING_S
                and any(o.working for o in self._orders.values())):
            return now - self._book_seen  # the ticker may lose a message: only the book would have shown it
        if self._dark_since is None:
            return 0.0
        return now - max(self._dark_since, self._book_seen)

    # --- lanes ---------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Lanes with a request running or queued."""
        return self._busy

    def _lane(self, order: LiveOrder, step: Callable[[LiveOrder], Any]) -> None:
        order.steps.append(step)
        if len(order.steps) > 1:
            return  # its runner takes this up after what is running
        self._busy += 1
        while self._idle:
            waiting = self._idle.pop()
            if not waiting.done():  # (a cancelled runner's is)
                waiting.set_result(order)
                return
        self._spawn(order)

    def _spawn(self, order: LiveOrder | None) -> None:
        task = asyncio.get_running_loop().create_task(self._runner(order))
        self._tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self._tasks.discard)

    def standby(self, runners: int = STANDBY_RUNNERS) -> None:
        """Have ``runners`` idle runners ready, so the first orders do not pay for making one."""
        for _ in range(runners - len(self._idle)):
            self._spawn(None)

    async def _runner(self, order: LiveOrder | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if order is not None:
                await self._run_lane(order)
            waiting = loop.create_future()
            self._idle.append(waiting)
            order = await waiting

    async def _run_lane(self, order: LiveOrder) -> None:
        steps = order.steps
        try:
            while steps:
                step = steps[0]  # left in the lane while it runs: the lane is busy
                try:
                    await step(order)
                except SessionExpired as exc:
                    self.on_token_error(str(exc))
                except Exception as exc:  # contained: logged and alerted, the order stays as the broker last said
                    log.exception("order %s: %s failed", order.order_id, getattr(step, "func", step).__name__)
                    self.on_error(f"{order.request.symbol} {order.purpose} order: {type(exc).__name__}: {exc}")
                steps.popleft()
        finally:
            steps.clear()  # cancelled (a kill): nothing of it runs later
            self._busy -= 1

    async def _place(self, order: LiveOrder, sent: Any = None) -> None:
        """Place the order (its request written by ``submit`` already when ``sent``) and take the answer."""
        try:
            if sent is None:
                self.journal.flush()  # the intent is written before the order leaves (synced within 50 ms)
                broker_id = await self._place_call(order.request, order.purpose in URGENT)
            else:
                broker_id = await self._placed(sent)
        except SessionExpired as exc:
            self.on_token_error(str(exc))
            self._end(order, OrderState.REJECTED, Status.REJECTED, f"not sent: {exc}")
            return
        except OutcomeUnknown as exc:
            order.lost_mono = self._mono()
            log.warning("place %s: %s; looking for it in the order book", order.order_id, exc)
            if order.purpose in (Purpose.STOP, Purpose.EXIT):  # unprotected, or not closing, until the book says
                risk = "unprotected" if order.purpose == Purpose.STOP else "still open"
                self.on_error(f"{order.request.symbol}: Kite's answer to the {order.purpose} order was lost ({exc}); "
                              f"looking for it in the order book, the position may be {risk} meanwhile")
            return
        except Refused as exc:
            self._end(order, OrderState.REJECTED, Status.REJECTED, str(exc))
            return
        self._bind(order, broker_id)
        await self._look(order)

    async def _sync(self, order: LiveOrder) -> None:
        """Bring the broker's order to what is wanted of it: cancelled, or the pending changes."""
        while order.working and (order.cancel_wanted or order.pending or order.reprice):
            if order.broker_id is None:
                return  # the place answer was lost: the look-up picks this up once it knows the order
            if order.state == OrderState.SUBMITTED:
                if order.acked.is_set():
                    return  # a report moved it back: the look-up picks this up
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (a kill) here
                    async with asyncio.timeout(SETTLE_S):
                        await order.acked.wait()
                except TimeoutError:
                    return  # not accepted yet: the look-up picks this up
                continue
            if order.state in (OrderState.PENDING_UPDATE, OrderState.PENDING_CANCEL) and not order.settled.is_set():
                with contextlib.suppress(TimeoutError):  # Kite refuses a request while one is in flight
                    async with asyncio.timeout(SETTLE_S):
                        await order.settled.wait()
            if order.cancel_wanted:
                await self._send_cancel(order)
                return
            if order.successor is not None:
                return  # the wish waits for its successor: it takes it over, or is abandoned
            if self._mono() < order.retry_mono:
                # a modify left unanswered may still reach the broker, and after a newer one would undo it
                return  # the look-up takes the wish up once the wait is over
            changes = {k: v for k, v in order.pending.items() if v != getattr(order.request, k)}
            if order.reprice:
                changes["order_type"], order.reprice = OrderType.MARKET, False
            if not changes:
                order.pending.clear()
                return
            if not order.counted and not await self._count(order):
                return
            if order.modifications >= self.replace_at:
                self._replace(order)
                return
            if not await self._send_modify(order, changes):
                return

    async def _count(self, order: LiveOrder) -> bool:
        """An adopted order's modifications so far, from its history at the broker, which counts them
        against its cap whatever run made them; False (tried again later) when it cannot be read now."""
        rows = await self._read_history(order, "its modifications counted later")
        if rows is None:
            order.retry_mono = self._mono() + SETTLE_S
            return False
        order.modifications = max(order.modifications, self.modifications_in(rows))
        order.counted = True
        if rows:
            self.update(rows[-1])
        return True

    def _capped(self, order: LiveOrder) -> bool:
        """A modify or cancel our caps hold back: tried again later, alerted once."""
        refusal = self.caps.refusal(order.request.symbol, self._mono(),
                                    None if order.cancel_wanted else order.purpose, placement=False)
        if not refusal:
            order.capped = False
            return False
        order.retry_mono = self._mono() + CAPPED_RETRY_S
        if not order.capped:
            order.capped = True
            what = "cancel" if order.cancel_wanted else "change"
            self.on_error(f"{order.request.symbol} {order.purpose} order: {what} held back, {refusal}; "
                          "sent once there is room")
        return True

    async def _send_modify(self, order: LiveOrder, changes: dict[str, Any]) -> bool:
        """One modify; True when the broker took it (the changes are then confirmed by its rows)."""
        params = dict(changes)
        if changes.get("order_type") in (OrderType.MARKET, OrderType.SL_M) or (
                "quantity" in changes and order.request.order_type in (OrderType.MARKET, OrderType.SL_M)):
            params.setdefault("order_type", order.wants("order_type"))
        if self._capped(order):
            return False
        try:
            await self._modify_call(order.broker_id, params)
        except Refused as exc:
            if _BUSY.search(str(exc)):  # Kite still works on an earlier change (one whose answer was lost): not a no
                log.warning("modify %s: %s; looking at the order", order.order_id, exc)
                order.retry_mono = self._mono() + SETTLE_S
                await self._look(order)
                return False
            for k, v in changes.items():  # refused: the order stays as it was
                if order.pending.get(k) == v:
                    del order.pending[k]
            await self._refused(order, "modify", str(exc))
            if order.working:
                self.on_modify_refused(order, changes, str(exc))
            return False
        except OutcomeUnknown as exc:
            log.warning("modify %s: %s; looking at the order", order.order_id, exc)
            order.modifications += 1  # Kite may have counted it: the cap is kept on the safe side
            order.retry_mono = self._mono() + SETTLE_S
            order.state = OrderState.PENDING_UPDATE
            await self._look(order)
            return False
        order.modifications += 1
        order.word_mono = self._mono()
        before = _values(order)
        for k, v in changes.items():
            if order.pending.get(k) == v:
                setattr(order.request, k, v)  # the broker took it; its rows will say so too
                del order.pending[k]
        self.journal.record("modified", order_id=order.order_id, **{k: str(v) for k, v in changes.items()})
        if _values(order) != before:  # not yet shown by a row (which may have come first): in flight at Kite
            _supersede(order, before, order.stamp)
            order.state = OrderState.PENDING_UPDATE
            order.settled.clear()
            self._changed(order, 0, 0.0)
        await self._look(order)
        return True

    async def _send_cancel(self, order: LiveOrder) -> None:
        if self._mono() < order.retry_mono:
            return  # after a refusal: the look-up tries again once the backoff is over
        if self._capped(order):
            return
        try:
            await self._cancel_call(order.broker_id, order.purpose != Purpose.ENTRY)
        except Refused as exc:
            await self._refused(order, "cancel", str(exc))
            if order.working:  # an order we no longer want must go: tried again, with backoff
                order.cancel_refusals += 1
                order.retry_mono = self._mono() + min(30.0, 2.0 ** (order.cancel_refusals - 1))
            return
        except OutcomeUnknown as exc:
            log.warning("cancel %s: %s; looking at the order", order.order_id, exc)
            order.retry_mono = self._mono() + SETTLE_S  # still wanted: sent again unless Kite shows it done
            order.state = OrderState.PENDING_CANCEL
            await self._look(order)
            return
        order.cancel_wanted = False
        order.state = OrderState.PENDING_CANCEL
        order.word_mono = self._mono()
        await self._look(order)

    async def _refused(self, order: LiveOrder, action: str, message: str) -> None:
        """A modify or cancel the broker refused. Usually the order has just filled or ended, which
        its history shows and the engine then handles; otherwise the trader must know."""
        await self._look(order)
        if order.working:
            r = order.request
            self.on_error(f"Kite refused to {action} the {r.side} {r.quantity} {r.symbol} {r.order_type} "
                          f"order: {message}")

    def _replace(self, order: LiveOrder) -> None:
        """Near the broker's modification cap: place the order anew as wanted; the old one is cancelled
        only once the new one works at the broker (``_succession``), so what it protects is never
        without it, and keeps working if the new one never does."""
        wanted = {k: order.wants(k) for k in FIELDS}
        wanted["quantity"] -= self.ledger.filled(order.order_id)
        if wanted["quantity"] <= 0:
            return
        request = replace(order.request, tag=self.tags(), **wanted)
        self.journal.record("intent", purpose=str(order.purpose), replaces=order.order_id, **request.__dict__)
        new = self.submit(request, order.purpose)
        if not new.working:  # denied (alerted): the old order keeps protecting as it is
            self._replace_later(order)
            return
        log.info("order %s took %d modifications: replacing it by %s", order.order_id, order.modifications,
                 new.order_id)
        order.successor, new.predecessor = new, order

    def _replace_later(self, order: LiveOrder) -> None:
        order.replace_failures += 1
        order.retry_mono = self._mono() + min(30.0, 2.0 ** (order.replace_failures - 1))

    def _succession(self, new: LiveOrder) -> None:
        """A successor's news: working at the broker (or filling), it takes over and the old order is
        cancelled, the latest wish for the old one carried over; ended before that, it is abandoned
        and the old order keeps working (replaced again after a wait)."""
        old = new.predecessor
        if new.cancel_wanted:  # given up with the old one: neither takes over
            new.predecessor = old.successor = None
        elif new.filled_quantity or new.state in AT_KITE:
            new.predecessor = old.successor = None
            old.replace_failures = 0
            carried = {k: v for k, v in old.pending.items() if k != "quantity" and v != getattr(new.request, k)}
            old.pending.clear()
            self.on_replaced(old, new)
            self.cancel(old.order_id)
            if carried and new.working:
                new.pending.update(carried)
                self._lane(new, self._sync)
        elif not new.working:
            new.predecessor = old.successor = None
            self._replace_later(old)
            self.on_abandoned(old, new)

    # --- the broker's word ---------------------------------------------------------------------
    def _bind(self, order: LiveOrder, broker_id: str) -> None:
        if order.broker_id is None:
            order.broker_id = broker_id
            order.status_message = order.status_message or f"Kite order {broker_id}"
        self._by_broker[broker_id] = order.order_id

    async def _look(self, order: LiveOrder) -> None:
        """Read the order's history; a failed read changes nothing (the look-up tries again)."""
        rows = await self._read_history(order, "looking again later")
        if rows:
            self.update(rows[-1])

    async def _read_history(self, order: LiveOrder, then: str) -> list[dict] | None:
        """The order's rows at the broker; None (logged with what happens ``then``) when they cannot be
        read now. An expired session is not a failed read: it stops the lanes."""
        try:
            return await self._history(order.broker_id)
        except SessionExpired:
            raise
        except Exception as exc:
            log.warning("order %s: history unavailable (%s); %s", order.order_id, exc, then)
            return None

    def update(self, row: dict) -> None:
        """An order row from the broker (ticker message, order book, history). Orders the engine did
        not create are left alone: they are the trader's; OTrade's that this process does not know
        (an earlier run's) go to ``on_unknown``."""
        report = self.report(row)
        if report is None:
            return
        tag = report.tag if report.tag in self._orders else self._by_broker.get(report.broker_id)
        order = self._orders.get(tag or "")
        if order is None:
            if TagMaker.made_by_otrade(report.tag):
                self.on_unknown([row])
            return
        self._bind(order, report.broker_id)
        qty, price = self.ledger.apply(order.order_id, report.filled, report.average)
        order.filled_quantity = self.ledger.filled(order.order_id)
        order.average_price = self.ledger.average(order.order_id)
        if not self._take(order, report) and not qty:
            return
        order.word_mono = self._mono()
        self._changed(order, qty, price)

    def _take(self, order: LiveOrder, report: Report) -> bool:
        """Move the order to what the report says, unless the report is older than what is known."""
        if not order.working:
            if order.lost_mono and report.state not in FINAL_STATES:
                self._revive(order)  # taken for never placed, yet there it is
            return False
        if report.stamp and order.stamp and report.stamp < order.stamp:
            return False
        rank = _RANK.get(report.state, 2)
        if rank < _RANK.get(order.state, 2) or report.filled < self.ledger.filled(order.order_id):
            return False
        replaced_at = order.superseded.get((report.quantity, report.price, report.trigger_price, report.order_type))
        if rank == 2 and replaced_at is not None and (report.state == OrderState.PENDING_UPDATE or (
                report.stamp and report.stamp <= replaced_at)):
            # the order as it was before a change the broker confirmed: a modify's own first row, or a row
            # stamped no later than that change (one-second stamps: several rows share one)
            return False
        order.stamp = report.stamp or order.stamp
        before = (order.state, order.status, order.request.quantity, order.request.price,
                  order.request.trigger_price, order.request.order_type)
        if rank >= 2:
            order.acked.set()
        order.state = report.state
        if order.state in (OrderState.PENDING_UPDATE, OrderState.PENDING_CANCEL):
            order.settled.clear()
        else:
            order.settled.set()
        order.status = Status._value2member_map_.get(report.status, order.status)
        order.status_message = report.message or order.status_message
        if rank >= 2:  # the broker's values are what the order is
            values = _values(order)
            order.request.quantity = report.quantity
            order.request.price = report.price
            order.request.trigger_price = report.trigger_price
            order.request.order_type = report.order_type
            if _values(order) != values:
                _supersede(order, values, order.stamp)
            for k in [k for k, v in order.pending.items() if getattr(order.request, k) == v]:
                del order.pending[k]
        if order.working and (order.pending or order.cancel_wanted) and not order.steps:
            self._lane(order, self._sync)
        return before != (order.state, order.status, order.request.quantity, order.request.price,
                          order.request.trigger_price, order.request.order_type)

    def _revive(self, order: LiveOrder) -> None:
        """An order taken for never placed turned up working: it is a duplicate now, so cancel it."""
        order.lost_mono = 0.0
        order.state, order.status = OrderState.SUBMITTED, Status.SUBMITTED
        order.acked.clear()
        order.cancel_wanted = True
        self.on_error(f"{order.request.symbol} {order.purpose} order {order.order_id} that Kite's book did not "
                      "show turned up late; cancelling it")
        self._lane(order, self._sync)

    def _deny(self, order: LiveOrder, message: str) -> None:
        """Refused before sending; the engine hears of it once the caller has filed the order."""
        order.state, order.status, order.status_message = OrderState.DENIED, Status.REJECTED, message
        self.on_error(f"{order.request.symbol} {order.purpose} order {message}")
        asyncio.get_running_loop().call_soon(self._changed, order, 0, 0.0)

    def _end(self, order: LiveOrder, state: OrderState, status: Status, message: str) -> None:
        order.state, order.status, order.status_message = state, status, message
        order.acked.set()
        order.word_mono = self._mono()
        self._changed(order, 0, 0.0)

    def _changed(self, order: LiveOrder, qty: int, price: float) -> None:
        if order.predecessor is not None:
            self._succession(order)
        order.updated_ns = self._now_ns()
        order.history.append((order.updated_ns, order.status))
        if self.on_order is not None:
            self.on_order(order, qty, price)

    # --- looking up what is not known ----------------------------------------------------------
    async def run(self, every: float = LOOK_EVERY_S) -> None:
        """Look up orders whose fate or last request is unknown, for as long as the process runs
        (and have runners standing by for the orders)."""
        self.standby()
        while True:
            await asyncio.sleep(every)
            try:
                await self.look_up()
            except SessionExpired as exc:
                self.on_token_error(str(exc))
            except Exception:
                log.exception("order look-up failed; trying again")

    async def look_up(self) -> None:
        """Read the book when an order's fate is unknown, every ``book_every_s`` while one works (a
        lost ticker message must not leave a fill unseen) and every ``IDLE_BOOK_S`` once the day has
        had orders of ours; take up again what is still wanted of
        an order (a change or a cancel whose answer was lost or refused) once its backoff is over."""
        now = self._mono()
        self._resume_wanted(now)
        unsure = [o for o in self._orders.values() if o.unsure and now - o.word_mono >= SETTLE_S]
        every = self.book_every_s if self.messages_flowing() else LOOK_EVERY_S
        if not any(o.working for o in self._orders.values()):
            every = max(every, IDLE_BOOK_S)
        due = bool(self._orders) and now - self._book_read >= every
        if not unsure and not due:
            return
        self._book_read = now
        try:
            rows = await self._book()
        except SessionExpired:
            raise
        except Exception as exc:
            log.warning("order book unavailable (%s): %d order(s) still unconfirmed", exc, len(unsure))
            return
        self.sync_rows(rows)
        now = self._mono()
        for order in unsure:
            if order.broker_id is None and order.lost_mono and now - order.lost_mono >= self.lookup_seconds:
                self._end(order, OrderState.REJECTED, Status.REJECTED,
                          f"not placed: Kite's order book shows no order tagged {order.order_id} "
                          f"{self.lookup_seconds:g} s after its answer was lost")
                order.lost_mono = now  # a late appearance is cancelled as a duplicate
        self._resume_wanted(now)

    def _resume_wanted(self, now: float) -> None:
        for order in self._orders.values():
            waits = order.successor is not None and not order.cancel_wanted  # for its successor's fate
            if (order.working and (order.pending or order.cancel_wanted or order.reprice)
                    and now >= order.retry_mono and not order.steps and not waits):
                self._lane(order, self._sync)

    def sync_rows(self, rows: list[dict], unknown_too: bool = True) -> None:
        """Apply the order book's rows to the orders they are about; rows of OTrade's orders that this
        process does not know go to ``on_unknown`` (unless the caller reconciles them itself)."""
        self._book_seen = self._mono()
        unknown = []
        for row in rows:
            report = self.report(row)
            if report is None:
                continue
            if report.tag in self._orders or report.broker_id in self._by_broker:
                self.update(row)
            elif TagMaker.made_by_otrade(report.tag):
                unknown.append(row)
        if unknown and unknown_too:  # in one batch: the engine gives an earlier run's orders their roles together
            self.on_unknown(unknown)
