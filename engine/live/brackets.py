"""The orders that enter, exit and repair a position at the venue, and the position Kite's fills make.

Paper and live alike: a LIMIT target and an SL-M stop rest for the whole position (their levels
and sending are the protection owner's, ``engine.live.protection``). Live, the broker's word moves
positions: fills arrive in parts and the bracket follows the position; fills the engine no longer
wants are undone; exits that do not fill are re-priced; refusals are retried with backoff, bounded
and loud; reconciliation derives positions from the fill ledger. Order state is the venue's
(``engine.live.orders``): the keeper only names which orders protect which position.
"""

import logging
from datetime import datetime

from config import Config
from engine.arrays import Arrays
from engine.core import layout as L
from engine.core.layout import IST
from engine.core.step import adopt_position, apply_entry_fill, apply_exit_fill, flatten
from engine.live.orders import LiveOrder, OrderState
from engine.live.protection import Bracket, Protection
from engine.live.restore import Held, rebuild
from engine.live.venue import VenueProtocol
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, TagMaker
from engine.services.events import ALERT
from engine.services.journal import Journal

log = logging.getLogger(__name__)

NS = 1_000_000_000
UNPROTECTED_REPEAT_S = 60  # a position still without a working stop is alerted again this often
UNCOVERED_S = 1.0  # a position is alerted once it has lacked a confirmed stop this long
ALIGN_S = 1.0  # a position apart from Kite's fills this long is realigned (a fill handled late is not apart)
BLIND_S = 1.0  # OTrade unable to see Kite's orders this long (ticker down, book unanswered) is alerted
# a stop's states in which it rests at the exchange for its quantity (a modify in flight leaves it resting)
COVERING = frozenset({OrderState.ACCEPTED, OrderState.TRIGGERED, OrderState.PENDING_UPDATE,
                      OrderState.PARTIALLY_FILLED})


