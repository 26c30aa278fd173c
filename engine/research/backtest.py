"""Backtest: replay ticks through the live tick kernel inside one jitted loop, then summarise.

The loop is the one compiled for the config's strategies (``engine.strategies.compiled``); the loop for
any strategy (``run_ticks``, also the audit's) gives the same trades.
"""

import csv
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config import Config
from engine.arrays import Arrays, build, rates
from engine.core import layout as L
from engine.core.candle_order import MAX_PATHS, TOO_LONG, workspace
from engine.core.costs import round_trip_costs
from engine.core.loop import (
    N_TF,
    T_ENTRY,
    T_EXIT,
    T_INSTR,
    T_PNL,
    T_QTY,
    T_REASON,
    T_SIDE,
    TI_ENTRY,
    TI_EXIT,
    finish,
    run_ticks,
)
from engine.data.candles import CandleError
from engine.data.ticks import Ticks
from engine.strategies.compiled import kernels_for

if TYPE_CHECKING:
    from engine.services.calendar import TradingCalendar

CHUNK = 2_000_000  # ticks per jitted call, so the progress bar moves and trade buffers can grow


@dataclass
class Result:
    symbols: tuple[str, ...]
    ticks: int  # in-session ticks processed
    days: np.ndarray  # IST day numbers of the sessions seen
    tf: np.ndarray
    ti: np.ndarray
    costs: np.ndarray
    session_ns: float  # length of one session window, for exposure

    @property
    def net(self) -> np.ndarray:
        return self.tf[:, T_PNL] - self.costs

    def summary(self) -> dict:
        pnl = self.tf[:, T_PNL]
        net = self.net
        equity = np.concatenate(([0.0], np.cumsum(net)))
        drawdown = float(np.max(np.maximum.accumulate(equity) - equity))
        exit_day = (self.ti[:, TI_EXIT] + L.IST_OFFSET_NS) // L.NS_PER_DAY
        daily = np.array([net[exit_day == d].sum() for d in self.days]) if len(self.days) else np.zeros(0)
        std = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
        sharpe = float(daily.mean() / std) if std > 0 else 0.0
        held = float((self.ti[:, TI_EXIT] - self.ti[:, TI_ENTRY]).sum())
        window = self.session_ns * len(self.days) * len(self.symbols)
        return {
            "ticks": self.ticks,
            "sessions": len(self.days),
            "trades": len(pnl),
            "wins": int((net > 0).sum()),
            "win_rate": float((net > 0).mean()) if len(pnl) else 0.0,
            "gross_pnl": round(float(pnl.sum()), 2),
            "costs": round(float(self.costs.sum()), 2),
            "net_pnl": round(float(net.sum()), 2),
            "max_drawdown": round(drawdown, 2),
            "sharpe_daily": round(sharpe, 4),
            "sharpe_annualised": round(sharpe * math.sqrt(252), 4),
            "exposure": round(held / window, 4) if window else 0.0,
            "by_reason": {r: int((self.tf[:, T_REASON] == k).sum()) for k, r in enumerate(L.REASONS)
                          if (self.tf[:, T_REASON] == k).any()},
        }

    def per_day(self) -> list[dict]:
        """One row per session: the trades that closed that IST day, their gross P&L, charges and net."""
        exit_day = (self.ti[:, TI_EXIT] + L.IST_OFFSET_NS) // L.NS_PER_DAY
        rows = []
        for d in self.days.tolist():
            on = exit_day == d
            gross, charges = float(self.tf[on, T_PNL].sum()), float(self.costs[on].sum())
            rows.append({"day": (datetime(1970, 1, 1) + timedelta(days=d)).date().isoformat(),
                         "trades": int(on.sum()), "gross": round(gross, 2), "charges": round(charges, 2),
                         "net": round(gross - charges, 2)})
        return rows

    def trade_rows(self) -> list[dict]:
        rows = []
        for f, t in zip(self.tf, self.ti, strict=True):
            rows.append({
                "symbol": self.symbols[int(f[T_INSTR])],
                "entry_time": iso(int(t[TI_ENTRY])),
                "side": "long" if f[T_SIDE] > 0 else "short",
                "qty": int(f[T_QTY]),
                "entry_price": round(float(f[T_ENTRY]), 4),
                "exit_time": iso(int(t[TI_EXIT])),
                "exit_price": round(float(f[T_EXIT]), 4),
                "exit_reason": L.REASONS[int(f[T_REASON])],
                "pnl": round(float(f[T_PNL]), 4),
            })
        return rows

    def write_trades(self, path: Path) -> None:
        """One row per trade; ``gross_pnl`` before, ``net_pnl`` after the trade's round-trip ``charges``."""
        fields = ["entry_time", "side", "qty", "entry_price", "exit_time", "exit_price", "exit_reason",
                  "gross_pnl", "charges", "net_pnl", "symbol"]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for row, charges in zip(self.trade_rows(), self.costs.tolist(), strict=True):
                gross = row.pop("pnl")
                writer.writerow({**row, "gross_pnl": gross, "charges": round(charges, 4),
                                 "net_pnl": round(gross - charges, 4)})

    def closed_days(self, calendar: "TradingCalendar") -> list[date]:
        """The days traded on that ``calendar`` has NSE closed (a holiday, a weekend): the data held
        ticks of them in the session window, so they were traded like any other, and the caller says so."""
        days = [date(1970, 1, 1) + timedelta(days=d) for d in self.days.tolist()]
        return [d for d in days if calendar.session(d) is None]


