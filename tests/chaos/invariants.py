"""The invariants of a live session, checked against what Kite (the local server) knows.

Each checker works on plain data (a ``BookView`` of the server's book, the engine's positions,
alerts, log records), so a test can feed it a made-up situation and see it fire. A checker reports
a breach once per episode (a mismatch that stays is one violation, not one per check).
"""

import logging
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.orders import TagMaker
from tests.kite_server import TRANSIENT, FakeKite, OrderCall

INVARIANTS = ("position", "stop", "level", "kernel", "exit", "refusal", "tag", "rate", "exception", "journal", "end")
# a stop rests at the exchange in these (a modify in flight leaves it resting)
RESTING = ("OPEN", "TRIGGER PENDING", "MODIFY VALIDATION PENDING", "MODIFY PENDING")
STOP_LIMIT_S = 2.0  # a position must have its stop at Kite within this long
# the engine's alerts that say a stop is missing or refused (not, e.g., an exit refused "stop and target re-armed")
STOP_ALERT = re.compile(r"stop order|SL-M? order|no working stop|refuse the stop")
EXIT_LIMIT_S = 2.0  # an exit the engine wants must reach Kite within this long
# the engine's alerts that say an exit is held back or refused, or that the position exits another way (not
# its "Check Kite, or /flatten" advice about a missing stop)
EXIT_ALERT = re.compile(r"\bexit", re.IGNORECASE)
# Kite's refusals that OTrade must never meet: it knows the cap and reads the band (tests.kite_server's words)
CAP_REFUSAL = re.compile(r"Maximum allowed order modifications exceeded")
CIRCUIT_REFUSAL = re.compile(r"cannot be (above|below) the (upper|lower) circuit price")
BAND_SLACK_S = 2.0  # a request formed before OTrade learned a new band may reach Kite this long after
# ERROR records with a traceback that an injected fault explains (none so far: every one is a bug)
EXPECTED_ERRORS: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Violation:
    invariant: str
    t: float  # seconds since the seed started
    detail: str

    def __str__(self) -> str:
        return f"[{self.t:7.3f}s] {self.invariant}: {self.detail}"


@dataclass
class BookView:
    """Kite's side: what the exchange holds for every symbol, from the order book's current rows."""

    positions: dict[str, int] = field(default_factory=dict)  # net filled quantity, signed, all orders
    cover: dict[tuple[str, str], int] = field(default_factory=dict)  # (symbol, side) -> qty left on our stops
    transient: list[str] = field(default_factory=list)  # our orders in a transient status (answer not settled)
    working: list[str] = field(default_factory=list)  # our orders resting at the exchange
    tags: dict[str, list[str]] = field(default_factory=dict)  # tag -> order ids (ours)
    placed: dict[str, list[float]] = field(default_factory=dict)  # symbol -> when our orders reached Kite
    newest: dict[str, tuple] = field(default_factory=dict)  # our order id -> its newest row (``row_key``)
    # symbol -> (when placed, side, trigger, order id) of each of our stops resting at the exchange
    stops: dict[str, list[tuple[float, str, float, str]]] = field(default_factory=dict)
    flat_at: dict[str, float] = field(default_factory=dict)  # symbol -> when its position last began
    arrived: dict[str, float] = field(default_factory=dict)  # tag of ours -> when its first order reached Kite
    stops_done: Counter[str] = field(default_factory=Counter)  # symbol -> our stops filled in full


def row_key(row: dict) -> tuple:
    """What tells one of an order's rows from another: Kite's stamps have a one-second grain, so an
    order's OPEN and COMPLETE rows can share one, and the stamp alone cannot say which OTrade saw."""
    return (str(row.get("exchange_update_timestamp") or ""), row.get("status"), int(row.get("quantity") or 0),
            int(row.get("filled_quantity") or 0), float(row.get("average_price") or 0),
            float(row.get("price") or 0), float(row.get("trigger_price") or 0))


