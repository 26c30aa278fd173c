"""The evening parity audit: a recorded day replayed through the backtest, compared with its journal.

The replay is the backtest's own loop (``backtest.run_ticks``) over the day's recorded ticks, on the
day as the journal tells it:

- the config the day started with (the first journalled change taken back), and each later
  ``config_applied`` taken at its time, as ``Engine.apply_config`` takes it (a strategy whose
  settings changed starts its row again, the others keep theirs);
- the trader's and the process's controls at their times: a state change (RUNNING takes entries,
  PAUSED and HALTED do not; a /halt drops pending entries, a resume lifts the loss-limit halt), every
  ``flatten`` (/flatten, the scheduled square-off) and the session's close;
- the strategies warmed as the day's first start warmed them: the sessions before it (earlier days'
  recordings, or the synthetic market's week before), then today's before it with the session under
  way (``warm_up`` supplies the ticks: the process knows where they come from);
- no tick before the session opened (the first state change): the engine's gate dropped those.

Compared trade by trade with the journal's closed trades (and the positions still open at the end),
each difference is named with its cause. The backtest fills at its own model's prices; live, Kite
filled at its own, so a live trade whose decisions are the backtest's (side, quantity, exit reason,
fills within ``LATENCY_S``) is at parity, its price difference reported as slippage and its time
difference as latency, never as a break. A trade Kite or the venue refused is named as a refusal.
A restart's gap runs from the journal's last record before the new process's first (or the
recording's last tick, when a crash lost the recording's last seconds) to the moment the new process
took ticks again (its state leaving IDLE: its session opened): what the day lost there cannot be
replayed, so a trade open at any moment of a gap is named, not counted. Everything else is a parity
break, a difference after a restart included: a restart must not change what the strategy does.
"""

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from config import Config, ConfigError, Costs, StrategyCatalog, validate
from engine.arrays import Arrays, build, catch_up, reconfigured
from engine.core import layout as L
from engine.core.candle_order import workspace
from engine.core.step import cancel_entry, flatten, warm
from engine.data.store import MARKET, REHEARSAL, SYNTHETIC, StoreError, load_ticks, parts_dir, tick_file
from engine.data.ticks import Ticks
from engine.live.restore import ns_of, rebuild
from engine.research import backtest
from engine.services.calendar import TradingCalendar
from engine.services.journal import Journal

LATENCY_S = 60.0  # entries this close together are one decision, the session's filled later (or earlier)
OPEN_SLACK_S = 5.0  # a session opened this soon after the scheduled open took every tick of the window
PRICE_EPS = 1e-6  # the journal and the replay hold the same floats: any gap wider is a real price difference
LOSS_HALT = "daily loss limit reached"  # Engine's reason: the kernel halted itself, nothing to drop

FILL_PRICE, LATENCY, REFUSAL, RESTART_GAP = "fill price", "latency", "refusal", "restart gap"
DECISION, SESSION_ONLY, BACKTEST_ONLY = "decision", "in the session only", "in the backtest only"

# (the day's start config, the first start's instant, synthetic?) -> the sessions it warmed the strategies on
WarmUp = Callable[[Config, int, bool], Sequence[Ticks]]


class AuditError(Exception):
    """The day cannot be audited; the message says why (and what to do)."""


@dataclass(frozen=True)
class Trade:
    """A closed trade (or, ``open``, a position still open at the end), the session's or the backtest's."""

    symbol: str
    side: str  # long / short
    qty: int
    entry_ns: int
    entry_price: float
    exit_ns: int
    exit_price: float
    reason: str
    pnl: float  # gross
    open: bool = False

    def show(self) -> str:
        head = f"{self.symbol} {self.side} {self.qty} @ {self.entry_price:.2f} {_clock(self.entry_ns)}"
        if self.open:
            return f"{head}, open at the end"
        return f"{head} → {self.exit_price:.2f} {_clock(self.exit_ns)} ({self.reason})"


