"""Protection: the one owner of what each position's stop and target should be, and of what Kite confirmed.

The kernel proposes: a bracket when an entry fills, a trailed stop (``ACT_STOP_MOVED``). This owner
decides what is sent: on the tick grid (rounded towards safety), inside the day's circuit band
(clamped, alerted once a position), a stop on the right side of the last price (one the market is
already through becomes a market exit, alerted), never looser than the stop Kite confirmed. Into the
kernel it writes back only what Kite confirmed: live, the kernel's stop is the trigger of the stop
working at Kite, its target the target's price, so it trails from, and takes as crossed, what Kite
holds. A trail Kite refuses, or never answers, leaves the kernel where it was.

Each leg backs off on its own after a refusal: a target's trouble never delays the stop, and a working
leg is resized to the position whatever the other one is doing. A stop near Kite's modification cap
is replaced by the order module (``engine.live.orders``): its successor takes the stop's role once it
works at Kite (``replaced``); one that ends unfilled before that is abandoned and the old stop keeps
protecting (``abandoned``). After a restart an adopted position's levels are Kite's working orders'
and the journal's (``adopt``), never recomputed from the entry; an earlier run's stop that Kite's book
shows only later is Kite's word on the position's stop, never cancelled for an older level (``turned_up``).

Paper: the venue confirms at once, so the kernel's levels are the venue's.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from engine.core import layout as L
from engine.core.step import flatten
from engine.live import rules
from engine.live.host import NS, Host
from engine.live.orders import AT_KITE, LiveOrder, OrderState
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60
LEGS = ("stop", "target")
CROSSED_WAIT_S = 0.9  # a decision held for a leg's fill is made anyway once Kite is silent this long
FILLING = frozenset({OrderState.TRIGGERED, OrderState.PARTIALLY_FILLED})


def _backoff(failures: int) -> int:
    """Seconds to wait before the next try after ``failures`` refusals in a row: 0, 1, 2, 4 ... 60."""
    return 0 if failures <= 1 else min(MAX_BACKOFF_S, 2 ** (failures - 2))


@dataclass
class Leg:
    """A protecting leg's refusals in a row: each leg backs off on its own."""

    failures: int = 0
    rearm_ns: int = 0  # after a refusal, it is not sent again before this

    def refused(self, now: int) -> int:
        """One more refusal: returns the seconds until the leg is armed again."""
        self.failures += 1
        wait = _backoff(self.failures)
        self.rearm_ns = now + wait * NS
        return wait


@dataclass
class Spell:
    """How long a condition has held without a break: a state that is acted on only once it lasts."""

    since_ns: int = 0

    def lasted(self, holds: bool, now: int, span_s: float) -> bool:
        """True once ``holds`` has held at every look for ``span_s`` (then a new spell begins)."""
        if not holds:
            self.since_ns = 0
            return False
        if not self.since_ns:
            self.since_ns = now
            return False
        if now - self.since_ns < span_s * NS:
            return False
        self.since_ns = 0
        return True