def book_view(server: FakeKite) -> BookView:
    view = BookView()
    for order_id, rows in server.orders.items():
        row, first = rows[-1], rows[0]
        symbol = f"{row.get('exchange')}:{row.get('tradingsymbol')}"
        sign = 1 if row["transaction_type"] == "BUY" else -1
        view.positions[symbol] = view.positions.get(symbol, 0) + sign * int(row.get("filled_quantity") or 0)
        if not TagMaker.made_by_otrade(row.get("tag")):
            continue
        view.tags.setdefault(row["tag"], []).append(order_id)
        view.arrived[row["tag"]] = min(view.arrived.get(row["tag"], math.inf), float(first.get("_at", -math.inf)))
        view.newest[order_id] = row_key(row)
        view.placed.setdefault(symbol, []).append(float(first.get("_at", float("-inf"))))
        status = row["status"]
        if status in TRANSIENT:
            view.transient.append(order_id)
        if status in RESTING or status == "CANCEL PENDING":
            view.working.append(order_id)
        if row["order_type"] in ("SL", "SL-M") and status == "COMPLETE":
            view.stops_done[symbol] += 1
        if row["order_type"] in ("SL", "SL-M") and status in RESTING:
            key = (symbol, row["transaction_type"])
            left = int(row["quantity"]) - int(row.get("filled_quantity") or 0)
            view.cover[key] = view.cover.get(key, 0) + left
            view.stops.setdefault(symbol, []).append((float(first.get("_at", float("-inf"))), row["transaction_type"],
                                                      float(row["trigger_price"]), order_id))
    for times in view.placed.values():
        times.sort()
    held: dict[str, int] = {}
    for fill in server.fills:  # in the order the exchange made them
        symbol = f"{fill['exchange']}:{fill['tradingsymbol']}"
        before = held.get(symbol, 0)
        held[symbol] = before + (1 if fill["transaction_type"] == "BUY" else -1) * int(fill["quantity"])
        if held[symbol] * before <= 0:  # flat, or turned over: a new position from here
            view.flat_at[symbol] = float(fill["_at"])
    return view


class PositionCheck:
    """1. Once the book has settled, OTrade's position per instrument is Kite's."""

    name = "position"

    def __init__(self) -> None:
        self._reported: dict[str, tuple[int, int]] = {}  # symbol -> (otrade, kite) already reported

    def check(self, now: float, settled: bool, kite: dict[str, int], otrade: dict[str, int] | None) -> list[Violation]:
        if not settled or otrade is None:
            return []
        out = []
        for symbol in sorted(set(kite) | set(otrade)):
            mine, theirs = otrade.get(symbol, 0), kite.get(symbol, 0)
            if mine == theirs:
                self._reported.pop(symbol, None)
            elif self._reported.get(symbol) != (mine, theirs):
                self._reported[symbol] = (mine, theirs)
                out.append(Violation(self.name, now, f"{symbol}: settled book, OTrade holds {mine:+d}, "
                                                      f"Kite {theirs:+d}"))
        return out


class StopCheck:
    """2. Every open position at Kite has a working stop of ours (opposite side, SL/SL-M, resting,
    covering the quantity) within ``limit_s`` of the fill, unless a critical alert says the symbol's
    stop is refused or missing (``STOP_ALERT``). The clock runs only while an OTrade process is up
    (``watching``): one that is down or still starting cannot place anything. Measures the longest
    time a position was without a stop (down time included)."""

    name = "stop"

    def __init__(self, limit_s: float = STOP_LIMIT_S, alert_slack_s: float = 1.0) -> None:
        self.limit_s, self.alert_slack_s = limit_s, alert_slack_s
        self._since: dict[str, float] = {}  # symbol -> when its position became uncovered
        # symbol -> since when the OTrade process now up has let it be uncovered (its alerts count from then)
        self._clock: dict[str, float] = {}
        self._done: set[str] = set()  # symbols whose current gap is reported or excused
        self.longest = (0.0, "")  # (seconds, symbol) over all gaps
        self.longest_unalerted = (0.0, "")  # over the gaps no alert explained

    def check(self, now: float, view: BookView, alerts: Iterable[tuple[float, str]],
              watching: bool = True) -> list[Violation]:
        out = []
        for symbol in sorted(set(view.positions) | set(self._since)):
            pos = view.positions.get(symbol, 0)
            side = "SELL" if pos > 0 else "BUY"
            covered = view.cover.get((symbol, side), 0)
            if pos == 0 or covered >= abs(pos):
                self._close(symbol, now, alerts)
                continue
            since = self._since.setdefault(symbol, now)
            if not watching:  # a new process must see to it (and say so) itself: its clock starts when it is up
                self._clock[symbol] = now
                self._done.discard(symbol)
            clock = self._clock.setdefault(symbol, now)
            self.longest = max(self.longest, (now - since, symbol))
            if now - clock <= self.limit_s or symbol in self._done:
                continue
            self._done.add(symbol)
            if not self._alerted(symbol, since, clock, alerts):
                out.append(Violation(self.name, now, f"{symbol}: position {pos:+d} at Kite with {covered} covered "
                                                      f"by working stops for {now - clock:.2f} s (OTrade up), "
                                                      "and no critical alert about it"))
        return out

    def _alerted(self, symbol: str, since: float, clock: float, alerts: Iterable[tuple[float, str]]) -> bool:
        """A stop alert about ``symbol`` from the process now up: since its clock started (or just
        before the gap, when the gap began under it: the refusal comes with the fill)."""
        start = clock - self.alert_slack_s if clock == since else clock
        return any(t >= start and symbol in text and STOP_ALERT.search(text) for t, text in alerts)

    def _close(self, symbol: str, now: float, alerts: Iterable[tuple[float, str]]) -> None:
        since = self._since.pop(symbol, None)
        self._done.discard(symbol)
        if since is None:
            return
        clock = self._clock.pop(symbol, since)
        gap = now - since
        self.longest = max(self.longest, (gap, symbol))
        if not self._alerted(symbol, since, clock, alerts):
            self.longest_unalerted = max(self.longest_unalerted, (now - clock, symbol))

    def finish(self, now: float, alerts: Iterable[tuple[float, str]]) -> None:
        for symbol in list(self._since):
            self._close(symbol, now, alerts)


