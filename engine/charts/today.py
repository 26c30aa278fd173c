"""What a picture shows, gathered: today's bars, the strategy's indicators over them, the trades, the
working stop and target, and the day's money. ``draw`` draws it.

Indicator series are the kernel's own values, recomputed: ``update_all``, the code ``step`` feeds
every closed bar to, is fed the bars the kernel was fed (``bars``: its candle rule), from the
strategy's fresh row and the offsets the engine's kernel uses. A strategy whose row carries across
sessions is first fed the sessions the engine warmed it on (``warm_up``, the runtime's: earlier days'
recordings, or the synthetic market's week before), so each drawn value is the one the kernel held
once that bar closed. Today's ticks are today's recording (``engine.data.store``), after the synthetic
market's ticks of today that a paper start after the open caught up on (the same ``warm_up`` hands
them over). The bar still forming has no value yet: the kernel has not fed it.

Not followed: a ``/set`` that restarted a strategy's row during the day (the picture draws the day
with today's settings throughout), and a paper restart's own catch-up (it starts from its recording).
"""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from config import Config
from engine.charts.model import Bars, EquityDay, Level, Mark, Picture, PriceDay, Series
from engine.core import layout as L
from engine.core.indicators import Indicator, update_all
from engine.data.store import MARKET, load_ticks, recorded, tick_file
from engine.data.ticks import Ticks
from engine.engine import Engine
from engine.research.audit import WarmUp
from engine.strategies import Strategy

MAX_REPORT_PANELS = 4  # instruments drawn in the end-of-day picture: the ones that traded most
DAYS = 20  # days of daily net P&L in /equity and the report


class ChartError(ValueError):
    """Nothing to draw, or no such instrument: the message says which (the chat shows it as it is)."""


def bars(ts: np.ndarray, price: np.ndarray, volume: np.ndarray, open_ns: int, close_ns: int, tf_ns: int) -> Bars:
    """The bars of one instrument's time-ordered ticks by the kernel's rule (``step._candle``): only
    ticks in the session window [open, close) of their IST day count, and bar k of a session covers
    [open + k·tf, open + (k+1)·tf); a bar with no tick is no bar."""
    local = ts + L.IST_OFFSET_NS
    day = local // L.NS_PER_DAY
    tod = local - day * L.NS_PER_DAY
    keep = (tod >= open_ns) & (tod < close_ns)
    ts, price, volume, day, since = ts[keep], price[keep], volume[keep], day[keep], tod[keep] - open_ns
    if tf_ns == 0 or not len(ts):
        return Bars(ts, price, price, price, price, volume, day, since)
    k = since // tf_ns
    first = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (day[1:] != day[:-1])])
    last = np.r_[first[1:], len(k)] - 1
    return Bars(day[first] * L.NS_PER_DAY - L.IST_OFFSET_NS + open_ns + k[first] * tf_ns, price[first],
                np.maximum.reduceat(price, first), np.minimum.reduceat(price, first), price[last],
                np.add.reduceat(volume, first), day[first], k[first] * tf_ns)


# What is drawn of each indicator, by its label's name: its outputs, and whether it has a panel of
# its own (not in rupees, or not near the price). Others: every output, over the price.
_DRAWN = {"SuperTrend": (("line",), False), "Bollinger": (("upper", "mid", "lower"), False),
          "RSI": (("value",), True), "MACD": (("line", "signal", "hist"), True), "ATR": (("value",), True)}


def _drawn(name: str, ind: Indicator) -> list[tuple[str, int, str]]:
    """(label, slot in the block, panel) of each output drawn of indicator ``name``."""
    outputs, own = _DRAWN.get(ind.label.split("(")[0], (tuple(o for o, _ in ind.outputs), False))
    slots = dict(ind.outputs)
    head = f"{name} {ind.label}"
    return [(head if len(outputs) == 1 else f"{head} {o}", slots[o], head if own else "") for o in outputs]


@dataclass(frozen=True)
class _Instrument:
    """One instrument as the engine held it when asked (read on the event loop)."""

    symbol: str
    symbols: tuple[str, ...]
    cfg: Config
    strategy: Strategy
    params: Any
    tf_ns: int
    open_ns: int
    close_ns: int
    reset: bool
    offsets: np.ndarray
    fresh: np.ndarray
    forming_ns: int | None  # the start of the bar the kernel has not fed yet
    trades: list[dict[str, Any]]
    position: dict[str, Any] | None  # a positions() row, with its entry's time
    net: float
    day: date
    now_ns: int


