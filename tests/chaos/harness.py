"""One seed's accelerated live session: OTrade (engine, Kite broker, REST client, ticker, the tasks
of ``otrade run --live``) against the strict local Kite server, with the seed's faults, and every
invariant checked after each tick, order message, fault and on a short timer.

The harness plays the exchange: ticks go out on the ticker and trade against the book here (not
with the server's ``auto_match``), so fills can come in parts and market exits can be left behind
by a fast move. A restart is a kill -9: the process's tasks are cancelled and its sessions closed
with no cleanup of its own (its unflushed journal lines are lost), then a new one starts on the same
server and data directory and reconciles, as ``engine/runtime/app.py`` does at start.

The exchange can move first: in a stale window Kite's last price and its matching move at each step
while the engine's ticks for that step arrive later, in order (``ws_delay`` is another thing: it
delays the ticker's order messages, never its ticks). A circuit band bounds the exchange's prices
and every price and trigger at the server; each process reads it from Kite's quote as
``engine/brokers/kite/live.py`` does at start and the broker every minute (here every ``CIRCUIT_S``),
and again when the plan says the band changed (at once, or some steps later). A lowered modification
cap is Kite's (the server's) and OTrade's alike, so the replacement of a stop at the cap runs often.
"""

import asyncio
import contextlib
import contextvars
import logging
import math
import random
import shutil
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from config import Config
from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteError, KiteREST
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.kite.ticker_codec import Tick
from engine.cli import loop_factory
from engine.core import layout as L
from engine.engine import TEND_S, Engine, State
from engine.live.orders import Caps, LiveOrder
from engine.orders import Purpose, Side, TagMaker
from engine.services.events import ALERT, FILL, ORDER_PLACED, ORDER_UPDATED, TRADE_CLOSED, Event, EventBus
from engine.services.journal import Journal
from tests.chaos.invariants import (
    RESTING,
    BookView,
    ExceptionCheck,
    ExitCheck,
    GapMeter,
    KernelCheck,
    LevelCheck,
    PositionCheck,
    RateCheck,
    RefusalCheck,
    Settle,
    StopCheck,
    TagCheck,
    Violation,
    book_view,
    end_check,
    journal_check,
    row_key,
)
from tests.chaos.plan import SUCCESSOR_REFUSAL, SYMBOLS, TICKS, TOKENS, Action, Plan, make_plan
from tests.conftest import make_config
from tests.kite_server import API_KEY, FakeKite

T0 = int(datetime.fromisoformat("2026-11-23T10:00:00+05:30").timestamp())  # exchange time of step 0
ROWS = {token: row for row, token in enumerate(TOKENS[s] for s in SYMBOLS)}
REST_TIMEOUT_S = 0.75
STEP_S = 0.01  # between two ticks (one per instrument each step)
MONITOR_S = 0.05  # the checks' timer
LATE_S = 0.25  # the checks' timer firing this much late is noted: the loop (or the machine) was too busy
SEED_BUDGET_S = 60.0  # a seed takes seconds: one still running after this is stuck
KILL_WAIT_S = 2.0  # a cancelled task still running after this will not stop
SETTLE_S = 1.0
END_S = 8.0  # after flatten: how long the world has to settle flat
CIRCUIT_S = 1.0  # the circuits read again (the broker's refresh, every minute in the real app, accelerated)
REVISED_BAND = 0.1  # a band's window ends in a revision this wide around the price (the day's usual band)
HANGING = ("hang", "timeout", "hang-after", "timeout-after")  # a server still busy with a call nobody waits for
CAP = 40  # risk.max_orders_per_position_minute
QTY = 10

_current: contextvars.ContextVar["Chaos | None"] = contextvars.ContextVar("chaos_seed", default=None)
_running: set["Chaos"] = set()


def chaos_config() -> Config:
    return make_config(symbols=SYMBOLS, quantity=QTY,
                       strategy={"kind": "ema_cross", "fast": 2, "slow": 5, "allow_short": True},
                       bracket={"target_pct": 0.6, "stop_pct": 0.4, "trail_pct": 0.3},
                       risk={"exit_reprice_seconds": 1.0, "order_lookup_seconds": 2,
                             "max_orders_per_position_minute": CAP, "max_trades_per_day": 12},
                       session={"open": "00:00", "close": "23:59", "square_off": "23:58"})


@dataclass
class SeedResult:
    seed: int
    violations: list[Violation]
    faults: Counter  # what was actually injected, by kind
    longest_unprotected: tuple[float, str]  # (seconds, symbol): a position at Kite without its stop
    longest_unalerted: tuple[float, str]  # the same, counting only gaps no critical alert explained
    seconds: float
    trades: int
    orders: int
    restarts: int
    plan: list[str]
    events: list[str] = field(default_factory=list)  # kept when verbose or violated
    late: float = 0.0  # the most the checks' timer fired late (s): how starved the event loop was
    # the engine's stop apart from Kite's trigger: (rupees, for seconds, where) at the widest, and
    # (seconds, widest rupees, symbol) at the longest (``GapMeter``)
    largest_gap: tuple[float, float, str] = (0.0, 0.0, "")
    longest_gap: tuple[float, float, str] = (0.0, 0.0, "")
    slowest_exit: tuple[float, str] = (0.0, "")  # (seconds, symbol): from an exit wanted to its order at Kite
    exits: int = 0  # exits the engine wanted

    @property
    def ok(self) -> bool:
        return not self.violations


class _Capture(logging.Handler):
    """Hands each engine log record to the seed whose task logged it."""

    def emit(self, record: logging.LogRecord) -> None:
        chaos = _current.get()
        if chaos is not None:
            chaos.on_log(record)


