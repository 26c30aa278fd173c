"""Reconciliation: OTrade's positions and orders against Kite's, on a live start, a reconnect, a new
token or an earlier run's orders turning up in the book.

Positions come from the fill ledger (our orders of the day), never from Kite's positions report,
which lags fills and is only checked against it. An earlier run's orders are known by OTrade's tag
and given their roles (entry, stop, target, exit, repair) by their form and the journal's intent; its
modifications are counted from the journal, so the caps and Kite's per-order limit hold across a
restart. Everything else at Kite is the trader's: left alone and reported. Between reconciliations
a position apart from its fills for a second is realigned (``keep_aligned``).
"""

import logging
from datetime import datetime

from engine.core import layout as L
from engine.core.layout import IST
from engine.core.step import adopt_position, book_entry_charges
from engine.live.fills import Fills
from engine.live.host import NS, Host
from engine.live.orders import LiveOrder
from engine.live.protection import Bracket, Protection
from engine.live.restore import Held, rebuild
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, Status, TagMaker

log = logging.getLogger(__name__)

ALIGN_S = 1.0  # a position apart from Kite's fills this long is realigned (a fill handled late is not apart)


class Reconciler:
    def __init__(self, host: Host, protection: Protection, fills: Fills) -> None:
        self.host = host
        self.protection = protection
        self.fills = fills
        self.foreign: list[str] = []  # Kite's positions and orders OTrade did not create
        # today's orders sent by any run, from the journal: read at the first look at Kite
        self._intents: dict[str, tuple[str, OrderRequest, Purpose | None, float]] | None = None

    @property
    def brackets(self) -> list[Bracket]:
        return self.protection.brackets

    def reconcile(self, positions: list[dict] | None, orders: list[dict]) -> list[str]:
        """Live start, ticker reconnect, new token, or a book read showing an earlier run's orders:
        positions come from the fill ledger (our orders of the day, adopted from the book when an
        earlier run sent them), never from the positions report, which is only checked against it
        (it lags fills; None: not read). An earlier run's stop and target are kept; missing legs are
        armed. Everything else is the trader's: left alone and reported (returned, and shown in
        /status)."""
        a, notes = self.host.arrays, []
        broker = self.host.broker
        working = [o for o in orders if o.get("status") in ("OPEN", "TRIGGER PENDING")]
        known = {o.request.tag for o in broker.all_orders()}
        fresh: list[LiveOrder] = []  # an earlier run's orders: their fills join the ledger, roles below
        journaled: dict[str, Held] = {}  # the journal's open positions and levels, taken at the first look only
        modified: dict[str, int] = {}  # the journal's modifications per order of an earlier run
        if self._intents is None:  # the first look at Kite in this process
            records = self._journal_today()
            self._intents = self._intents_of(records)
            journaled = self._journaled_positions(records)
            refused = self._refused(records)
            now_s = self.host.now_ns() / NS
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
                # one the journal saw refused (by our caps, or taken for never placed) is not at Kite: expected, a
                # repair's would count as a position nobody holds (how chaos runs adopted positions at a price of 0)
                if tag not in known | shown | refused and request.symbol in self.host.index:
                    fresh.append(broker.expect(request, purpose))  # sent, yet not in the book (it lags)
        for row in sorted(orders, key=lambda r: str(r.get("order_timestamp") or "")):
            tag = row.get("tag") or ""
            symbol = f"{row.get('exchange')}:{row.get('tradingsymbol')}"
            if tag not in known and TagMaker.made_by_otrade(tag) and symbol in self.host.index:
                intent = self._intents.get(tag)
                order = broker.adopt(row, intent[2] if intent else None)
                order.modifications = max(order.modifications, modified.get(tag, 0))  # its history's count too
                fresh.append(order)
        held = {f"{p['exchange']}:{p['tradingsymbol']}": (int(p["quantity"]), float(p["average_price"]))
                for p in positions or ()}
        ledger, working_now = self.book_view()
        for j, symbol in enumerate(a.symbols):
            ours = ledger.get(symbol, 0)
            pos = int(a.st[j, L.S_POS])
            reported = held.get(symbol, (0, 0.0))[0]
            expected = self.expected(j, ledger, working_now)
            note = self._realign(j, expected, journaled.get(symbol)) if expected != pos else ""
            if expected == 0 and journaled.get(symbol) is not None and journaled[symbol].qty:
                self.protection.awaited[j] = journaled[symbol]  # the book lags: its fills come later
            roles = self._adopt_working(j, [o for o in fresh if o.working and o.request.symbol == symbol])
            if note or roles:
                self.protection.adopt(j, journaled.get(symbol))
            armed = bool(note and expected) and int(a.st[j, L.S_POS]) == expected
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
                self.host.alert(text)
            elif reported != ours:
                notes.append(f"{symbol}: Kite's positions show {reported:+d}, OTrade's orders {ours:+d} (the report "
                             "can trail a fill; a difference that stays was made outside OTrade), left alone")
        if positions is None:
            for note in notes:
                self.host.journal.record("reconcile", note=note)
            return notes
        for p in positions:
            symbol, qty = f"{p['exchange']}:{p['tradingsymbol']}", int(p["quantity"])
            if qty and symbol not in self.host.index:
                notes.append(f"{symbol}: position {qty:+d} not traded by OTrade, left alone")
        adopted = {o.request.tag for o in broker.all_orders()}
        for row in working:
            if (row.get("tag") or f"kite-{row['order_id']}") not in adopted:
                notes.append(f"{row['exchange']}:{row['tradingsymbol']}: order {row['order_id']} "
                             f"({row['transaction_type']} {row['quantity']} {row['order_type']}) not ours, left alone")
        self.foreign = [n for n in notes if "left alone" in n]
        for note in notes:
            self.host.journal.record("reconcile", note=note)
        return notes

    def book_view(self) -> tuple[dict[str, int], dict[str, list[Order]]]:
        """In one pass over the day's orders: each symbol's position at Kite from the ledger (signed),
        and its working orders."""
        held: dict[str, int] = {}
        working: dict[str, list[Order]] = {}
        for order in self.host.broker.all_orders():
            symbol, filled = order.request.symbol, self.host.broker.filled(order.order_id)
            if filled:
                held[symbol] = held.get(symbol, 0) + (filled if order.request.side == Side.BUY else -filled)
            if order.working:
                working.setdefault(symbol, []).append(order)
        return held, working

    def expected(self, j: int, held: dict[str, int], working: dict[str, list[Order]]) -> int:
        """The position OTrade must hold: what Kite's fills of our orders make it, less what repairs
        are still to undo (a working repair's unfilled rest, and what one left to send again)."""
        symbol, undo = self.host.arrays.symbols[j], self.brackets[j].unrepaired
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
        a, br, symbol = self.host.arrays, self.brackets[j], self.host.arrays.symbols[j]
        pos = int(a.st[j, L.S_POS])
        price = journaled.price if journaled is not None and journaled.qty == qty else self._entry_price(symbol, qty)
        if qty and not price:
            # only repairs still to fill make it (one counted ahead of the excess it undoes, which a lagging book
            # does not show yet, or one bigger than the position): Kite holds none of it yet. Protected, it would
            # have orders on the wrong side of what Kite holds; priced at 0, levels nobody traded at and a P&L of
            # the whole price (a short's tripped the loss limit)
            br.unpriced = qty
            return (f"OTrade's orders at Kite would leave {qty:+d} once its repairs fill, but their fills so far "
                    f"leave no position on that side: not taken until they do ({pos:+d} held)")
        br.unpriced = 0
        levels = a.st[j, [L.S_STOP, L.S_TARGET, L.S_TRAILED]].copy() if pos * qty > 0 else None
        self.fills.cancel_bracket(br, keep_late=(Side.SELL if qty > 0 else Side.BUY) if qty else None)
        if br.exit and self.host.broker.order(br.exit).working:
            self.host.broker.cancel(br.exit)
        br.exit = None
        self._take(j, qty, price if qty else 0.0)
        if levels is not None:
            a.st[j, [L.S_STOP, L.S_TARGET, L.S_TRAILED]] = levels
        return (f"adopted position {qty:+d} @ {price:.2f}" if qty
                else f"OTrade's orders leave no position (OTrade showed {pos:+d}); flat now")

    def _journal_today(self) -> list[dict]:
        day = datetime.fromtimestamp(self.host.now_ns() / NS, IST).date().isoformat()
        try:
            return self.host.journal.read_day(day)
        except (OSError, ValueError) as exc:
            log.warning("journal unreadable (%s): an earlier run's orders get their roles from their form, "
                        "their levels from Kite's book", exc)
            return []

    def _journaled_positions(self, records: list[dict]) -> dict[str, Held]:
        """The open positions today's journal leaves, with the entry price of each one's own fills and
        the levels last journaled for it."""
        try:
            return rebuild(records, self.host.cfg.costs, frozenset()).held
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("journal's positions not understood (%s): entry prices from the fills at Kite", exc)
            return {}

    @staticmethod
    def _refused(records: list[dict]) -> set[str]:
        """Tags of the orders today's journal last saw refused: denied by our caps, taken for never placed, or
        rejected by Kite (whose book shows those)."""
        last = {r["order_id"]: r.get("status") for r in records if r.get("kind") == "order" and r.get("order_id")}
        return {tag for tag, status in last.items() if status == Status.REJECTED}

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
        sides = {o.order_id: o.request.side for o in self.host.broker.all_orders() if o.request.symbol == symbol}
        held, price = 0, 0.0
        for order_id, qty, at in self.host.broker.ledger.fills:
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
        st, br, roles = self.host.arrays.st[j], self.brackets[j], []
        for order in orders:
            if order.purpose == Purpose.REPAIR:
                roles.append("its repair (working)")  # counted in what OTrade must hold
                continue
            if order.broker_id is None and self._late_stop(j, order):
                # Kite may hold it, trailed further than the journal knows: its word, once shown, is weighed
                br.late.add(order.order_id)
                order.counted = False  # its modifications at Kite are read before it is next modified
                roles.append(f"its {order.request.order_type} {order.request.side} stop, not in Kite's book yet "
                             "(taken if it turns up at least as tight as the position's)")
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
                self.host.broker.cancel(order.order_id)
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

    def _late_stop(self, j: int, order: LiveOrder) -> bool:
        """An earlier run's order not in Kite's book yet that was sent as the stop of the position held now, or
        of the journal's position still to come (``Protection.awaited``)."""
        pos = self.host.arrays.st[j, L.S_POS]
        awaited = self.protection.awaited.get(j)
        held = pos if pos else (awaited.qty if awaited is not None else 0)
        return (order.purpose == Purpose.STOP and order.request.order_type in (OrderType.SL, OrderType.SL_M)
                and held != 0 and (order.request.side == Side.SELL) == (held > 0))

    def _take(self, j: int, qty: int, price: float) -> None:
        """``qty`` at ``price`` as the row's position (an earlier run's, or Kite's fills'), with the
        charges of its entry; no order pending."""
        a = self.host.arrays
        adopt_position(a.st, a.pr, a.clk, j, self.host.now_ns(), float(qty), float(price))  # the types warm_up compiled
        a.st[j, L.S_PEND_SIDE] = a.st[j, L.S_PEND_KIND] = 0.0
        book_entry_charges(a.st, a.acct, j)

    def keep_aligned(self, j: int, br: Bracket, now: int, expected: int) -> None:
        """Every fill moves the position as it arrives; should one ever not have (a path missed),
        the difference from Kite's fills is taken as the position once it has lasted ``ALIGN_S``."""
        if not br.apart.lasted(expected != int(self.host.arrays.st[j, L.S_POS]), now, ALIGN_S):
            return
        unpriced = br.unpriced
        note = self._realign(j, expected)
        taken = int(self.host.arrays.st[j, L.S_POS]) == expected
        if not taken and unpriced == expected:
            return  # alerted already: taken once a fill prices it
        armed = bool(expected) and taken
        if armed:
            self.protection.protect(j)
        symbol = self.host.arrays.symbols[j]
        self.host.journal.record("reconcile", note=f"{symbol}: {note}")
        self.host.alert(f"{symbol}: OTrade's position differed from its fills at Kite; {note}"
                        + (", stop and target armed" if armed else ""))


__all__ = ["ALIGN_S", "Reconciler"]
