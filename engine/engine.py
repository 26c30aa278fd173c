"""The trading engine: the tick kernel, the state machine, and the control API the chat layer uses.

Per tick the engine makes one jitted call (``step.on_tick``); Python runs only when that call
reports something to do. With the paper broker, those reports are the fill model's decisions and
the engine mirrors them into the venue as orders and fills, journals them and publishes events.
Nothing on this path awaits: the journal buffers and the bus only enqueues.
"""

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from config import Config, ConfigError
from engine import layout as L
from engine.arrays import Arrays, apply_risk, build, params, ring_size
from engine.brokers.base import BrokerError
from engine.brokers.paper import PaperBroker
from engine.events import (
    ALERT,
    CONFIG_CHANGED,
    FILL,
    ORDER_PLACED,
    ORDER_UPDATED,
    SESSION,
    STATE_CHANGED,
    TRADE_CLOSED,
    Event,
    EventBus,
)
from engine.fills import FillLedger
from engine.journal import Journal
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, Status, TagMaker
from engine.step import (
    adopt_position,
    apply_entry_fill,
    apply_exit_fill,
    cancel_entry,
    close_session,
    flatten,
    on_tick,
    start_session,
)


class State(StrEnum):
    IDLE = "IDLE"  # before the session
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # no new entries; open positions stay protected and may exit
    HALTED = "HALTED"  # kill switch: no order but a flatten until resumed
    CLOSED = "CLOSED"  # after the session


LOSS_HALT = "daily loss limit reached"
TOKEN_PAUSE = "broker token expired"


class ControlError(Exception):
    """A control request that cannot be honoured in the current state; nothing was changed."""


@dataclass
class Bracket:
    """The broker orders protecting or exiting one instrument's position."""

    entry: str | None = None
    target: str | None = None
    stop: str | None = None
    exit: str | None = None
    exit_refused: bool = False  # the broker refused an exit: strategy exits wait for the trader