class LevelCheck:
    """7. A stop never loosens: for each position at Kite, the tightest of our stops resting for it
    (placed since it began: last flat or turned over) is never looser than the tightest one Kite has
    held for it since, trailing, replacements near Kite's modification cap and OTrade's restarts
    included. A trade OTrade closed, OTrade (reconciled) coming to hold none or some, or a stop of
    ours filled in full ends the position too: an excess being undone, or fills OTrade never saw, can
    keep Kite from ever being flat between two trades, and a stop that filled has done its work (a new
    one for what is left starts from the market, not from it). A stop the exchange cancelled while
    another of ours still rests for the position leaves that one protecting: the tightest is measured
    from what rests (OTrade keeps the older stop when a successor ends), while one taken with nothing
    left behind still bounds the stop armed again."""

    name = "level"

    def __init__(self) -> None:
        self._best: dict[str, tuple[tuple, float, str]] = {}  # symbol -> (its position's episode, tightest, stop)
        self._earlier: dict[str, set[str]] = {}  # symbol -> stops resting when its position began: an earlier one's
        self._reported: set[tuple] = set()
        self._turns: Counter[str] = Counter()  # symbol -> times OTrade was seen to come to hold none, or some
        self._held: dict[str, bool] = {}

    def check(self, now: float, view: BookView, closed: Counter[str] | None = None,
              otrade: dict[str, int] | None = None, strays: Collection[str] = (),
              taken: Collection[str] = ()) -> list[Violation]:
        """``closed``: per symbol, the trades OTrade's runs have closed so far; ``otrade``: what the
        OTrade process up (and reconciled) holds itself, an excess it is undoing left out (None: none is);
        ``strays``: Kite ids of our stops that process counts as no position's protection (a closed trade's
        stop whose place call hung and reached Kite late, being cancelled): left out; ``taken``: Kite ids
        of our stops the exchange cancelled."""
        closed = closed or Counter()
        for symbol, qty in (otrade or {}).items():
            if self._held.get(symbol, False) != bool(qty):
                self._turns[symbol] += 1
            self._held[symbol] = bool(qty)
        out = []
        for symbol, pos in sorted(view.positions.items()):
            if not pos:
                continue
            sign = 1 if pos > 0 else -1
            episode = (view.flat_at.get(symbol, float("-inf")), sign, closed[symbol], self._turns[symbol],
                       view.stops_done[symbol])
            side = "SELL" if pos > 0 else "BUY"
            stops = [(t, oid) for placed, s, t, oid in view.stops.get(symbol, ())
                     if s == side and placed >= episode[0] and oid not in strays]
            seen, best, best_stop = self._best.get(symbol, (None, None, None))
            if seen != episode:
                self._earlier[symbol] = {oid for _, oid in stops} if seen is not None else set()
                best = best_stop = None
            resting = [(t, oid) for t, oid in stops if oid not in self._earlier[symbol]]
            if not resting:  # a stop taken with nothing left behind still bounds the one armed again
                self._best[symbol] = (episode, best, None if best_stop in taken else best_stop)
                continue
            tightest, tightest_stop = max(resting) if sign > 0 else min(resting)
            if best_stop in taken and all(oid != best_stop for _, oid in resting):
                best = None  # the exchange took it, another of ours protects: measured from that one
            if best is None or (tightest - best) * sign > -1e-9:
                self._best[symbol] = (episode, tightest, tightest_stop)
            elif (best - tightest) * sign > 1e-6 and (symbol, *episode) not in self._reported:
                self._reported.add((symbol, *episode))
                out.append(Violation(self.name, now, f"{symbol}: position {pos:+d}, Kite's tightest stop of ours "
                                                      f"at {tightest:g} after one at {best:g}: loosened"))
        return out


