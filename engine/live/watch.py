"""The watch: what a trader must hear about, and what OTrade must do, when Kite's side goes quiet.

A position at Kite without a stop Kite confirmed for all of it, and OTrade unable to see Kite's
orders, are alerted as critical (after a short grace, then again every minute while it lasts). An
exit, repair or triggered stop that Kite parks unfilled is re-priced at market.
"""

from engine.core import layout as L
from engine.live.host import NS, Host
from engine.live.orders import LiveOrder, OrderState
from engine.live.protection import Bracket, Protection
from engine.orders import Order, OrderType, Purpose, Side

UNPROTECTED_REPEAT_S = 60  # a position still without a working stop is alerted again this often
UNCOVERED_S = 1.0  # a position is alerted once it has lacked a confirmed stop this long
BLIND_S = 1.0  # OTrade unable to see Kite's orders this long (ticker down, book unanswered) is alerted
# a stop's states in which it rests at the exchange for its quantity (a modify in flight leaves it resting)
COVERING = frozenset({OrderState.ACCEPTED, OrderState.TRIGGERED, OrderState.PENDING_UPDATE,
                      OrderState.PARTIALLY_FILLED})


class Watch:
    def __init__(self, host: Host, protection: Protection) -> None:
        self.host = host
        self.protection = protection
        self._repriced: dict[str, tuple[int, int]] = {}  # order id -> (times re-priced, when last)
        self._blind_ns = 0  # when OTrade's blindness to Kite's orders was last alerted (0: it sees them)

    @property
    def brackets(self) -> list[Bracket]:
        return self.protection.brackets

    def cover(self, j: int, br: Bracket, now: int, held: int, working: list[Order]) -> None:
        """Kite's position (our fills, excess included), and what an entry whose fate is unknown may
        have added to it, must be covered by stops Kite confirmed. One that is not for ``UNCOVERED_S``
        is alerted as critical, saying why, and again every ``UNPROTECTED_REPEAT_S`` while it lasts."""
        symbol = self.host.arrays.symbols[j]
        covered, unsure = 0, 0
        for order in working:
            if not isinstance(order, LiveOrder):
                continue
            if order.purpose == Purpose.ENTRY and order.unsure:
                unsure += order.request.quantity - order.filled_quantity
            elif (order.request.order_type in (OrderType.SL, OrderType.SL_M) and order.state in COVERING
                  and not order.cancel_wanted and (order.request.side == Side.SELL) == (held > 0)):
                # a stop OTrade is cancelling is no cover: Kite may have taken it away with the answer lost
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
        self.host.alert(f"{symbol}: {what}; OTrade keeps trying. Check Kite, or /flatten")

    def sight(self, now: int, held: dict[str, int], working: dict[str, list[Order]]) -> None:
        """While OTrade cannot see Kite's orders (ticker's order messages down, the book unanswered),
        its working orders may fill unseen (an entry, both legs of a bracket) and leave a position at
        Kite without a stop that OTrade could not know of: after ``BLIND_S`` the instruments concerned
        are alerted as critical, and again every ``UNPROTECTED_REPEAT_S`` while it lasts."""
        blind_for = getattr(self.host.broker, "blind_for", None)
        blind = blind_for() if blind_for is not None else 0.0
        if blind < BLIND_S:
            self._blind_ns = 0
            return
        if now - self._blind_ns < UNPROTECTED_REPEAT_S * NS:
            return
        symbols = [s for s in self.host.arrays.symbols if held.get(s) or working.get(s)]
        if not symbols:
            return
        self._blind_ns = now
        self.host.alert(f"{', '.join(symbols)}: OTrade has not seen Kite's orders for {blind:.1f} s (the ticker's "
                        "order messages are down and Kite's order book does not answer): fills of working orders "
                        "are unknown, so a position at Kite may have no working stop; OTrade keeps trying. "
                        "Check Kite, or /flatten")

    def _uncovered_why(self, j: int, br: Bracket, held: int) -> str:
        pos = int(self.host.arrays.st[j, L.S_POS])
        if held != pos:
            return f"Kite holds {held - pos:+d} that OTrade did not want; a repair is undoing it"
        exit_ = self.host.broker.order(br.exit) if br.exit else None
        if exit_ is not None and exit_.working:
            return "its market exit is working at Kite, unfilled, and the stop was cancelled for it"
        stop = self.host.broker.order(br.stop) if br.stop else None
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
        now, wait_ns = self.host.now_ns(), int(self.host.cfg.risk.exit_reprice_seconds * 1e9)
        stops = {br.stop for br in self.brackets if br.stop}
        repriced = 0
        for order in self.host.broker.all_orders():
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
            self.host.broker.reprice(order.order_id)
            self._repriced[order.order_id] = (attempts + 1, now)
            repriced += 1
            left = order.request.quantity - order.filled_quantity
            text = (f"{order.request.symbol} {order.purpose} order: {left} unfilled after "
                    f"{self.host.cfg.risk.exit_reprice_seconds:g} s, re-priced at market (attempt {attempts + 1})")
            self.host.journal.record("repriced", order_id=order.order_id, attempt=attempts + 1)
            self.host.alert(text, critical=attempts >= 2, level="critical" if attempts >= 2 else "warning")
        return repriced


__all__ = ["COVERING", "Watch"]
