"""HTML reports made with Plotly, plotly.js embedded so the one file opens in a browser offline.

A backtest's report: the net equity curve, its drawdown, daily net P&L, and for one day the price of
each instrument with the trades' entries and exits. A sweep's report leads with what walk-forward
chose, out of sample first, every window; then how likely the winner on all days is overfit; then the
ranking and the winner's backtest on all days, both labelled in sample.
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


def _cell(value: Any, exact: bool) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if isinstance(value, float) and not exact else str(value)


def _table(rows: list[dict[str, Any]], columns: Sequence[str], exact: Sequence[str], cls: str) -> str:
    """An HTML table: every row shows, however many (numbers to the paisa, ``exact`` columns as given)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r[c], c in exact))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _para(*lines: str) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)


def _out_of_sample(res: SweepResult) -> go.Figure:
    """Net ₹ on every test day, in order, and its running total: the walk-forward's own equity curve."""
    days = sorted(res.oos_daily, key=lambda d: d[1])
    net = np.array([x for _, _, x in days])
    fig = go.Figure([
        go.Bar(x=[d for _, d, _ in days], y=net, name="day", marker={"color": [GREEN if x >= 0 else RED for x in net]},
               text=[f"window {w}" for w, _, _ in days], hoverinfo="text+x+y"),
        go.Scatter(x=[d for _, d, _ in days], y=np.cumsum(net), name="running total", line={"color": BLUE})])
    fig.update_layout(title="Out of sample: net ₹ on the test days, each traded with its window's choice",
                      showlegend=False)
    return fig


def sweep_figures(res: SweepResult, best: go.Figure | None, top: int = 20) -> list[go.Figure | str]:
    """Walk-forward first (out of sample, every window), how likely the winner is overfit, then the
    ranking and ``best`` (the winner's backtest on all days), labelled in sample."""
    parts: list[go.Figure | str] = [f"<h1>Sweep by {html.escape(res.metric)}: {res.tried:,} combinations on "
                                    f"{res.days} days</h1>" + _para(*res.notes)]
    if windows := res.walk_forward():
        parts.append(f"<h2>Walk-forward by {html.escape(res.metric)}: chosen on each train window, traded on the "
                     "test days after it</h2>" + _para(res.headline(), *res.untraded())
                     + _table(windows, list(windows[0]), res.paths, "windows"))
        if res.oos_daily:
            parts.append(_out_of_sample(res))
        fig = go.Figure([go.Bar(x=[f"{w['window']}: {w['test']}" for w in windows], y=[w[k] for w in windows],
                                name=name)
                         for k, name in (("oos_net_per_day", "out of sample"), ("is_net_per_day", "in sample"))])
        fig.update_layout(title="Net ₹ a day per window: the test days (out of sample) beside the train days "
                                "(in sample)", barmode="group", xaxis_title="window: test days")
        parts.append(fig)
    lines = res.overfit_lines()
    parts.append(f"<h2>{html.escape(lines[0][:1].upper() + lines[0][1:].rstrip(':'))}</h2>"
                 + _para(*(line.strip() for line in lines[1:])))
    if res.overfitting is not None:
        fig = go.Figure(go.Histogram(x=res.overfitting.logits, marker={"color": BLUE}))
        fig.update_layout(title="Where the in-sample best ranks on the other half of the days, over every split "
                                "(logit: below 0 is the bottom half; PBO is the share there)",
                          xaxis_title="logit of the out-of-sample rank", yaxis_title="splits", height=360)
        parts.append(fig)
    ranked = res.ranked()[:top]
    parts.append(f"<h2>In sample: the top {len(ranked)} by {html.escape(res.metric)} on all {res.days} days, ranked "
                 "on the days they are scored on</h2>" + _para(res.exclusion())
                 + (_table(ranked, ["rank", *res.paths, "net_pnl", "sharpe_daily", "profit_factor", "max_drawdown",
                                    "trades", "deflated_sharpe"], res.paths, "ranking") if ranked else ""))
    if best is not None:
        parts.append(best)
    return parts


STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:.5em 0}"
         "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}")


def write(path: Path, parts: Sequence[go.Figure | str], title: str) -> None:
    """One HTML file carrying plotly.js itself (no network needed to open it); a str part is HTML as is."""
    figures = [k for k, p in enumerate(parts) if not isinstance(p, str)]
    body = [p if isinstance(p, str) else p.to_html(full_html=False, include_plotlyjs=k == figures[0])
            for k, p in enumerate(parts)]
    path.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                    f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n", encoding="utf-8")


__all__ = ["ReportError", "backtest_figure", "pick_day", "session_days", "sweep_figures", "write"]