class KernelCheck:
    """8. Once the book has settled, OTrade trades on the stop Kite holds: for each position, the
    engine's stop (the level its kernel trails from and takes as crossed) is the trigger of its stop
    resting at Kite."""

    name = "kernel"

    def __init__(self) -> None:
        self._reported: dict[str, tuple[float, float]] = {}

    def check(self, now: float, settled: bool, levels: dict[str, tuple[float, float]]) -> list[Violation]:
        """``levels``: symbol -> (the engine's stop, its stop's trigger at Kite), for positions with one."""
        if not settled:
            return []
        out = []
        for symbol, (engine, kite) in sorted(levels.items()):
            if abs(engine - kite) < 1e-6:
                self._reported.pop(symbol, None)
            elif self._reported.get(symbol) != (engine, kite):
                self._reported[symbol] = (engine, kite)
                out.append(Violation(self.name, now, f"{symbol}: settled book, OTrade's stop {engine:g}, "
                                                      f"its stop's trigger at Kite {kite:g}"))
        return out


@dataclass
class _Want:
    t: float
    symbol: str
    sign: int  # the position's side when the exit was wanted
    reason: str
    tags: set[str] = field(default_factory=set)  # the exit orders the engine sent for it


class ExitCheck:
    """9. An exit the engine wants (a signal, the square-off, /flatten, the loss limit) reaches Kite
    within ``limit_s``: an exit order it sent for the symbol since is in Kite's book (refused there
    or not: Kite has had its word), or the position it was for is gone, at Kite or at OTrade (a leg
    closed it; an excess left at Kite is the repairs'). Unless a critical alert
    about the symbol's exit came with it or since, or the engine wanted it while its exits wait for the
    trader after a refusal it alerted (``held``). A want dies with the process that had it (a kill).
    Measures the slowest exit to reach Kite."""

    name = "exit"

    def __init__(self, limit_s: float = EXIT_LIMIT_S, alert_slack_s: float = 1.0) -> None:
        self.limit_s, self.alert_slack_s = limit_s, alert_slack_s
        self._open: list[_Want] = []
        self.wanted = 0
        self.slowest = (0.0, "")  # (seconds, symbol): from a want to its exit at Kite

    def want(self, t: float, symbol: str, sign: int, reason: str, held: bool = False) -> None:
        self.wanted += 1
        if not held and sign:
            self._open.append(_Want(t, symbol, sign, reason))

    def sent(self, symbol: str, tag: str) -> None:
        """An exit order the engine submitted: it answers every open want of its symbol."""
        for want in self._open:
            if want.symbol == symbol:
                want.tags.add(tag)

    def lost(self) -> None:
        """The process was killed: what it wanted dies with it."""
        self._open.clear()

    def check(self, now: float, view: BookView, alerts: Iterable[tuple[float, str]],
              otrade: dict[str, int] | None = None) -> list[Violation]:
        """``otrade``: what the OTrade process up holds itself (None: none is up)."""
        out, still = [], []
        for want in self._open:
            at = [view.arrived[tag] for tag in want.tags if tag in view.arrived]
            if at:
                self.slowest = max(self.slowest, (max(0.0, min(at) - want.t), want.symbol))
            elif view.positions.get(want.symbol, 0) * want.sign <= 0 or (
                    otrade is not None and otrade.get(want.symbol, 0) * want.sign <= 0):
                pass  # the position it was for is gone (a leg filled): nothing left to exit
            elif any(t >= want.t - self.alert_slack_s and want.symbol in text and EXIT_ALERT.search(text)
                     for t, text in alerts):
                pass
            elif now - want.t > self.limit_s:
                sent = f"sent as {', '.join(sorted(want.tags))}" if want.tags else "never sent"
                out.append(Violation(self.name, now, f"{want.symbol}: the {want.reason} exit OTrade wanted "
                                                      f"{now - want.t:.2f} s ago has not reached Kite ({sent}), "
                                                      "and no critical alert about it"))
            else:
                still.append(want)
        self._open = still
        return out


