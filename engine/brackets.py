"""The orders that protect or exit a position at the venue, kept whole for the position it holds.

Paper and live alike: a LIMIT target and an SL-M stop rest for the whole position. Live, the
broker's word moves positions: fills arrive in parts and the bracket follows the position; fills
the engine no longer wants are undone; exits that do not fill are re-priced or, when refused,
replaced by the bracket again; reconciliation adopts what an earlier run left at the broker.
"""

from dataclasses import dataclass

from config import Config
from engine import layout as L
from engine.arrays import Arrays
from engine.brokers.base import VenueProtocol
from engine.events import ALERT
from engine.fills import FillLedger
from engine.journal import Journal
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, Status, TagMaker
from engine.step import adopt_position, apply_entry_fill, apply_exit_fill, flatten


@dataclass
class Bracket:
    """The broker orders protecting or exiting one instrument's position."""

    entry: str | None = None
    target: str | None = None
    stop: str | None = None
    exit: str | None = None
    exit_refused: bool = False  # the broker refused an exit: strategy exits wait for the trader


class BracketKeeper:
    """Engine methods for the orders that protect or exit a position at the venue (a mixin: they
    work on the engine's arrays, broker, journal and bus)."""

    # what the engine provides
    arrays: Arrays
    broker: VenueProtocol
    brackets: list[Bracket]
    index: dict[str, int]
    journal: Journal
    cfg: Config
    foreign: list[str]
    _fills: FillLedger
    _repriced: dict[str, tuple[int, int]]

    def _cancel_bracket(self, br: Bracket, keep: str | None = None) -> None:
        """One-cancels-other: cancel the resting target and stop, and what is left of a partly
        filled entry, except ``keep`` (the one that filled). Their fills from now on are excess."""
        for order_id in (br.entry, br.target, br.stop):
            if order_id and order_id != keep and self.broker.order(order_id).working:
                self.broker.cancel(order_id)
        br.entry = br.target = br.stop = None

    def _broker_update(self, order: Order, qty: int, price: float) -> None:
        """Live: the broker's word moves positions, ``qty`` newly filled at ``price`` at a time."""
        j = self.index.get(order.request.symbol)
        if j is None or order.purpose == Purpose.REPAIR:
            return
        if order.purpose == Purpose.ENTRY:
            self._entry_update(j, order, qty, price)
        elif order.purpose in (Purpose.TARGET, Purpose.STOP, Purpose.EXIT):
            self._exit_update(j, order, qty, price)

    def _entry_update(self, j: int, order: Order, qty: int, price: float) -> None:
        """Each entry fill grows the position and its bracket; an entry the engine has given up on
        (exit, flatten, halt) must not grow it: its late fills are undone."""
        a, br = self.arrays, self.brackets[j]
        if order.order_id != br.entry:
            if qty:
                self._repair(j, order, qty, "filled after it was cancelled")
            return
        done = not order.working
        if done:
            br.entry = None
            if order.filled_quantity == 0:  # rejected, or cancelled outside OTrade: nothing to hold
                self._apply(j, flatten(a.st, a.acct, j, L.REASON_FLATTEN))
                return
        signed = float(qty if order.request.side == Side.BUY else -qty)
        self._apply(j, apply_entry_fill(a.st, a.pr, a.acct, a.clk, j, self.now_ns(), signed, price, done))

    def _exit_update(self, j: int, order: Order, qty: int, price: float) -> None:
        """Exit fills shrink the position; the last one closes the trade and cancels the rest. A
        fill beyond the position (both legs filled in a race) is undone at market."""
        a, br, oid = self.arrays, self.brackets[j], order.order_id
        ours = oid in (br.target, br.stop, br.exit)
        if qty:
            closing = min(qty, int(abs(a.st[j, L.S_POS]))) if ours else 0
            if closing:
                reason = {Purpose.TARGET: L.REASON_TARGET, Purpose.STOP: L.REASON_STOP}.get(
                    order.purpose, int(a.st[j, L.S_PEND_REASON]))
                act = apply_exit_fill(a.st, a.acct, a.clk, j, self.now_ns(), float(closing), price, reason)
                if act & L.ACT_EXIT_FILL:
                    self._cancel_bracket(br, keep=oid)
                self._apply(j, act)
            if qty > closing:
                self._repair(j, order, qty - closing, "both bracket legs filled")
        if ours and not order.working and a.st[j, L.S_POS] != 0.0:
            self._lost_exit(j, order)

    def _lost_exit(self, j: int, order: Order) -> None:
        """An exit order ended unfilled (refused, or cancelled outside OTrade) with the position open.
        A refused market exit restores the bracket it replaced; a lost stop or target is reported,
        not re-sent: a refusal is not retried and a cancel by the trader is the trader's call."""
        br, st = self.brackets[j], self.arrays.st[j]
        what = f"{order.request.symbol} {order.purpose} order {str(order.status).lower()}"
        why = f": {order.status_message}" if order.status_message else ""
        if order.order_id == br.exit:
            br.exit, br.exit_refused = None, True
            st[L.S_PEND_SIDE] = st[L.S_PEND_KIND] = 0.0
            self._protect(j, br)
            text = (f"{what}{why}; position {int(st[L.S_POS]):+d} still open, stop and target re-armed. "
                    "Strategy exits wait: /flatten to try again")
        else:
            if order.order_id == br.target:
                br.target = None
            else:
                br.stop = None
            text = f"{what}{why}; position {int(st[L.S_POS]):+d} is no longer fully protected"
        self._publish(ALERT, critical=True, level="critical", text=text)
        self.journal.record("exit_lost", symbol=order.request.symbol, order_id=order.order_id, text=text)

    def reconcile(self, positions: list[dict], orders: list[dict]) -> list[str]:
        """Live start, ticker reconnect or new token (after the order book's fills were applied):
        adopt our instruments' open positions from the broker, keep the stop and target orders an
        earlier run left, re-arm the missing ones. Everything else is the trader's: left alone and
        reported (returned, and shown in /status). A position OTrade holds that the broker shows flat
        is alerted, not acted on: the positions report can trail a fill, and cancelling a real
        position's stop on a stale report would be worse than a stop left resting."""
        a, notes = self.arrays, []
        working = [o for o in orders if o.get("status") in ("OPEN", "TRIGGER PENDING")]
        held = {f"{p['exchange']}:{p['tradingsymbol']}": int(p["quantity"]) for p in positions}
        for j, symbol in enumerate(a.symbols):
            pos = int(a.st[j, L.S_POS])
            if pos and not held.get(symbol):
                text = (f"{symbol}: OTrade holds {pos:+d} but Kite shows no position (closed outside OTrade?); "
                        "its stop and target still rest at Kite and would open a new position if they fill: "
                        "check Kite and cancel them there")
                notes.append(text + ", left alone")
                self._publish(ALERT, critical=True, level="critical", text=text)
        for p in positions:
            symbol, qty = f"{p['exchange']}:{p['tradingsymbol']}", int(p["quantity"])
            j = self.index.get(symbol)
            if j is None or qty == 0:
                if qty:
                    notes.append(f"{symbol}: position {qty:+d} not traded by OTrade, left alone")
                continue
            if a.st[j, L.S_POS] == qty:
                continue
            self.apply_position(j, qty, float(p["average_price"]))
            br = self.brackets[j]
            exit_side = "SELL" if qty > 0 else "BUY"
            for row in working:
                if (f"{row['exchange']}:{row['tradingsymbol']}" != symbol or row["transaction_type"] != exit_side
                        or not TagMaker.made_by_otrade(row.get("tag"))):
                    continue  # only an earlier run's own stop and target are taken over
                if row["order_type"] in ("SL", "SL-M") and br.stop is None:
                    br.stop = self.broker.adopt(row, Purpose.STOP).order_id
                elif row["order_type"] == "LIMIT" and br.target is None:
                    br.target = self.broker.adopt(row, Purpose.TARGET).order_id
            kept = [n for n, oid in (("stop", br.stop), ("target", br.target)) if oid]
            self._protect(j, br)
            notes.append(f"{symbol}: adopted position {qty:+d} @ {float(p['average_price']):.2f}"
                         + (f", kept its {' and '.join(kept)}" if kept else "") + ", bracket armed")
        adopted = {o.request.tag for o in self.broker.all_orders()}
        for row in working:
            if (row.get("tag") or f"kite-{row['order_id']}") not in adopted:
                notes.append(f"{row['exchange']}:{row['tradingsymbol']}: order {row['order_id']} "
                             f"({row['transaction_type']} {row['quantity']} {row['order_type']}) not ours, left alone")
        self.foreign = [n for n in notes if "left alone" in n]
        for note in notes:
            self.journal.record("reconcile", note=note)
        return notes

    def apply_position(self, j: int, qty: int, price: float) -> None:
        a = self.arrays
        adopt_position(a.st, a.pr, a.clk, j, self.now_ns(), float(qty), price)
        a.st[j, L.S_PEND_SIDE] = a.st[j, L.S_PEND_KIND] = 0.0

    def _protect(self, j: int, br: Bracket) -> None:
        """Rest a target and a stop for the whole open position: send the missing ones, resize the
        working ones to what the position is now (a leg keeps what it already filled)."""
        st = self.arrays.st[j]
        pos = int(abs(st[L.S_POS]))
        if pos == 0 or st[L.S_PEND_KIND] == L.ORDER_EXIT:
            return  # flat, or a market exit for all of it is on its way
        exit_side = Side.SELL if st[L.S_POS] > 0 else Side.BUY
        for name in ("target", "stop"):  # a leg that filled (undersized) or ended no longer protects
            order_id = getattr(br, name)
            if order_id and not self.broker.order(order_id).working:
                setattr(br, name, None)
        if br.target is None:
            br.target = self._send(j, exit_side, OrderType.LIMIT, Purpose.TARGET, price=float(st[L.S_TARGET]),
                                   qty=pos).order_id
        if br.stop is None:
            br.stop = self._send(j, exit_side, OrderType.SL_M, Purpose.STOP, trigger=float(st[L.S_STOP]),
                                 qty=pos).order_id
        for order_id in (br.target, br.stop):
            order = self.broker.order(order_id)
            size = self._fills.filled(order_id) + pos
            if order.working and order.request.quantity != size:
                self.broker.modify(order_id, quantity=size)
                self.journal.record("resized", order_id=order_id, quantity=size)

    def _repair(self, j: int, order: Order, qty: int, why: str) -> None:
        """Undo ``qty`` the engine did not want filled, at market, and tell the trader."""
        side = Side.BUY if order.request.side == Side.SELL else Side.SELL
        request = OrderRequest(order.request.symbol, side, qty, OrderType.MARKET, tag=self._tag())
        self.journal.record("intent", purpose=str(Purpose.REPAIR), **request.__dict__)
        self.broker.submit(request, Purpose.REPAIR)
        self._publish(ALERT, critical=True, level="critical",
                      text=f"{order.request.symbol}: {order.purpose} order {why}; sent {side} {qty} "
                           "at market to undo the excess")

    def reprice_exits(self) -> int:
        """Live: a market exit, repair or triggered stop that has not filled for
        ``risk.exit_reprice_seconds`` (Kite parks them as limits at the protection price, which a
        fast move leaves behind) is re-priced at market. Returns how many were; called every second."""
        now, wait_ns = self.now_ns(), int(self.cfg.risk.exit_reprice_seconds * 1e9)
        stops = {br.stop for br in self.brackets if br.stop}
        repriced = 0
        for order in self.broker.all_orders():
            exiting = order.purpose in (Purpose.EXIT, Purpose.REPAIR) or order.order_id in stops
            if not exiting or order.status != Status.OPEN:  # a stop is OPEN once triggered
                continue
            attempts, last_ns = self._repriced.get(order.order_id, (0, 0))
            if now - max(order.updated_ns, last_ns) < wait_ns:
                continue
            self.broker.modify(order.order_id, order_type=OrderType.MARKET)
            self._repriced[order.order_id] = (attempts + 1, now)
            repriced += 1
            left = order.request.quantity - order.filled_quantity
            text = (f"{order.request.symbol} {order.purpose} order: {left} unfilled after "
                    f"{self.cfg.risk.exit_reprice_seconds:g} s, re-priced at market (attempt {attempts + 1})")
            self.journal.record("repriced", order_id=order.order_id, attempt=attempts + 1)
            self._publish(ALERT, critical=attempts >= 2, level="critical" if attempts >= 2 else "warning", text=text)
        return repriced