class Engine:
    def __init__(self, cfg: Config, broker: PaperBroker, bus: EventBus, journal: Journal,
                 now_ns=time.time_ns) -> None:
        self.cfg = cfg
        self.arrays: Arrays = build(cfg)
        self.broker = broker
        self.bus = bus
        self.journal = journal
        self.now_ns = now_ns
        self.state = State.IDLE
        self.state_reason = ""
        self.index = {s: i for i, s in enumerate(self.arrays.symbols)}
        self.brackets = [Bracket() for _ in self.arrays.symbols]
        self.closed_trades: list[dict[str, Any]] = []
        self.foreign: list[str] = []  # broker positions and orders OTrade did not create
        self.token_ok = True  # False from a broker's TokenException until a new token
        self._tag = TagMaker()
        self._fills = FillLedger()
        self._repriced: dict[str, tuple[int, int]] = {}  # order id -> (times re-priced, when last)
        self.live = broker.name != "paper"  # a real broker fills orders; the kernel only decides
        self.arrays.acct[L.A_LIVE] = 1.0 if self.live else 0.0
        self._sync_entries()
        self.warm_up()
        broker.on_order = self._on_order

    # --- tick path --------------------------------------------------------------------------
    def on_tick(self, i: int, ts_ns: int, price: float, volume: float = 1.0) -> int:
        a = self.arrays
        act = on_tick(a.st, a.pr, a.ring, a.acct, a.clk, i, ts_ns, price, volume)
        if act > 0:
            self._handle(i, act)
        return act

    def _handle(self, i: int, act: int) -> None:
        st = self.arrays.st
        if act & L.ACT_OTHERS:
            for j in np.flatnonzero(st[:, L.S_EVENTS]):
                parked = int(st[j, L.S_EVENTS])
                st[j, L.S_EVENTS] = 0.0
                self._apply(int(j), parked)
        if act & L.ACT_NEW_SESSION:
            self._new_session()
        self._apply(i, act)
        if act & L.ACT_HALT:
            self._set_state(State.HALTED, LOSS_HALT)
            self._publish(ALERT, critical=True, level="critical",
                          text=f"Daily loss limit reached: flattening and HALTED ({self.pnl()['day']:.2f})")

    def _apply(self, j: int, act: int) -> None:
        """Mirror one row's kernel decisions into the venue, in the order they happened."""
        st, br = self.arrays.st[j], self.brackets[j]
        if act & L.ACT_EXIT_FILL:
            if not self.live:
                self._mirror_exit(j, st, br)
            self._record_trade(j, st)
        if act & L.ACT_ENTRY_FILL:
            if not self.live:
                self.broker.fill(br.entry, st[L.S_OUT_ENTRY_PRICE])
            self._protect(j, br)
        if act & L.ACT_EXIT_PART:
            self._protect(j, br)
        if act & L.ACT_STOP_MOVED:
            self.broker.modify(br.stop, trigger_price=float(st[L.S_STOP]))
            self.journal.record("stop_moved", symbol=self.arrays.symbols[j], stop=float(st[L.S_STOP]))
        if act & L.ACT_ENTRY_ORDER:
            side = Side.BUY if st[L.S_PEND_SIDE] > 0 else Side.SELL
            order = self._send(j, side, OrderType.MARKET, Purpose.ENTRY)
            if order.status == Status.REJECTED:
                self._reject_pending(j, order)
            else:
                br.entry = order.order_id
        if act & L.ACT_EXIT_ORDER:
            if br.exit_refused and st[L.S_PEND_REASON] == L.REASON_SIGNAL:
                st[L.S_PEND_SIDE] = st[L.S_PEND_KIND] = 0.0  # the same refusal again: /flatten retries
                return
            self._cancel_bracket(br)
            side = Side.BUY if st[L.S_PEND_SIDE] > 0 else Side.SELL
            br.exit = self._send(j, side, OrderType.MARKET, Purpose.EXIT, qty=int(abs(st[L.S_POS]))).order_id
        if act & L.ACT_ENTRY_CANCELLED and br.entry:
            self.broker.cancel(br.entry)
            br.entry = None

    def _mirror_exit(self, j: int, st: np.ndarray, br: Bracket) -> None:
        """Paper: the fill model closed the position; fill the venue order that did it."""
        reason = L.REASONS[int(st[L.S_OUT_REASON])]
        filled = {"target": br.target, "stop": br.stop, "trail": br.stop}.get(reason) or br.exit
        self._cancel_bracket(br, keep=filled)
        if filled is None:
            # square-off or session end: the exit is sent and filled on the same tick
            side = Side.SELL if st[L.S_OUT_EXIT_QTY] > 0 else Side.BUY
            filled = self._send(j, side, OrderType.MARKET, Purpose.EXIT, qty=int(abs(st[L.S_OUT_EXIT_QTY]))).order_id
        self.broker.fill(filled, float(st[L.S_OUT_EXIT_PRICE]))

    def _record_trade(self, j: int, st: np.ndarray) -> None:
        br = self.brackets[j]
        br.exit = br.target = br.stop = None
        br.exit_refused = False
        clk = self.arrays.clk[j]
        trade = {
            "symbol": self.arrays.symbols[j],
            "side": "long" if st[L.S_OUT_EXIT_QTY] > 0 else "short",
            "qty": int(abs(st[L.S_OUT_EXIT_QTY])),
            "entry_time_ns": int(clk[L.C_ENTRY]),
            "entry_price": float(st[L.S_OUT_EXIT_ENTRY]),
            "exit_time_ns": int(clk[L.C_EXIT]),
            "exit_price": float(st[L.S_OUT_EXIT_PRICE]),
            "exit_reason": L.REASONS[int(st[L.S_OUT_REASON])],
            "pnl": float(st[L.S_OUT_PNL]),
        }
        self.closed_trades.append(trade)
        self.journal.record("trade_closed", **trade)
        self._publish(TRADE_CLOSED, **trade)

    def _cancel_bracket(self, br: Bracket, keep: str | None = None) -> None:
        """One-cancels-other: cancel the resting target and stop, and what is left of a partly
        filled entry, except ``keep`` (the one that filled). Their fills from now on are excess."""
        for order_id in (br.entry, br.target, br.stop):
            if order_id and order_id != keep and self.broker.order(order_id).working:
                self.broker.cancel(order_id)
        br.entry = br.target = br.stop = None

    def _send(self, j: int, side: Side, kind: OrderType, purpose: Purpose, price: float | None = None,
              trigger: float | None = None, qty: int | None = None) -> Order:
        qty = int(self.arrays.pr[j, L.P_QTY]) if qty is None else qty
        request = OrderRequest(self.arrays.symbols[j], side, qty, kind, price=price, trigger_price=trigger,
                               tag=self._tag())
        self.journal.record("intent", purpose=str(purpose), **request.__dict__)
        return self.broker.submit(request, purpose)

    def _reject_pending(self, j: int, order: Order) -> None:
        flatten(self.arrays.st, self.arrays.acct, j, L.REASON_FLATTEN)
        self._publish(ALERT, critical=True, level="error",
                      text=f"{order.request.symbol} entry rejected: {order.status_message}")

    def _on_order(self, order: Order) -> None:
        data = order.to_dict()
        self.journal.record("order", **data)
        qty, price = self._fills.new(order)
        if qty:
            self._publish(FILL, last_quantity=qty, last_price=price, **data)
        else:
            kind = ORDER_PLACED if len(order.history) == 1 else ORDER_UPDATED
            self._publish(kind, critical=order.status == Status.REJECTED, **data)
        if self.live:
            self._broker_update(order, qty, price)

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
                if f"{row['exchange']}:{row['tradingsymbol']}" != symbol or row["transaction_type"] != exit_side:
                    continue
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

    def _publish(self, kind: str, critical: bool = False, **data: Any) -> None:
        self.bus.publish(Event(kind, self.now_ns(), data, critical))

    # --- state machine ----------------------------------------------------------------------
    def _set_state(self, state: State, reason: str = "") -> None:
        old, self.state, self.state_reason = self.state, state, reason
        self._sync_entries()
        if old != state:
            self.journal.record("state", old=str(old), new=str(state), reason=reason)
            self._publish(STATE_CHANGED, old=str(old), new=str(state), reason=reason)

    def _sync_entries(self) -> None:
        self.arrays.acct[L.A_ENTRIES_ALLOWED] = 1.0 if self.state == State.RUNNING else 0.0

    def _new_session(self) -> None:
        """Ticks of a new trading day arrived: the loss-limit halt was for yesterday only."""
        self.journal.record("session", event="new_day")
        self._publish(SESSION, event="open", text="New trading day: indicators and daily limits reset")
        if self.state in (State.IDLE, State.CLOSED) or (
                self.state == State.HALTED and self.state_reason == LOSS_HALT):
            self._set_state(State.RUNNING, "session open")

    def start_session(self) -> None:
        if self.state in (State.IDLE, State.CLOSED):
            if self.token_ok:
                self._set_state(State.RUNNING, "session open")
            else:
                self._set_state(State.PAUSED, TOKEN_PAUSE)

    def end_session(self) -> None:
        """Session close: whatever is still open exits at its last price."""
        a = self.arrays
        for j in range(len(a.symbols)):
            act = close_session(a.st, a.acct, a.clk, j)
            if act:
                self._apply(j, act)
        if self.state != State.HALTED:
            self._set_state(State.CLOSED, "session closed")

    def alert(self, text: str, critical: bool = True) -> None:
        self._publish(ALERT, critical=critical, level="critical" if critical else "info", text=text)

    def token_expired(self, message: str) -> None:
        """The broker refused our session: no new entries until a new token; protection stays."""
        self.token_ok = False
        if self.state == State.RUNNING:
            self._set_state(State.PAUSED, TOKEN_PAUSE)
        self._publish(ALERT, critical=True, level="critical",
                      text=f"Broker session expired ({message}). New entries paused; send /login.")

    def token_renewed(self) -> None:
        self.token_ok = True
        if self.state == State.PAUSED and self.state_reason == TOKEN_PAUSE:
            self.resume()

    def pause(self, reason: str = "") -> None:
        if self.state != State.RUNNING:
            raise ControlError(f"cannot pause: engine is {self.state}")
        self._set_state(State.PAUSED, reason or "paused")

    def resume(self) -> None:
        if self.state not in (State.PAUSED, State.HALTED):
            raise ControlError(f"cannot resume: engine is {self.state}")
        self.arrays.acct[L.A_HALTED] = 0.0
        self._set_state(State.RUNNING, "resumed")

    def halt(self, reason: str = "") -> None:
        """Kill switch: cancel working entries, refuse every new order but a flatten."""
        a = self.arrays
        for j in range(len(a.symbols)):
            self._apply(j, cancel_entry(a.st, a.acct, j))
        self._set_state(State.HALTED, reason or "halted")

    def flatten(self, reason: int = L.REASON_FLATTEN) -> int:
        """Market exits for every open position (filled at the next tick); returns how many."""
        a, sent = self.arrays, 0
        for j in range(len(a.symbols)):
            act = flatten(a.st, a.acct, j, reason)
            sent += bool(act & L.ACT_EXIT_ORDER)
            self._apply(j, act)
        self.journal.record("flatten", positions=sent, reason=L.REASONS[reason])
        return sent

    def square_off(self) -> int:
        """The scheduled square-off: positions still open (no tick came since) exit at market."""
        return self.flatten(L.REASON_SQUARE_OFF)

    def set_session_window(self, open_: datetime, close: datetime, square_off: datetime) -> None:
        """Today's window (special sessions such as Muhurat trading differ from the config's)."""
        def after_midnight(t: datetime) -> float:
            t = t.astimezone(L.IST)
            return float(((t.hour * 60 + t.minute) * 60 + t.second) * L.NS_PER_S)

        pr = self.arrays.pr
        pr[:, L.P_OPEN_NS] = after_midnight(open_)
        pr[:, L.P_CLOSE_NS] = after_midnight(close)
        pr[:, L.P_SQUARE_OFF_NS] = after_midnight(square_off)

    def warm_up(self) -> None:
        """Run every kernel once on scratch copies, so no compile or cache load happens on a tick."""
        a = self.arrays
        st, acct, clk, ring = a.st.copy(), a.acct.copy(), a.clk.copy(), a.ring.copy()
        now = self.now_ns()
        on_tick(st, a.pr, ring, acct, clk, 0, now, 1.0, 1.0)
        apply_entry_fill(st, a.pr, acct, clk, 0, now, 1.0, 1.0, True)
        apply_exit_fill(st, acct, clk, 0, now, 1.0, 1.0, L.REASON_FLATTEN)
        cancel_entry(st, acct, 0)
        flatten(st, acct, 0, L.REASON_FLATTEN)
        close_session(st, acct, clk, 0)

    def _same_shape(self, cfg: Config) -> bool:
        return ([(i.symbol, i.strategy.kind) for i in cfg.instruments]
                == [(i.symbol, i.strategy.kind) for i in self.cfg.instruments])

    def check_config(self, cfg: Config) -> None:
        """Veto for the config manager: instrument lists and strategy kinds change only when flat."""
        if not self._same_shape(cfg) and not self._flat():
            raise ConfigError(["instruments: symbols and strategy kinds can change only with no open position "
                               "or pending order (/flatten first)"])

    def apply_config(self, cfg: Config) -> None:
        """Take a validated config live from the next tick."""
        self.check_config(cfg)
        a = self.arrays
        if self._same_shape(cfg):
            new_pr = params(cfg)
            # A changed rolling window invalidates that instrument's running sums: start them over.
            changed = (new_pr[:, L.P_S0:] != a.pr[:, L.P_S0:]).any(axis=1)
            a.st[changed, L.S_STD:L.S_STD + 5] = 0.0
            a.pr[:] = new_pr
            if a.ring.shape[1] < ring_size(cfg):
                a.ring = np.zeros((len(a.symbols), ring_size(cfg)))
            apply_risk(a.acct, cfg)
        else:
            acct = a.acct.copy()
            self.arrays = build(cfg)
            self.arrays.acct[: L.A_MAX_LOSS] = acct[: L.A_MAX_LOSS]
            for j in range(len(self.arrays.symbols)):
                start_session(self.arrays.st, j, acct[L.A_DAY])
            self.index = {s: i for i, s in enumerate(self.arrays.symbols)}
            self.brackets = [Bracket() for _ in self.arrays.symbols]
            self.broker.tick_sizes = {i.symbol: i.tick_size for i in cfg.instruments}
        self.cfg = cfg
        self._sync_entries()
        self.journal.record("config_applied", config=cfg.model_dump(mode="json"))
        self._publish(CONFIG_CHANGED)

    def _flat(self) -> bool:
        st = self.arrays.st
        return not (st[:, L.S_POS].any() or st[:, L.S_PEND_KIND].any())

    # --- control API: plain data for any transport ------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        a, out = self.arrays, []
        for j, symbol in enumerate(a.symbols):
            st = a.st[j]
            if st[L.S_POS] != 0.0:
                out.append({"symbol": symbol, "qty": int(st[L.S_POS]),
                            "entry_price": float(st[L.S_ENTRY_PRICE]),
                            "ltp": float(st[L.S_LTP]), "unrealised": float(st[L.S_UNREAL]),
                            "target": float(st[L.S_TARGET]), "stop": float(st[L.S_STOP]),
                            "trailing": bool(st[L.S_TRAILED])})
        return out

    def orders(self, working_only: bool = True) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.broker.all_orders() if o.working or not working_only]

    def trades(self) -> list[dict[str, Any]]:
        return list(self.closed_trades)

    def pnl(self) -> dict[str, Any]:
        acct, st = self.arrays.acct, self.arrays.st
        return {
            "realised": float(acct[L.A_REALISED]),
            "unrealised": float(acct[L.A_UNREAL]),
            "day": float(acct[L.A_REALISED] + acct[L.A_UNREAL]),
            "by_symbol": {s: float(st[j, L.S_REALISED] + st[j, L.S_UNREAL])
                          for j, s in enumerate(self.arrays.symbols)},
        }

    def risk(self) -> dict[str, Any]:
        acct, r = self.arrays.acct, self.cfg.risk
        return {"max_daily_loss": r.max_daily_loss, "day_pnl": self.pnl()["day"],
                "trades_today": int(acct[L.A_TRADES]), "max_trades_per_day": r.max_trades_per_day,
                "max_orders_per_second": r.max_orders_per_second, "max_quantity": r.max_quantity}

    def status(self) -> dict[str, Any]:
        now, a = self.now_ns(), self.arrays
        instruments = []
        for j, symbol in enumerate(a.symbols):
            ltp, ltp_ns = a.st[j, L.S_LTP], int(a.clk[j, L.C_LTP])
            instruments.append({
                "symbol": symbol,
                "ltp": None if np.isnan(ltp) else float(ltp),
                "ltp_age_s": (now - ltp_ns) / 1e9 if ltp_ns else None,
                "position": int(a.st[j, L.S_POS]),
                "open_orders": sum(1 for o in self.broker.all_orders()
                                   if o.working and o.request.symbol == symbol),
                "day_pnl": float(a.st[j, L.S_REALISED] + a.st[j, L.S_UNREAL]),
            })
        return {"state": str(self.state), "reason": self.state_reason, "broker": self.broker.name,
                "instruments": instruments, "pnl": self.pnl(), "risk": self.risk(), "foreign": list(self.foreign)}


__all__ = ["BrokerError", "ControlError", "Engine", "State"]