class BracketKeeper:
    """Engine methods for the orders that enter, exit and repair a position at the venue, and for
    reconciling with Kite (a mixin: they work on the engine's arrays, broker, journal and bus; what
    protects a position, and at what level, they ask ``protection``)."""

    # what the engine provides
    arrays: Arrays
    broker: VenueProtocol
    brackets: list[Bracket]
    protection: Protection
    index: dict[str, int]
    journal: Journal
    cfg: Config
    foreign: list[str]
    _repriced: dict[str, tuple[int, int]]
    _blind_alert_ns: int  # when OTrade's blindness to Kite's orders was last alerted (0: it sees them)
    _intents: dict[str, tuple[str, OrderRequest, Purpose | None, float]] | None

    def _cancel_bracket(self, br: Bracket, keep: str | None = None) -> None:
        """One-cancels-other: cancel the resting target and stop, and what is left of a partly
        filled entry, except ``keep`` (the one that filled). Their fills from now on are excess."""
        for order_id in (br.entry, br.target, br.stop, *br.former):
            if order_id and order_id != keep and self.broker.order(order_id).working:
                self.broker.cancel(order_id)
        br.entry = br.target = br.stop = None
        br.former.clear()

    def _cancel_entry_rest(self, br: Bracket) -> None:
        """What is left of a partly filled entry must not grow the position being exited."""
        if br.entry and self.broker.order(br.entry).working:
            self.broker.cancel(br.entry)
        br.entry = None

    def _broker_update(self, order: Order, qty: int, price: float) -> None:
        """Live: the broker's word moves positions, ``qty`` newly filled at ``price`` at a time."""
        j = self.index.get(order.request.symbol)
        if j is None:
            return
        if order.purpose == Purpose.REPAIR:
            self._repair_update(j, order)
            return
        if order.purpose == Purpose.ENTRY:
            self._entry_update(j, order, qty, price)
        elif order.purpose in (Purpose.TARGET, Purpose.STOP, Purpose.EXIT):
            self._exit_update(j, order, qty, price)
        elif qty:  # an earlier run's order cancelled as a duplicate, which filled first
            self._repair(j, order, qty, "filled before its cancel reached Kite")

    def _repair_update(self, j: int, order: Order) -> None:
        """A repair that ended short of its quantity (refused, lost, cancelled) leaves Kite apart from
        the position: what is left is sent again from tend(), after a backoff while it keeps failing."""
        left = order.request.quantity - order.filled_quantity
        if order.working or left <= 0:
            return
        br, now = self.brackets[j], self.now_ns()
        br.unrepaired += left if order.request.side == Side.BUY else -left
        lost = isinstance(order, LiveOrder) and bool(order.lost_mono)  # never reached Kite: not a refusal
        if not lost and br.repair_ns <= now:  # repairs ending together are one failure, not several
            br.repair_ns = now + br.backoff() * NS
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{order.request.symbol}: the repair order ended {str(order.status).lower()} with {left} "
                           f"not traded ({order.status_message}); Kite holds {left} more than OTrade, with no "
                           "working stop for them: sending it again")

    def _entry_update(self, j: int, order: Order, qty: int, price: float) -> None:
        """Each entry fill grows the position and its bracket; an entry the engine has given up on
        (exit, flatten, halt, taken for never placed) must not grow it: its late fills are undone."""
        a, br = self.arrays, self.brackets[j]
        if order.order_id != br.entry:
            if qty:
                self._repair(j, order, qty, "filled after it was given up")
            return
        done = not order.working
        if done:
            br.entry = None
            if order.filled_quantity == 0:  # rejected, or cancelled outside OTrade: nothing to hold
                self._apply(j, flatten(a.st, a.acct, j, L.REASON_FLATTEN))
                return
        signed = float(qty if order.request.side == Side.BUY else -qty)
        self._apply(j, apply_entry_fill(a.st, a.pr, a.acct, a.clk, a.rows, a.links, j, self.now_ns(), signed,
                                        price, done))

    def _exit_update(self, j: int, order: Order, qty: int, price: float) -> None:
        """Exit fills shrink the position; the last one closes the trade and cancels the rest. A
        fill beyond the position (both legs filled in a race) is undone at market."""
        a, br, oid = self.arrays, self.brackets[j], order.order_id
        self.protection.confirmed(j, order)
        ours = oid in (br.target, br.stop, br.exit) or oid in br.former
        if oid == br.exit and (br.target or br.stop) and isinstance(order, LiveOrder) and order.state not in (
                OrderState.SUBMITTED, OrderState.REJECTED, OrderState.DENIED):
            self._cancel_bracket(br, keep=oid)  # Kite took the exit: the legs would only double it now
        if qty:
            closing = min(qty, int(abs(a.st[j, L.S_POS]))) if ours else 0
            if closing:
                reason = {Purpose.TARGET: L.REASON_TARGET, Purpose.STOP: L.REASON_STOP}.get(
                    order.purpose, int(a.st[j, L.S_PEND_REASON]))
                act = apply_exit_fill(a.st, a.pr, a.acct, a.clk, a.rows, a.links, j, self.now_ns(),
                                      float(closing), price, reason)
                if act & L.ACT_EXIT_FILL:
                    self._cancel_bracket(br, keep=oid)
                self._apply(j, act)
            if qty > closing:
                self._repair(j, order, qty - closing, "both bracket legs filled")
        if not order.working:
            br.former.discard(oid)
            if ours and oid != br.exit and order.filled_quantity:
                br.failures = 0  # it worked: protection is not failing
                self.protection.leg_filled(j, order)
            if ours and a.st[j, L.S_POS] != 0.0 and oid in (br.target, br.stop, br.exit):
                self._lost_exit(j, order)

    def _lost_exit(self, j: int, order: Order) -> None:
        """An exit order ended unfilled (refused, or cancelled outside OTrade) with the position open.
        A refused market exit leaves the bracket protecting (re-armed where a leg is gone); a lost stop or
        target is re-armed (``Protection.leg_lost``).
        Either way after a backoff once it keeps failing, and loudly."""
        br, st, now = self.brackets[j], self.arrays.st[j], self.now_ns()
        if order.order_id == br.exit:
            what = f"{order.request.symbol} {order.purpose} order {str(order.status).lower()}"
            why = f": {order.status_message}" if order.status_message else ""
            wait = br.backoff() if order.filled_quantity == 0 else 0
            # never reached Kite (its answer lost, or our caps held it back): no refusal of Kite's to wait out
            lost = isinstance(order, LiveOrder) and (bool(order.lost_mono) or order.state == OrderState.DENIED)
            reason = int(st[L.S_PEND_REASON])
            br.exit, br.exit_refused = None, not lost
            br.exit_again = reason if lost else 0
            st[L.S_PEND_SIDE] = st[L.S_PEND_KIND] = 0.0
            br.exit_retry_ns = now + max(1, wait) * NS
            self.protection.protect(j)  # the bracket it replaced comes back at once
            text = (f"{what}{why}; position {int(st[L.S_POS]):+d} still open, stop and target kept. "
                    + (f"Sending the exit again in {max(1, wait)} s" if lost else
                       f"Strategy exits wait: /flatten to try again (a square-off waits {max(1, wait)} s)"))
        else:
            text = self.protection.leg_lost(j, order)
        self._publish(ALERT, critical=True, level="critical", text=text)
        self.journal.record("exit_lost", symbol=order.request.symbol, order_id=order.order_id, text=text)

    def reconcile(self, positions: list[dict] | None, orders: list[dict]) -> list[str]:
        """Live start, ticker reconnect, new token, or a book read showing an earlier run's orders:
        positions come from the fill ledger (our orders of the day, adopted from the book when an
        earlier run sent them), never from the positions report, which is only checked against it
        (it lags fills; None: not read). An earlier run's stop and target are kept; missing legs are
        armed. Everything else is the trader's: left alone and reported (returned, and shown in
        /status)."""
        a, notes = self.arrays, []
        broker = self.broker
        working = [o for o in orders if o.get("status") in ("OPEN", "TRIGGER PENDING")]
        known = {o.request.tag for o in broker.all_orders()}
        fresh: list[LiveOrder] = []  # an earlier run's orders: their fills join the ledger, roles below
        journaled: dict[str, Held] = {}  # the journal's open positions and levels, taken at the first look only
        modified: dict[str, int] = {}  # the journal's modifications per order of an earlier run
        if self._intents is None:  # the first look at Kite in this process
            records = self._journal_today()
            self._intents = self._intents_of(records)
            journaled = self._journaled_positions(records)
            now_s = self.now_ns() / NS
            for _, request, _, sent_s in sorted(self._intents.values(), key=lambda i: i[3]):
                broker.sent_before(request.symbol, max(0.0, now_s - sent_s))  # a restart keeps the caps' count
            for r in records:
                intent = self._intents.get(r.get("order_id") or "") if r.get("kind") == "modified" else None
                if intent is not None and r.get("ts"):  # Kite's minute cap counts modifications too
                    modified[intent[0]] = modified.get(intent[0], 0) + 1
                    ago = now_s - datetime.fromisoformat(r["ts"]).timestamp()
                    broker.sent_before(intent[1].symbol, max(0.0, ago), placement=False)
            shown = {row.get("tag") for row in orders}
            for tag, request, purpose, _ in self._intents.values():
                if tag not in known and tag not in shown and request.symbol in self.index:
                    fresh.append(broker.expect(request, purpose))  # sent, yet not in the book (it lags)
        for row in sorted(orders, key=lambda r: str(r.get("order_timestamp") or "")):
            tag = row.get("tag") or ""
            symbol = f"{row.get('exchange')}:{row.get('tradingsymbol')}"
            if tag not in known and TagMaker.made_by_otrade(tag) and symbol in self.index:
                intent = self._intents.get(tag)
                order = broker.adopt(row, intent[2] if intent else None)
                order.modifications = max(order.modifications, modified.get(tag, 0))  # its history's count too
                fresh.append(order)
        held = {f"{p['exchange']}:{p['tradingsymbol']}": (int(p["quantity"]), float(p["average_price"]))
                for p in positions or ()}
        ledger, working_now = self._book_view()
        for j, symbol in enumerate(a.symbols):
            ours = ledger.get(symbol, 0)
            pos = int(a.st[j, L.S_POS])
            reported = held.get(symbol, (0, 0.0))[0]
            expected = self._expected(j, ledger, working_now)
            note = self._realign(j, expected, journaled.get(symbol)) if expected != pos else ""
            roles = self._adopt_working(j, [o for o in fresh if o.working and o.request.symbol == symbol])
            if note or roles:
                self.protection.adopt(j, journaled.get(symbol))
            armed = bool(note and expected)
            if armed:
                self.protection.protect(j)
            if note or roles:
                notes.append(f"{symbol}: " + ", ".join(filter(None, [note, *(f"kept {r}" for r in roles)]))
                             + (", bracket armed" if armed else ""))
            if positions is None:
                continue
            if ours and not reported:
                text = (f"{symbol}: OTrade holds {ours:+d} but Kite shows no position (closed outside OTrade?); "
                        "its stop and target still rest at Kite and would open a new position if they fill: "
                        "check Kite and cancel them there")
                notes.append(text + ", left alone")
                self._publish(ALERT, critical=True, level="critical", text=text)
            elif reported != ours:
                notes.append(f"{symbol}: Kite's positions show {reported:+d}, OTrade's orders {ours:+d} (the report "
                             "can trail a fill; a difference that stays was made outside OTrade), left alone")
        if positions is None:
            for note in notes:
                self.journal.record("reconcile", note=note)
            return notes
        for p in positions:
            symbol, qty = f"{p['exchange']}:{p['tradingsymbol']}", int(p["quantity"])
            if qty and symbol not in self.index:
                notes.append(f"{symbol}: position {qty:+d} not traded by OTrade, left alone")
        adopted = {o.request.tag for o in broker.all_orders()}
        for row in working:
            if (row.get("tag") or f"kite-{row['order_id']}") not in adopted:
                notes.append(f"{row['exchange']}:{row['tradingsymbol']}: order {row['order_id']} "
                             f"({row['transaction_type']} {row['quantity']} {row['order_type']}) not ours, left alone")
        self.foreign = [n for n in notes if "left alone" in n]
        for note in notes:
            self.journal.record("reconcile", note=note)
        return notes

    def _book_view(self) -> tuple[dict[str, int], dict[str, list[Order]]]:
        """In one pass over the day's orders: each symbol's position at Kite from the ledger (signed),
        and its working orders."""
        held: dict[str, int] = {}
        working: dict[str, list[Order]] = {}
        for order in self.broker.all_orders():
            symbol, filled = order.request.symbol, self.broker.filled(order.order_id)
            if filled:
                held[symbol] = held.get(symbol, 0) + (filled if order.request.side == Side.BUY else -filled)
            if order.working:
                working.setdefault(symbol, []).append(order)
        return held, working

    def _expected(self, j: int, held: dict[str, int], working: dict[str, list[Order]]) -> int:
        """The position OTrade must hold: what Kite's fills of our orders make it, less what repairs
        are still to undo (a working repair's unfilled rest, and what one left to send again)."""
        symbol, undo = self.arrays.symbols[j], self.brackets[j].unrepaired
        for order in working.get(symbol, ()):
            if order.purpose == Purpose.REPAIR:
                left = order.request.quantity - order.filled_quantity
                undo += left if order.request.side == Side.BUY else -left
        return held.get(symbol, 0) + undo

    def _realign(self, j: int, qty: int, journaled: Held | None = None) -> str:
        """Take ``qty`` as the position: the bracket, sized and sided for another one, is cancelled
        (the caller arms a new one). Its entry price is the journal's for this position (``journaled``),
        else its own fills'. A position still on the same side keeps its levels: a realigned stop is
        never looser. Returns what was done, for the trader."""
        a, br, symbol = self.arrays, self.brackets[j], self.arrays.symbols[j]
        pos = int(a.st[j, L.S_POS])
        levels = a.st[j, [L.S_STOP, L.S_TARGET, L.S_TRAILED]].copy() if pos * qty > 0 else None
        self._cancel_bracket(br)
        if br.exit and self.broker.order(br.exit).working:
            self.broker.cancel(br.exit)
        br.exit = None
        ltp = float(a.st[j, L.S_LTP])
        price = journaled.price if journaled is not None and journaled.qty == qty else self._entry_price(symbol, qty)
        price = price or (ltp if ltp == ltp else 0.0)
        self.apply_position(j, qty, price if qty else 0.0)
        if levels is not None:
            a.st[j, [L.S_STOP, L.S_TARGET, L.S_TRAILED]] = levels
        return (f"adopted position {qty:+d} @ {price:.2f}" if qty
                else f"OTrade's orders leave no position (OTrade showed {pos:+d}); flat now")

    def _journal_today(self) -> list[dict]:
        day = datetime.fromtimestamp(self.now_ns() / NS, IST).date().isoformat()
        try:
            return self.journal.read_day(day)
        except (OSError, ValueError) as exc:
            log.warning("journal unreadable (%s): an earlier run's orders get their roles from their form, "
                        "their levels from Kite's book", exc)
            return []

    def _journaled_positions(self, records: list[dict]) -> dict[str, Held]:
        """The open positions today's journal leaves, with the entry price of each one's own fills and
        the levels last journaled for it."""
        try:
            return rebuild(records, self.cfg.costs, frozenset()).held
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("journal's positions not understood (%s): entry prices from the fills at Kite", exc)
            return {}

    def _intents_of(self, records: list[dict]) -> dict[str, tuple[str, OrderRequest, Purpose | None, float]]:
        """Every order OTrade sent today and what for, from the journal's intents (each is written
        before its order leaves): an earlier run's repair stays a repair, its stop a stop, and one
        that Kite's book does not show yet is looked for."""
        intents = {}
        for r in records:
            if r.get("kind") != "intent" or not r.get("tag"):
                continue
            try:
                request = OrderRequest(r["symbol"], Side(r["side"]), int(r["quantity"]), OrderType(r["order_type"]),
                                       price=r.get("price"), trigger_price=r.get("trigger_price"), tag=r["tag"],
                                       product=r.get("product") or "MIS")
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("journal intent %s not understood (%s): skipped", r.get("tag"), exc)
                continue
            purpose = r.get("purpose")
            sent_s = datetime.fromisoformat(r["ts"]).timestamp() if r.get("ts") else 0.0
            intents[r["tag"]] = (r["tag"], request, Purpose(purpose) if purpose in Purpose._value2member_map_ else None,
                                 sent_s)
        return intents

    def _entry_price(self, symbol: str, position: int) -> float:
        """The open trade's own entry price: the average of its fills since the position was last flat,
        walking the day's fills in the order they came; 0 when they leave no position on its side."""
        sides = {o.order_id: o.request.side for o in self.broker.all_orders() if o.request.symbol == symbol}
        held, price = 0, 0.0
        for order_id, qty, at in self.broker.ledger.fills:
            side = sides.get(order_id)
            if side is None:
                continue
            signed = qty if side == Side.BUY else -qty
            total = held + signed
            if total == 0:
                price = 0.0
            elif held == 0 or (held > 0) != (total > 0):  # opened, or turned over: the rest at this price
                price = at
            elif (signed > 0) == (held > 0):  # grown: at the average
                price = (price * abs(held) + at * abs(signed)) / abs(total)
            held = total
        return price if held and (held > 0) == (position > 0) else 0.0

    def _adopt_working(self, j: int, orders: list[LiveOrder]) -> list[str]:
        """Give an earlier run's working orders (known by OTrade's tag) their roles: on the exit side
        the stop, the target or a market exit; on the opening side a pending entry. The role follows
        the order's form and must agree with what the journal says it was sent for (a repair stays a
        repair, an old target never becomes an entry). A second one of a role would double it, and
        one whose form and purpose disagree belongs to no position: either is cancelled."""
        st, br, roles = self.arrays.st[j], self.brackets[j], []
        for order in orders:
            if order.purpose == Purpose.REPAIR:
                roles.append("its repair (working)")  # counted in what OTrade must hold
                continue
            pos, kind, sent_as = st[L.S_POS], order.request.order_type, order.purpose
            opening = pos == 0.0 or (order.request.side == Side.BUY) == (pos > 0.0)
            if not opening and kind in (OrderType.SL, OrderType.SL_M):
                role, slot = Purpose.STOP, "stop"
            elif not opening and kind == OrderType.LIMIT:
                role, slot = Purpose.TARGET, "target"
            elif not opening and kind == OrderType.MARKET:
                role, slot = Purpose.EXIT, "exit"  # a stop or target re-priced at market is one too
            elif opening and kind in (OrderType.MARKET, OrderType.LIMIT) and not st[L.S_PEND_KIND]:
                role, slot = Purpose.ENTRY, "entry"
            else:
                role, slot = None, ""
            agrees = sent_as is None or sent_as == role or (role == Purpose.EXIT and sent_as != Purpose.ENTRY)
            # one not in the book yet may be an entry still to fill; protection is armed anew instead of the rest
            unseen = order.broker_id is None and (role != Purpose.ENTRY or pos != 0.0)
            if role is None or not agrees or unseen or getattr(br, slot) is not None:
                order.purpose = None  # cancelled; its fills are the ledger's, not a trade's
                self.broker.cancel(order.order_id)
                roles.append(f"a stray {order.request.order_type} {order.request.side} (cancelled"
                             + (" if it turns up)" if order.broker_id is None else ")"))
                continue
            setattr(br, slot, order.order_id)
            order.purpose = role
            roles.append(f"its {'market exit' if role == Purpose.EXIT else role}")
            if role == Purpose.EXIT:
                st[L.S_PEND_SIDE], st[L.S_PEND_KIND] = (-1.0 if pos > 0 else 1.0), L.ORDER_EXIT
                st[L.S_PEND_REASON] = L.REASON_FLATTEN
            elif role == Purpose.ENTRY:
                st[L.S_PEND_SIDE] = 1.0 if order.request.side == Side.BUY else -1.0
                st[L.S_PEND_KIND] = L.ORDER_ENTRY
        return roles

    def apply_position(self, j: int, qty: int, price: float) -> None:
        a = self.arrays
        adopt_position(a.st, a.pr, a.clk, j, self.now_ns(), float(qty), float(price))  # the types warm_up compiled
        a.st[j, L.S_PEND_SIDE] = a.st[j, L.S_PEND_KIND] = 0.0

    def _repair(self, j: int, order: Order, qty: int, why: str) -> None:
        """Undo ``qty`` the engine did not want filled, at market, and tell the trader."""
        side = Side.BUY if order.request.side == Side.SELL else Side.SELL
        self._send_repair(order.request.symbol, side, qty)
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{order.request.symbol}: {order.purpose or 'stray'} order {why}; sent {side} {qty} "
                           f"at market to undo the excess (until it fills, Kite holds {qty} more than OTrade, "
                           "with no working stop for them)")

    def _send_repair(self, symbol: str, side: Side, qty: int) -> None:
        request = OrderRequest(symbol, side, qty, OrderType.MARKET, tag=self._tag())
        self.journal.record("intent", purpose=str(Purpose.REPAIR), **request.__dict__)
        self.broker.submit(request, Purpose.REPAIR)

    def tend(self) -> None:
        """Live, every second: re-price exits that do not fill, send again what a repair left, re-arm
        protection whose backoff is over, take Kite's fills as the position should anything have
        left them apart, and sound the alarm for a position without a stop Kite confirmed."""
        self.reprice_exits()
        now = self.now_ns()
        for j, br in enumerate(self.brackets):
            if br.unrepaired and now >= br.repair_ns:
                side, qty = (Side.BUY if br.unrepaired > 0 else Side.SELL), abs(br.unrepaired)
                br.unrepaired = 0
                self._send_repair(self.arrays.symbols[j], side, qty)
            if br.exit_again and now >= br.exit_retry_ns and br.exit is None:
                reason, br.exit_again = br.exit_again, 0
                if self.arrays.st[j, L.S_POS]:
                    self._apply(j, flatten(self.arrays.st, self.arrays.acct, j, reason))
        held, working = self._book_view()  # each symbol below changes only its own orders
        self._watch_sight(now, held, working)
        for j, br in enumerate(self.brackets):
            symbol = self.arrays.symbols[j]
            self._keep_aligned(j, br, now, self._expected(j, held, working))
            if self.arrays.st[j, L.S_POS] and (br.stop is None or br.target is None):
                self.protection.protect(j)  # each missing leg once its own backoff is over
            self.protection.trail_hit(j)
            self.protection.held_decision(j)
            self._watch_cover(j, br, now, held.get(symbol, 0), working.get(symbol, []))

    def _keep_aligned(self, j: int, br: Bracket, now: int, expected: int) -> None:
        """Every fill moves the position as it arrives; should one ever not have (a path missed),
        the difference from Kite's fills is taken as the position once it has lasted ``ALIGN_S``."""
        if expected == int(self.arrays.st[j, L.S_POS]):
            br.apart_ns = 0
            return
        if not br.apart_ns:
            br.apart_ns = now
            return
        if now - br.apart_ns < ALIGN_S * NS:
            return
        br.apart_ns = 0
        note = self._realign(j, expected)
        if expected:
            self.protection.protect(j)
        symbol = self.arrays.symbols[j]
        self.journal.record("reconcile", note=f"{symbol}: {note}")
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{symbol}: OTrade's position differed from its fills at Kite; {note}"
                           + (", stop and target armed" if expected else ""))

    def _watch_cover(self, j: int, br: Bracket, now: int, held: int, working: list[Order]) -> None:
        """Kite's position (our fills, excess included), and what an entry whose fate is unknown may
        have added to it, must be covered by stops Kite confirmed. One that is not for ``UNCOVERED_S``
        is alerted as critical, saying why, and again every ``UNPROTECTED_REPEAT_S`` while it lasts."""
        symbol = self.arrays.symbols[j]
        covered, unsure = 0, 0
        for order in working:
            if not isinstance(order, LiveOrder):
                continue
            if order.purpose == Purpose.ENTRY and order.unsure:
                unsure += order.request.quantity - order.filled_quantity
            elif (order.request.order_type in (OrderType.SL, OrderType.SL_M) and order.state in COVERING
                  and (order.request.side == Side.SELL) == (held > 0)):
                covered += order.request.quantity - order.filled_quantity
        if covered >= abs(held) + unsure:
            br.uncovered_ns = br.unprotected_ns = 0  # a new gap is a new alarm, however soon it comes
            return
        if not br.uncovered_ns:
            br.uncovered_ns = now
        if now - br.uncovered_ns < UNCOVERED_S * NS or now - br.unprotected_ns < UNPROTECTED_REPEAT_S * NS:
            return
        br.unprotected_ns = now
        if covered >= abs(held):
            what = (f"an entry for {unsure} has had no word from Kite for {(now - br.uncovered_ns) / NS:.1f} s; "
                    "if it filled, that position has no working stop yet")
        else:
            part = f" for {abs(held) - covered} of it" if covered else ""
            what = (f"position {held:+d} at Kite has no working stop{part} for {(now - br.uncovered_ns) / NS:.1f} s "
                    f"({self._uncovered_why(j, br, held)})")
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{symbol}: {what}; OTrade keeps trying. Check Kite, or /flatten")

    def _watch_sight(self, now: int, held: dict[str, int], working: dict[str, list[Order]]) -> None:
        """While OTrade cannot see Kite's orders (ticker's order messages down, the book unanswered),
        its working orders may fill unseen (an entry, both legs of a bracket) and leave a position at
        Kite without a stop that OTrade could not know of: after ``BLIND_S`` the instruments concerned
        are alerted as critical, and again every ``UNPROTECTED_REPEAT_S`` while it lasts."""
        blind_for = getattr(self.broker, "blind_for", None)
        blind = blind_for() if blind_for is not None else 0.0
        if blind < BLIND_S:
            self._blind_alert_ns = 0
            return
        if now - self._blind_alert_ns < UNPROTECTED_REPEAT_S * NS:
            return
        symbols = [s for s in self.arrays.symbols if held.get(s) or working.get(s)]
        if not symbols:
            return
        self._blind_alert_ns = now
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{', '.join(symbols)}: OTrade has not seen Kite's orders for {blind:.1f} s (the ticker's "
                           "order messages are down and Kite's order book does not answer): fills of working orders "
                           "are unknown, so a position at Kite may have no working stop; OTrade keeps trying. "
                           "Check Kite, or /flatten")

    def _uncovered_why(self, j: int, br: Bracket, held: int) -> str:
        pos = int(self.arrays.st[j, L.S_POS])
        if held != pos:
            return f"Kite holds {held - pos:+d} that OTrade did not want; a repair is undoing it"
        exit_ = self.broker.order(br.exit) if br.exit else None
        if exit_ is not None and exit_.working:
            return "its market exit is working at Kite, unfilled, and the stop was cancelled for it"
        stop = self.broker.order(br.stop) if br.stop else None
        if stop is None or not stop.working:
            return "the stop is to be armed again"
        if isinstance(stop, LiveOrder) and stop.state not in COVERING:
            return f"Kite has not confirmed the stop ({stop.state.lower()})"
        return "the stop is being resized to the position"

    def reprice_exits(self) -> int:
        """Live: an exit, repair or stop that Kite reports as triggered or working at market, and
        that has not filled for ``risk.exit_reprice_seconds`` since Kite last said so (Kite parks
        them as limits at the protection price, which a fast move leaves behind), is re-priced at
        market. An order Kite has not acknowledged is never touched. Returns how many were."""
        now, wait_ns = self.now_ns(), int(self.cfg.risk.exit_reprice_seconds * 1e9)
        stops = {br.stop for br in self.brackets if br.stop}
        repriced = 0
        for order in self.broker.all_orders():
            if not isinstance(order, LiveOrder) or order.pending or order.reprice:
                continue
            exiting = order.purpose in (Purpose.EXIT, Purpose.REPAIR) or order.order_id in stops
            executable = order.state in (OrderState.TRIGGERED, OrderState.PARTIALLY_FILLED) or (
                order.state == OrderState.ACCEPTED and order.request.order_type == OrderType.MARKET)
            if not exiting or not executable:
                continue
            attempts, last_ns = self._repriced.get(order.order_id, (0, 0))
            if now - max(order.updated_ns, last_ns) < wait_ns:
                continue
            self.broker.reprice(order.order_id)
            self._repriced[order.order_id] = (attempts + 1, now)
            repriced += 1
            left = order.request.quantity - order.filled_quantity
            text = (f"{order.request.symbol} {order.purpose} order: {left} unfilled after "
                    f"{self.cfg.risk.exit_reprice_seconds:g} s, re-priced at market (attempt {attempts + 1})")
            self.journal.record("repriced", order_id=order.order_id, attempt=attempts + 1)
            self._publish(ALERT, critical=attempts >= 2, level="critical" if attempts >= 2 else "warning", text=text)
        return repriced