@dataclass
class Bracket:
    """The broker orders protecting or exiting one instrument's position, and what their levels are."""

    entry: str | None = None
    target: str | None = None
    stop: str | None = None
    exit: str | None = None
    former: set[str] = field(default_factory=set)  # legs replaced (modification cap) that may still fill
    exit_refused: bool = False  # the broker refused an exit: strategy exits wait for the trader
    failures: int = 0  # refusals in a row of this position's exits and repairs
    exit_retry_ns: int = 0  # after a refused exit, the square-off's (or loss limit's) next try
    unprotected_ns: int = 0  # when the position was last alerted as without a stop
    exit_again: int = 0  # the reason of an exit that never reached Kite: sent again after exit_retry_ns
    unrepaired: int = 0  # signed quantity a repair still has to trade (one ended short of it)
    repair_ns: int = 0  # when that repair is sent again
    uncovered_ns: int = 0  # since when the position has lacked a stop Kite confirmed for all of it
    apart: Spell = field(default_factory=Spell)  # the position has differed from what Kite's fills make it
    legs: dict[str, Leg] = field(default_factory=lambda: {name: Leg() for name in LEGS})
    wanted_stop: float | None = None  # a trail sent to Kite and not confirmed yet
    through: float | None = None  # a trail Kite refused as its market was already through it
    trailed: bool = False  # Kite confirmed a trailed stop for this position
    clamped: set[str] = field(default_factory=set)  # legs alerted as clamped into the circuit band
    floor: tuple[float, float] | None = None  # (side, trigger): the tightest stop Kite confirmed for the position
    crossed: Spell = field(default_factory=Spell)  # the last tick's decision waits for a fill Kite has not confirmed
    # an earlier run's stops for the position that Kite's book did not show at the restart (it lagged): each is
    # weighed against the position's stop when Kite shows it (``turned_up``)
    late: set[str] = field(default_factory=set)
    unpriced: int = 0  # a position only repairs still to fill would make: not taken until they fill (said once)

    def backoff(self) -> int:
        """Seconds to wait before the next exit or repair after one more refusal: 0, 1, 2, 4 ... 60."""
        self.failures += 1
        return _backoff(self.failures)

    def closed(self) -> None:
        """The position is flat: nothing of this trade's protection carries over to the next."""
        self.exit = self.target = self.stop = None
        self.exit_refused, self.exit_again = False, 0
        self.legs = {name: Leg() for name in LEGS}
        self.wanted_stop, self.through, self.trailed, self.floor = None, None, False, None
        self.clamped.clear()


class Held(Protocol):
    """What the journal says of an open position (``engine.live.restore.Held``)."""

    qty: int
    price: float
    target: float | None
    stop: float | None
    trailed: bool