def _money(x: float) -> str:
    return f"₹{x:,.2f}"


def _side(qty: float) -> str:
    return "long" if qty > 0 else "short"


class Charts:
    """The pictures of the engine's day. ``recording`` is the kind of tick file this process writes
    (``engine.data.store``: market, synthetic, rehearsal), None when it records none (a replay);
    ``warm_up`` gives the sessions the strategies warmed on, as ``engine.research.audit`` takes it."""

    def __init__(self, engine: Engine, data_dir: Path, recording: str | None, warm_up: WarmUp | None = None) -> None:
        self.engine = engine
        self.data_dir = Path(data_dir)
        self.recording = recording
        self.warm_up = warm_up
        self._sessions: dict[tuple, tuple[Ticks | None, Ticks | None]] = {}  # one day's, see _warmed
        self._rows: dict[tuple, np.ndarray] = {}  # strategy rows after the earlier sessions

    # --- on the event loop: what the engine holds ------------------------------------------------
    def row(self, symbol: str | None) -> int:
        """The instrument ``symbol`` names ("NSE:INFY", or "INFY" when one exchange has it); none
        named: the first with an open position, else the first configured."""
        symbols = self.engine.arrays.symbols
        if symbol is None:
            held = [p["symbol"] for p in self.engine.positions()]
            return symbols.index(held[0]) if held else 0
        wanted = symbol.upper()
        found = [j for j, s in enumerate(symbols) if wanted in (s.upper(), s.upper().partition(":")[2])]
        if len(found) != 1:
            which = "names more than one instrument" if found else "is not an instrument OTrade trades"
            raise ChartError(f"{symbol} {which}: {', '.join(symbols)}")
        return found[0]

    def _instrument(self, j: int) -> _Instrument:
        engine, a = self.engine, self.engine.arrays
        symbol, st = a.symbols[j], a.st[j]
        day = date.fromisoformat(engine.today())
        number = (day - date(1970, 1, 1)).days
        ltp_ns = int(a.clk[j, L.C_LTP])
        if not ltp_ns or (ltp_ns + L.IST_OFFSET_NS) // L.NS_PER_DAY != number:
            raise ChartError(f"Nothing to draw for {symbol} yet: no tick today.")
        tf, opens = int(a.pr[j, L.P_TF_NS]), int(a.pr[j, L.P_OPEN_NS])
        forming = None
        if tf and st[L.S_BAR_END] >= 0.0 and st[L.S_DAY] == number:
            forming = number * L.NS_PER_DAY - L.IST_OFFSET_NS + opens + int(st[L.S_BAR_START])
        position = next((dict(p) for p in engine.positions() if p["symbol"] == symbol), None)
        if position is not None:
            position["entry_ns"] = int(a.clk[j, L.C_ENTRY])
        n = int(a.pr[j, L.P_N_IND])
        return _Instrument(symbol, a.symbols, engine.cfg, a.strategies[j], engine.cfg.instruments[j].strategy, tf,
                           opens, int(a.pr[j, L.P_CLOSE_NS]), bool(a.pr[j, L.P_RESET]),
                           a.links[j, L.LINK_IND: L.LINK_IND + n].copy(), a.rows[L.ROW_FRESH, j].copy(), forming,
                           [t for t in engine.trades() if t["symbol"] == symbol], position,
                           engine.pnl()["by_symbol"][symbol], day, engine.now_ns())

    def price(self, symbol: str | None) -> Callable[[], Picture]:
        """/chart: the work that draws the instrument's day (for a worker thread); ChartError now
        for an unknown instrument or one without a tick today."""
        inst = self._instrument(self.row(symbol))

        def work() -> Picture:
            from engine.charts import draw

            day = self.price_day(inst)
            figure = draw.price_figure(day)
            return Picture(draw.png(figure), day.caption, f"chart-{day.symbol.replace(':', '_')}", figure)

        return work

    def _equity_now(self) -> tuple[date, int, int, list[tuple[int, float]], float]:
        engine, a = self.engine, self.engine.arrays
        day = date.fromisoformat(engine.today())
        opens = (day - date(1970, 1, 1)).days * L.NS_PER_DAY - L.IST_OFFSET_NS + int(a.pr[:, L.P_OPEN_NS].min())
        exits = sorted((int(t["exit_time_ns"]), float(t["net_pnl"])) for t in engine.trades())
        return day, opens, engine.now_ns(), exits, float(engine.pnl()["net"])

    def equity(self) -> Callable[[], Picture]:
        """/equity: the work that draws today's net P&L through the day and the last days' (for a
        worker thread: it reads the journal)."""
        now = self._equity_now()

        def work() -> Picture:
            from engine.charts import draw

            eq = self.equity_day(*now)
            figure = draw.equity_figure(eq)
            return Picture(draw.png(figure), eq.caption, "equity", figure)

        return work

    def report(self, caption: str) -> Callable[[], Picture]:
        """The end-of-day picture: the instruments that traded most (those with a tick today), then
        the day's money."""
        symbols = self.engine.arrays.symbols
        traded = [t["symbol"] for t in self.engine.trades()]
        shown = []
        for symbol in sorted(symbols, key=lambda s: -traded.count(s)):
            if len(shown) < MAX_REPORT_PANELS:
                with contextlib.suppress(ChartError):  # no tick of it today: nothing of it to show
                    shown.append(self._instrument(symbols.index(symbol)))
        now = self._equity_now()

        def work() -> Picture:
            from engine.charts import draw

            prices = []
            for inst in shown:
                with contextlib.suppress(ChartError):
                    prices.append(self.price_day(inst))
            figure = draw.report_figure(prices, self.equity_day(*now), caption)
            return Picture(draw.png(figure), caption, "report", figure)

        return work

    # --- off the loop: the disk and the arithmetic -------------------------------------------
    def equity_day(self, day: date, open_ns: int, now_ns: int, exits: list[tuple[int, float]],
                   net_now: float) -> EquityDay:
        days = self.engine.daily(DAYS)  # earlier days from the journal files
        total = sum(d["net"] for d in days)
        caption = (f"P&L {day:%d %b}: {_money(net_now)} net over {len(exits)} closed trade(s); "
                   f"last {len(days)} day(s): {_money(total)} net")
        return EquityDay(day, open_ns, now_ns, exits, net_now, days, caption)

    def _recording(self, inst: _Instrument) -> Ticks | None:
        if self.recording is None:
            raise ChartError(f"Nothing to draw for {inst.symbol}: a replay records nothing (its tick file is the "
                             "day: otrade backtest --report draws it)")
        if not recorded(self.data_dir, inst.day, self.recording):
            return None
        return load_ticks(tick_file(self.data_dir, inst.day, self.recording), inst.symbols)

    def _warmed(self, inst: _Instrument, first_ns: int) -> tuple[Ticks | None, Ticks | None]:
        """(the sessions before today, today's before ``first_ns``) of ``warm_up``, as far as they are
        needed: earlier sessions for a strategy carried across sessions, today's for the paper market
        (whose ticks before this process's recording began were caught up on, not recorded)."""
        synthetic = self.recording != MARKET
        if self.warm_up is None or not (synthetic or not inst.reset):
            return None, None
        key = (inst.day, first_ns, inst.symbols)
        if key not in self._sessions:
            self._rows = {}
            self._sessions = {key: _split(self.warm_up(inst.cfg, first_ns, synthetic), inst.day)}
        return self._sessions[key]

    def price_day(self, inst: _Instrument) -> PriceDay:
        rec = self._recording(inst)
        earlier, prefix = self._warmed(inst, int(rec.ts.min()) if rec is not None and len(rec) else inst.now_ns)
        j = inst.symbols.index(inst.symbol)
        mine = [(t, t.instr == j) for t in (prefix, rec) if t is not None]
        ts, price, volume = (np.concatenate([getattr(t, c)[m] for t, m in mine]) if mine else np.empty(0)
                             for c in ("ts", "price", "volume"))
        today = bars(ts.astype(np.int64), price, volume, inst.open_ns, inst.close_ns, inst.tf_ns)
        if not len(today):
            raise ChartError(f"Nothing to draw for {inst.symbol} yet: no tick of today's session recorded.")
        closed = len(today) - int(inst.forming_ns is not None and int(today.ts[-1]) == inst.forming_ns)
        declared = [(name, ind, int(o)) for (name, ind), o in
                    zip(inst.strategy.indicators(inst.params).items(), inst.offsets, strict=True)]
        outputs = [(label, o + slot, panel) for name, ind, o in declared for label, slot, panel in _drawn(name, ind)]
        row = self._start_row(inst, earlier)
        values = _values(row, inst, today.first(closed), [slot for _, slot, _ in outputs])
        series = [Series(label, panel, values[:, k]) for k, (label, _, panel) in enumerate(outputs)]
        marks, levels = _marks(inst)
        return PriceDay(inst.symbol, inst.day, inst.params.kind, inst.tf_ns, today, closed, series, marks, levels,
                        _caption(inst, [f"{n} {ind.label}" for n, ind, _ in declared]))

    def _start_row(self, inst: _Instrument, earlier: Ticks | None) -> np.ndarray:
        """The strategy row before today's first bar: fresh, or fed the sessions it warmed on."""
        if inst.reset or earlier is None:
            return inst.fresh.copy()
        key = (inst.symbol, repr(inst.params), inst.tf_ns, inst.open_ns, inst.close_ns)
        if key not in self._rows:
            mine = earlier.instr == inst.symbols.index(inst.symbol)
            before = bars(earlier.ts[mine], earlier.price[mine], earlier.volume[mine], inst.open_ns, inst.close_ns,
                          inst.tf_ns)
            row = inst.fresh.copy()
            _values(row, inst, before, [])
            self._rows[key] = row
        return self._rows[key].copy()


