"""What today's journal says the day was, rebuilt on start (``Engine.restore``) before the first tick.

The closed trades (with their P&L and charges), the entries taken (the trades-per-day count), the
state the trader or the loss limit left (PAUSED, HALTED: a halted day stays halted), and the
positions the day's fills leave, with the bracket levels last journaled for them. Positions are
derived from the fills, as the venue's own ledger derives them: each order's cumulative filled
quantity, its new part booked at the price it implies.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from config.models import Costs
from engine.arrays import rates, under_way
from engine.core import layout as L
from engine.core.costs import round_trip_costs
from engine.core.layout import IST, IST_OFFSET_NS, NS_PER_DAY
from engine.core.step import adopt_position, book_entry_charges
from engine.live.host import Host
from engine.live.protection import Protection
from engine.orders import FINAL, Side

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEPT_STATES = ("PAUSED", "HALTED")  # RUNNING, IDLE and CLOSED follow from the session schedule


@dataclass
class Held:
    """An open position the day's fills leave."""

    symbol: str
    qty: int  # signed
    price: float  # average entry price
    opened_ns: int
    target: float | None = None  # the working target's price, as last journaled
    stop: float | None = None  # the working stop's trigger, as last journaled
    trailed: bool = False


@dataclass
class Day:
    trades: list[dict[str, Any]] = field(default_factory=list)
    entries: int = 0  # entry orders that filled, at least in part
    state: str = ""  # PAUSED or HALTED as the day left it; "" for the session to decide
    reason: str = ""
    held: dict[str, Held] = field(default_factory=dict)
    order_ids: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.trades or self.entries or self.state or self.held)


def ns_of(ts: str) -> int:
    return (datetime.fromisoformat(ts) - _EPOCH) // timedelta(microseconds=1) * 1000


def rebuild(records: list[dict[str, Any]], costs: Costs, transient: frozenset[str]) -> Day:
    """The day from its journal records, in order. Pauses for a ``transient`` reason (the process
    stopping, an expired token, a stalled feed) are re-derived by the running process, not kept."""
    day = Day()
    fills: dict[str, tuple[int, float]] = {}  # order id -> (filled quantity, average price)
    for r in records:
        kind = r.get("kind")
        if kind == "order":
            _order(day, fills, r)
        elif kind == "stop_moved" and r.get("symbol") in day.held:
            held = day.held[r["symbol"]]
            held.stop, held.trailed = float(r["stop"]), True
        elif kind == "trade_closed":
            day.trades.append({k: v for k, v in r.items() if k not in ("ts", "kind")})
        elif kind == "state" and not (r.get("new") == "PAUSED" and r.get("reason") in transient):
            day.state, day.reason = (r["new"], r.get("reason", "")) if r.get("new") in _KEPT_STATES else ("", "")
    _charge(day.trades, costs)
    return day


def _order(day: Day, fills: dict[str, tuple[int, float]], r: dict[str, Any]) -> None:
    oid, symbol = r["order_id"], r["symbol"]
    day.order_ids.add(oid)
    filled, average = int(r.get("filled_quantity") or 0), float(r.get("average_price") or 0.0)
    before, before_avg = fills.get(oid, (0, 0.0))
    if filled > before:
        fills[oid] = (filled, average)
        price = (filled * average - before * before_avg) / (filled - before)
        qty = filled - before if r["side"] == Side.BUY else before - filled
        _book(day, symbol, qty, price, int(r["fill_ns"]) if r.get("fill_ns") else ns_of(r["ts"]))
        if r.get("purpose") == "entry" and before == 0:
            day.entries += 1
    held = day.held.get(symbol)
    if held is None or r["status"] in FINAL:
        return
    if r.get("purpose") == "target":
        held.target = r.get("price")
    elif r.get("purpose") == "stop":
        held.stop = r.get("trigger_price")


def _book(day: Day, symbol: str, qty: int, price: float, ts_ns: int) -> None:
    held = day.held.get(symbol)
    if held is None:
        day.held[symbol] = Held(symbol, qty, price, ts_ns)
        return
    total = held.qty + qty
    if total == 0:
        del day.held[symbol]
    elif (held.qty > 0) == (qty > 0):  # grown: at the average price
        held.price = (held.price * held.qty + price * qty) / total
        held.qty = total
    elif (held.qty > 0) == (total > 0):  # reduced
        held.qty = total
    else:  # turned over: a new position at this price
        day.held[symbol] = Held(symbol, total, price, ts_ns)