@contextlib.contextmanager
def captured_logs() -> Iterator[None]:
    """Route ``engine.*`` records (INFO and up) and the local server's aiohttp errors (a client
    hanging up mid-handshake, as the faults make it) to the running seeds' event logs, off stderr."""
    handler = _Capture(logging.INFO)
    saved = []
    for name, level in (("engine", logging.INFO), ("aiohttp.server", logging.ERROR)):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _where_task(task: asyncio.Task) -> str:
    """The chain of coroutines a task is in, outermost first (a task's own stack stops at its first)."""
    names, coro = [], task.get_coro()
    while coro is not None and len(names) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        names.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(names) or task.get_name()


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An exception no task retrieved: the seed it came from (by the callback's context), else
    every seed running in this loop, since it cannot be told apart."""
    handle = context.get("handle")
    ctx = getattr(handle, "_context", None)
    chaos = ctx.get(_current) if ctx is not None else None
    exc = context.get("exception")
    text = f"unretrieved: {context.get('message')}: {type(exc).__name__ if exc else ''} {exc or ''}".strip()
    for seed in [chaos] if chaos is not None else list(_running):
        seed.violate(Violation("exception", seed.now(), text))


@dataclass
class Process:
    """One run of OTrade (engine/runtime/app.py's live wiring), killable at any moment."""

    number: int
    rest: KiteREST
    journal: Journal
    bus: EventBus
    sub: Any
    broker: KiteBroker
    engine: Engine
    ticker: KiteTicker | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    resyncs: set[asyncio.Task] = field(default_factory=set)
    reads: set[asyncio.Task] = field(default_factory=set)  # its circuit reads (they die with it)
    ready: bool = False  # booted and reconciled
    shown: dict[str, set[tuple]] = field(default_factory=dict)  # order id -> the rows it was shown (any channel)

    def positions(self) -> dict[str, int]:
        """What OTrade holds at Kite: its position, and an excess it knows of and is undoing by a repair
        (an excess it does not know of, or a repair it forgot, leaves this apart from Kite's book)."""
        engine, out = self.engine, {}
        for j, symbol in enumerate(engine.arrays.symbols):
            undo = engine.brackets[j].unrepaired
            for order in self.broker.all_orders():
                if order.purpose == Purpose.REPAIR and order.working and order.request.symbol == symbol:
                    left = order.request.quantity - order.filled_quantity
                    undo += left if order.request.side == Side.BUY else -left
            out[symbol] = int(engine.arrays.st[j, L.S_POS]) - undo
        return out

    def unsure(self) -> list[LiveOrder]:
        return [o for o in self.broker.all_orders() if isinstance(o, LiveOrder) and o.unsure]

    def in_flight(self) -> int:
        """Requests the broker has going (its lanes) and resyncs."""
        return self.broker.in_flight + len(self.resyncs)


class Chaos:
    """One seed: build the world, drive the plan, check the invariants, report."""

    def __init__(self, seed: int, steps: int = 200, verbose: bool = False, step_s: float = STEP_S,
                 keep: bool = False) -> None:
        self.seed, self.verbose, self.step_s, self.keep = seed, verbose, step_s, keep
        self.plan: Plan = make_plan(seed, steps)
        self.cfg = chaos_config()
        self.rng = random.Random(f"exchange:{seed}")  # partial fills
        self.server: FakeKite | None = None
        self.proc: Process | None = None
        self.data_dir: Path | None = None
        self.events: list[str] = []
        self.violations: list[Violation] = []
        self.faults: Counter = Counter()
        self.alerts: list[tuple[float, str]] = []  # critical ALERT events: (time, text)
        self.run_trades: list[list[dict[str, Any]]] = []  # per finished run, its engine.trades()
        self.lost_trades: list[dict[str, Any]] = []  # trade_closed records a kill took before their flush
        self.known_ticks = dict(TICKS)  # what the engine would read in the instruments file today
        self.position, self.stop, self.tag = PositionCheck(), StopCheck(), TagCheck()
        self.level, self.kernel = LevelCheck(), KernelCheck()
        self.taken: set[str] = set()  # Kite ids of our stops the exchange cancelled
        self.exits, self.refusals, self.gaps = ExitCheck(), RefusalCheck(), GapMeter()
        self._calls = 0  # the server's order calls already judged
        self.known: dict[str, list[tuple[float, float]]] = {s: [] for s in SYMBOLS}  # spans OTrade knew the band
        self._feed: deque[tuple[float, list[Tick]]] = deque()  # the engine's ticks still to come, (due, ticks)
        self._fed = asyncio.Event()
        self._stale_s = 0.0
        self._successor_refusal = ""  # while set, a stop of ours at the cap has its successor refused by RMS
        self._armed: set[str] = set()  # stops whose successor's refusal is armed
        self._feeding: asyncio.Task | None = None
        self.closed: Counter[str] = Counter()  # trades any run closed, per symbol (from their events)
        self.rate, self.exceptions = RateCheck(self.cfg.risk.max_orders_per_position_minute), ExceptionCheck()
        self.settle = Settle(SETTLE_S)
        self.settled = False
        self.unsettled = "not started"  # why the book is not settled
        self._unshown: list[str] = []  # orders of ours whose newest row OTrade was not shown (when only that is left)
        self.harness_errors: list[str] = []
        self._t0 = time.monotonic()
        self._version = -1
        self._view = BookView()
        self._seen_rows: dict[str, int] = {}
        self._seen_faults = 0
        self._last_hang = -1e9
        self._stuck = False
        self._stuck_ids: set[str] = set()
        self._rejects: dict[str, str] = {}  # order type -> reason, for the open reject windows
        self._ends: dict[int, list[Action]] = {}
        self._restart: asyncio.Task | None = None
        self._restarts = 0
        self._step = 0
        self._last_prices = {s: self.plan.prices[s][0] for s in SYMBOLS}
        self.late = 0.0

    # --- bookkeeping -----------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self._t0

    def clock_ns(self) -> int:
        """OTrade's clock: exchange time from step 0 (``T0``), running in real time across restarts.
        The ticks' stamps run ahead of it (a step is a second of exchange time): on the wall clock,
        now weeks after ``T0``, every tick was older than the fill it followed, and no stop trailed."""
        return T0 * 1_000_000_000 + int((time.monotonic() - self._t0) * 1e9)

    def note(self, source: str, text: str) -> None:
        self.events.append(f"{self.now():8.3f} {source:<7} {text}")

    def violate(self, violation: Violation) -> None:
        self.violations.append(violation)
        self.note("VIOLATE", f"{violation.invariant}: {violation.detail}")

    def on_log(self, record: logging.LogRecord) -> None:
        try:
            self.note("log", f"{record.levelname} {record.name}: {record.getMessage()}")
            for v in self.exceptions.log_record(self.now(), record):
                self.violate(v)
        except Exception:
            self.harness_errors.append(traceback.format_exc())

    def _watch(self, task: asyncio.Task, name: str) -> asyncio.Task:
        def done(t: asyncio.Task) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self.note("task", f"{name} died: {''.join(traceback.format_exception(exc)).strip()}")
                for v in self.exceptions.task_died(self.now(), name, exc):
                    self.violate(v)
        task.add_done_callback(done)
        return task

    # --- a run of OTrade -------------------------------------------------------------------------
    async def _boot(self) -> Process:
        """Start OTrade as ``otrade run --live`` does: instruments, engine, ticker, a resync, tasks."""
        server, number = self.server, self._restarts + 1
        rest = KiteREST(API_KEY, server.access_token, server.base, timeout=REST_TIMEOUT_S)
        try:
            found = await rest.instruments("NSE")
            self.known_ticks.update({s: found[s].tick_size for s in SYMBOLS if s in found})
        except KiteError as exc:  # the real process refuses to start; here it starts on yesterday's file
            self.note("boot", f"instruments unavailable ({exc.message}); using the last known tick sizes")
        journal = Journal(self.data_dir, self.clock_ns)
        bus = EventBus()
        sub = bus.subscribe(maxsize=1_000_000)
        risk = self.cfg.risk
        broker = KiteBroker(rest, journal, dict(self.known_ticks), self.clock_ns,
                            Caps(risk.max_orders_per_position_minute), risk.order_lookup_seconds)
        broker.replace_at = self.plan.max_modifications - 1  # as rules.REPLACE_AT is to Kite's 25
        engine = Engine(self.cfg, broker, bus, journal, self.clock_ns)
        broker.on_token_error = engine.token_expired
        broker.on_error = engine.alert
        engine.set_tick_sizes(dict(self.known_ticks))
        engine.start_session()
        proc = Process(number, rest, journal, bus, sub, broker, engine)
        self._trace(proc)

        def on_ticks(tokens: np.ndarray, prices: np.ndarray, ts: np.ndarray, traded: np.ndarray, _: int) -> None:
            for token, price, stamp, volume in zip(tokens.tolist(), prices.tolist(), ts.tolist(), traded.tolist(),
                                                   strict=True):
                row = ROWS.get(token)
                if row is not None:
                    engine.on_tick(row, stamp, price, volume)

        def on_order(row: dict) -> None:
            broker.update(row)
            self.check("order")

        def on_reconnect() -> None:  # engine/runtime/app.py: every reconnect resyncs
            self.note("ticker", f"run {number}: reconnected, resyncing")
            self._spawn_resync(proc, "ticker reconnected")

        proc.ticker = KiteTicker(API_KEY, lambda: rest.access_token, list(ROWS), on_ticks, on_order,
                                 url=f"{server.base.replace('http', 'ws')}/ws", max_backoff_s=1.0,
                                 on_reconnect=on_reconnect,
                                 on_callback_error=lambda exc: engine.fault(None, exc, "ticker"))
        broker.messages_flowing = lambda: proc.ticker.connected  # as KiteLive.ticker_for wires it
        self.note("boot", f"run {number} starting; tick sizes {self.known_ticks}")
        await self._read_circuits(proc, "start")
        await self._resync(proc, "start")
        proc.tasks = [self._watch(asyncio.create_task(broker.run()), f"run {number} kite-orders"),
                      self._watch(asyncio.create_task(proc.ticker.run()), f"run {number} feed"),
                      self._watch(asyncio.create_task(self._tend(proc)), f"run {number} order-tending"),
                      self._watch(asyncio.create_task(self._refresh_circuits(proc)), f"run {number} circuits"),
                      self._watch(asyncio.create_task(self._flusher(journal)), f"run {number} journal")]
        proc.ready = True
        for _ in range(100):  # until the ticker is up (a queued ws fault can delay it)
            if proc.ticker.connected:
                break
            await asyncio.sleep(0.02)
        return proc

    def _trace(self, proc: Process) -> None:
        """The engine's asks of its venue (submit, modify, cancel) into the event log: they say why
        an order went out, which its rows at Kite do not (wrappers on this instance, nothing else)."""
        broker, number = proc.broker, proc.number
        submit, modify, cancel, update = broker.submit, broker.modify, broker.cancel, broker.update

        def traced_update(row: dict) -> None:  # every row reaches the state machine here: ticker, book, history
            proc.shown.setdefault(str(row.get("order_id")), set()).add(row_key(row))
            update(row)

        def traced_submit(request, purpose=None):
            if purpose == Purpose.EXIT:
                self.exits.sent(request.symbol, request.tag)
            order = submit(request, purpose)
            self.note("ask", f"run {number} submit {purpose} {request.symbol} {request.side} {request.quantity} "
                             f"{request.order_type} px {request.price} trg {request.trigger_price} {request.tag}"
                             + ("" if order.working else f": {order.status_message}"))
            return order

        def traced_modify(order_id, price=None, trigger_price=None, quantity=None, order_type=None):
            changes = {k: v for k, v in (("price", price), ("trigger_price", trigger_price), ("quantity", quantity),
                                         ("order_type", order_type)) if v is not None}
            self.note("ask", f"run {number} modify {order_id} {changes}")
            return modify(order_id, price, trigger_price, quantity, order_type)

        def traced_cancel(order_id):
            self.note("ask", f"run {number} cancel {order_id}")
            return cancel(order_id)

        broker.submit, broker.modify, broker.cancel, broker.update = (traced_submit, traced_modify, traced_cancel,
                                                                      traced_update)
        engine, apply = proc.engine, proc.engine._apply

        def traced_apply(j: int, act: int) -> None:  # every kernel decision reaches the venue here
            if act & L.ACT_EXIT_ORDER:
                st, br = engine.arrays.st[j], engine.brackets[j]
                reason = int(st[L.S_PEND_REASON])
                # after a refused exit (alerted) the strategy's exits wait for /flatten, the square-off its backoff
                held = br.exit_refused and (reason == L.REASON_SIGNAL or (
                    reason != L.REASON_FLATTEN and engine.now_ns() < br.exit_retry_ns))
                symbol, pos = engine.arrays.symbols[j], int(st[L.S_POS])
                self.note("want", f"run {number} {symbol} exit {pos:+d} ({L.REASONS[reason]})"
                                  + (", held: exits wait after a refusal" if held else ""))
                self.exits.want(self.now(), symbol, (pos > 0) - (pos < 0), L.REASONS[reason], held)
            apply(j, act)

        engine._apply = traced_apply
        rest = proc.rest
        for name in ("place_order", "modify_order", "cancel_order"):
            setattr(rest, name, self._timed(number, name, getattr(rest, name)))

    def _timed(self, number: int, name: str, call: Any) -> Any:
        """An order call that fails or waits (Kite's 429s, the throttle) shows in the event log."""

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await call(*args, **kwargs)
            except Exception as exc:
                self.note("rest", f"run {number} {name} failed after {time.monotonic() - start:.2f} s: "
                                  f"{type(exc).__name__}: {exc}")
                raise
            finally:
                took = time.monotonic() - start
                if took > 0.3:
                    self.note("rest", f"run {number} {name} took {took:.2f} s")

        return timed

    async def _read_circuits(self, proc: Process, why: str) -> None:
        """The day's bands from Kite's quote, as ``KiteLive.prepare`` reads them at start and the order
        worker refreshes them (a failure keeps the last ones known, as there)."""
        before = dict(proc.broker.circuits)
        try:
            bands = await proc.broker.read_circuits(list(SYMBOLS))
        except KiteError as exc:
            self.note("band", f"run {proc.number} could not read the circuits ({why}): {exc.message}")
        else:
            if bands != before or why == "start":
                self.note("band", f"run {proc.number} read the circuits ({why}): {bands or 'none'}")
        self.check("band")

    async def _refresh_circuits(self, proc: Process) -> None:
        while True:
            await asyncio.sleep(CIRCUIT_S)
            await self._read_circuits(proc, "refresh")

    def _learn_circuits(self, why: str) -> None:
        proc = self.proc
        if proc is not None and proc.ready:
            task = self._watch(asyncio.create_task(self._read_circuits(proc, why)), f"run {proc.number} circuits")
            proc.reads.add(task)
            task.add_done_callback(proc.reads.discard)

    def _spawn_resync(self, proc: Process, why: str) -> None:
        task = self._watch(asyncio.create_task(self._resync(proc, why)), f"run {proc.number} resync")
        proc.resyncs.add(task)
        task.add_done_callback(proc.resyncs.discard)

    async def _resync(self, proc: Process, why: str) -> None:
        """engine/runtime/app.py ``_resync``: the book's news, then positions and rows for reconcile."""
        try:
            for note in await proc.broker.resync(proc.engine.reconcile, why):
                self.note("recon", f"run {proc.number} ({why}): {note}")
        except KiteError as exc:
            self.note("recon", f"run {proc.number} ({why}) failed: {exc.message}")
            proc.engine.alert(f"Could not reconcile with Kite after {why}: {exc.message}")
        self.check("resync")

    async def _tend(self, proc: Process) -> None:
        while True:
            await asyncio.sleep(TEND_S)
            try:
                proc.engine.tend()
            except Exception as exc:  # in the real app this task crashes (and is restarted)
                self.note("task", f"tend raised: {''.join(traceback.format_exception(exc)).strip()}")
                for v in self.exceptions.task_died(self.now(), f"run {proc.number} order-tending", exc):
                    self.violate(v)

    @staticmethod
    async def _flusher(journal: Journal) -> None:
        """Journal.run's flush every 50 ms (without the fsync, which a kill -9 does not undo)."""
        while True:
            await asyncio.sleep(0.05)
            journal.flush()

    async def _kill(self, proc: Process, clean: bool = False) -> None:
        """kill -9 (or, ``clean``, a stop that flushes the journal): tasks cancelled, sessions closed."""
        proc.ready = False
        self._drain(proc)
        self.exits.lost()
        tasks = [*proc.tasks, *proc.resyncs, *proc.reads, *getattr(proc.broker, "_tasks", ())]
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=KILL_WAIT_S) if tasks else (set(), set())
        if stuck:  # a task that outlives its cancel spins (3.11's wait_for swallows a cancel on a set event)
            where = "; ".join(sorted({_where_task(t) for t in stuck}))
            self.violate(Violation("exception", self.now(), f"run {proc.number}: {len(stuck)} task(s) still running "
                                                            f"{KILL_WAIT_S:g} s after their cancel: {where}"))
            for order in proc.broker.all_orders():  # the process is gone: nothing is wanted of its orders
                if isinstance(order, LiveOrder):
                    order.cancel_wanted, order.reprice = False, False
                    order.pending.clear()
            await asyncio.wait(stuck, timeout=KILL_WAIT_S)
        if clean:
            proc.journal.flush()
        else:  # what the journal still held in memory dies with the process
            for line in getattr(proc.journal, "_buffer", []):
                record = orjson.loads(line)
                if record.get("kind") == "trade_closed":
                    self.lost_trades.append(record)
        proc.journal.close()
        await proc.rest.close()
        self.run_trades.append(proc.engine.trades())
        self.note("kill", f"run {proc.number} {'stopped' if clean else 'killed'}; positions {proc.positions()}")

    async def _restart_now(self, down_s: float) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await self._kill(proc)
        await asyncio.sleep(down_s)
        self._restarts += 1
        self.proc = await self._boot()

    # --- the checks ------------------------------------------------------------------------------
    def check(self, source: str) -> None:
        try:
            self._check(source)
        except Exception:
            self.harness_errors.append(f"check after {source}: {traceback.format_exc()}")

    def _drain(self, proc: Process) -> None:
        for event in iter(proc.sub.get_nowait, None):
            self._on_event(proc, event)

    def _on_event(self, proc: Process, event: Event) -> None:
        d, now = event.data, self.now()
        if event.kind == ALERT:
            self.note("alert", f"run {proc.number} {'CRITICAL ' if event.critical else ''}{d.get('text')}")
            if event.critical:
                self.alerts.append((now, str(d.get("text"))))
            for v in self.exceptions.alert(now, str(d.get("text"))):
                self.violate(v)
        elif event.kind in (ORDER_PLACED, ORDER_UPDATED, FILL):
            extra = f" +{d.get('last_quantity')}@{d.get('last_price')}" if event.kind == FILL else ""
            self.note("engine", f"run {proc.number} {event.kind} {d.get('symbol')} {d.get('purpose')} "
                                f"{d.get('side')} {d.get('quantity')} {d.get('order_type')} {d.get('order_id')} "
                                f"{d.get('status')} filled {d.get('filled_quantity')}{extra}")
        elif event.kind == TRADE_CLOSED:
            self.closed[d.get("symbol")] += 1
            self.note("engine", f"run {proc.number} trade closed {d.get('symbol')} {d.get('side')} {d.get('qty')} "
                                f"{d.get('entry_price')} -> {d.get('exit_price')} ({d.get('exit_reason')})")
        else:
            self.note("engine", f"run {proc.number} {event.kind} {d}")

    def _observe_server(self, now: float) -> None:
        server = self.server
        for endpoint, kind in server.fault_log[self._seen_faults:]:
            self.faults[f"{endpoint}:{kind}"] += 1
            self.note("fault", f"{endpoint}: {kind}")
            if kind in HANGING:
                self._last_hang = now
        self._seen_faults = len(server.fault_log)
        version = sum(len(rows) for rows in server.orders.values()) + len(server.fills)
        if version == self._version:
            return
        self._version = version
        for order_id, rows in server.orders.items():
            for row in rows[self._seen_rows.get(order_id, 0):]:
                self.note("kite", f"{row['tradingsymbol']} {row['transaction_type']} {row['quantity']} "
                                  f"{row['order_type']} {order_id} tag {row.get('tag')} {row['status']} filled "
                                  f"{row['filled_quantity']}@{row['average_price']} px {row.get('price')} "
                                  f"trg {row.get('trigger_price')}"
                                  + (f" ({row['status_message']})" if row.get("status_message") else ""))
            self._seen_rows[order_id] = len(rows)
        self._view = book_view(server)

    def _unsettled(self, now: float) -> str:
        """Why the book cannot count as settled now ('' when it can): something of ours is transient
        at Kite or unsure at OTrade, a request is in flight (OTrade's lanes, a resync, a call the
        server still sits on), or OTrade has not been shown (by any channel) the newest row of
        every order of ours: a lost ticker message must first reach it by a book read."""
        proc, view = self.proc, self._view
        self._unshown = []
        if proc is None or not proc.ready or self._restart is not None:
            return "OTrade is restarting"
        if view.transient:
            return f"transient at Kite: {', '.join(view.transient)}"
        unsure = proc.unsure()
        if unsure:
            return f"unsure at OTrade: {', '.join(o.order_id for o in unsure)}"
        if proc.in_flight():
            return f"{proc.in_flight()} request(s) in flight"
        if now - self._last_hang < self.plan.hang_s + REST_TIMEOUT_S:
            return "the server still sits on a hung call"
        self._unshown = [oid for oid, row in view.newest.items() if row not in proc.shown.get(oid, ())]
        if self._unshown:
            return f"OTrade not yet shown the newest row of {', '.join(self._unshown)}"
        return ""

    def _check(self, source: str) -> None:
        now, proc = self.now(), self.proc
        self._observe_server(now)
        if proc is not None:
            self._drain(proc)
        view = self._view
        otrade = proc.positions() if proc is not None and proc.ready else None
        self.unsettled = self._unsettled(now)
        self.settled = self.settle.update(now, not self.unsettled, self._version)
        self._watch_bands(now, proc)
        self._arm_successor_refusals()
        levels = self._levels()
        largest = self.gaps.largest
        self.gaps.measure(now, levels)
        if self.gaps.largest[0] != largest[0]:
            self.note("gap", f"the engine's stop apart from Kite's trigger by {self.gaps.largest[0]:g}: "
                             f"{self.gaps.largest[2]}")
        calls, self._calls = self.server.order_calls[self._calls:], len(self.server.order_calls)
        found = [*self.position.check(now, self.settled, view.positions, otrade),
                 *self.stop.check(now, view, self.alerts, otrade is not None),
                 *self.level.check(now, view, self.closed, self._own(proc) if otrade is not None else None,
                                   self._strays(proc) if otrade is not None else (), self.taken),
                 *self.kernel.check(now, self.settled, levels if self.settled else {}),
                 *self.exits.check(now, view, self.alerts, self._own(proc) if otrade is not None else None),
                 *self.refusals.check(now, calls, self.known),
                 *self.tag.check(now, view), *self.rate.check(now, view)]
        for v in found:
            self.violate(v)

    def _watch_bands(self, now: float, proc: Process | None) -> None:
        """The spans of time in which the OTrade process up knows each instrument's band as Kite has it
        (no band at Kite: nothing to know); the last one open (``inf``) while it lasts."""
        for symbol in SYMBOLS:
            band = self.server.instruments[symbol].circuit
            knows = proc is not None and proc.ready and proc.broker.circuits.get(symbol) == band
            spans = self.known[symbol]
            open_ = bool(spans) and spans[-1][1] == math.inf
            if knows and not open_:
                spans.append((now, math.inf))
            elif not knows and open_:
                spans[-1] = (spans[-1][0], now)

    def _arm_successor_refusals(self) -> None:
        """In an RMS window, a stop of ours one modification short of the cap (the next change places its
        successor) has Kite's RMS refuse the next stop placed for its symbol and side."""
        if not self._successor_refusal:
            return
        server = self.server
        for order_id, row in server.working().items():
            if (order_id in self._armed or row["order_type"] not in ("SL", "SL-M")
                    or not TagMaker.made_by_otrade(row.get("tag"))
                    or server.modifications(order_id) < self.plan.max_modifications - 1):
                continue
            self._armed.add(order_id)
            server.reject_next(self._successor_refusal, symbol=f"{row['exchange']}:{row['tradingsymbol']}",
                               order_type=row["order_type"], side=row["transaction_type"])
            self.faults["successor stop to be refused by RMS (armed)"] += 1
            self.note("exch", f"stop {order_id} at the cap: Kite's RMS refuses the next {row['order_type']} "
                              f"{row['transaction_type']} placed")

    @staticmethod
    def _strays(proc: Process) -> set[str]:
        """Kite ids of our orders the OTrade process up names as no position's stop: not its stop, not one
        being replaced, not a successor waiting to take over, not an earlier run's stop for the position that
        Kite's book showed late and looser (a row that lags a trail Kite took) than the one armed anew."""
        named = {oid for br in proc.engine.brackets for oid in (br.stop, *br.former, *br.late) if oid}
        return {o.broker_id for o in proc.broker.all_orders()
                if isinstance(o, LiveOrder) and o.broker_id and o.order_id not in named and o.predecessor is None}

    @staticmethod
    def _own(proc: Process) -> dict[str, int]:
        """What OTrade holds itself, per symbol (an excess it is undoing left out)."""
        return {s: int(proc.engine.arrays.st[j, L.S_POS]) for j, s in enumerate(proc.engine.arrays.symbols)}

    def _levels(self) -> dict[str, tuple[float, float]]:
        """symbol -> (OTrade's stop, the trigger at Kite of the stop it names), for each position of
        OTrade's whose stop rests at Kite (settled or not)."""
        proc, out = self.proc, {}
        if proc is None or not proc.ready:
            return out
        engine = proc.engine
        for j, symbol in enumerate(engine.arrays.symbols):
            stop = engine.brackets[j].stop
            order = proc.broker.order(stop) if stop and engine.arrays.st[j, L.S_POS] else None
            rows = self.server.orders.get(order.broker_id or "") if order is not None else None
            if rows and rows[-1]["status"] in RESTING and rows[-1]["order_type"] in ("SL", "SL-M"):  # not re-priced
                out[symbol] = (float(engine.arrays.st[j, L.S_STOP]), float(rows[-1]["trigger_price"]))
        return out

    async def _monitor(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(MONITOR_S)
            late = time.monotonic() - before - MONITOR_S
            self.late = max(self.late, late)
            if late >= LATE_S:
                self.note("loop", f"the checks' timer fired {late:.2f} s late (the event loop was starved)")
            self.check("timer")

    # --- the exchange ----------------------------------------------------------------------------
    def _price(self, symbol: str, raw: float) -> float:
        """On the grid, and inside the day's band: a walk beyond it trades at the edge until it turns."""
        inst = self.server.instruments[symbol]
        tick = inst.tick_size
        price = round(round(raw / tick) * tick, 2)
        if inst.circuit is not None:
            lower, upper = inst.circuit
            price = min(max(price, round(math.ceil(lower / tick - 1e-9) * tick, 2)),
                        round(math.floor(upper / tick + 1e-9) * tick, 2))
        return price

    def _band(self, symbol: str, below: float, above: float) -> tuple[float, float]:
        """A band around the exchange's price now, on the grid."""
        price, tick = self._last_prices[symbol], self.server.instruments[symbol].tick_size
        return (round(math.ceil(price * (1.0 - below) / tick) * tick, 2),
                round(math.floor(price * (1.0 + above) / tick) * tick, 2))

    async def _push(self, k: int, raw: dict[str, float]) -> None:
        ticks = []
        for symbol in SYMBOLS:
            price = self._price(symbol, raw[symbol])
            self._last_prices[symbol] = price
            ticks.append(Tick(TOKENS[symbol], price, "full", True, last_quantity=QTY, volume=QTY * (k + 1),
                              last_trade_time=T0 + k, exchange_timestamp=T0 + k))
        if self._stale_s > 0 or self._feed:  # the exchange moves first; the engine's ticks follow, in order
            for tick in ticks:
                self.server.set_ltp(tick.instrument_token, tick.last_price)
            self._feed.append((self.now() + self._stale_s, ticks))
            self._fed.set()
        else:
            await self.server.push(ticks)
        for symbol in SYMBOLS:
            await self._match(symbol, self._last_prices[symbol])
        if k % 20 == 0:
            self.note("tick", f"step {k}: " + ", ".join(f"{s} {p}" for s, p in self._last_prices.items()))
        self.check("tick")

    async def _feeder(self) -> None:
        """The engine's ticks behind Kite's price: each step's as it falls due, in the order they were made."""
        while True:
            while not self._feed:
                self._fed.clear()
                await self._fed.wait()
            due, ticks = self._feed[0]
            if due > self.now():
                await asyncio.sleep(due - self.now())
            await self.server.push(ticks, late=True)
            self._feed.popleft()
            self.check("tick")

    def _held(self, symbol: str) -> int:
        """Kite's net position in ``symbol`` now."""
        held = 0
        for rows in self.server.orders.values():
            row = rows[-1]
            if f"{row['exchange']}:{row['tradingsymbol']}" == symbol:
                held += int(row["filled_quantity"]) * (1 if row["transaction_type"] == "BUY" else -1)
        return held

    def _is_stuck(self, order_id: str, row: dict[str, Any], position: int) -> bool:
        """While a stuck window is open, a market order that reduces the position (an exit) or a
        triggered stop is parked as a limit the move left behind: it fills once it is re-priced."""
        if order_id in self._stuck_ids:
            if row.get("modified"):
                self._stuck_ids.discard(order_id)
                return False
            return True
        reduces = (row["transaction_type"] == "SELL") == (position > 0) and position != 0
        if self._stuck and reduces and row["order_type"] in ("MARKET", "SL-M") and not row.get("modified"):
            self._stuck_ids.add(order_id)
            self.note("exch", f"order {order_id} left behind by the move (stuck until re-priced)")
            return True
        return False

    async def _match(self, symbol: str, price: float) -> None:
        """A trade at ``price``: stops it crosses trigger, then market orders, triggered stops and
        limits it crosses fill, sometimes only in part."""
        server = self.server
        exchange, tradingsymbol = symbol.split(":")
        for order_id, rows in list(server.orders.items()):
            row = rows[-1]
            if (row["exchange"], row["tradingsymbol"]) != (exchange, tradingsymbol):
                continue
            sell = row["transaction_type"] == "SELL"
            if row["status"] == "TRIGGER PENDING":
                if not (price <= row["trigger_price"] if sell else price >= row["trigger_price"]):
                    continue
                await server.trigger(order_id)
                row = server.orders[order_id][-1]
            if row["status"] != "OPEN":
                continue
            pending = row["quantity"] - row["filled_quantity"]
            if pending <= 0:
                continue
            if row["order_type"] in ("MARKET", "SL-M"):
                at = price
            elif row["order_type"] in ("LIMIT", "SL") and (price >= row["price"] if sell else price <= row["price"]):
                at = row["price"]
            else:
                continue
            if (self._stuck or order_id in self._stuck_ids) and self._is_stuck(order_id, row, self._held(symbol)):
                continue
            qty = pending
            if pending > 1 and self.rng.random() < self.plan.partial_rate:
                qty = self.rng.randint(1, pending - 1)
            await server.fill(order_id, qty, at)

    # --- the plan --------------------------------------------------------------------------------
    def _set_rejects(self) -> None:
        server = self.server
        server.reject_types = set(self._rejects)
        server.reject_reason = next(reversed(self._rejects.values()), "")

    async def _act(self, action: Action) -> None:
        server, kind, a = self.server, action.kind, action.args
        self.note("plan", action.describe())
        if action.until is not None:
            self._ends.setdefault(action.until, []).append(action)
        if kind == "fault":
            server.fault(a["endpoint"], a["kind"], a["times"])
        elif kind == "drop":
            self.faults["ws:drop (server.drop)"] += 1
            await server.drop()
        elif kind == "ws_loss":
            server.ws_drop_rate = a["rate"]
        elif kind == "ws_delay":
            server.ws_delay_s = a["seconds"]
            self.faults["ws:delayed messages (window)"] += 1
        elif kind == "book_lag":
            server.book_lag_s = a["seconds"]
            self.faults["book lag (window)"] += 1
        elif kind == "positions_lag":
            server.positions_lag_s = a["seconds"]
            self.faults["positions lag (window)"] += 1
        elif kind == "reject":
            self._rejects[a["types"]] = a["reason"]
            self._set_rejects()
            self.faults[f"{a['types']} refused (window)"] += 1
        elif kind == "cancel_refusal":
            server.cancel_refusal = a["reason"]
            self.faults["cancels refused (window)"] += 1
        elif kind == "stuck_market":
            self._stuck = True
            self.faults["market exits left behind (window)"] += 1
        elif kind == "exchange_cancel":
            stops = sorted(oid for oid, row in server.working().items()
                           if row["order_type"] in ("SL", "SL-M") and TagMaker.made_by_otrade(row.get("tag"))
                           and row["status"] in ("OPEN", "TRIGGER PENDING"))
            if stops:
                self.faults["stop cancelled by the exchange"] += 1
                taken = self.rng.choice(stops)
                self.taken.add(taken)
                await server.cancel_rest(taken, a["reason"])
        elif kind == "tick_size":
            server.set_tick_size(a["symbol"], a["size"])
            self.faults["tick size changed"] += 1
        elif kind == "learn_tick_size":
            self.known_ticks[a["symbol"]] = a["size"]
            if self.proc is not None and self.proc.ready:
                self.proc.engine.set_tick_sizes({a["symbol"]: a["size"]})
        elif kind == "chaos":
            server.chaos(a["rate"], None, ("place", "modify", "cancel", "orders", "history", "positions"),
                         seed=a["seed"])
        elif kind == "restart":
            if self._restart is not None:
                await self._restart
            self.faults["restart (kill -9)"] += 1
            self._restart = asyncio.create_task(self._restart_now(a["down_s"]))
            self._restart.add_done_callback(self._restarted)
        elif kind == "pause":
            await asyncio.sleep(a["seconds"])
        elif kind == "stale":
            self._stale_s = a["seconds"]
            self.faults["engine's ticks behind Kite's price (window)"] += 1
        elif kind == "circuit":
            band = self._band(a["symbol"], a["below"], a["above"])
            server.set_circuit(a["symbol"], *band)
            self.note("exch", f"{a['symbol']} circuit band {band[0]:g}-{band[1]:g}")
            self.faults["tight circuit band (window)" + (", learned late" if a["late"] else "")] += 1
            if not a["late"]:
                self._learn_circuits("band changed")
        elif kind == "learn_circuit":
            self._learn_circuits("band changed, read late")
        elif kind == "rms_successor":
            self._successor_refusal = a["reason"]
            self.faults["successor stops refused by RMS (window)"] += 1
        elif kind in ("flatten", "square_off"):
            proc = self.proc
            if proc is not None and proc.ready:
                self.faults["/flatten, trading on" if kind == "flatten" else "square-off"] += 1
                (proc.engine.flatten if kind == "flatten" else proc.engine.square_off)()
        self.check("fault")

    def _restarted(self, task: asyncio.Task) -> None:
        if self._restart is task:
            self._restart = None
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.harness_errors.append(f"restart failed: {''.join(traceback.format_exception(exc))}")

    async def _end(self, action: Action) -> None:
        server, kind = self.server, action.kind
        self.note("plan", f"end of {action.kind} from step {action.step}")
        if kind == "ws_loss":
            server.ws_drop_rate = 0.0
        elif kind == "ws_delay":
            server.ws_delay_s = 0.0
        elif kind == "book_lag":
            server.book_lag_s = 0.0
        elif kind == "positions_lag":
            server.positions_lag_s = 0.0
        elif kind == "reject":
            self._rejects.pop(action.args["types"], None)
            self._set_rejects()
        elif kind == "cancel_refusal":
            server.cancel_refusal = ""
        elif kind == "stuck_market":
            self._stuck = False
        elif kind == "chaos":
            server.chaos(0)
        elif kind == "stale":
            self._stale_s = 0.0
        elif kind == "circuit":  # revised to the day's usual width, read by the engine at once
            band = self._band(action.args["symbol"], REVISED_BAND, REVISED_BAND)
            server.set_circuit(action.args["symbol"], *band)
            self.note("exch", f"{action.args['symbol']} circuit band revised to {band[0]:g}-{band[1]:g}")
            self._learn_circuits("band revised")
        elif kind == "rms_successor":
            self._successor_refusal = ""

    def _heal(self) -> None:
        """Every fault off: windows closed, queued faults dropped (a private list: the server has no
        call for it), stuck orders free."""
        server = self.server
        server.chaos(0)
        server.faults.clear()
        for queue in getattr(server, "_queued_faults", {}).values():
            queue.clear()
        server.ws_drop_rate = server.ws_delay_s = server.book_lag_s = server.positions_lag_s = 0.0
        self._rejects.clear()
        self._set_rejects()
        server.cancel_refusal = ""
        self._stuck = False
        self._stuck_ids.clear()
        self._stale_s = 0.0  # the ticks still behind come in order, then ticks go out as they are made
        self._successor_refusal = ""
        server._rejections.clear()  # successor refusals armed and not served (a private list, as above)

    # --- the session -----------------------------------------------------------------------------
    async def run(self) -> SeedResult:
        token = _current.set(self)
        _running.add(self)
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"otrade-chaos-{self.seed}-"))
        # one clock for the server and the checks: the times of its rows and calls are the seed's
        self.server = FakeKite(seed=self.seed, transition_delay_s=self.plan.transition_delay_s,
                               positions_from_fills=True, max_modifications=self.plan.max_modifications,
                               clock=self.now)
        self.server.hang_s = self.plan.hang_s
        monitor = None
        try:
            await self.server.start()
            self.proc = await self._boot()
            self._feeding = self._watch(asyncio.create_task(self._feeder()), "the feed")
            monitor = asyncio.create_task(self._monitor())
            await self._drive()
            await self._finish()
        except Exception:
            self.harness_errors.append(traceback.format_exc())
        finally:
            if monitor is not None:
                monitor.cancel()
            await self._teardown()
            _running.discard(self)
            _current.reset(token)
        return self._result()

    async def _drive(self) -> None:
        for k in range(self.plan.steps):
            self._step = k
            for action in self._ends.pop(k, []):
                await self._end(action)
            for action in self.plan.at(k):
                await self._act(action)
            await self._push(k, {s: self.plan.prices[s][k] for s in SYMBOLS})
            await asyncio.sleep(self.step_s)

    async def _finish(self) -> None:
        """Flatten, heal, let the world settle; then Kite must be flat with nothing of ours working."""
        if self._restart is not None:
            await self._restart
        self._heal()
        proc = self.proc
        self.note("plan", "end of session: faults healed, entries paused, flatten")
        if proc.engine.state == State.RUNNING:
            proc.engine.pause("chaos: end of session")
        proc.engine.flatten()
        walk = random.Random(f"end:{self.seed}")
        raw = dict(self._last_prices)
        k = self.plan.steps
        deadline = self.now() + END_S
        while self.now() < deadline:
            raw = {s: p * (1.0 + walk.gauss(0.0, 0.0003)) for s, p in raw.items()}
            await self._push(k, raw)
            k += 1
            await asyncio.sleep(0.02)
            view = self._view
            if (self.settled and not any(view.positions.values()) and not view.working
                    and not any(proc.positions().values())):
                break
        now = self.now()
        if not self.settled and self._unshown:
            # quiet, but OTrade has not looked at these orders since they last changed (it reads the book only
            # while an order of its own works): judge the positions as they stand
            mine, theirs = proc.positions(), self._view.positions
            for symbol in sorted(set(mine) | set(theirs)):
                if mine.get(symbol, 0) != theirs.get(symbol, 0):
                    self.violate(Violation("position", now, f"{symbol}: OTrade holds {mine.get(symbol, 0):+d}, Kite "
                                                            f"{theirs.get(symbol, 0):+d}, and OTrade was never shown "
                                                            f"the newest rows of {', '.join(self._unshown)}"))
        elif not self.settled:
            self.violate(Violation("position", now, f"the book did not settle within {END_S:g} s of the flatten "
                                                    f"({self.unsettled or 'it kept changing'})"))
        for v in end_check(now, self._view, proc.positions()):
            self.violate(v)

    async def _teardown(self) -> None:
        if self._restart is not None:
            with contextlib.suppress(Exception):
                await self._restart
        if self._feeding is not None:
            self._feeding.cancel()
            await asyncio.gather(self._feeding, return_exceptions=True)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await self._kill(self.proc, clean=True)
            self.proc = None
        self.stop.finish(self.now(), self.alerts)
        if self.data_dir is not None:
            with contextlib.suppress(Exception):
                self._check_journal()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()
        if self.data_dir is not None and not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        elif self.data_dir is not None:
            self.note("keep", f"data dir kept: {self.data_dir}")

    def _check_journal(self) -> None:
        recorded = []
        for path in sorted((self.data_dir / "journal").glob("*.jsonl")):
            recorded += [r for line in path.read_bytes().splitlines() if line.strip()
                         if (r := orjson.loads(line)).get("kind") == "trade_closed"]
        for v in journal_check(self.now(), recorded, self.run_trades, self.lost_trades):
            self.violate(v)

    def _result(self) -> SeedResult:
        for error in self.harness_errors:
            self.violate(Violation("harness", self.now(), error.strip().splitlines()[-1]))
            self.note("harness", error)
        server = self.server
        if server is not None and server.ws_lost:
            self.faults["ws:order message lost"] += len(server.ws_lost)
        orders = server.orders.values() if server else ()
        ours = [rows for rows in orders if TagMaker.made_by_otrade(rows[-1].get("tag"))]
        keep = self.verbose or bool(self.violations)
        if server is not None:
            refused = sum(1 for rows in ours if rows[-1]["status_message"] == SUCCESSOR_REFUSAL
                          and rows[-1]["order_type"] in ("SL", "SL-M"))
            if refused:
                self.faults["stop refused by RMS (served)"] += refused
            if self.refusals.excused:
                self.faults["circuit refusal before OTrade read the band"] += self.refusals.excused
        return SeedResult(self.seed, list(self.violations), self.faults, self.stop.longest, self.stop.longest_unalerted,
                          self.now(), sum(len(t) for t in self.run_trades), len(ours), self._restarts,
                          self.plan.describe(), self.events if keep else [], self.late, self.gaps.largest,
                          self.gaps.longest, self.exits.slowest, self.exits.wanted)