@dataclass(frozen=True)
class Gap:
    """A restart: from the journal's last record before the new process's first (or the recording's
    last tick, when a crash lost the recording's last seconds) to its session opening again."""

    start_ns: int
    end_ns: int

    def holds(self, t: Trade) -> bool:
        """``t`` was open at some moment of the gap."""
        return t.entry_ns <= self.end_ns and (t.open or t.exit_ns >= self.start_ns)

    def show(self) -> str:
        lost = (self.end_ns - self.start_ns) / 1e9
        return f"restart: {lost:.1f} s lost, {_clock(self.start_ns)}–{_clock(self.end_ns)}"


@dataclass(frozen=True)
class Difference:
    cause: str
    session: Trade | None
    backtest: Trade | None
    counted: bool  # a parity break (not: a restart gap, a refusal; live, slippage and latency)
    detail: str  # what differs, in words (the cause itself for a trade of one side only)

    def show(self) -> str:
        note = "" if self.counted else ", not counted"
        if self.session is not None and self.backtest is not None:
            t = self.session
            return f"{t.symbol} {t.side} {t.qty} {_clock(t.entry_ns)}: {self.detail} ({self.cause}{note})"
        head = (self.session or self.backtest).show()
        if self.detail == self.cause:
            return f"{head}: {self.detail}" + (f" ({note[2:]})" if note else "")
        return f"{head}: {self.detail} ({self.cause}{note})"


@dataclass
class Audit:
    day: date
    live: bool  # Kite's fills: prices and times may differ from the backtest's without a break
    journal: Path
    recording: Path
    ticks: int  # recorded ticks replayed (of the configured instruments, from the session's open)
    changes: list[int]  # when each journalled config change was taken
    warmed: int  # earlier days the strategies were warmed on
    matches: list[tuple[Trade, Trade]] = field(default_factory=list)  # (the session's, the backtest's)
    differences: list[Difference] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _explained(self, d: Difference) -> bool:
        """Named, not compared: a trade inside a restart gap, an entry the venue refused."""
        return d.cause in (RESTART_GAP, REFUSAL)

    @property
    def compared(self) -> int:
        """Trades compared (a position still open at the end counts as one): all but the explained."""
        return len(self.matches) + sum(1 for d in self.differences if not self._explained(d))

    @property
    def at_parity(self) -> int:
        """Compared trades that are no parity break: alike, or (live) alike but for slippage and latency."""
        return self.compared - len(self.breaks)

    @property
    def breaks(self) -> list[Difference]:
        return [d for d in self.differences if d.counted]

    def _pairs(self) -> list[tuple[Trade, Trade]]:
        return self.matches + [(d.session, d.backtest) for d in self.differences if d.session and d.backtest]

    def headline(self) -> str:
        text = f"parity: {self.at_parity} of {self.compared} trades"
        if inside := sum(1 for d in self.differences if d.cause == RESTART_GAP):
            text += f"; {inside} inside restart gaps, not counted"
        if refused := sum(1 for d in self.differences if d.cause == REFUSAL):
            text += f"; {refused} refused by the venue"
        pairs = [(s, b) for s, b in self._pairs() if not s.open]
        if self.live and pairs:
            slip = sum(s.pnl - b.pnl for s, b in pairs)
            late = max(max(abs(s.entry_ns - b.entry_ns), abs(s.exit_ns - b.exit_ns)) for s, b in pairs) / 1e9
            text += f"; slippage ₹{slip:+,.2f}, latency up to {late:.1f} s (fills at Kite's prices)"
        return text

    def lines(self) -> list[str]:
        """The headline, then one line per difference; a restart's line before the trades inside it."""
        out = [self.headline()]
        out += [d.show() for d in self.differences if d.cause != RESTART_GAP]
        for gap in self.gaps:
            out.append(gap.show())
            out += [f"  {d.show()}" for d in self.differences
                    if d.cause == RESTART_GAP and any(gap.holds(t) for t in (d.session, d.backtest) if t)]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def describe(self) -> str:
        """What was replayed, for the command's output."""
        changes = (f"{len(self.changes)} config change(s), at {', '.join(_clock(c) for c in self.changes)}"
                   if self.changes else "no config change")
        return (f"audit of {self.day}: journal {self.journal}; {self.ticks:,} recorded ticks of {self.recording} "
                f"replayed through the backtest ({changes}; strategies warmed on {self.warmed} earlier day(s))")