def _charge(trades: list[dict[str, Any]], costs: Costs) -> None:
    """Trades journaled before charges were: their charges at today's rates."""
    old = [t for t in trades if "charges" not in t]
    if not old:
        return
    side = np.array([1.0 if t["side"] == "long" else -1.0 for t in old])
    charged = round_trip_costs(side, np.array([t["qty"] for t in old]), np.array([t["entry_price"] for t in old]),
                               np.array([t["exit_price"] for t in old]), rates(costs))
    for t, c in zip(old, charged, strict=True):
        t["charges"], t["net_pnl"] = float(c), t["pnl"] - float(c)


class DayBook:
    """Today brought back from the journal into the kernel's state, and earlier days reported from it."""

    def __init__(self, host: Host, protection: Protection) -> None:
        self.host = host
        self.protection = protection

    def today(self) -> str:
        return datetime.fromtimestamp(self.host.now_ns() / 1e9, IST).date().isoformat()

    def day_number(self) -> int:
        """Today as the kernel numbers days (IST days since the epoch)."""
        return (self.host.now_ns() + IST_OFFSET_NS) // NS_PER_DAY

    def rebuild(self, day: Day) -> list[str]:
        """Today's figures into the kernel's state, as they were: closed trades, entries taken, and
        (paper) the open positions with their levels, protected again; live, the journal's positions
        checked against Kite's. Returns notes for the restore message."""
        a = self.host.arrays
        under_way(a, self.day_number())  # a row caught up on today already keeps its session
        for t in day.trades:
            j = self.host.index.get(t["symbol"])
            if j is not None:
                a.st[j, L.S_REALISED] += t["pnl"]
                a.st[j, L.S_DAY_CHARGES] += t["charges"]
        a.acct[L.A_REALISED] = sum(t["pnl"] for t in day.trades)
        a.acct[L.A_CHARGES] += sum(t["charges"] for t in day.trades)  # live: reconcile booked open entries
        a.acct[L.A_TRADES] = day.entries
        if self.host.live:
            self.check_journal_positions(day)  # alerted on their own
            return []
        return self._hold_journaled(day)

    def _hold_journaled(self, day: Day) -> list[str]:
        """Paper: the positions the journal's fills leave, with their last journaled target and stop
        (a trailed stop stays where it was), protected at the venue again."""
        a, notes = self.host.arrays, []
        self.host.broker.number_after(day.order_ids)
        for symbol, held in day.held.items():
            j = self.host.index.get(symbol)
            if j is None:
                notes.append(f"{symbol} {held.qty:+d} @ {held.price:.2f} is no longer configured: not restored")
                continue
            adopt_position(a.st, a.pr, a.clk, j, int(held.opened_ns), float(held.qty), float(held.price))
            book_entry_charges(a.st, a.acct, j)
            if held.target is not None:
                a.st[j, L.S_TARGET] = held.target
            if held.stop is not None:
                a.st[j, L.S_STOP] = held.stop
            a.st[j, L.S_TRAILED] = float(held.trailed)
            # the last price known, until a tick comes: a session closing first exits at it, not at 0
            a.st[j, L.S_LAST_PRICE], a.clk[j, L.C_LAST] = held.price, self.host.now_ns()
            self.host.broker.hold(symbol, held.qty, held.price)
            self.protection.protect(j)
        return notes

    def check_journal_positions(self, day: Day | None = None) -> list[str]:
        """Live, once reconciled with Kite: the positions today's journal leaves against the ones
        OTrade now holds (Kite's orders of the day decide). Each disagreement is alerted and returned."""
        if day is None:
            day = rebuild(self.host.journal.read_day(self.today()), self.host.cfg.costs, frozenset())
        st, notes = self.host.arrays.st, []
        for symbol in sorted({*self.host.arrays.symbols, *day.held}):
            j = self.host.index.get(symbol)
            held = int(st[j, L.S_POS]) if j is not None else 0
            journaled = day.held[symbol].qty if symbol in day.held else 0
            if held != journaled:
                text = (f"{symbol}: the journal shows {journaled:+d} open but Kite's orders of the day leave "
                        f"{held:+d}; Kite's is kept (a fill while OTrade was down is not among today's trades: "
                        "check Kite)")
                self.host.alert(text)
                notes.append(text)
        return notes

    def daily(self, n: int, today_trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The last ``n`` days' closed trades and money, oldest first: today's are the engine's own
        (the figures /trades and /pnl show), earlier days' come from the journal."""
        today = self.today()
        dates = [*(d for d in self.host.journal.dates() if d < today), today][-n:]
        out = []
        for date in dates:
            trades = (list(today_trades) if date == today
                      else rebuild(self.host.journal.read_day(date), self.host.cfg.costs, frozenset()).trades)
            gross, charges = sum(t["pnl"] for t in trades), sum(t["charges"] for t in trades)
            out.append({"date": date, "trades": len(trades), "gross": gross, "charges": charges,
                        "net": gross - charges})
        return out