class RefusalCheck:
    """10. Kite never refuses an order request of ours for its modification cap or its circuit band:
    OTrade replaces an order before the cap and keeps prices inside the band it read. A circuit refusal
    is the plan's, not OTrade's, unless OTrade had known the instrument's band for ``slack_s`` when Kite
    answered (``known``: symbol -> spans of time the OTrade process up knew Kite's band)."""

    name = "refusal"

    def __init__(self, slack_s: float = BAND_SLACK_S) -> None:
        self.slack_s = slack_s
        self.excused = 0  # circuit refusals of a band OTrade could not know yet

    def check(self, now: float, calls: Iterable[OrderCall], known: dict[str, list[tuple[float, float]]]
              ) -> list[Violation]:
        out = []
        for call in calls:
            if call.status == 200:
                continue
            if CAP_REFUSAL.search(call.message):
                out.append(Violation(self.name, now, f"{call.symbol}: Kite refused a {call.endpoint} at "
                                                      f"{call.at:.3f} s: {call.message}"))
            elif CIRCUIT_REFUSAL.search(call.message):
                at = call.answered or call.at
                if any(start + self.slack_s <= at <= end for start, end in known.get(call.symbol, ())):
                    out.append(Violation(self.name, now, f"{call.symbol}: Kite refused a {call.endpoint} at "
                                                          f"{at:.3f} s, with its band known: {call.message}"))
                else:
                    self.excused += 1
        return out


class GapMeter:
    """Measures (checks nothing) how far apart the engine's stop and the trigger at Kite of the stop it
    names get, per position, settled or not: each span in which they differ, its length and its widest
    gap. Kept: the widest gap (with its span's length) and the longest span (with its widest gap)."""

    def __init__(self) -> None:
        self.largest = (0.0, 0.0, "")  # (rupees, seconds, "symbol: engine vs Kite")
        self.longest = (0.0, 0.0, "")  # (seconds, rupees, symbol)
        self._open: dict[str, tuple[float, float, str]] = {}  # symbol -> (since, widest, "engine vs Kite")

    def measure(self, now: float, levels: dict[str, tuple[float, float]]) -> None:
        """``levels``: symbol -> (the engine's stop, its stop's trigger at Kite), for positions with one."""
        for symbol in sorted(set(levels) | set(self._open)):
            engine, kite = levels.get(symbol, (0.0, 0.0))
            gap = round(abs(engine - kite), 4)
            if gap >= 1e-6:
                since, widest, where = self._open.get(symbol, (now, 0.0, ""))
                if gap > widest:
                    widest, where = gap, f"{symbol}: {engine:g} vs {kite:g}"
                self._open[symbol] = (since, widest, where)
            if symbol in self._open:
                since, widest, where = self._open[symbol]
                self.largest = max(self.largest, (widest, now - since, where))
                self.longest = max(self.longest, (now - since, widest, symbol))
                if gap < 1e-6:
                    del self._open[symbol]


class TagCheck:
    """3. No tag is placed twice: Kite's book never holds two orders with one tag of ours."""

    name = "tag"

    def __init__(self) -> None:
        self._reported: set[str] = set()

    def check(self, now: float, view: BookView) -> list[Violation]:
        out = []
        for tag, ids in view.tags.items():
            if len(ids) > 1 and tag not in self._reported:
                self._reported.add(tag)
                out.append(Violation(self.name, now, f"tag {tag} placed {len(ids)} times: orders {', '.join(ids)}"))
        return out