def _clock(ns: int) -> str:
    t = datetime.fromtimestamp(ns // 10**9, L.IST)
    ms = ns % 10**9 // 10**6
    return f"{t:%H:%M:%S}" + (f".{ms:03d}" if ms else "")


# --- the day as the journal tells it ---------------------------------------------------------
@dataclass(frozen=True)
class _Event:
    ns: int
    kind: str  # config, state, flatten, close
    config: Config | None = None
    new: str = ""
    reason: str = ""


def _put(data: Any, path: str, value: Any) -> None:
    """``data`` at a dotted path (``instruments.0.strategy.fast``, as the chat journals changes) set to ``value``."""
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def start_config(records: Sequence[dict[str, Any]], named: Config, catalog: StrategyCatalog) -> tuple[Config, str]:
    """The config the day started with, and how it was found: the day's first ``config_applied``
    with the changes the chat journalled for it (``config`` records, each with its old value) taken
    back; the config ``named`` on a day without a change."""
    first = next((k for k, r in enumerate(records) if r.get("kind") == "config_applied"), None)
    if first is None:
        return named, "the config named (no change that day)"
    changes = []
    for r in records[first + 1:]:
        if r.get("kind") == "config_applied":
            break
        if r.get("kind") == "config":
            changes.append(r)
    at = _clock(ns_of(records[first]["ts"]))
    if not changes:
        return named, (f"the config named: the journal does not say what the change at {at} replaced "
                       "(a change not made from the chat)")
    data = copy.deepcopy(records[first]["config"])  # the record itself is the change's own config
    try:
        for r in reversed(changes):
            _put(data, r["path"], r["old"])
        return validate(data, catalog), f"the first change (at {at}) taken back"
    except (KeyError, IndexError, ValueError, TypeError, ConfigError) as exc:
        raise AuditError(f"the config before the change at {at} cannot be rebuilt from the journal: {exc}") from None


def _events(records: Sequence[dict[str, Any]], catalog: StrategyCatalog) -> list[_Event]:
    out: list[_Event] = []
    closed = False
    for r in records:
        kind = r.get("kind")
        if kind == "config_applied":
            try:
                out.append(_Event(ns_of(r["ts"]), "config", config=validate(r["config"], catalog)))
            except ConfigError as exc:
                raise AuditError(f"the config applied at {_clock(ns_of(r['ts']))} is not valid today: "
                                 f"{exc}") from None
        elif kind == "state":
            out.append(_Event(ns_of(r["ts"]), "state", new=r.get("new", ""), reason=r.get("reason", "")))
            if r.get("new") == "CLOSED" and not closed:
                out.append(_Event(ns_of(r["ts"]), "close"))
                closed = True
        elif kind == "flatten":
            out.append(_Event(ns_of(r["ts"]), "flatten", reason=r.get("reason", "flatten")))
        elif kind == "report" and not closed:  # the session closed (a halted day's close changes no state)
            out.append(_Event(ns_of(r["ts"]), "close"))
            closed = True
    return out


def restart_gaps(records: Sequence[dict[str, Any]], tick_ts: np.ndarray) -> list[Gap]:
    """Each restart of the day: from the journal's last record before the new process's first (or
    the recording's last tick before it, when earlier: a crash lost the recording's last seconds),
    to its state leaving IDLE (until then its engine took no tick). ``tick_ts``: the recording's.

    Only a new process's state leaves IDLE (one running since an earlier day opens today from
    CLOSED). What it writes as it starts comes just before that: its catch-up's new day, a restore's
    orders (under its own tag prefix, ``TagMaker``: a prefix whose first intent is there), a
    reconcile's notes. An earlier run's order it adopts carries the old prefix and ends that search
    (the gap then starts at it: a little late)."""
    first_intent: dict[str, int] = {}
    for k, r in enumerate(records):
        if r.get("kind") == "intent" and isinstance(r.get("tag"), str):
            first_intent.setdefault(r["tag"][:8], k)
    gaps, opened = [], False
    for m, r in enumerate(records):
        if r.get("kind") != "state":
            continue
        if r.get("old") != "IDLE" or not opened:  # a state change of a running process, or the day's first start
            opened = True
            continue
        low = m
        while low > 0 and records[low - 1].get("kind") in ("session", "reconcile", "intent", "order"):
            low -= 1
        start = next(s for s in range(low, m + 1) if all(
            first_intent.get(q["tag"][:8], -1) >= s for q in records[s:m]
            if q.get("kind") in ("intent", "order") and isinstance(q.get("tag"), str)))
        if start > 0:
            began = ns_of(records[start]["ts"])
            k = int(np.searchsorted(tick_ts, began, side="left")) - 1
            last = ns_of(records[start - 1]["ts"])
            gaps.append(Gap(min(last, int(tick_ts[k])) if k >= 0 else last, ns_of(r["ts"])))
    return gaps


def _gate(events: Sequence[_Event], open_ns: int) -> int:
    """The first tick the engine took: from its first state change (the session opened, or a
    restored state), or every tick of the window when that came with the scheduled open."""
    first = next((e.ns for e in events if e.kind == "state"), None)
    if first is None:
        return 2**63 - 1  # the session never opened: no tick reached the kernel
    return open_ns if first - open_ns <= OPEN_SLACK_S * L.NS_PER_S else first


# --- the replay ------------------------------------------------------------------------------
class _Replay:
    """The backtest's loop over the day's ticks, stopping at each journalled event to take it."""

    def __init__(self, cfg: Config, day: date, overrides: Path, symbols: tuple[str, ...], ticks: Ticks) -> None:
        self.day = day
        self.day_number = (day - date(1970, 1, 1)).days
        self.calendar = TradingCalendar(cfg.session.open, cfg.session.close, overrides, cfg.session.square_off)
        self.all = ticks  # of every instrument any config of the day names, in ``symbols``' order
        self.union = symbols
        self.cfg = cfg
        self.a: Arrays = build(cfg)
        self._window()
        self._use_symbols()
        self.trades: list[Trade] = []
        self.tf = np.zeros((1024, backtest.N_TF))
        self.ti = np.zeros((1024, 2), np.int64)
        self.days = np.zeros(4, np.int64)
        self.n_tr = self.n_days = self.converted = 0
        self._k = 0  # the next tick
        self.closed = False  # the session closed: no tick after it trades

    def _use_symbols(self) -> None:
        """The day's ticks of the arrays' instruments, numbered as their rows."""
        rows = np.array([self.a.symbols.index(s) if s in self.a.symbols else -1 for s in self.union], np.int32)
        instr = rows[self.all.instr] if len(self.all) else self.all.instr
        keep = instr >= 0
        self.ts, self.price, self.volume = self.all.ts[keep], self.all.price[keep], self.all.volume[keep]
        self.instr = np.ascontiguousarray(instr[keep])
        self.planned = np.full(len(self.a.symbols), -1, np.int64)

    def _window(self) -> None:
        """The day's session window from the calendar (a special session's own times), as the
        scheduler gives the engine, kept over config changes."""
        s = self.cfg.session
        self.calendar.retime(s.open, s.close, s.square_off)
        session = self.calendar.session(self.day)
        if session is None:
            return
        for col, t in ((L.P_OPEN_NS, session.open), (L.P_CLOSE_NS, session.close),
                       (L.P_SQUARE_OFF_NS, session.square_off)):
            self.a.pr[:, col] = float(((t.hour * 60 + t.minute) * 60 + t.second) * L.NS_PER_S)

    def open_ns(self) -> int:
        return int(self.day_number * L.NS_PER_DAY - L.IST_OFFSET_NS + self.a.pr[:, L.P_OPEN_NS].min())

    def warm(self, sessions: Sequence[Ticks], until_ns: int) -> int:
        """As the first start warmed the strategies: earlier sessions each to their end, then today's
        before the start with the session left under way (``Engine.warm_strategies``, ``catch_up``).
        Returns the earlier days warmed on."""
        a, n = self.a, 0
        for ticks in sessions:
            if ticks.symbols != a.symbols or not len(ticks):
                continue
            today = (ticks.ts + L.IST_OFFSET_NS) // L.NS_PER_DAY == self.day_number
            if not today.any():
                if a.acct[L.A_DAY] != -1.0:  # only before today's session is under way
                    continue
                warm(ticks.ts, ticks.price, ticks.volume, ticks.instr, a.st, a.pr, a.clk, a.rows, a.links, False)
                n += len(np.unique((ticks.ts + L.IST_OFFSET_NS) // L.NS_PER_DAY))
                continue
            keep = np.flatnonzero(ticks.ts < until_ns)
            catch_up(a, self.day_number, ticks.ts[keep], ticks.price[keep], ticks.volume[keep], ticks.instr[keep])
        a.acct[L.A_ENTRIES_ALLOWED] = 0.0  # IDLE until the session opens
        return n

    def until(self, end_ns: int) -> None:
        """The ticks up to ``end_ns`` (inclusive: what the engine saw before an event at that instant)."""
        if self.closed:
            return
        k, stop = self._k, int(np.searchsorted(self.ts, end_ns, side="right"))
        while k < stop:
            if self.tf.shape[0] - self.n_tr <= len(self.a.symbols) + 1:
                self.tf = np.concatenate((self.tf, np.zeros_like(self.tf)))
                self.ti = np.concatenate((self.ti, np.zeros_like(self.ti)))
            ws = workspace(self.a.rows.shape[2], 0, self.a.links.shape[1])
            k, self.n_tr, _, self.n_days, _ = backtest.run_ticks(
                self.ts, self.price, self.volume, self.instr, k, stop, *self.a.kernel(), self.tf, self.ti, self.n_tr,
                self.days, self.n_days, np.zeros(0, np.int64), self.planned, ws)
        self._k = stop
        self._collect()

    def skip(self, ns: int) -> None:
        """The ticks before ``ns`` never reached the kernel (the session had not opened)."""
        self._k = int(np.searchsorted(self.ts, ns, side="left"))

    def _collect(self) -> None:
        for f, t in zip(self.tf[self.converted:self.n_tr], self.ti[self.converted:self.n_tr], strict=True):
            self.trades.append(Trade(self.a.symbols[int(f[backtest.T_INSTR])],
                                     "long" if f[backtest.T_SIDE] > 0 else "short", int(f[backtest.T_QTY]),
                                     int(t[backtest.TI_ENTRY]), float(f[backtest.T_ENTRY]), int(t[backtest.TI_EXIT]),
                                     float(f[backtest.T_EXIT]), L.REASONS[int(f[backtest.T_REASON])],
                                     float(f[backtest.T_PNL])))
        self.converted = self.n_tr

    def take(self, e: _Event) -> None:
        """A journalled event into the arrays, as the engine took it."""
        a = self.a
        if self.closed:
            return
        if e.kind == "config":
            self._reconfigure(e.config)
        elif e.kind == "state":
            a.acct[L.A_ENTRIES_ALLOWED] = 1.0 if e.new == "RUNNING" else 0.0
            if e.new == "HALTED" and e.reason != LOSS_HALT:  # /halt: working entries cancelled
                for j in range(len(a.symbols)):
                    cancel_entry(a.st, a.acct, j)
            if e.reason == "resumed":
                a.acct[L.A_HALTED] = 0.0
                a.st[:, L.S_BLOCKED] = 0.0
        elif e.kind == "flatten":
            code = L.REASONS.index(e.reason) if e.reason in L.REASONS else L.REASON_FLATTEN
            for j in range(len(a.symbols)):
                flatten(a.st, a.acct, j, code)
        elif e.kind == "close":
            if self.tf.shape[0] - self.n_tr <= len(a.symbols) + 1:
                self.tf = np.concatenate((self.tf, np.zeros_like(self.tf)))
                self.ti = np.concatenate((self.ti, np.zeros_like(self.ti)))
            self.n_tr = backtest.finish(*a.kernel(), self.tf, self.ti, self.n_tr)
            self._collect()
            self.closed = True

    def _reconfigure(self, cfg: Config) -> None:
        """A config change taken as the engine takes it (``arrays.reconfigured``)."""
        arrays = reconfigured(self.a, self.cfg, cfg)
        if arrays is not self.a:
            self.a = arrays
            at = self.ts[self._k - 1] if self._k else -1
            self._use_symbols()
            self._k = int(np.searchsorted(self.ts, at, side="right"))
        self.cfg = cfg
        self._window()

    def held(self) -> list[Trade]:
        """The positions still open at the end (the session was not closed: the process stopped)."""
        a, out = self.a, []
        for j, symbol in enumerate(a.symbols):
            pos = a.st[j, L.S_POS]
            if pos != 0.0:
                out.append(Trade(symbol, "long" if pos > 0 else "short", int(abs(pos)), int(a.clk[j, L.C_ENTRY]),
                                 float(a.st[j, L.S_ENTRY_PRICE]), 0, math.nan, "", math.nan, open=True))
        return out


# --- the comparison --------------------------------------------------------------------------
def _journal_trades(records: Sequence[dict[str, Any]]) -> list[Trade]:
    return [Trade(r["symbol"], r["side"], int(r["qty"]), int(r["entry_time_ns"]), float(r["entry_price"]),
                  int(r["exit_time_ns"]), float(r["exit_price"]), r["exit_reason"], float(r["pnl"]))
            for r in records if r.get("kind") == "trade_closed"]


def _journal_held(records: Sequence[dict[str, Any]], costs: Costs) -> list[Trade]:
    day = rebuild(list(records), costs, frozenset())
    return [Trade(h.symbol, "long" if h.qty > 0 else "short", abs(h.qty), int(h.opened_ns), float(h.price), 0,
                  math.nan, "", math.nan, open=True) for h in day.held.values()]


def _refusal(records: Sequence[dict[str, Any]], t: Trade, window_ns: int) -> str:
    """The venue's refusal of an entry of ``t``'s instrument near its time, in its words ("" for none)."""
    for r in records:
        if (r.get("kind") == "order" and r.get("symbol") == t.symbol and r.get("purpose") == "entry"
                and r.get("status") in ("REJECTED", "DENIED") and abs(ns_of(r["ts"]) - t.entry_ns) <= window_ns):
            return f"the entry was refused: {r.get('status_message') or r['status']}"
    return ""


def _pair_up(session: list[Trade], replayed: list[Trade], window_ns: int) -> tuple[list[tuple[Trade, Trade]],
                                                                                      list[Trade], list[Trade]]:
    """Per instrument, the session's trades aligned with the backtest's in time order, as an edit
    distance aligns two texts: a trade left alone costs 1, a pair of the same side entered within
    ``window_ns`` of each other costs how far apart they are (at most 2), so a trade missing from one
    side never shifts the trades after it onto their neighbours."""
    pairs, alone_s, alone_b = [], [], []
    for symbol in sorted({t.symbol for t in session} | {t.symbol for t in replayed}):
        s = sorted((t for t in session if t.symbol == symbol), key=lambda t: (t.open, t.entry_ns))
        b = sorted((t for t in replayed if t.symbol == symbol), key=lambda t: (t.open, t.entry_ns))

        def cost(x: Trade, y: Trade) -> float:
            if x.side != y.side or x.open != y.open or abs(x.entry_ns - y.entry_ns) > window_ns:
                return math.inf
            return abs(x.entry_ns - y.entry_ns) / window_ns + min(1.0, abs(x.exit_ns - y.exit_ns) / window_ns)

        n, m = len(s), len(b)
        d = np.zeros((n + 1, m + 1))
        d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                d[i, j] = min(d[i - 1, j] + 1.0, d[i, j - 1] + 1.0, d[i - 1, j - 1] + cost(s[i - 1], b[j - 1]))
        i, j = n, m
        while i or j:
            if i and j and d[i, j] == d[i - 1, j - 1] + cost(s[i - 1], b[j - 1]):
                pairs.append((s[i - 1], b[j - 1]))
                i, j = i - 1, j - 1
            elif i and d[i, j] == d[i - 1, j] + 1.0:
                alone_s.append(s[i - 1])
                i -= 1
            else:
                alone_b.append(b[j - 1])
                j -= 1
    return pairs, alone_s, alone_b


def _leg(what: str, ns_s: int, price_s: float, ns_b: int, price_b: float, reason_s: str = "",
         reason_b: str = "") -> str | None:
    """One leg's difference in words, naming only what differs; None when it is the same fill."""
    timed, priced, reasoned = ns_s != ns_b, abs(price_s - price_b) > PRICE_EPS, reason_s != reason_b
    if not (timed or priced or reasoned):
        return None

    def side(ns: int, price: float, reason: str) -> str:
        return (f"{price:.2f}" + (f" at {_clock(ns)}" if timed else "")
                + (f" ({reason or 'still open'})" if reasoned else ""))

    return f"{what} {side(ns_s, price_s, reason_s)} in the session, {side(ns_b, price_b, reason_b)} in the backtest"


def _differ(s: Trade, b: Trade, live: bool, window_ns: int) -> tuple[str, str, bool] | None:
    """(cause, what differs, counted) for a pair, or None when it is the same trade."""
    parts = [f"{s.qty} in the session, {b.qty} in the backtest"] if s.qty != b.qty else []
    parts.append(_leg("entry", s.entry_ns, s.entry_price, b.entry_ns, b.entry_price))
    if not s.open:
        parts.append(_leg("exit", s.exit_ns, s.exit_price, b.exit_ns, b.exit_price, s.reason, b.reason))
    parts = [p for p in parts if p]
    if not parts:
        return None
    if not s.open:
        parts.append(f"₹{s.pnl - b.pnl:+,.2f} gross")
    what = "; ".join(parts)
    entry_price = abs(s.entry_price - b.entry_price) > PRICE_EPS
    if s.qty != b.qty or s.reason != b.reason or (not s.open and abs(s.exit_ns - b.exit_ns) > window_ns):
        # live, a bracket follows Kite's entry fill: its price can move the stop or target it meets
        return (FILL_PRICE, what, False) if live and entry_price else (DECISION, what, True)
    if s.entry_ns != b.entry_ns or (not s.open and s.exit_ns != b.exit_ns):
        return LATENCY, what, not live
    return FILL_PRICE, what, not live


def compare(records: Sequence[dict[str, Any]], replayed: list[Trade], live: bool, gaps: Sequence[Gap],
            costs: Costs) -> tuple[list[tuple[Trade, Trade]], list[Difference]]:
    """The journal's closed trades and positions open at its end against the replay's: the matches,
    and each difference with its cause (``costs``: what ``rebuild`` charges trades journalled without)."""
    window = int(LATENCY_S * L.NS_PER_S)
    session = _journal_trades(records) + _journal_held(records, costs)
    pairs, alone_s, alone_b = _pair_up(session, replayed, window)
    matches, out = [], []

    def in_gap(*trades: Trade | None) -> bool:
        return any(g.holds(t) for g in gaps for t in trades if t is not None)

    for s, b in pairs:
        found = _differ(s, b, live, window)
        if found is None:
            matches.append((s, b))
        else:
            cause, detail, counted = found
            out.append(Difference(RESTART_GAP, s, b, False, detail) if in_gap(s, b)
                       else Difference(cause, s, b, counted, detail))
    for s in alone_s:
        out.append(Difference(RESTART_GAP, s, None, False, SESSION_ONLY) if in_gap(s)
                   else Difference(SESSION_ONLY, s, None, True, SESSION_ONLY))
    for b in alone_b:
        if in_gap(b):
            out.append(Difference(RESTART_GAP, None, b, False, BACKTEST_ONLY))
        elif refused := _refusal(records, b, window):
            out.append(Difference(REFUSAL, None, b, False, f"{BACKTEST_ONLY}: {refused}"))
        else:
            out.append(Difference(BACKTEST_ONLY, None, b, True, BACKTEST_ONLY))
    out.sort(key=lambda d: (d.session or d.backtest).entry_ns)
    return matches, out


# --- the day's files -------------------------------------------------------------------------
def _sources(data_dir: Path, day: date, rehearsal: bool | None) -> tuple[Journal, Path, str]:
    """The day's journal (the real day's, else its rehearsal's, unless told), its recording and its kind."""
    real, rehearsed = Journal(data_dir, lambda: 0), Journal(data_dir, lambda: 0, rehearsal=True)
    iso = day.isoformat()
    if rehearsal is None:
        rehearsal = not real.path(iso).exists() and rehearsed.path(iso).exists()
    journal = rehearsed if rehearsal else real
    if not journal.path(iso).exists():
        other = real if rehearsal else rehearsed
        hint = f" (there is {other.path(iso).name}: {'leave out' if rehearsal else 'add'} --rehearsal)" \
            if other.path(iso).exists() else ""
        raise AuditError(f"no journal of {iso} in {journal.dir}{hint}: otrade run writes one on every day it trades")
    kinds = (REHEARSAL, SYNTHETIC) if rehearsal else (MARKET, SYNTHETIC)
    for kind in kinds:
        path = tick_file(data_dir, day, kind)
        if path.exists() or parts_dir(path).is_dir():
            return journal, path, kind
    raise AuditError(f"no recording of {iso} under {Path(data_dir) / 'ticks'} (looked for "
                     f"{', '.join(tick_file(data_dir, day, k).name for k in kinds)}): the day's ticks were not "
                     "recorded (a replay of a tick file is not), so there is nothing to replay")


def audit_day(data_dir: Path, day: date, named: Config, catalog: StrategyCatalog, overrides: Path, warm_up: WarmUp,
              rehearsal: bool | None = None) -> Audit:
    """Audit ``day`` under ``data_dir``: its journal (the rehearsal's with ``rehearsal``; None: the
    real day's, else the rehearsal's) against its recording replayed through the backtest. ``named``
    is the config the process runs on (the day started on it unless the journal has a change);
    ``overrides`` the calendar's (special sessions' times); ``warm_up`` the sessions a start warms
    the strategies on. AuditError when the day cannot be audited."""
    journal, recording, kind = _sources(Path(data_dir), day, rehearsal)
    torn: list[int] = []
    records = journal.read_day(day.isoformat(), torn)
    start, found = start_config(records, named, catalog)
    events = _events(records, catalog)
    configs = [start] + [e.config for e in events if e.kind == "config"]
    symbols = tuple(dict.fromkeys(i.symbol for c in configs for i in c.instruments))
    try:
        ticks = load_ticks(recording, symbols)
    except (StoreError, OSError) as exc:
        raise AuditError(f"the recording cannot be read: {exc}") from None
    if not len(ticks):
        raise AuditError(f"{recording.name} holds no tick of {', '.join(symbols)}")
    replay = _Replay(start, day, overrides, symbols, ticks)
    first_ns = int(ticks.ts[0])  # the feed's first: every tick before it was the first start's history
    warmed = replay.warm(warm_up(start, first_ns, kind != MARKET), first_ns)
    gate = _gate(events, replay.open_ns())
    replay.skip(gate)
    for e in events:
        replay.until(e.ns)
        replay.take(e)
    replay.until(2**63 - 1)
    gaps = restart_gaps(records, ticks.ts)
    matches, differences = compare(records, replay.trades + replay.held(), kind == MARKET, gaps, start.costs)
    result = Audit(day, kind == MARKET, journal.path(day.isoformat()), recording, int((ticks.ts >= gate).sum()),
                   [e.ns for e in events if e.kind == "config"], warmed, matches, differences, gaps)
    result.notes.append(f"the day started on {found}")
    result.notes += [f"journal line {n} was torn by a crash: skipped" for n in torn]
    return result
