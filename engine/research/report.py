"""HTML reports made with Plotly, plotly.js embedded so the one file opens in a browser offline.

A backtest's report: the net equity curve, its drawdown, daily net P&L, and for one day the price of
each instrument with the trades' entries and exits. A sweep's report: that for the best parameters,
the ranking, and walk-forward in sample beside out of sample.
"""

import html
import itertools
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY
from engine.data.ticks import Ticks
from engine.research.backtest import Result
from engine.research.sweep import SweepResult

LINE_POINTS = 6000  # per instrument and day: the price line stays light however dense the ticks
GREEN, RED, BLUE = "#2e7d32", "#c62828", "#1565c0"


class ReportError(ValueError):
    """A report that cannot be drawn as asked; the message says why."""


def _local(ns: np.ndarray) -> np.ndarray:
    """Epoch ns as IST wall-clock datetime64: the axis shows market time whatever the viewer's zone."""
    return ((np.asarray(ns, np.int64) + IST_OFFSET_NS) // 1_000_000).astype("datetime64[ms]")


def _wall(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=None)  # trade times are IST; keep their wall clock


def _thin(y: np.ndarray, points: int = LINE_POINTS) -> np.ndarray:
    """Indices of at most about ``points`` ticks, keeping each stretch's first, lowest and highest, so the
    line still reaches every price a fill could be at."""
    if len(y) <= points:
        return np.arange(len(y))
    edges = np.linspace(0, len(y), points // 3 + 1).astype(np.int64)
    keep = {len(y) - 1}
    for a, b in itertools.pairwise(edges):
        keep.update((int(a), int(a + y[a:b].argmin()), int(a + y[a:b].argmax())))
    return np.array(sorted(keep))


def session_days(ticks: Ticks) -> list[date]:
    return [date.fromordinal(date(1970, 1, 1).toordinal() + int(d))
            for d in np.unique((ticks.ts + IST_OFFSET_NS) // NS_PER_DAY)]


def pick_day(result: Result, ticks: Ticks, day: date | None) -> date:
    """``day`` when the data has it; by default the last day with a trade (else the last day)."""
    days = session_days(ticks)
    if not days:
        raise ReportError("the data has no ticks")
    if day is None:
        traded = [_wall(t["exit_time"]).date() for t in result.trade_rows()]
        return max(traded) if traded else days[-1]
    if day not in days:
        raise ReportError(f"no ticks on {day.isoformat()}; the data has {len(days)} day(s), "
                          f"{days[0].isoformat()} to {days[-1].isoformat()}")
    return day


def backtest_figure(result: Result, ticks: Ticks, day: date | None = None, title: str = "Backtest") -> go.Figure:
    """Equity (net), drawdown, daily net P&L, and the price with entries and exits on ``day``."""
    day = pick_day(result, ticks, day)
    trades = result.trade_rows()
    net = np.asarray(result.net, float)
    exits = [_wall(t["exit_time"]) for t in trades]
    equity = np.concatenate(([0.0], np.cumsum(net)))
    times = [_local(ticks.ts[:1])[0].astype(datetime), *exits]
    days = session_days(ticks)
    daily = dict.fromkeys(days, 0.0)
    for when, x in zip(exits, net, strict=True):
        daily[when.date()] += float(x)
    symbols = ticks.symbols
    fig = make_subplots(rows=3 + len(symbols), cols=1, vertical_spacing=0.05,
                        subplot_titles=["Equity (net ₹)", "Drawdown (₹)", "Daily net P&L (₹)",
                                        *(f"{s} on {day.isoformat()}" for s in symbols)])
    fig.add_trace(go.Scatter(x=times, y=equity, name="equity", line={"color": BLUE}), row=1, col=1)
    fig.add_trace(go.Scatter(x=times, y=equity - np.maximum.accumulate(equity), name="drawdown", fill="tozeroy",
                             line={"color": RED}), row=2, col=1)
    fig.add_trace(go.Bar(x=list(daily), y=list(daily.values()), name="daily net",
                         marker={"color": [GREEN if v >= 0 else RED for v in daily.values()]}), row=3, col=1)
    fig.update_xaxes(matches="x", row=2, col=1)
    on_day = (ticks.ts + IST_OFFSET_NS) // NS_PER_DAY == (day - date(1970, 1, 1)).days
    for k, sym in enumerate(symbols):
        row = 4 + k
        mine = np.flatnonzero(on_day & (ticks.instr == k))
        keep = mine[_thin(ticks.price[mine])]
        fig.add_trace(go.Scatter(x=_local(ticks.ts[keep]), y=ticks.price[keep], name=f"{sym} price",
                                 line={"color": "#607d8b", "width": 1}), row=row, col=1)
        legs = [(t, x) for t, x in zip(trades, net, strict=True) if t["symbol"] == sym]
        for leg, key, when in (("entries", "entry_price", "entry_time"), ("exits", "exit_price", "exit_time")):
            shown = [(t, x) for t, x in legs if _wall(t[when]).date() == day]
            long = [t["side"] == "long" for t, _ in shown]
            fig.add_trace(go.Scatter(
                x=[_wall(t[when]) for t, _ in shown], y=[t[key] for t, _ in shown], mode="markers",
                name=f"{sym} {leg}",
                marker={"size": 10, "color": [GREEN if g else RED for g in long] if leg == "entries" else "black",
                        "symbol": ["triangle-up" if g else "triangle-down" for g in long] if leg == "entries" else "x"},
                text=[f"{t['side']} {t['qty']} @ {t[key]}" + (f"<br>{t['exit_reason']}, net ₹{x:,.2f}"
                                                              if leg == "exits" else "") for t, x in shown],
                hoverinfo="text+x"), row=row, col=1)
    s = result.summary()
    fig.update_layout(title=f"{html.escape(title)}: net ₹{s['net_pnl']:,.2f}, {s['trades']} trades, "
                            f"max drawdown ₹{s['max_drawdown']:,.2f}, Sharpe/day {s['sharpe_daily']}",
                      height=260 * (3 + len(symbols)), showlegend=False)
    return fig


def _table(rows: list[dict[str, Any]], columns: Sequence[str], title: str) -> go.Figure:
    fig = go.Figure(go.Table(header={"values": list(columns)},
                             cells={"values": [[r[c] for r in rows] for c in columns]}))
    fig.update_layout(title=title, height=120 + 28 * len(rows))
    return fig


def sweep_figures(res: SweepResult, best: go.Figure, top: int = 20) -> list[go.Figure]:
    """The best parameters' backtest, the ranking and, with walk-forward, in vs out of sample per window."""
    ranked = res.ranked()[:top]
    figures = [best, _table(ranked, [*res.paths, "net_pnl", "sharpe_daily", "profit_factor", "max_drawdown",
                                     "trades"], f"Top {len(ranked)} by {res.metric}")]
    windows = res.walk_forward()
    if windows:
        fig = go.Figure([go.Bar(x=[w["test"] for w in windows], y=[w[k] for w in windows], name=name)
                         for k, name in (("is_net_per_day", "in sample"), ("oos_net_per_day", "out of sample"))])
        fig.update_layout(title="Walk-forward: net ₹ per day, train window (in sample) vs the test window after it",
                          barmode="group", xaxis_title="test window")
        figures += [fig, _table(windows, list(windows[0]), "Walk-forward windows")]
    return figures


def write(path: Path, figures: Sequence[go.Figure], title: str) -> None:
    """One HTML file carrying plotly.js itself (no network needed to open it)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=k == 0) for k, f in enumerate(figures)]
    path.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                    f"</head><body>{''.join(parts)}</body></html>\n", encoding="utf-8")


__all__ = ["ReportError", "backtest_figure", "pick_day", "session_days", "sweep_figures", "write"]