class RateCheck:
    """4. Orders placed per instrument in any minute stay within ``risk.max_orders_per_position_minute``."""

    name = "rate"

    def __init__(self, cap: int, window_s: float = 60.0) -> None:
        self.cap, self.window_s = cap, window_s
        self._reported: set[str] = set()

    def check(self, now: float, view: BookView) -> list[Violation]:
        out = []
        for symbol, times in view.placed.items():
            if symbol in self._reported:
                continue
            most, lo = 0, 0
            for hi, t in enumerate(times):
                while t - times[lo] >= self.window_s:
                    lo += 1
                most = max(most, hi - lo + 1)
            if most > self.cap:
                self._reported.add(symbol)
                out.append(Violation(self.name, now, f"{symbol}: {most} orders placed within {self.window_s:g} s "
                                                      f"(cap {self.cap})"))
        return out


class ExceptionCheck:
    """5. No exception escaped: an ERROR record with a traceback from an ``engine.*`` logger, a task
    that died, or an "Internal fault" alert."""

    name = "exception"

    def __init__(self, expected: tuple[re.Pattern[str], ...] = EXPECTED_ERRORS) -> None:
        self.expected = expected

    def log_record(self, now: float, record: logging.LogRecord) -> list[Violation]:
        if record.levelno < logging.ERROR or not record.exc_info or not record.name.startswith("engine"):
            return []
        message = record.getMessage()
        if any(p.search(message) for p in self.expected):
            return []
        exc = record.exc_info[1]
        return [Violation(self.name, now, f"{record.name}: {message} ({type(exc).__name__}: {exc})"
                                          f"{_where(record)}")]

    def alert(self, now: float, text: str) -> list[Violation]:
        return [Violation(self.name, now, f"alert: {text}")] if "Internal fault" in text else []

    def task_died(self, now: float, name: str, exc: BaseException) -> list[Violation]:
        return [Violation(self.name, now, f"task {name} died: {type(exc).__name__}: {exc}")]


def _where(record: logging.LogRecord) -> str:
    """Where the exception was raised (the innermost frame of the engine's), for the report."""
    tb = record.exc_info[2] if record.exc_info else None
    where = ""
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if "/engine/" in path:
            where = f" at {path[path.rindex('/engine/') + 1:]}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return where


def _trade_key(trade: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in trade.items() if k not in ("ts", "kind")))


def journal_check(now: float, journal: list[dict[str, Any]], runs: list[list[dict[str, Any]]],
                  lost: list[dict[str, Any]]) -> list[Violation]:
    """6. The journal's ``trade_closed`` records are the trades of every run of the data dir, less
    those a kill -9 took before they were flushed (``lost``)."""
    wanted = Counter(_trade_key(t) for run in runs for t in run)
    wanted.subtract(Counter(_trade_key(t) for t in lost))
    wanted = +wanted
    recorded = Counter(_trade_key(t) for t in journal)
    out = []
    for key, n in (wanted - recorded).items():
        out.append(Violation("journal", now, f"trade missing from the journal (x{n}): {dict(key)}"))
    for key, n in (recorded - wanted).items():
        out.append(Violation("journal", now, f"journal trade no run closed (x{n}): {dict(key)}"))
    return out


def end_check(now: float, view: BookView, otrade: dict[str, int] | None) -> list[Violation]:
    """After flatten, healed faults and settling: Kite flat, nothing of ours working, OTrade flat."""
    out = []
    for symbol, qty in sorted(view.positions.items()):
        if qty:
            out.append(Violation("end", now, f"{symbol}: Kite still holds {qty:+d} after flatten"))
    if view.working:
        out.append(Violation("end", now, f"orders of ours still working at Kite: {', '.join(view.working)}"))
    for symbol, qty in sorted((otrade or {}).items()):
        if qty:
            out.append(Violation("end", now, f"{symbol}: OTrade still holds {qty:+d} after flatten"))
    return out


class Settle:
    """The book has settled once the world was quiet (see ``Chaos._unsettled``: nothing of ours
    transient at Kite or unsure at OTrade, no request in flight, OTrade shown every order's newest
    row) for ``quiet_s`` without the book changing."""

    def __init__(self, quiet_s: float = 1.0) -> None:
        self.quiet_s = quiet_s
        self._since: float | None = None
        self._version: Any = None

    def update(self, now: float, quiet: bool, version: Any) -> bool:
        if not quiet:
            self._since = None
        elif self._since is None or version != self._version:
            self._since = now
        self._version = version
        return self._since is not None and now - self._since >= self.quiet_s
