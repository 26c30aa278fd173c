"""The pictures, drawn with matplotlib's Agg canvas: no display and no pyplot (each figure is a plain
object of its own), one at a time (``_LOCK``: matplotlib's shared font and text caches are not made
for threads). 1280 pixels wide: the size Telegram shows a photo at."""

import functools
import io
import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure

from engine.charts.model import EquityDay, PriceDay
from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY

WIDTH, HEIGHT, DPI = 12.8, 7.2, 100  # inches at DPI: 1280 x 720
UP, DOWN, INK, FORMING_ALPHA = "#26a69a", "#ef5350", "#37474f", 0.35
LINES = ("#1e88e5", "#fb8c00", "#8e24aa", "#6d4c41", "#d81b60", "#00acc1")
_LOCK = threading.Lock()


def _one_at_a_time(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return fn(*args, **kwargs)

    return locked


def x_of(ns: Sequence[int] | np.ndarray) -> np.ndarray:
    """Epoch ns as matplotlib dates of IST wall-clock time, so the time axis reads IST."""
    return mdates.date2num((np.asarray(ns, dtype=np.int64) + IST_OFFSET_NS).astype("datetime64[ns]"))


def _figure(height: float = HEIGHT) -> Figure:
    figure = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _money(x: float) -> str:
    return f"{'−' if x < 0 else '+'}₹{abs(x):,.2f}"


def _time_axis(ax: Axes) -> None:
    ticks = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ticks.intervald[mdates.MINUTELY] = [1, 5, 10, 15, 30]  # on the clock's round minutes
    ax.xaxis.set_major_locator(ticks)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.grid(True, alpha=0.3)


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:  # a panel with nothing named (bare candles) has none
        ax.legend(loc="upper left", fontsize=8, framealpha=0.8)


def _price(ax: Axes, day: PriceDay, legend: bool = True) -> None:
    """Candles (a tick strategy: its ticks as a line), the indicators over the price, the trades
    marked with their reasons, the working stop and target."""
    b = day.bars
    if day.tf_ns:
        x = x_of(b.ts + day.tf_ns // 2)
        colors = to_rgba_array(np.where(b.close >= b.open, UP, DOWN))
        colors[day.closed:, 3] = FORMING_ALPHA  # the bar still forming
        ax.vlines(x, b.low, b.high, colors=colors, linewidth=0.8)
        ax.bar(x, np.abs(b.close - b.open), day.tf_ns / NS_PER_DAY * 0.7, np.minimum(b.open, b.close),
               color=colors, edgecolor=colors, linewidth=0.6, label="_candles")
        end = int(b.ts[-1]) + day.tf_ns
    else:
        x = x_of(b.ts)
        ax.plot(x, b.close, color=INK, linewidth=0.8, label="price (ticks)")
        end = int(b.ts[-1])
    own = [s for s in day.series if not s.panel]
    for k, s in enumerate(own):
        ax.plot(x[: day.closed], s.y, color=LINES[k % len(LINES)], linewidth=1.3, label=s.label)
    _marks(ax, day)
    for level in day.levels:
        if level.price is None:
            ax.text(0.99, 0.97, "NO WORKING STOP", transform=ax.transAxes, ha="right", va="top", color=DOWN,
                    fontsize=12, fontweight="bold")
            continue
        label = f"{level.what} {level.price:.2f}" + (f" ({level.note})" if level.note else "")
        color = DOWN if level.what == "stop" else UP
        ax.hlines(level.price, x_of([level.since_ns])[0], x_of([end])[0], colors=color, linestyles="--",
                  linewidth=1.2, label=label)
        ax.annotate(label, (x_of([end])[0], level.price), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=8, color=color)
    frame = "ticks" if not day.tf_ns else f"{day.tf_ns // 60_000_000_000}-min candles"
    ax.set_title(f"{day.symbol} · {day.day:%a %d %b %Y} · {frame} · {day.strategy}", fontsize=11, loc="left")
    ax.set_ylabel("price (₹)")
    _time_axis(ax)
    if legend:
        _legend(ax)


def _marks(ax: Axes, day: PriceDay) -> None:
    for side, marker, color in (("long", "^", UP), ("short", "v", DOWN)):
        entries = [m for m in day.marks if m.what == "entry" and m.side == side]
        if entries:
            ax.scatter(x_of([m.ts_ns for m in entries]), [m.price for m in entries], marker=marker, s=110,
                       color=color, edgecolors=INK, linewidths=0.8, zorder=5, label=f"{side} entry")
    exits = [m for m in day.marks if m.what == "exit"]
    if exits:
        ax.scatter(x_of([m.ts_ns for m in exits]), [m.price for m in exits], marker="X", s=90, color=INK,
                   zorder=5, label="exit")
    for m in day.marks:
        text = f"{m.side} ({m.reason})" if m.what == "entry" else f"{m.reason} {_money(m.net)}"
        below = (m.what == "entry") == (m.side == "long")
        ax.annotate(text, (x_of([m.ts_ns])[0], m.price), xytext=(0, -17 if below else 12), textcoords="offset points",
                    ha="center", fontsize=8, color=INK)


def _panels(axes: Sequence[Axes], day: PriceDay) -> None:
    """Indicators with a panel of their own (RSI, MACD, ATR), one panel each, under the price."""
    x = x_of(day.bars.ts + day.tf_ns // 2)[: day.closed]
    for ax, panel in zip(axes, dict.fromkeys(s.panel for s in day.series if s.panel), strict=True):
        for k, s in enumerate(s for s in day.series if s.panel == panel):
            ax.plot(x, s.y, color=LINES[k % len(LINES)], linewidth=1.1, label=s.label)
        _legend(ax)
        _time_axis(ax)


@_one_at_a_time
def price_figure(day: PriceDay) -> Figure:
    panels = len({s.panel for s in day.series if s.panel})
    figure = _figure()
    axes = figure.subplots(1 + panels, 1, sharex=True, squeeze=False, height_ratios=[3] + [1] * panels)[:, 0]
    _price(axes[0], day)
    _panels(axes[1:], day)
    return figure


def _intraday(ax: Axes, eq: EquityDay) -> None:
    """Net P&L through the day: each closed trade's net at its exit, then now with what is open."""
    times = [eq.open_ns, *(t for t, _ in eq.exits), eq.now_ns]
    closed = np.cumsum([0.0, *(n for _, n in eq.exits)])
    ax.step(x_of(times), [*closed, closed[-1]], where="post", color=LINES[0], linewidth=1.6,
            label="net P&L of the closed trades")
    if eq.exits:
        ax.scatter(x_of([t for t, _ in eq.exits]), closed[1:], color=[UP if n >= 0 else DOWN for _, n in eq.exits],
                   edgecolors=INK, zorder=5, label="a trade closed")
    now = x_of([eq.now_ns])[0]
    ax.plot([now, now], [closed[-1], eq.net_now], color=INK, linestyle=":", linewidth=1.2)
    ax.scatter([now], [eq.net_now], marker="D", color=UP if eq.net_now >= 0 else DOWN, edgecolors=INK, zorder=6,
               label=f"now, open positions included: {_money(eq.net_now)}")
    ax.axhline(0.0, color=INK, linewidth=0.6)
    ax.set_title(f"Net P&L {eq.day:%a %d %b %Y}", fontsize=11, loc="left")
    ax.set_ylabel("₹ net")
    _time_axis(ax)
    _legend(ax)


def _daily(ax: Axes, eq: EquityDay) -> None:
    nets = [d["net"] for d in eq.days]
    bars = ax.bar(range(len(nets)), nets, 0.7, color=[UP if v >= 0 else DOWN for v in nets], label="daily net")
    ax.set_xlim(-0.6, max(len(nets), 10) - 0.4)  # a few days are narrow bars, not a wall
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in nets], fontsize=7)
    ax.set_xticks(range(len(nets)), [f"{date.fromisoformat(d['date']):%d %b}" for d in eq.days], rotation=45,
                  fontsize=8)
    ax.axhline(0.0, color=INK, linewidth=0.6)
    ax.set_title(f"Daily net P&L, last {len(nets)} day(s): {_money(sum(nets))}", fontsize=11, loc="left")
    ax.set_ylabel("₹ net")
    ax.grid(True, axis="y", alpha=0.3)


@_one_at_a_time
def equity_figure(eq: EquityDay) -> Figure:
    figure = _figure()
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 2])
    _intraday(top, eq)
    _daily(bottom, eq)
    return figure


@_one_at_a_time
def report_figure(prices: Sequence[PriceDay], eq: EquityDay, title: str) -> Figure:
    """The end of the day: each instrument's price panel, then the day's P&L and the last days'."""
    figure = _figure(max(HEIGHT, 2.8 * (len(prices) + 1)))
    grid = figure.add_gridspec(len(prices) + 1, 2, height_ratios=[2.0] * len(prices) + [1.6])
    for k, day in enumerate(prices):
        _price(figure.add_subplot(grid[k, :]), day)
    _intraday(figure.add_subplot(grid[len(prices), 0]), eq)
    _daily(figure.add_subplot(grid[len(prices), 1]), eq)
    figure.suptitle(title, fontsize=12)
    return figure


@_one_at_a_time
def png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
