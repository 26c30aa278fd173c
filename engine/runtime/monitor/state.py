"""What the monitoring page shows: the engine's control API read on demand, plus what the API does
not keep: each instrument's prices through the day, today's net P&L through the day, the alerts and
the latest end-of-day report. One task (``run``) keeps those from the engine's events and a sample
a second; the tick path is not touched.
"""

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import layout as L
from engine.data.ticks import Ticks
from engine.engine import Engine
from engine.services.events import ALERT, REPORT, Event, EventBus
from engine.services.journal import Journal

log = logging.getLogger(__name__)
POINTS = 30_000  # a session's seconds (22,500) with room to spare: one point a second per series
FIRST_POINTS = 3_000  # a page's first picture of a series is thinned to this many points
ALERTS = 50
ORDERS = 50  # the newest orders of the day the page lists
EQUITY_EVERY_S = 60.0  # an unchanged P&L still gets a point this often, so its curve reaches the present
REPORT_DAYS = 7  # how far back the latest end-of-day report is looked for


def _day(ns: int) -> date:
    return datetime.fromtimestamp(ns / L.NS_PER_S, L.IST).date()


class Series:
    """Points (time in s, value), the oldest dropped past ``size``. A reader's cursor (epoch, count)
    says what it has seen; ``clear`` starts a new epoch, so a reader starts over."""

    def __init__(self, size: int = POINTS) -> None:
        self.t: deque[float] = deque(maxlen=size)
        self.v: deque[float] = deque(maxlen=size)
        self.count = 0  # points ever added in this epoch
        self.epoch = 0

    def add(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)
        self.count += 1

    def clear(self) -> None:
        self.t.clear()
        self.v.clear()
        self.count, self.epoch = 0, self.epoch + 1

    @property
    def last(self) -> tuple[float, float] | None:
        return (self.t[-1], self.v[-1]) if self.t else None

    def since(self, cursor: tuple[int, int] | None) -> tuple[dict[str, Any], tuple[int, int]]:
        """The points after ``cursor`` (``reset`` False), or the whole series thinned when the reader
        has none of it or lost its place (``reset`` True)."""
        kept = len(self.t)
        if cursor is not None and cursor[0] == self.epoch and cursor[1] >= self.count - kept:
            new = self.count - cursor[1]
            t, v = list(self.t)[kept - new:], list(self.v)[kept - new:]
            return {"t": t, "v": v, "reset": False}, (self.epoch, self.count)
        step = math.ceil(kept / FIRST_POINTS) if kept > FIRST_POINTS else 1
        t, v = list(self.t)[::-1][::step][::-1], list(self.v)[::-1][::step][::-1]  # the newest point always in
        return {"t": t, "v": v, "reset": True}, (self.epoch, self.count)