def _values(row: np.ndarray, inst: _Instrument, fed: Bars, slots: list[int]) -> np.ndarray:
    """Feeds ``row`` each bar as the kernel feeds a closed bar (its row fresh again at each session
    when the strategy starts every session); returns the ``slots``' values after each bar."""
    out = np.full((len(fed), len(slots)), math.nan)
    at = np.asarray(slots, dtype=np.int64)
    session = None
    columns = (fed.session.tolist(), fed.start.tolist(), fed.high.tolist(), fed.low.tolist(), fed.close.tolist(),
               fed.volume.tolist())
    for k, (day, start, high, low, close, volume) in enumerate(zip(*columns, strict=True)):
        if inst.reset and day != session:
            row[:] = inst.fresh
        session = day
        update_all(row, inst.offsets, float(day), float(start), high, low, close, volume)
        if slots:
            out[k] = row[at]
    return out


def _split(sessions: list[Ticks] | tuple[Ticks, ...], day: date) -> tuple[Ticks | None, Ticks | None]:
    """Sessions into (those before ``day``, ``day``'s), each joined; None for none."""
    if not sessions:
        return None, None
    ts, price, volume, instr = (np.concatenate([getattr(s, c) for s in sessions])
                                for c in ("ts", "price", "volume", "instr"))
    today = (ts + L.IST_OFFSET_NS) // L.NS_PER_DAY == (day - date(1970, 1, 1)).days
    symbols = sessions[0].symbols
    parts = [Ticks(ts[m], price[m], volume[m], instr[m], symbols) for m in (~today, today)]
    return tuple(p if len(p) else None for p in parts)