class Protection:
    def __init__(self, host: Host, n: int) -> None:
        self.host = host
        self.brackets = [Bracket() for _ in range(n)]
        # row -> the journal's open position that Kite's book did not show at the restart (it lagged): its
        # levels are taken when that position's fills arrive (``protect``)
        self.awaited: dict[int, Held] = {}

    def reset(self, n: int) -> None:
        """A new instrument list: no position, nothing protecting."""
        self.brackets = [Bracket() for _ in range(n)]
        self.awaited.clear()

    # --- what is protecting -----------------------------------------------------------------
    def _working(self, order_id: str | None) -> Order | None:
        order = self.host.broker.order(order_id) if order_id else None
        return order if order is not None and order.working else None

    def stop_level(self, j: int) -> float | None:
        """Live: the trigger of the stop working at Kite (None: none works); paper: the fill model's."""
        if not self.host.live:
            return float(self.host.arrays.st[j, L.S_STOP])
        stop = self._working(self.brackets[j].stop)
        return stop.request.trigger_price if stop is not None else None

    def exiting(self, j: int) -> bool:
        """A market exit for the whole position is on its way: paper's fills at the next tick; live
        only once Kite has accepted it (until then the stop keeps protecting)."""
        if not self.host.live:
            return self.host.arrays.st[j, L.S_PEND_KIND] == L.ORDER_EXIT
        br = self.brackets[j]
        order = self.host.broker.order(br.exit) if br.exit else None
        return isinstance(order, LiveOrder) and order.working and order.state in AT_KITE

    # --- the levels sent -----------------------------------------------------------------------
    def _band(self, j: int) -> tuple[float, float] | None:
        circuits = getattr(self.host.broker, "circuits", None)
        return circuits.get(self.host.arrays.symbols[j]) if circuits else None

    def _tick(self, j: int) -> float:
        return float(self.host.arrays.pr[j, L.P_TICK])

    def _clamp(self, j: int, name: str, side: Side, level: float) -> float:
        """``level`` on the grid (towards safety) and inside the day's circuit band; a level moved into
        the band is alerted once a position and leg."""
        sell, tick = side == Side.SELL, self._tick(j)
        level = rules.snap(level, tick, up=not sell if name == "stop" else sell)  # as ``rules.on_the_grid``
        band = self._band(j)
        if band is None:
            return level
        lower, upper = band
        inside = min(max(level, rules.snap(lower, tick, up=True)), rules.snap(upper, tick, up=False))
        if inside != level:
            br = self.brackets[j]
            if name not in br.clamped:
                br.clamped.add(name)
                self.host.alert(f"{self.host.arrays.symbols[j]}: the {name} at {level:.2f} is outside the day's "
                                f"circuit band {lower:.2f}-{upper:.2f}, so Kite would refuse it: placed at "
                                f"{inside:.2f}", critical=name == "stop")
        return inside

    def _through(self, j: int, side: Side, trigger: float) -> str:
        """Why Kite would refuse a stop at ``trigger`` against the last price ('' when it would not)."""
        if not self.host.live:
            return ""
        request = OrderRequest(self.host.arrays.symbols[j], side, 1, OrderType.SL_M, trigger_price=trigger)
        return rules.trigger_problem(request, float(self.host.arrays.st[j, L.S_LTP]))

    def _exit_instead(self, j: int, problem: str) -> None:
        """A stop the market is already through: the position exits at market, loudly."""
        h = self.host
        st = h.arrays.st
        h.alert(f"{h.arrays.symbols[j]}: {problem}: exiting {int(st[j, L.S_POS]):+d} at market")
        h.act(j, flatten(st, h.arrays.acct, j, L.REASON_STOP))

    # --- the kernel proposes -------------------------------------------------------------------
    def protect(self, j: int) -> None:
        """Rest a target and a stop for the whole open position: send the missing ones (each after its
        own backoff), resize the working ones to what the position is now (a leg keeps what it already
        filled). A stop that the market is already through would be refused: the position exits at
        market instead."""
        h, br = self.host, self.brackets[j]
        st = h.arrays.st[j]
        pos = int(abs(st[L.S_POS]))
        if pos == 0 or self.exiting(j):
            return  # flat, or a market exit for all of it is on its way
        if self._arrived(j) and br.late:
            # its earlier run's stop may be further down the same read of Kite's book than its entry's row: weighed
            # first, so that no second stop is placed only to be cancelled
            asyncio.get_running_loop().call_soon(self.protect, j)
            return
        exit_side = Side.SELL if st[L.S_POS] > 0 else Side.BUY
        for name in LEGS:  # a leg that filled (undersized) or ended no longer protects
            if getattr(br, name) and self._working(getattr(br, name)) is None:
                setattr(br, name, None)
        now = h.now_ns()
        if br.stop is None and now >= br.legs["stop"].rearm_ns:
            sign = 1.0 if st[L.S_POS] > 0 else -1.0
            level = self._floored(br, float(st[L.S_STOP]), sign)
            trigger = self._clamp(j, "stop", exit_side, level) if h.live else level
            if h.live and br.floor is not None and br.floor[0] == sign and (br.floor[1] - trigger) * sign > 1e-9:
                # the stop Kite held is off the grid Kite has now (a tick size change): rounded towards the
                # price, never looser than it
                trigger = rules.snap(br.floor[1], self._tick(j), up=sign > 0)
            problem = self._through(j, exit_side, trigger)
            if problem and br.exit_refused and now < br.exit_retry_ns:
                return  # the market exit that replaces it was refused: tried again after its backoff
            if problem:
                self._exit_instead(j, f"{problem}, so Kite would refuse the stop")
                return
            br.stop = h.send_order(j, exit_side, OrderType.SL_M, Purpose.STOP, trigger=trigger, qty=pos).order_id
        if br.target is None and now >= br.legs["target"].rearm_ns:
            price = self._clamp(j, "target", exit_side, float(st[L.S_TARGET])) if h.live else float(st[L.S_TARGET])
            br.target = h.send_order(j, exit_side, OrderType.LIMIT, Purpose.TARGET, price=price, qty=pos).order_id
        for order_id in (br.stop, br.target):
            order = self._working(order_id)
            size = h.broker.filled(order_id) + pos if order is not None else 0
            if order is not None and order.wants("quantity") != size:
                h.broker.modify(order_id, quantity=size)
                h.journal.record("resized", order_id=order_id, quantity=size)

    def _arrived(self, j: int) -> bool:
        """The position the journal held at the restart, its fills shown late by Kite's book: it takes the
        journal's levels, as one adopted at the start would (never a bracket recomputed from its entry).
        True when it came now."""
        held = self.awaited.get(j)
        if held is None:
            return False
        st = self.host.arrays.st[j]
        if st[L.S_POS] != held.qty or abs(st[L.S_ENTRY_PRICE] - held.price) >= self._tick(j) / 2:
            return False  # another position (or not all of it yet)
        del self.awaited[j]
        self.adopt(j, held)
        return True

    @staticmethod
    def _floored(br: Bracket, level: float, sign: float) -> float:
        """``level``, or the tightest stop Kite confirmed for the position when that is tighter: a stop armed
        anew (the working one lost, its last trail unknown to a restarted process's kernel) never starts looser
        than one Kite held for the position."""
        if br.floor is not None and br.floor[0] == sign and (br.floor[1] - level) * sign > 0.0:
            return br.floor[1]
        return level

    def stop_moved(self, j: int) -> None:
        """The kernel trailed its stop. Paper: the venue takes it. Live: the trail is sent when it is
        tighter than the stop Kite confirmed, and the kernel stays on that confirmed stop until Kite
        confirms the new one (``confirmed``)."""
        h, br = self.host, self.brackets[j]
        st = h.arrays.st[j]
        proposed = float(st[L.S_STOP])
        if h.live and self.trail_hit(j):
            return
        if not h.live:
            h.broker.modify(br.stop, trigger_price=proposed)
            h.journal.record("stop_moved", symbol=h.arrays.symbols[j], stop=proposed)
            return
        stop = self._working(br.stop)
        if stop is None or stop.request.trigger_price is None:
            return  # no stop works: the one armed again takes the kernel's level
        confirmed, side = stop.request.trigger_price, stop.request.side
        st[L.S_STOP], st[L.S_TRAILED] = confirmed, float(br.trailed)
        level, sign = self._clamp(j, "stop", side, proposed), (1.0 if side == Side.SELL else -1.0)
        on_its_way = stop.wants("trigger_price")  # a trail sent and not confirmed yet, else Kite's
        if (level - confirmed) * sign <= 0.0 or (level - on_its_way) * sign <= 0.0:
            return  # never looser than the stop Kite confirmed, nor than the trail already on its way
        problem = self._through(j, side, level)
        if problem:
            st[L.S_TRAILED] = 1.0  # the trail is hit: the exit is the trail's
            self._exit_instead(j, f"the trailed {problem}, so Kite would refuse it")
            return
        br.wanted_stop = level
        h.broker.modify(stop.order_id, trigger_price=level)

    # --- Kite's word -------------------------------------------------------------------------
    def confirmed(self, j: int, order: Order) -> None:
        """A report of one of the position's orders: what Kite confirmed of its stop and target is
        what the kernel trades on (a confirmed trail is journaled: a restart takes it)."""
        h, br = self.host, self.brackets[j]
        if not isinstance(order, LiveOrder) or not order.working or order.state not in AT_KITE:
            return
        st = h.arrays.st[j]
        if order.order_id == br.stop and order.request.trigger_price is not None:
            trigger, sign = order.request.trigger_price, (1.0 if st[L.S_POS] > 0 else -1.0)
            br.floor = (sign, self._floored(br, trigger, sign))
            if trigger == st[L.S_STOP]:
                return
            trail = br.wanted_stop is not None and (trigger - st[L.S_STOP]) * sign > 0.0  # a trail Kite took
            st[L.S_STOP] = trigger
            if br.through is not None and (trigger - br.through) * sign >= 0.0:
                br.through = None  # Kite holds a stop at least as tight: it takes care of that level
            if br.wanted_stop is not None and (br.wanted_stop - trigger) * sign <= 0.0:
                br.wanted_stop = None
            if trail:
                br.trailed = True
                st[L.S_TRAILED] = 1.0
                h.journal.record("stop_moved", symbol=h.arrays.symbols[j], stop=trigger)
                h.journal.flush()  # written now: a process killed next must not trail from an older stop
        elif order.order_id == br.target and order.request.price is not None:
            st[L.S_TARGET] = order.request.price

    def modify_refused(self, order: LiveOrder, changes: dict, message: str) -> None:
        """Kite refused a change of a stop: it stays at the trigger Kite has, and so does the kernel.
        A trail refused because Kite's last price is already through it is a trail hit: the position
        exits at market (alerted), as the trailing stop would have made it."""
        j = self._row(order)
        if j is None or order.order_id != self.brackets[j].stop:
            return
        br, st = self.brackets[j], self.host.arrays.st[j]
        wanted, br.wanted_stop = br.wanted_stop, None
        st[L.S_STOP], st[L.S_TRAILED] = order.request.trigger_price, float(br.trailed)
        if wanted is not None and "trigger_price" in changes and self.host.broker.through_trigger(message):
            br.through = wanted  # the exchange moved first: the feed's first price through it exits
            self.trail_hit(j)

    def trail_hit(self, j: int) -> bool:
        """A trail Kite refused because its market was already through it, and the last price is
        through it too: the trailing stop is hit, so the position exits at market (alerted), as it
        would have had Kite taken the trail. True when it does."""
        h, br = self.host, self.brackets[j]
        st = h.arrays.st[j]
        pos, ltp = st[L.S_POS], float(st[L.S_LTP])
        if br.through is None or pos == 0.0 or st[L.S_PEND_KIND] == L.ORDER_EXIT or self.exiting(j):
            return False
        if (ltp - br.through) * (1.0 if pos > 0 else -1.0) > 0.0:
            return False
        level, br.through = br.through, None
        st[L.S_TRAILED] = 1.0
        self._exit_instead(j, f"the last price {ltp:.2f} is through the trailed stop {level:.2f} Kite refused "
                              "(its market was there first)")
        return True

    def held_decision(self, j: int) -> None:
        """Live, at every tend: the last tick traded through a resting leg, so its decision waits for
        that leg's fill (the kernel's ``_leg_crossed``). When Kite has not confirmed the leg triggered
        or filling a second later, the decision is made on the position as it is: an exit the strategy
        wants is not held back by a fill that may never come."""
        h, br = self.host, self.brackets[j]
        a = h.arrays
        st = a.st[j]
        pos, ltp = st[L.S_POS], float(st[L.S_LTP])
        sign = 1.0 if pos > 0 else -1.0
        leg = (br.stop if sign * (ltp - st[L.S_STOP]) <= 0.0 else
               br.target if sign * (ltp - st[L.S_TARGET]) >= 0.0 else None)
        order = h.broker.order(leg) if leg else None
        waiting = (h.live and pos != 0.0 and st[L.S_REDECIDE] == 1.0 and st[L.S_PEND_KIND] != L.ORDER_EXIT
                   and order is not None and order.working and not order.filled_quantity)
        waiting = waiting and not (isinstance(order, LiveOrder) and order.state in FILLING)
        if not br.crossed.lasted(waiting, h.now_ns(), CROSSED_WAIT_S):
            return
        act = h.kernels.decide_again(a.st, a.pr, a.acct, a.clk, a.rows, a.links, j)
        if act:
            log.info("%s: the last tick's decision made without the %s fill Kite has not confirmed",
                     a.symbols[j], order.purpose)
            h.act(j, act)

    def leg_lost(self, j: int, order: Order) -> str:
        """A stop or target ended unfilled (refused, or cancelled outside OTrade) with the position
        open: armed again, after its own backoff once it keeps failing (the other leg is not held
        back). Returns the alert's text."""
        h, br = self.host, self.brackets[j]
        name = "target" if order.order_id == br.target else "stop"
        setattr(br, name, None)
        if name == "stop" and br.wanted_stop is not None:
            # the trail it was taking ended with it, yet Kite may have taken it (its answer lost): the new stop
            # starts no looser than that trail
            sign = 1.0 if h.arrays.st[j, L.S_POS] > 0 else -1.0
            br.floor, br.wanted_stop = (sign, self._floored(br, br.wanted_stop, sign)), None
        leg = br.legs[name]
        wait = leg.refused(h.now_ns()) if order.filled_quantity == 0 else 0
        self.protect(j)
        why = f": {order.status_message}" if order.status_message else ""
        return (f"{order.request.symbol} {order.purpose} order {str(order.status).lower()}{why}; position "
                f"{int(h.arrays.st[j, L.S_POS]):+d} is not fully protected: "
                + (f"re-arming the {name} in {wait} s" if wait else f"re-arming the {name} now"))

    def leg_filled(self, j: int, order: Order) -> None:
        """A leg that filled works: its refusals are over."""
        br = self.brackets[j]
        for name in LEGS:
            if order.order_id == getattr(br, name):
                br.legs[name] = Leg()

    def _row(self, order: Order) -> int | None:
        return self.host.index.get(order.request.symbol)

    def replaced(self, old: LiveOrder, new: LiveOrder) -> None:
        """A leg near Kite's modification cap has a successor working at Kite: it takes the leg's role
        (the old one, being cancelled, may still fill), and the kernel its level."""
        j = self._row(old)
        if j is None:
            return
        br = self.brackets[j]
        names = [name for name in LEGS if getattr(br, name) == old.order_id]
        if not names:  # the position no longer wants the leg it replaces
            self.host.broker.cancel(new.order_id)
            return
        setattr(br, names[0], new.order_id)
        br.former.add(old.order_id)
        self.host.journal.record("replaced", old=old.order_id, new=new.order_id, modifications=old.modifications)
        self.confirmed(j, new)
        self.protect(j)

    def abandoned(self, old: LiveOrder, new: LiveOrder) -> None:
        """The successor of a leg near Kite's cap ended before it worked (refused, cancelled): the old
        leg keeps protecting as Kite has it, and the kernel keeps its level."""
        j = self._row(old)
        if j is None:
            return
        br = self.brackets[j]
        if br.stop == old.order_id:
            br.wanted_stop = None
        level = old.request.trigger_price if old.request.trigger_price is not None else old.request.price
        at = f" at {level:.2f}" if level is not None else ""  # a leg re-priced at market has no level
        self.host.alert(f"{old.request.symbol}: the {old.purpose} order placed to replace the one{at} "
                        f"(near Kite's {rules.MAX_MODIFICATIONS} modifications) ended "
                        f"{str(new.status).lower()}: {new.status_message or 'no reason given'}; the {old.purpose}"
                        f"{at} keeps protecting, replaced again after a wait", critical=False)

    # --- adoption ------------------------------------------------------------------------------
    def adopt(self, j: int, held: Held | None) -> None:
        """An adopted position's levels: the trigger of the stop and the price of the target working at
        Kite, else the journal's last ones for it (``held``, when it is this position); only what
        neither knows stays as the entry's bracket. A stop tighter than the entry's bracket, or one the
        journal says was trailed, stays trailed: the kernel never trails it looser."""
        h, br = self.host, self.brackets[j]
        st = h.arrays.st[j]
        pos = st[L.S_POS]
        if pos == 0.0:
            return
        if held is not None and (held.qty > 0) != (pos > 0):
            held = None
        sign = 1.0 if pos > 0 else -1.0
        journaled = held.stop if held is not None else None
        if journaled is not None:  # the last one Kite confirmed before the restart
            br.floor = (sign, self._floored(br, journaled, sign))
        for order_id in list(br.late):  # an earlier run's stop left waiting, weighed against the levels now known
            order = h.broker.order(order_id)
            if isinstance(order, LiveOrder) and order.state in AT_KITE and (order.request.side == Side.SELL) == (
                    pos > 0):
                self._weigh(j, order)
        stop, target = self._working(br.stop), self._working(br.target)
        trigger = stop.request.trigger_price if stop is not None else journaled
        price = target.request.price if target is not None else (held.target if held is not None else None)
        if trigger is not None:  # Kite's
            br.floor = (sign, self._floored(br, trigger, sign))
        if trigger is not None:
            tighter = (trigger - st[L.S_STOP]) * sign > 0.0
            br.trailed = br.trailed or tighter or bool(held is not None and held.trailed)
            st[L.S_STOP], st[L.S_TRAILED] = trigger, float(br.trailed)
        if price is not None:
            st[L.S_TARGET] = price
        if stop is not None and journaled is not None and (journaled - trigger) * sign > 0.0 \
                and not self._through(j, stop.request.side, journaled):
            # Kite's stop is looser than the last one it confirmed for this position (a book row that
            # lags, or a move lost with the process): it is brought back there
            br.wanted_stop = journaled
            h.broker.modify(stop.order_id, trigger_price=journaled)

    def turned_up(self, j: int, order: LiveOrder) -> None:
        """Kite's word on an earlier run's stop that its book did not show at the restart (``Bracket.late``).
        Shown at Kite, or filling, for the open position on its side, it is weighed (``_weigh``). A stop for no
        position would open one: cancelled (Kite's book lists orders as they came, so a position's entry fill is
        read before its stop). One that ended unfilled is forgotten."""
        h, br = self.host, self.brackets[j]
        if not order.filled_quantity and (not order.working or order.state not in AT_KITE):
            if not order.working:
                br.late.discard(order.order_id)
            return  # ended unfilled, or not at Kite yet
        pos = h.arrays.st[j, L.S_POS]
        if pos == 0.0 or (order.request.side == Side.SELL) != (pos > 0):
            br.late.discard(order.order_id)
            order.purpose = None  # a fill of it is an excess, undone
            h.broker.cancel(order.order_id)
            h.journal.record("reconcile", note=f"{order.request.symbol}: an earlier run's stop {order.order_id} "
                                               "shown late by Kite, for no position held: cancelled")
            return
        if self._weigh(j, order) and order.working:  # (a filled one closes the position: its fill is the position's)
            self.adopt(j, None)
            self.protect(j)  # sized to the position

    def _weigh(self, j: int, order: LiveOrder) -> bool:
        """An earlier run's stop Kite shows late, for the open position on its side. Its trigger is Kite's word (and
        Kite's stop may be tighter still: a row of a lagging book trails what Kite took), so it becomes the position's
        stop when it is at least as tight as the one the position has (or will have once a trail on its way is
        confirmed; with none working, the tightest Kite confirmed), which is then cancelled. A looser one waits: a
        later row may show it tighter, and behind the position's stop it only fills after it (it is cancelled with
        the position). A fill of it is the position's. True when it is the position's stop now."""
        h, br = self.host, self.brackets[j]
        sign = 1.0 if h.arrays.st[j, L.S_POS] > 0 else -1.0
        current = self._working(br.stop)
        bound = current.wants("trigger_price") if current is not None else (
            br.floor[1] if br.floor is not None and br.floor[0] == sign else None)
        trigger = order.request.trigger_price
        if not order.filled_quantity and bound is not None and (trigger is None or (trigger - bound) * sign < 0.0):
            return False
        if current is not None:  # replaced: it may still fill before its cancel reaches Kite
            br.former.add(current.order_id)
            h.broker.cancel(current.order_id)
        br.late.discard(order.order_id)
        br.stop, order.purpose, br.wanted_stop = order.order_id, Purpose.STOP, None
        h.journal.record("reconcile", note=f"{order.request.symbol}: an earlier run's stop {order.order_id} at "
                                           f"{trigger} shown late by Kite, taken as the position's stop")
        return True


__all__ = ["Bracket", "Held", "Leg", "Protection"]
