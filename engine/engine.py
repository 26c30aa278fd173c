"""The trading engine: the tick kernel, the state machine, and the control API the chat layer uses.

Per tick the engine makes one jitted call (``step.on_tick`` as ``engine.strategies.compiled`` compiled it
for the configured strategies); Python runs only when that call reports something to do. With the
paper broker, those reports are the fill model's decisions and the engine mirrors them into the venue
as orders and fills, journals them and publishes events.
Nothing on this path awaits: the journal buffers and the bus only enqueues.
"""

import logging
import time
from collections.abc import Callable, Collection
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from config import Config, ConfigError
from engine.arrays import Arrays, build, catch_up, reconfigured, same_shape
from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.core.indicators import NEED
from engine.core.step import adopt_position, book_entry_charges, cancel_entry, close_session, flatten, start_session
from engine.data.ticks import Ticks
from engine.live.fills import Fills
from engine.live.protection import Bracket, Protection
from engine.live.reconcile import Reconciler
from engine.live.restore import DayBook, rebuild
from engine.live.venue import BrokerError
from engine.live.watch import Watch
from engine.orders import Order, OrderRequest, OrderType, Purpose, Side, Status, TagMaker
from engine.services.events import (
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
from engine.services.journal import Journal
from engine.strategies.compiled import Kernels, kernels_for

log = logging.getLogger(__name__)


class State(StrEnum):
    IDLE = "IDLE"  # before the session
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # no new entries; open positions stay protected and may exit
    HALTED = "HALTED"  # kill switch: no order but a flatten until resumed
    CLOSED = "CLOSED"  # after the session


LOSS_HALT = "daily loss limit reached"
TOKEN_PAUSE = "broker token expired"
STOPPING = "process stopping"
STALE = "feed stalled"
TRANSIENT_PAUSES = frozenset({TOKEN_PAUSE, STOPPING, STALE})  # the running process finds these out again
# how often live tend() runs: its alarms and re-tries are timed in seconds, and a coarser beat would add up
# to a beat to each (an uncovered position alerted 2 s late at a 1 s beat); ~10 us a call for a few instruments
TEND_S = 0.2


class ControlError(Exception):
    """A control request that cannot be honoured in the current state; nothing was changed."""


# What a reconcile that adopts a position and arms its stop calls (the reconciler, the protection): a
# live start compiles these before it, everything else once the stops are on their way (engine.runtime.app).
RECONCILE_KERNELS = ("adopt_position", "book_entry_charges", "flatten")
# What only a real broker's fills call (engine.live.fills, the protection's decision made again): paper skips them.
LIVE_ONLY_KERNELS = ("apply_entry_fill", "apply_exit_fill", "decide_again")


def warm_kernels(a: Arrays, now: int, only: Collection[str] | None = None,
                 skip: Collection[str] = ()) -> dict[str, float]:
    """Call every kernel the live engine calls (or ``only`` those named), but those to ``skip``, once,
    on scratch copies of ``a`` and with the argument types of its call sites: each is compiled, or
    loaded from Numba's cache (those that reach a strategy as compiled for ``a``'s, ``kernels_for``).
    Returns each one's seconds, in calling order: the kernels of a reconcile, a fill and the protection
    first, the tick's last. ValueError for a name that is not one of them."""
    st, acct, clk, rows, links = a.st.copy(), a.acct.copy(), a.clk.copy(), a.rows.copy(), a.links.copy()
    k = kernels_for(a.strategies)
    k.bind(a.strategies, links)
    t = Ticks(np.array([now]), np.ones(1), np.ones(1), np.zeros(1), a.symbols)  # a restart's warm-up's types
    calls = {
        "adopt_position": lambda: adopt_position(st, a.pr, clk, 0, now, 1.0, 1.0),
        "book_entry_charges": lambda: book_entry_charges(st, acct, 0),
        "flatten": lambda: flatten(st, acct, 0, L.REASON_FLATTEN),
        "apply_entry_fill": lambda: k.apply_entry_fill(st, a.pr, acct, clk, rows, links, 0, now, 1.0, 1.0, True),
        "apply_exit_fill": lambda: k.apply_exit_fill(st, a.pr, acct, clk, rows, links, 0, now, 1.0, 1.0,
                                                     L.REASON_FLATTEN),
        "cancel_entry": lambda: cancel_entry(st, acct, 0),
        "decide_again": lambda: k.decide_again(st, a.pr, acct, clk, rows, links, 0),
        "start_session": lambda: start_session(st, a.pr, rows, 0, 0.0),
        "close_session": lambda: close_session(st, acct, clk, 0),
        "end_bar": lambda: k.end_bar(st, a.pr, rows, links, 0),
        "on_tick": lambda: k.on_tick(st, a.pr, acct, clk, rows, links, 0, now, 1.0, 1.0),
        "warm": lambda: k.warm(t.ts, t.price, t.volume, t.instr, st, a.pr, clk, rows, links, False),
    }
    if unknown := sorted((set(only or ()) | set(skip)) - calls.keys()):
        raise ValueError(f"no kernel {', '.join(unknown)}; the live engine's are {', '.join(calls)}")
    took = {}
    for name, call in calls.items():
        if (only is None or name in only) and name not in skip:
            began = time.perf_counter()
            call()
            took[name] = time.perf_counter() - began
    return took


class Engine:
    """The kernel's decisions carried out at the venue, and the control API. Live, its parts each own
    one concern and see the engine only as ``engine.live.host.Host``: ``protection`` (each position's
    stop and target, at the levels Kite confirmed), ``fills`` (the venue's fills move positions; repairs
    and lost exits), ``reconciler`` (OTrade against Kite's book), ``watch`` (alarms and re-pricing) and
    ``days`` (today from the journal)."""

    def __init__(self, cfg: Config, broker: PaperBroker, bus: EventBus, journal: Journal,
                 now_ns=time.time_ns, compile_kernels: bool = True) -> None:
        self.cfg = cfg
        self.arrays: Arrays = build(cfg)
        self.kernels: Kernels = self._bound_kernels()
        self.broker = broker
        self.bus = bus
        self.journal = journal
        self.now_ns = now_ns
        self.state = State.IDLE
        self.state_reason = ""
        self.index = {s: i for i, s in enumerate(self.arrays.symbols)}
        self.protection = Protection(self, len(self.arrays.symbols))
        self.fills = Fills(self, self.protection)
        self.reconciler = Reconciler(self, self.protection, self.fills)
        self.watch = Watch(self, self.protection)
        self.days = DayBook(self, self.protection)
        self.closed_trades: list[dict[str, Any]] = []
        self.token_ok = True  # False from a broker's TokenException until a new token
        self._tag = TagMaker()
        self._tick_sizes: dict[str, float] = {}  # the broker's tick sizes, over the config's
        self._window: tuple[float, float, float] | None = None  # the session window set, over the config's
        # [from, until) ns: the IST day a tick must be of to reach the kernel (``trade_only``); any day by default
        self._from_ns, self._until_ns = -(2**63), 2**63 - 1
        self._expected: tuple[int, int, Callable[[], None]] | None = None  # the planned session: expect_session
        self.live = broker.name != "paper"  # a real broker fills orders; the kernel only decides
        self.arrays.acct[L.A_LIVE] = 1.0 if self.live else 0.0
        self._sync_entries()
        if compile_kernels:  # else the caller's ``warm_up``s, before the first tick (a live start's in two steps)
            self.warm_up()
        broker.on_order = self._on_order
        if self.live:
            broker.tags = self._tag
            broker.on_replaced = self.protection.replaced
            broker.on_abandoned = self.protection.abandoned
            broker.on_modify_refused = self.protection.modify_refused
            broker.on_unknown = lambda rows: self.reconcile(None, rows)

    @property
    def brackets(self) -> list[Bracket]:
        return self.protection.brackets

    def _bound_kernels(self) -> Kernels:
        """The kernels compiled for the arrays' strategies, each row told which is its own (new links
        come with every config change)."""
        kernels = kernels_for(self.arrays.strategies)
        kernels.bind(self.arrays.strategies, self.arrays.links)
        return kernels

    # --- tick path --------------------------------------------------------------------------
    def on_tick(self, i: int, ts_ns: int, price: float, volume: float = 1.0) -> int:
        a = self.arrays
        if not 0 <= i < len(a.symbols):  # the kernel writes row i unchecked
            raise IndexError(f"instrument row {i} out of range ({len(a.symbols)} instruments)")
        if not self._from_ns <= ts_ns < self._until_ns and not self._opens_on(ts_ns):
            # a day the calendar has not opened: its price only
            a.st[i, L.S_LTP] = price
            a.clk[i, L.C_LTP] = ts_ns
            return L.ACT_IGNORED
        act = self.kernels.on_tick(a.st, a.pr, a.acct, a.clk, a.rows, a.links, i, ts_ns, price, volume)
        if act > 0:
            try:
                self._handle(i, act)
            except Exception as exc:  # never into the feed: logged, alerted, the instrument's entries paused
                self.fault(i, exc, "tick")
        return act

    def fault(self, j: int | None, exc: BaseException, where: str) -> None:
        """An exception on the tick or order-update path: logged with its traceback, alerted as
        critical, and no new entries on that instrument until /resume; protection stays."""
        symbol = self.arrays.symbols[j] if j is not None and 0 <= j < len(self.arrays.symbols) else None
        log.error("fault on the %s path%s", where, f" of {symbol}" if symbol else "", exc_info=exc)
        if symbol:
            self.arrays.st[j, L.S_BLOCKED] = 1.0
        self._publish(ALERT, critical=True, level="critical",
                      text=f"Internal fault on the {where} path ({type(exc).__name__}: {exc})"
                           + (f": new {symbol} entries paused until /resume" if symbol else ""))

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
                          text=f"Daily loss limit reached: flattening and HALTED (net {self.pnl()['net']:.2f})")

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
            self.protection.protect(j)
        if act & L.ACT_EXIT_PART:
            self.protection.protect(j)
        if act & L.ACT_STOP_MOVED:
            self.protection.stop_moved(j)
        if act & L.ACT_ENTRY_ORDER:
            side = Side.BUY if st[L.S_PEND_SIDE] > 0 else Side.SELL
            order = self.send_order(j, side, OrderType.MARKET, Purpose.ENTRY)
            if order.status == Status.REJECTED:
                self._reject_pending(j, order)
            else:
                br.entry = order.order_id
        if act & L.ACT_EXIT_ORDER:
            reason = st[L.S_PEND_REASON]
            if br.exit_refused and (reason == L.REASON_SIGNAL or (
                    reason != L.REASON_FLATTEN and self.now_ns() < br.exit_retry_ns)):
                # after a refusal: the strategy waits for /flatten, the square-off for its backoff
                st[L.S_PEND_SIDE] = st[L.S_PEND_KIND] = 0.0
                return
            if self.live:  # the stop keeps protecting until Kite has accepted the exit
                self.fills.cancel_entry_rest(br)
            else:
                self.fills.cancel_bracket(br)
            side = Side.BUY if st[L.S_PEND_SIDE] > 0 else Side.SELL
            br.exit = self.send_order(j, side, OrderType.MARKET, Purpose.EXIT, qty=int(abs(st[L.S_POS]))).order_id
        if act & L.ACT_ENTRY_CANCELLED and br.entry:
            self.broker.cancel(br.entry)
            br.entry = None

    def _mirror_exit(self, j: int, st: np.ndarray, br: Bracket) -> None:
        """Paper: the fill model closed the position; fill the venue order that did it."""
        reason = L.REASONS[int(st[L.S_OUT_REASON])]
        filled = {"target": br.target, "stop": br.stop, "trail": br.stop}.get(reason) or br.exit
        self.fills.cancel_bracket(br, keep=filled)
        if filled is None:
            # square-off or session end: the exit is sent and filled on the same tick
            side = Side.SELL if st[L.S_OUT_EXIT_QTY] > 0 else Side.BUY
            filled = self.send_order(j, side, OrderType.MARKET, Purpose.EXIT,
                                     qty=int(abs(st[L.S_OUT_EXIT_QTY]))).order_id
        self.broker.fill(filled, float(st[L.S_OUT_EXIT_PRICE]))

    def _record_trade(self, j: int, st: np.ndarray) -> None:
        self.brackets[j].closed()
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
            "pnl": float(st[L.S_OUT_PNL]),  # gross
            "charges": float(st[L.S_OUT_CHARGES]),
            "net_pnl": float(st[L.S_OUT_PNL] - st[L.S_OUT_CHARGES]),
        }
        self.closed_trades.append(trade)
        self.journal.record("trade_closed", **trade)
        self._publish(TRADE_CLOSED, **trade)

    def send_order(self, j: int, side: Side, kind: OrderType, purpose: Purpose, price: float | None = None,
                   trigger: float | None = None, qty: int | None = None) -> Order:
        """Journal the intent, then hand the order to the venue (``qty`` None: the instrument's)."""
        qty = int(self.arrays.pr[j, L.P_QTY]) if qty is None else qty
        request = OrderRequest(self.arrays.symbols[j], side, qty, kind, price=price, trigger_price=trigger,
                               tag=self._tag())
        self.journal.record("intent", purpose=str(purpose), **request.__dict__)
        return self.broker.submit(request, purpose)

    def act(self, j: int, act: int) -> None:
        """Carry out row ``j``'s kernel decisions ``act`` (a kernel call made outside the tick)."""
        self._apply(j, act)

    def _reject_pending(self, j: int, order: Order) -> None:
        flatten(self.arrays.st, self.arrays.acct, j, L.REASON_FLATTEN)
        self._publish(ALERT, critical=True, level="error",
                      text=f"{order.request.symbol} entry rejected: {order.status_message}")

    def _on_order(self, order: Order, qty: int, price: float) -> None:
        try:
            self._order_changed(order, qty, price)
        except Exception as exc:  # never into the broker's update path
            self.fault(self.index.get(order.request.symbol), exc, "order update")

    def _order_changed(self, order: Order, qty: int, price: float) -> None:
        data = order.to_dict()
        if qty:  # the fill's own time (paper: its tick's), which a restart gives the position it opened
            j = self.index.get(order.request.symbol)
            data["fill_ns"] = int(self.arrays.clk[j, L.C_LTP]) if j is not None and not self.live else self.now_ns()
        self.journal.record("order", **data)
        if qty:
            self._publish(FILL, last_quantity=qty, last_price=price, **data)
        else:
            kind = ORDER_PLACED if len(order.history) == 1 else ORDER_UPDATED
            self._publish(kind, critical=order.status == Status.REJECTED, **data)
        if self.live:
            self.fills.update(order, qty, price)

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

    def trade_only(self, day: date | None) -> None:
        """The calendar's word on which day trades: a tick of any other IST day (None: of every day)
        reaches the kernel no more, so it neither opens a session nor trades; it only sets the price
        ``/status`` shows. Never called, every day with ticks in the session window trades (backtests,
        replays). The scheduler calls it with each session's day as it opens."""
        if day is None:
            self._from_ns = self._until_ns = 0
        else:
            self._from_ns = (day - date(1970, 1, 1)).days * L.NS_PER_DAY - L.IST_OFFSET_NS
            self._until_ns = self._from_ns + L.NS_PER_DAY

    def expect_session(self, open_: datetime, close: datetime, opens: Callable[[], None]) -> None:
        """The calendar's next session, ``open_`` to ``close``, opened by calling ``opens``: a tick inside it
        that comes before its open has run (a restart joining it late, whose ticker streams before the
        scheduler's job runs; an exchange clock a little ahead of this one) opens it, so the kernel trades
        the session from the same first tick as a backtest of the recording does."""
        self._expected = (int(open_.timestamp() * L.NS_PER_S), int(close.timestamp() * L.NS_PER_S), opens)

    def _opens_on(self, ts_ns: int) -> bool:
        if self._expected is None or not self._expected[0] <= ts_ns < self._expected[1]:
            return False
        opens = self._expected[2]
        self._expected = None
        opens()
        return self._from_ns <= ts_ns < self._until_ns

    def start_session(self) -> None:
        if self.state in (State.IDLE, State.CLOSED):
            if self.token_ok:
                self._set_state(State.RUNNING, "session open")
            else:
                self._set_state(State.PAUSED, TOKEN_PAUSE)

    def end_session(self) -> None:
        """Session close: whatever is still open exits at its last price; the last bars close."""
        a = self.arrays
        for j in range(len(a.symbols)):
            act = close_session(a.st, a.acct, a.clk, j)
            if act:
                self._apply(j, act)
            self.kernels.end_bar(a.st, a.pr, a.rows, a.links, j)
        if self.state != State.HALTED:
            self._set_state(State.CLOSED, "session closed")

    def alert(self, text: str, critical: bool = True, level: str | None = None) -> None:
        self._publish(ALERT, critical=critical, level=level or ("critical" if critical else "info"), text=text)

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
        self.arrays.st[:, L.S_BLOCKED] = 0.0
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
            self.brackets[j].repair_ns = 0  # an excess still to undo goes now too, whatever its backoff
        self.journal.record("flatten", positions=sent, reason=L.REASONS[reason])
        return sent

    def square_off(self) -> int:
        """The scheduled square-off: positions still open (no tick came since) exit at market."""
        return self.flatten(L.REASON_SQUARE_OFF)

    def set_session_window(self, open_: datetime, close: datetime, square_off: datetime) -> None:
        """Today's window from the calendar (special sessions such as Muhurat trading differ from the
        config's), kept over config changes: a change of the config's times comes back through here."""
        def after_midnight(t: datetime) -> float:
            t = t.astimezone(L.IST)
            return float(((t.hour * 60 + t.minute) * 60 + t.second) * L.NS_PER_S)

        self._window = (after_midnight(open_), after_midnight(close), after_midnight(square_off))
        self._use_window()

    def _use_window(self) -> None:
        if self._window is not None:
            self.arrays.pr[:, [L.P_OPEN_NS, L.P_CLOSE_NS, L.P_SQUARE_OFF_NS]] = self._window

    def warm_up(self, only: Collection[str] | None = None) -> dict[str, float]:
        """Run every kernel this engine calls (or ``only`` those named) once, so that no compile or
        cache load ever happens while it trades: a compile holds the event loop for seconds (on a fresh
        install, where the cache is empty), and with it every stop still to be sent. Returns each
        kernel's seconds (``warm_kernels``)."""
        return warm_kernels(self.arrays, self.now_ns(), only, () if self.live else LIVE_ONLY_KERNELS)

    def warm_strategies(self, ticks: Ticks) -> int:
        """Earlier sessions' recorded ticks into the strategies' bars and indicators, no order, so
        candle strategies trade from the open with their indicators carried over, as in a backtest
        run across those days. Before the first tick of the day only. Returns the bars fed."""
        a = self.arrays
        if ticks.symbols != a.symbols or not len(ticks) or a.acct[L.A_DAY] != -1.0:
            return 0
        # those sessions ended flat: a position a live start's reconcile adopted first is today's, not theirs
        held = a.st[:, L.S_POS].copy()
        a.st[:, L.S_POS] = 0.0
        try:
            return int(self.kernels.warm(ticks.ts, ticks.price, ticks.volume, ticks.instr, a.st, a.pr, a.clk, a.rows,
                                         a.links, False))
        finally:
            a.st[:, L.S_POS] = held

    def catch_up(self, ticks: Ticks) -> int:
        """Today's ticks before this start (an earlier run's recording, or the synthetic market's) into
        the strategies, the session left under way with its forming bar open: the indicators are the
        ones a process running since the open would have, as in the backtest of the day, and a restart
        changes nothing the strategy does (``arrays.catch_up``). Before the first live tick only.
        Returns the bars fed."""
        if ticks.symbols != self.arrays.symbols:
            return 0
        return catch_up(self.arrays, self.days.day_number(), ticks.ts, ticks.price, ticks.volume, ticks.instr,
                        self.kernels.warm)

    def check_config(self, cfg: Config) -> None:
        """Veto for the config manager: instrument lists and strategy kinds change only when flat."""
        if not same_shape(self.cfg, cfg) and not self._flat():
            busy = sorted({s for j, s in enumerate(self.arrays.symbols) if self.arrays.st[j, L.S_POS]
                           or self.arrays.st[j, L.S_PEND_KIND]} | {o.request.symbol for o in self.broker.all_orders()
                                                                   if o.working})
            raise ConfigError([f"instruments: symbols and strategy kinds can change only with no open position "
                               f"or working order ({', '.join(busy)} busy: /flatten first)"])

    def set_tick_sizes(self, sizes: dict[str, float]) -> None:
        """The broker's tick sizes (Kite's instruments file of the day) over the configured ones, for
        the kernel's bracket levels and the venue's checks alike, across config changes too."""
        self._tick_sizes.update(sizes)
        self._use_tick_sizes()

    def _use_tick_sizes(self) -> None:
        pr, slip = self.arrays.pr, self.cfg.paper.slippage_ticks
        for j, symbol in enumerate(self.arrays.symbols):
            tick = self._tick_sizes.get(symbol)
            if tick:
                steps = pr[j, L.P_TRAIL_STEP] / pr[j, L.P_TICK]
                pr[j, L.P_TICK], pr[j, L.P_SLIP], pr[j, L.P_TRAIL_STEP] = tick, slip * tick, steps * tick
        self.broker.tick_sizes = {s: float(pr[j, L.P_TICK]) for j, s in enumerate(self.arrays.symbols)}

    def apply_config(self, cfg: Config) -> None:
        """Take a validated config live from the next tick."""
        self.check_config(cfg)
        arrays = reconfigured(self.arrays, self.cfg, cfg)
        if arrays is not self.arrays:
            self.arrays = arrays
            self.index = {s: i for i, s in enumerate(arrays.symbols)}
            self.protection.reset(len(arrays.symbols))
        self.kernels = self._bound_kernels()
        self.cfg = cfg
        self._use_tick_sizes()
        self._use_window()
        self._sync_entries()
        self.journal.record("config_applied", config=cfg.model_dump(mode="json"))
        self._publish(CONFIG_CHANGED)

    def _flat(self) -> bool:
        st = self.arrays.st
        return not (st[:, L.S_POS].any() or st[:, L.S_PEND_KIND].any()
                    or any(o.working for o in self.broker.all_orders()))

    # --- the day after a restart ------------------------------------------------------------
    def restore(self) -> str:
        """On start, before the first tick (live: once reconciled with Kite): today as the journal
        has it. Trades, P&L and charges, the entries taken, a PAUSED or HALTED state (a halted day
        stays halted), and on paper the open positions with their levels. Alerts (and returns) what
        was restored; "" when today's journal has nothing."""
        torn: list[int] = []
        day = rebuild(self.journal.read_day(self.today(), torn), self.cfg.costs, TRANSIENT_PAUSES)
        if day.empty and not torn:
            return ""
        self.closed_trades = day.trades
        notes = self.days.rebuild(day)
        if day.state == State.HALTED:
            self.arrays.acct[L.A_HALTED] = 1.0 if day.reason == LOSS_HALT else 0.0  # the kernel halted it
            self._set_state(State.HALTED, day.reason)
        elif day.state == State.PAUSED:
            self._set_state(State.PAUSED, day.reason)
        p, held = self.pnl(), self.positions()
        positions = "; ".join(f"{h['symbol']} {h['qty']:+d} @ {h['entry_price']:.2f} with target {h['target']:.2f}"
                              + (f" / stop {h['stop']:.2f}" if h["stop"] is not None else ", no working stop")
                              for h in held)
        parts = [f"{len(self.closed_trades)} trade(s)",
                 f"P&L ₹{p['net']:,.2f} net (₹{p['gross']:,.2f} gross, ₹{p['charges']:,.2f} charges)",
                 f"{int(self.arrays.acct[L.A_TRADES])} of {self.cfg.risk.max_trades_per_day} entries today",
                 f"{len(held)} open position(s)" + (f" {positions}" if held else "")]
        if day.state:
            parts.append(f"{day.state} ({day.reason})" if day.reason else day.state)
        parts += [f"journal line {n} was torn by a crash: skipped" for n in torn]
        text = "Restored from the journal: " + ", ".join(parts) + "".join(f"; {n}" for n in notes)
        log.info("%s", text)
        self._publish(ALERT, critical=True, level="info", text=text)
        return text

    def today(self) -> str:
        return self.days.today()

    def daily(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` days' closed trades and money, oldest first (today's: the engine's own)."""
        return self.days.daily(n, self.closed_trades)

    # --- live: Kite's side --------------------------------------------------------------------
    def reconcile(self, positions: list[dict] | None, orders: list[dict]) -> list[str]:
        """OTrade's positions and orders against Kite's book (``Reconciler.reconcile``): returns the notes."""
        return self.reconciler.reconcile(positions, orders)

    def tend(self) -> None:
        """Live, every ``TEND_S``: re-price exits that do not fill, send again what a repair or a lost exit
        left, re-arm protection whose backoff is over, take Kite's fills as the position should anything
        have left them apart, and sound the alarm for a position without a stop Kite confirmed."""
        self.watch.reprice_exits()
        for j in range(len(self.arrays.symbols)):
            self.fills.send_again(j)
        now = self.now_ns()
        held, working = self.reconciler.book_view()  # each symbol below changes only its own orders
        self.watch.sight(now, held, working)
        for j, br in enumerate(self.brackets):
            symbol = self.arrays.symbols[j]
            self.reconciler.keep_aligned(j, br, now, self.reconciler.expected(j, held, working))
            if self.arrays.st[j, L.S_POS] and (br.stop is None or br.target is None):
                self.protection.protect(j)  # each missing leg once its own backoff is over
            self.protection.trail_hit(j)
            self.protection.held_decision(j)
            self.watch.cover(j, br, now, held.get(symbol, 0), working.get(symbol, []))

    # --- control API: plain data for any transport ------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        a, out = self.arrays, []
        for j, symbol in enumerate(a.symbols):
            st = a.st[j]
            if st[L.S_POS] != 0.0:
                out.append({"symbol": symbol, "qty": int(st[L.S_POS]),
                            "entry_price": float(st[L.S_ENTRY_PRICE]),
                            "ltp": float(st[L.S_LTP]), "unrealised": float(st[L.S_UNREAL]),
                            "target": float(st[L.S_TARGET]), "stop": self.protection.stop_level(j),
                            "trailing": bool(st[L.S_TRAILED])})
        return out

    def orders(self, working_only: bool = True) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.broker.all_orders() if o.working or not working_only]

    def trades(self) -> list[dict[str, Any]]:
        return list(self.closed_trades)

    def pnl(self) -> dict[str, Any]:
        """Today's money: ``net`` is after charges (closed trades' and open positions' entries: what
        the loss limit counts); ``gross``, ``realised`` and ``unrealised`` are before them."""
        acct = self.arrays.acct
        gross = float(acct[L.A_REALISED] + acct[L.A_UNREAL])
        return {
            "net": gross - float(acct[L.A_CHARGES]),
            "gross": gross,
            "charges": float(acct[L.A_CHARGES]),
            "realised": float(acct[L.A_REALISED]),
            "unrealised": float(acct[L.A_UNREAL]),
            "by_symbol": {s: self._net(j) for j, s in enumerate(self.arrays.symbols)},  # net
        }

    def _net(self, j: int) -> float:
        st = self.arrays.st[j]
        return float(st[L.S_REALISED] + st[L.S_UNREAL] - st[L.S_DAY_CHARGES] - st[L.S_CHARGES])

    def risk(self) -> dict[str, Any]:
        acct, r = self.arrays.acct, self.cfg.risk
        return {"max_daily_loss": r.max_daily_loss, "day_net": self.pnl()["net"],
                "trades_today": int(acct[L.A_TRADES]), "max_trades_per_day": r.max_trades_per_day,
                "max_orders_per_second": r.max_orders_per_second, "max_quantity": r.max_quantity}

    def _strategy_status(self, j: int) -> dict[str, Any]:
        """The strategy's kind and timeframe, and how many bars it still needs before it trades: its
        warm-up's, and each indicator's."""
        a, p = self.arrays, self.cfg.instruments[j].strategy
        names = a.strategies[j].indicator_names()
        indicators = {name: int(a.x[j, a.links[j, L.LINK_IND + k] + NEED]) for k, name in enumerate(names)}
        warmup = max(0, int(a.pr[j, L.P_WARMUP] - a.st[j, L.S_BARS]))
        return {"kind": p.kind, "timeframe": p.timeframe, "bars_needed": max([warmup, *indicators.values()]),
                "indicators": indicators}

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
                "day_net": self._net(j),
                "strategy": self._strategy_status(j),
            })
        return {"state": str(self.state), "reason": self.state_reason, "broker": self.broker.name,
                "instruments": instruments, "pnl": self.pnl(), "risk": self.risk(),
                "foreign": list(self.reconciler.foreign)}


__all__ = ["BrokerError", "ControlError", "Engine", "State"]
