"""The venue's word moves positions: entry fills grow them, exit fills shrink them, fills nobody wants
are undone (repairs), and an exit that ends unfilled is sent again or handed back to protection.

Paper and live alike this part cancels a closed position's orders (one-cancels-other). Live, fills
arrive in parts and the kernel follows them; what protects a position, and at what level, is
``engine.live.protection``'s; order state is the order module's (``engine.live.orders``).
"""

from engine.core import layout as L
from engine.core.step import flatten
from engine.live.host import NS, Host
from engine.live.orders import LiveOrder, OrderState
from engine.live.protection import Bracket, Protection
from engine.orders import Order, OrderType, Purpose, Side


class Fills:
    def __init__(self, host: Host, protection: Protection) -> None:
        self.host = host
        self.protection = protection

    @property
    def brackets(self) -> list[Bracket]:
        return self.protection.brackets

    # --- cancelling -----------------------------------------------------------------------------
    def cancel_bracket(self, br: Bracket, keep: str | None = None, keep_late: Side | None = None) -> None:
        """One-cancels-other: cancel the resting target and stop, and what is left of a partly
        filled entry, except ``keep`` (the one that filled). Their fills from now on are excess. An
        earlier run's stops not shown by Kite yet (``late``) go too, unless they are on ``keep_late``'s
        side (the exit side of the position taken next): a stop left for no position would open one."""
        broker = self.host.broker
        late = {oid for oid in br.late if broker.order(oid).request.side != keep_late}
        for order_id in (br.entry, br.target, br.stop, *br.former, *late):
            if order_id and order_id != keep and broker.order(order_id).working:
                broker.cancel(order_id)
        for order_id in late:
            broker.order(order_id).purpose = None  # a fill of it is an excess, undone
        br.entry = br.target = br.stop = None
        br.former.clear()
        br.late -= late

    def cancel_entry_rest(self, br: Bracket) -> None:
        """What is left of a partly filled entry must not grow the position being exited."""
        if br.entry and self.host.broker.order(br.entry).working:
            self.host.broker.cancel(br.entry)
        br.entry = None

    # --- the broker's word ------------------------------------------------------------------------
    def update(self, order: Order, qty: int, price: float) -> None:
        """Live: the broker's word moves positions, ``qty`` newly filled at ``price`` at a time."""
        j = self.host.index.get(order.request.symbol)
        if j is None:
            return
        if order.purpose == Purpose.REPAIR:
            self._repair_ended(j, order)
        elif order.purpose == Purpose.ENTRY:
            self._entry(j, order, qty, price)
        elif order.purpose in (Purpose.TARGET, Purpose.STOP, Purpose.EXIT):
            self._exit(j, order, qty, price)
        elif qty:  # an earlier run's order cancelled as a duplicate, which filled first
            self.repair(j, order, qty, "filled before its cancel reached Kite")

    def _entry(self, j: int, order: Order, qty: int, price: float) -> None:
        """Each entry fill grows the position and its bracket; an entry the engine has given up on
        (exit, flatten, halt, taken for never placed) must not grow it: its late fills are undone."""
        h, br = self.host, self.brackets[j]
        a = h.arrays
        if order.order_id != br.entry:
            if qty:
                self.repair(j, order, qty, "filled after it was given up")
            return
        done = not order.working
        if done:
            br.entry = None
            if order.filled_quantity == 0:  # rejected, or cancelled outside OTrade: nothing to hold
                h.act(j, flatten(a.st, a.acct, j, L.REASON_FLATTEN))
                return
        signed = float(qty if order.request.side == Side.BUY else -qty)
        h.act(j, h.kernels.apply_entry_fill(a.st, a.pr, a.acct, a.clk, a.rows, a.links, j, h.now_ns(), signed, price,
                                            done))

    def _exit(self, j: int, order: Order, qty: int, price: float) -> None:
        """Exit fills shrink the position; the last one closes the trade and cancels the rest. A
        fill beyond the position (both legs filled in a race) is undone at market."""
        h, br, oid = self.host, self.brackets[j], order.order_id
        a = h.arrays
        if oid in br.late:
            self.protection.turned_up(j, order)
        self.protection.confirmed(j, order)
        ours = oid in (br.target, br.stop, br.exit) or oid in br.former
        if oid == br.exit and (br.target or br.stop) and isinstance(order, LiveOrder) and order.state not in (
                OrderState.SUBMITTED, OrderState.REJECTED, OrderState.DENIED):
            self.cancel_bracket(br, keep=oid)  # Kite took the exit: the legs would only double it now
        if qty:
            closing = min(qty, int(abs(a.st[j, L.S_POS]))) if ours else 0
            if closing:
                reason = {Purpose.TARGET: L.REASON_TARGET, Purpose.STOP: L.REASON_STOP}.get(
                    order.purpose, int(a.st[j, L.S_PEND_REASON]))
                act = h.kernels.apply_exit_fill(a.st, a.pr, a.acct, a.clk, a.rows, a.links, j, h.now_ns(),
                                                float(closing), price, reason)
                if act & L.ACT_EXIT_FILL:
                    self.cancel_bracket(br, keep=oid)
                h.act(j, act)
            if qty > closing:
                self.repair(j, order, qty - closing, "both bracket legs filled")
        if not order.working:
            br.former.discard(oid)
            if ours and oid != br.exit and order.filled_quantity:
                br.failures = 0  # it worked: protection is not failing
                self.protection.leg_filled(j, order)
            if ours and a.st[j, L.S_POS] != 0.0 and oid in (br.target, br.stop, br.exit):
                self._exit_lost(j, order)

    def _exit_lost(self, j: int, order: Order) -> None:
        """An exit order ended unfilled (refused, or cancelled outside OTrade) with the position open.
        A refused market exit leaves the bracket protecting (re-armed where a leg is gone); a lost stop or
        target is re-armed (``Protection.leg_lost``). Either way after a backoff once it keeps failing,
        and loudly."""
        h, br = self.host, self.brackets[j]
        st, now = h.arrays.st[j], h.now_ns()
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
        h.alert(text)
        h.journal.record("exit_lost", symbol=order.request.symbol, order_id=order.order_id, text=text)

    # --- repairs --------------------------------------------------------------------------------
    def repair(self, j: int, order: Order, qty: int, why: str) -> None:
        """Undo ``qty`` the engine did not want filled, at market, and tell the trader."""
        side = Side.BUY if order.request.side == Side.SELL else Side.SELL
        self.host.send_order(j, side, OrderType.MARKET, Purpose.REPAIR, qty=qty)
        self.host.alert(f"{order.request.symbol}: {order.purpose or 'stray'} order {why}; sent {side} {qty} "
                        f"at market to undo the excess (until it fills, Kite holds {qty} more than OTrade, "
                        "with no working stop for them)")

    def _repair_ended(self, j: int, order: Order) -> None:
        """A repair that ended short of its quantity (refused, lost, cancelled) leaves Kite apart from
        the position: what is left is sent again (``send_again``), after a backoff while it keeps failing."""
        left = order.request.quantity - order.filled_quantity
        if order.working or left <= 0:
            return
        br, now = self.brackets[j], self.host.now_ns()
        br.unrepaired += left if order.request.side == Side.BUY else -left
        lost = isinstance(order, LiveOrder) and bool(order.lost_mono)  # never reached Kite: not a refusal
        if not lost and br.repair_ns <= now:  # repairs ending together are one failure, not several
            br.repair_ns = now + br.backoff() * NS
        self.host.alert(f"{order.request.symbol}: the repair order ended {str(order.status).lower()} with {left} "
                        f"not traded ({order.status_message}); Kite holds {left} more than OTrade, with no "
                        "working stop for them: sending it again")

    def send_again(self, j: int) -> None:
        """Live, at every tend: what a repair left is sent again, and an exit that never reached Kite,
        each once its backoff is over."""
        h, br = self.host, self.brackets[j]
        now = h.now_ns()
        if br.unrepaired and now >= br.repair_ns:
            side, qty = (Side.BUY if br.unrepaired > 0 else Side.SELL), abs(br.unrepaired)
            br.unrepaired = 0
            h.send_order(j, side, OrderType.MARKET, Purpose.REPAIR, qty=qty)
        if br.exit_again and now >= br.exit_retry_ns and br.exit is None:
            reason, br.exit_again = br.exit_again, 0
            if h.arrays.st[j, L.S_POS]:
                h.act(j, flatten(h.arrays.st, h.arrays.acct, j, reason))


__all__ = ["Fills"]