class Monitor:
    """The page's model of one process. ``view`` is the page's state now; ``series`` the charts'
    points a reader has not seen; ``changed`` wakes the readers on an event and once a second."""

    def __init__(self, engine: Engine, bus: EventBus, now_ns: Callable[[], int],
                 health: Callable[[], dict[str, Any]], journal: Journal,
                 recording: Callable[[date], Path | None] = lambda day: None) -> None:
        self.engine = engine
        self.now_ns = now_ns
        self.health = health
        self.journal = journal
        self.recording = recording  # today's tick recording, for the prices before this start
        self.prices = {symbol: Series() for symbol in engine.arrays.symbols}
        self.equity = Series()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS)
        self.report: dict[str, Any] | None = None
        self.closing = False
        self._bus = bus
        self._events = bus.subscribe(1_000)
        self._seen: dict[str, int] = {}  # per symbol: the time of the last tick sampled
        self._day: date | None = None
        self._loaded = False
        self._changed = asyncio.Event()

    # --- keeping what the control API does not ----------------------------------------------
    async def run(self) -> None:
        """The task: the day so far from disk once, then each event as it comes and a sample a second."""
        if not self._loaded:
            self._loaded = True
            await self._load()
        # No wait_for on the mailbox: Python 3.11's loses a cancel that meets an arriving event (the
        # shutdown's own alert), and the process would never stop.
        clock = asyncio.create_task(self._every_second())
        try:
            while True:
                self.take(await self._events.get())
                self.sample()
                self._wake()
        finally:
            clock.cancel()

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sample()
            self._wake()

    def take(self, event: Event) -> None:
        if event.kind == ALERT:
            self.alerts.appendleft({"t": event.ts_ns / L.NS_PER_S, "level": event.data.get("level") or
                                    ("critical" if event.critical else "info"), "text": event.data.get("text", "")})
        elif event.kind == REPORT:
            self.report = {"t": event.ts_ns / L.NS_PER_S, "text": event.data.get("text", "")}

    def _now(self) -> int:
        """The engine's clock; a replay's ticks carry their own past day, and then its newest tick is now."""
        now, newest = self.now_ns(), int(self.engine.arrays.clk[:, L.C_LTP].max(initial=0))
        return newest if newest and _day(newest) != _day(now) else now

    def sample(self) -> None:
        """Each instrument's last tick (when new) and the day's net P&L into the charts; a new day
        starts them afresh."""
        now = self._now()
        self._new_day(_day(now))
        a = self.engine.arrays
        for j, symbol in enumerate(a.symbols):
            ts, price = int(a.clk[j, L.C_LTP]), float(a.st[j, L.S_LTP])
            if ts > self._seen.get(symbol, 0) and not math.isnan(price) and _day(ts) == self._day:
                self._seen[symbol] = ts
                self.prices[symbol].add(ts / L.NS_PER_S, price)
        net, last = self.engine.pnl()["net"], self.equity.last
        if last is None or net != last[1] or now / L.NS_PER_S - last[0] >= EQUITY_EVERY_S:
            self.equity.add(now / L.NS_PER_S, net)

    def _new_day(self, day: date) -> None:
        symbols = self.engine.arrays.symbols
        if day != self._day:
            self._day = day
            for series in (*self.prices.values(), self.equity):
                series.clear()
        if tuple(self.prices) != symbols:  # the instruments changed with the config
            self.prices = {s: self.prices.get(s) or Series() for s in symbols}

    def seed(self, ticks: Ticks) -> None:
        """Today's ticks before this start (its recording) into the price charts, a point a second."""
        self._new_day(_day(self._now()))
        for k, symbol in enumerate(ticks.symbols):
            if symbol not in self.prices:
                continue
            mine = ticks.instr == k
            ts, price = ticks.ts[mine], ticks.price[mine]
            if not len(ts):
                continue
            second = ts // L.NS_PER_S
            last = np.flatnonzero(np.append(second[1:] != second[:-1], True))  # each second's last tick
            for i in last:
                if _day(int(ts[i])) == self._day and ts[i] > self._seen.get(symbol, 0):
                    self.prices[symbol].add(int(ts[i]) / L.NS_PER_S, float(price[i]))
                    self._seen[symbol] = int(ts[i])
        self._equity_from_trades()

    def _equity_from_trades(self) -> None:
        """The day's closed trades (restored at start) as the net P&L curve so far."""
        if self.equity.count:
            return
        net = 0.0
        for trade in sorted(self.engine.trades(), key=lambda t: t["exit_time_ns"]):
            if _day(trade["exit_time_ns"]) == self._day:
                net += trade["net_pnl"]
                self.equity.add(trade["exit_time_ns"] / L.NS_PER_S, net)

    async def _load(self) -> None:
        """Today's recording and the latest report, read off the loop."""
        self._new_day(_day(self._now()))
        path = self.recording(self._day)
        if path is not None:
            from engine.data.store import StoreError, load_ticks

            try:
                self.seed(await asyncio.to_thread(load_ticks, path, self.engine.arrays.symbols))
            except (StoreError, OSError) as exc:
                log.warning("monitoring page: today's recording cannot be read (%s): its chart starts now", exc)
        self._equity_from_trades()
        if self.report is None:
            self.report = await asyncio.to_thread(self._latest_report)

    def _latest_report(self) -> dict[str, Any] | None:
        for day in reversed(self.journal.dates()[-REPORT_DAYS:]):
            reports = [r for r in self.journal.read_day(day) if r.get("kind") == "report"]
            if reports:
                stamp = datetime.fromisoformat(reports[-1]["ts"]).timestamp()
                return {"t": stamp, "text": reports[-1].get("text", "")}
        return None

    # --- the readers' side ---------------------------------------------------------------------
    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float) -> None:
        """Returns on the next change, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # unlike wait_for, never swallows the handler's own cancel
                await self._changed.wait()

    def close(self) -> None:
        """The server is stopping (or never started): every reader ends its stream, and the bus stops
        keeping events for this model."""
        self.closing = True
        with contextlib.suppress(ValueError):  # closed before
            self._bus.unsubscribe(self._events)
        self._wake()

    def series(self, cursors: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """The chart points each series has that ``cursors`` (updated here) have not seen."""
        out: dict[str, Any] = {"prices": {}}
        for symbol, series in self.prices.items():
            out["prices"][symbol], cursors[symbol] = series.since(cursors.get(symbol))
        out["equity"], cursors[""] = self.equity.since(cursors.get(""))
        return out

    def view(self) -> dict[str, Any]:
        """The page's state now, in parts a reader sends again only when they change."""
        engine = self.engine
        status = engine.status()
        entries = {engine.arrays.symbols[j]: int(engine.arrays.clk[j, L.C_ENTRY]) / L.NS_PER_S
                   for j in range(len(engine.arrays.symbols))}
        # working orders first, then the rest; newest first in each
        orders = sorted(engine.broker.all_orders(), key=lambda o: (o.working, o.updated_ns))[-ORDERS:]
        return {
            "engine": {"state": status["state"], "reason": status["reason"], "broker": status["broker"],
                       "live": engine.live, "foreign": status["foreign"]},
            "health": self.health(),
            "pnl": status["pnl"],
            "risk": status["risk"],
            "instruments": [{"symbol": i["symbol"], "ltp": i["ltp"], "position": i["position"],
                             "open_orders": i["open_orders"], "net": i["day_net"],
                             "strategy": i["strategy"]["kind"], "timeframe": i["strategy"]["timeframe"],
                             "bars_needed": i["strategy"]["bars_needed"]} for i in status["instruments"]],
            "positions": [{**p, "entry_t": entries[p["symbol"]]} for p in engine.positions()],
            "orders": [{**o.to_dict(), "t": o.updated_ns / L.NS_PER_S} for o in reversed(orders)],
            "trades": [{**t, "entry_t": t["entry_time_ns"] / L.NS_PER_S, "exit_t": t["exit_time_ns"] / L.NS_PER_S}
                       for t in engine.trades()],
            "alerts": list(self.alerts),
            "report": self.report,
        }