def iso(ns: int) -> str:
    """IST, to the millisecond it falls in. Whole seconds and microseconds apart: ``ns / 1e9`` as a
    float rounds a time just before a millisecond up into the next one."""
    ns = int(ns)
    return datetime.fromtimestamp(ns // 10**9, L.IST).replace(microsecond=ns % 10**9 // 1000).isoformat(
        timespec="milliseconds")


def run(cfg: Config, ticks: Ticks, progress: bool = False, partner: np.ndarray | None = None,
        compiled: bool = True) -> Result:
    """``partner``: a candle replay's (``engine.data.candles.Replay.partner``), for its pessimistic
    rule; CandleError if a strategy could decide on a candle's extremes, whose order that rule
    chooses (a tick strategy, bars closing inside candles). ``compiled`` False: the loop for any
    strategy rather than the one compiled for the config's (the same trades, slower)."""
    arrays: Arrays = build(cfg)
    if ticks.symbols != arrays.symbols:
        raise ValueError(f"tick symbols {ticks.symbols} do not match the configured {arrays.symbols}")
    loop, end = run_ticks, finish
    if compiled:
        own = kernels_for(arrays.strategies)
        own.bind(arrays.strategies, arrays.links)
        loop, end = own.run_ticks, own.finish
    n = len(ticks)
    cap = 1024 + n // 2048  # doubled as trades come: 72 MB zeroed up front cost 0.5-6 ms a run
    tf = np.zeros((cap, N_TF))
    ti = np.zeros((cap, 2), dtype=np.int64)
    span_days = int((ticks.ts[-1] - ticks.ts[0]) // L.NS_PER_DAY) + 2 if n else 1
    days = np.zeros(span_days, dtype=np.int64)
    n_tr = total = n_days = 0
    k = 0
    levels = 0
    if partner is not None:
        levels = _decided_on_opens(arrays, ticks, partner) + 2
    price = ticks.price if partner is None else ticks.price.copy()  # the pessimistic rule reorders prices
    planned = np.full(len(arrays.symbols), -1, np.int64)
    ws = None if partner is None else workspace(arrays.rows.shape[2], levels, arrays.links.shape[1])
    bar = _progress_bar(n) if progress and n >= 5 * CHUNK else _NoBar()
    while k < n:
        stop = min(n, k + CHUNK)
        k2, n_tr, seen, n_days, fault = loop(ticks.ts, price, ticks.volume, ticks.instr, k, stop, *arrays.kernel(),
                                             tf, ti, n_tr, days, n_days, partner, planned, ws)
        if fault:
            bar.close()
            raise CandleError(_unbounded(arrays, ticks, k2, fault))
        total += seen
        bar.update(k2 - k)
        k = k2
        if tf.shape[0] - n_tr <= arrays.st.shape[0]:
            tf = np.concatenate((tf, np.zeros_like(tf)))
            ti = np.concatenate((ti, np.zeros_like(ti)))
    bar.close()
    if tf.shape[0] - n_tr <= arrays.st.shape[0]:
        tf = np.concatenate((tf, np.zeros((arrays.st.shape[0] + 1, N_TF))))
        ti = np.concatenate((ti, np.zeros((arrays.st.shape[0] + 1, 2), dtype=np.int64)))
    n_tr = end(arrays.st, arrays.pr, arrays.acct, arrays.clk, arrays.rows, arrays.links, tf, ti, n_tr)
    tf, ti = tf[:n_tr].copy(), ti[:n_tr].copy()
    costs = round_trip_costs(tf[:, T_SIDE], tf[:, T_QTY], tf[:, T_ENTRY], tf[:, T_EXIT], rates(cfg.costs))
    session_ns = float(cfg.session.ns_after_midnight("close") - cfg.session.ns_after_midnight("open"))
    return Result(arrays.symbols, total, days[:n_days].copy(), tf, ti, costs, session_ns)


class _NoBar:
    """A run too short to show progress for, or not on a terminal."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(n: int) -> Any:
    from tqdm import tqdm  # imported only to be shown: 30 ms of every start otherwise

    return tqdm(total=n, unit="tick", unit_scale=True, leave=False)


_WHOLE_CANDLES = "give it a timeframe of whole candles, or use the ohlc rule"


def _clock(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) // 10**9, L.IST).strftime("%Y-%m-%d %H:%M")


def _decided_on_opens(arrays: Arrays, ticks: Ticks, partner: np.ndarray) -> int:
    """CandleError unless each instrument's bars close only on its candles' opens (each replayed
    candle is its open, its extremes, the first marked in ``partner``, and its close), so that no
    decision depends on the order of a candle's extremes. Returns the most candles an instrument
    has in one session: the longest a trade can be."""
    day = (ticks.ts + L.IST_OFFSET_NS) // L.NS_PER_DAY
    tod = ticks.ts + L.IST_OFFSET_NS - day * L.NS_PER_DAY
    longest = 0
    for i, symbol in enumerate(arrays.symbols):
        mine = np.flatnonzero(ticks.instr == i)
        x1 = np.flatnonzero(partner[mine] > 0)
        if not len(x1):
            continue
        opens = mine[x1 - 1]
        longest = max(longest, int(np.unique(day[opens], return_counts=True)[1].max()))
        tf, start = arrays.pr[i, L.P_TF_NS], arrays.pr[i, L.P_OPEN_NS]
        if tf == 0.0:
            raise CandleError(f"the pessimistic rule cannot bound {symbol}'s trades: its strategy decides on every "
                              f"tick, and which extreme of a candle came first changes what it decides; "
                              f"{_WHOLE_CANDLES}")
        bar = (tod - start) // tf
        inside = (bar[mine[x1[:, None] + np.arange(3)]] != bar[opens][:, None]).any(axis=1)
        inside &= (tod[opens] >= start) & (tod[opens] < arrays.pr[i, L.P_CLOSE_NS])
        if inside.any():
            o = opens[np.argmax(inside)]
            end = ticks.ts[o] - tod[o] + start + (bar[o] + 1) * tf
            raise CandleError(f"the pessimistic rule cannot bound {symbol}'s trades: its {tf / 60e9:g}-minute bars "
                              f"close inside candles (the bar ending {_clock(end)[11:]} inside the candle from "
                              f"{_clock(ticks.ts[o])}), deciding on an extreme whose place is unknown; "
                              f"{_WHOLE_CANDLES}")
    return longest


def _unbounded(arrays: Arrays, ticks: Ticks, k: int, fault: int) -> str:
    symbol, when = arrays.symbols[ticks.instr[k]], _clock(ticks.ts[k])
    if fault == TOO_LONG:
        return f"the pessimistic rule cannot bound {symbol}'s trade at {when}: it outlasts a session's candles"
    return (f"the pessimistic rule cannot bound {symbol}'s trade at {when}: its trailing stop, moved at most every "
            f"trail_interval_s, leaves more than {MAX_PATHS} paths through its candles; set trail_interval_s to 0, "
            "or use the ohlc rule")