async def run_seed(seed: int, steps: int = 200, verbose: bool = False, budget_s: float = SEED_BUDGET_S) -> SeedResult:
    """One seed, given at most ``budget_s``: a seed that is still running then (something spins or
    waits forever) is a violation, reported with where every task of the loop is."""
    chaos = Chaos(seed, steps, verbose)
    task = asyncio.create_task(chaos.run())
    done, _ = await asyncio.wait({task}, timeout=budget_s)
    if done:
        return task.result()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    stacks = [f"  task {t.get_name()}: {_where_task(t)}" for t in others]
    spinning = sorted({w for t in others if not any(n in (w := _where_task(t)) for n in ("harness", "runner"))})[:3]
    chaos.violate(Violation("exception", chaos.now(), f"the seed did not finish within {budget_s:g} s; tasks: "
                                                      + (" | ".join(spinning) or "see the event log")))
    chaos.events += ["tasks of the event loop when the seed overran its budget:", *stacks]
    task.cancel()
    await asyncio.wait({task}, timeout=5.0)
    return task.result() if task.done() and not task.cancelled() and task.exception() is None else chaos._result()


def warm_kernels() -> None:
    """Build what a seed's OTrade process builds (its engine's warm-up runs every kernel it calls, the
    ticker's decoder compiles its frame walk), on nothing: every kernel a seed runs is compiled, or
    loaded from Numba's cache, before any seed's clock or a worker's watchdog starts."""
    with tempfile.TemporaryDirectory(prefix="otrade-chaos-warm-") as tmp:
        clock = lambda: T0 * 1_000_000_000  # noqa: E731
        journal = Journal(Path(tmp), clock)
        broker = KiteBroker(KiteREST(API_KEY, "", "http://127.0.0.1:9"), journal, dict(TICKS), clock, Caps(CAP))
        Engine(chaos_config(), broker, EventBus(), journal, clock)
        KiteTicker(API_KEY, lambda: "", list(ROWS), lambda *_: None, lambda _: None)
        journal.close()


def in_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on the app's event loop (uvloop where it installs), with the chaos exception
    handler on it."""

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
        return await coro

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main())


__all__ = ["Chaos", "SeedResult", "captured_logs", "chaos_config", "in_loop", "run_seed", "warm_kernels"]
