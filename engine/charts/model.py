"""What a picture shows, as plain data: ``today`` gathers it, ``draw`` draws it."""

from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Picture:
    png: bytes
    caption: str  # one line, for a photo's caption
    name: str  # what it shows, for a file name: "chart-NSE_INFY", "equity", "report"
    figure: Any = field(default=None, compare=False, repr=False)  # the matplotlib Figure it was drawn from


@dataclass(frozen=True)
class Bars:
    """One instrument's bars, as the kernel forms them (a tick strategy's bars are its ticks)."""

    ts: np.ndarray  # epoch ns of each bar's start (a tick's own time)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    session: np.ndarray  # IST day number
    start: np.ndarray  # ns after the session open (what the kernel feeds the opening range)

    def __len__(self) -> int:
        return len(self.ts)

    def first(self, n: int) -> "Bars":
        return Bars(*(getattr(self, f.name)[:n] for f in fields(self)))


@dataclass(frozen=True)
class Series:
    label: str  # "fast EMA(9)", "bands Bollinger(20,2) upper"
    panel: str  # "" over the price; else the indicator's own panel, named by it ("rsi RSI(14)")
    y: np.ndarray  # the kernel's value after each closed bar (NaN until the indicator is ready)


@dataclass(frozen=True)
class Mark:
    ts_ns: int
    price: float
    what: str  # "entry" | "exit"
    side: str  # "long" | "short"
    reason: str  # an entry's: the strategy's signal; an exit's: target, stop, trail, signal, square_off, ...
    net: float | None = None  # a closed trade's net P&L, on its exit


@dataclass(frozen=True)
class Level:
    what: str  # "stop" | "target"
    price: float | None  # None: the position has no working stop
    since_ns: int
    note: str = ""  # "trailing"


@dataclass(frozen=True)
class PriceDay:
    symbol: str
    day: date
    strategy: str
    tf_ns: int  # 0: a tick strategy (its ticks drawn as a line)
    bars: Bars  # today's, the forming one last
    closed: int  # bars[:closed] were fed to the indicators; the rest is forming
    series: list[Series]
    marks: list[Mark]
    levels: list[Level]
    caption: str


@dataclass(frozen=True)
class EquityDay:
    day: date
    open_ns: int
    now_ns: int
    exits: list[tuple[int, float]]  # (exit ns, net P&L) of today's closed trades, in time order
    net_now: float  # with what is open: its unrealised P&L and its entry's charges
    days: list[dict[str, Any]]  # Engine.daily: the last days' date, trades and net, today's last
    caption: str