def _marks(inst: _Instrument) -> tuple[list[Mark], list[Level]]:
    marks = []
    for t in inst.trades:
        marks.append(Mark(int(t["entry_time_ns"]), float(t["entry_price"]), "entry", t["side"], "signal"))
        marks.append(Mark(int(t["exit_time_ns"]), float(t["exit_price"]), "exit", t["side"], t["exit_reason"],
                          float(t["net_pnl"])))
    levels = []
    p = inst.position
    if p is not None:
        marks.append(Mark(p["entry_ns"], float(p["entry_price"]), "entry", _side(p["qty"]), "signal"))
        levels.append(Level("stop", p["stop"], p["entry_ns"], "trailing" if p["trailing"] else ""))
        levels.append(Level("target", p["target"], p["entry_ns"]))
    return marks, levels


def _caption(inst: _Instrument, indicators: list[str]) -> str:
    frame = "ticks" if not inst.tf_ns else f"{inst.tf_ns // 60_000_000_000}-min candles"
    with_ = f" with {', '.join(indicators)}" if indicators else ""
    held = "flat"
    if (p := inst.position) is not None:
        stop = "NO WORKING STOP" if p["stop"] is None else f"stop {p['stop']:.2f}" + (" trailing" if p["trailing"]
                                                                                       else "")
        held = f"{_side(p['qty'])} {abs(p['qty'])} @ {p['entry_price']:.2f}, {stop}, target {p['target']:.2f}"
    at = datetime.fromtimestamp(inst.now_ns / 1e9, L.IST)
    return (f"{inst.symbol} {inst.day:%d %b} at {at:%H:%M}: {frame}, {inst.params.kind}{with_}; "
            f"{len(inst.trades)} trade(s), {_money(inst.net)} net; {held}")
