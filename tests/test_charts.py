"""Pictures of the day (engine.charts): what is drawn is the day as the engine had it, bar for bar.

A paper day is run in this process as ``otrade run`` runs it: the strategies warmed on the sessions
before (the synthetic market's), the engine fed today's ticks one by one, each recorded by the real
Recorder. The kernel's own values are taken after every bar it closes; the picture's data (the
series, markers and lines handed to matplotlib) must be those values.
"""

import asyncio
import copy
import io
import threading
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from config import validate
from engine.brokers.paper import PaperBroker
from engine.charts import ChartError, Charts
from engine.charts import draw as D
from engine.charts.model import Bars, Level, PriceDay
from engine.core import layout as L
from engine.data.recorder import Recorder
from engine.data.store import SYNTHETIC
from engine.data.synthetic import generate
from engine.data.ticks import Ticks
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog
from tests.conftest import DEFAULT

SEED = 3
EMA = {"kind": "ema_cross", "timeframe": 5, "fast": 3, "slow": 8, "allow_short": True}
RSI = {"kind": "rsi_reversion", "timeframe": 5, "allow_short": True}
BRACKET = {"target_pct": 0.5, "stop_pct": 0.25, "trail_pct": None}


class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def config(infy: dict, sbin: dict | None = None):
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 10, "strategy": infy,
                            "bracket": BRACKET}]
    if sbin:
        data["instruments"].append({"symbol": "NSE:SBIN", "tick_size": 0.05, "quantity": 20, "strategy": sbin,
                                    "bracket": BRACKET})
    return validate(data, default_catalog())


def part(ticks: Ticks, keep: np.ndarray) -> Ticks:
    return Ticks(ticks.ts[keep], ticks.price[keep], ticks.volume[keep], ticks.instr[keep], ticks.symbols)


def run_day(root: Path, cfg, interval_ms: float, start: str | None = None, hold: bool = False) -> SimpleNamespace:
    """Four generated sessions: three warm the strategies, the fourth (Thu 5 Nov 2026) is traded from
    its open (or joined at ``start``, its earlier ticks caught up on) to two thirds of the way, then
    on until a position is open when ``hold``. Returns the engine, its Charts and, per instrument,
    the kernel's strategy row after each bar it closed."""
    symbols = tuple(i.symbol for i in cfg.instruments)
    ticks = generate(4, SEED, symbols, tick_interval_ms=interval_ms, tick_sizes=[i.tick_size for i in cfg.instruments])
    number = (ticks.ts + L.IST_OFFSET_NS) // L.NS_PER_DAY
    today = number == number.max()
    first = int(ticks.ts[today][0]) if start is None else int(datetime.fromisoformat(f"2026-11-05T{start}+05:30")
                                                              .timestamp() * 1e9)
    clock = Clock(first)
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), EventBus(),
                    Journal(root, clock), clock)
    engine.warm_strategies(part(ticks, ~today))
    if start is not None:  # as ``otrade run`` joins a session under way: today's ticks before now caught up on
        engine.restore()
        engine.catch_up(part(ticks, today & (ticks.ts < first)))
    engine.start_session()
    recorder = Recorder(root, symbols, synthetic=True, now_ns=clock)
    live = np.flatnonzero(ticks.ts >= first)
    cut = live[0] + (len(live) * 2) // 3
    kernel: list[list[np.ndarray]] = [[] for _ in symbols]
    a, fed = engine.arrays, 0
    for k in live:
        if k >= cut and (not hold or engine.positions()):
            break
        i, ts, price, volume = int(ticks.instr[k]), int(ticks.ts[k]), float(ticks.price[k]), float(ticks.volume[k])
        clock.ns = ts
        bars = a.st[i, L.S_BARS]
        engine.on_tick(i, ts, price, volume)
        recorder.add((i, ts, price, volume))
        fed += 1
        if a.st[i, L.S_BARS] != bars:  # the kernel fed its strategy a bar (a tick); a new session counts from 1
            kernel[i].append(a.x[i].copy())
    asyncio.run(recorder.close())

    def warm_up(cfg, until_ns: int, synthetic: bool) -> list[Ticks]:  # the synthetic market's, as the runtime's
        return [part(ticks, ticks.ts < until_ns)]

    return SimpleNamespace(engine=engine, charts=Charts(engine, root, SYNTHETIC, warm_up), kernel=kernel,
                           today=part(ticks, live[:fed]), root=root)


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> SimpleNamespace:
    return run_day(tmp_path_factory.mktemp("day"), config(EMA, RSI), 500.0, hold=True)


def lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def slot(day, j: int, name: str) -> int:
    return day.engine.arrays.strategies[j].slot(name)


def kernel_values(day, j: int, name: str) -> np.ndarray:
    return np.array([row[slot(day, j, name)] for row in day.kernel[j]])


# --- the indicators --------------------------------------------------------------------------
def test_each_drawn_indicator_value_is_the_kernels_after_that_bar(day):
    ax = day.charts.price("NSE:INFY")().figure.axes[0]
    drawn = lines(ax)
    for name, label in (("fast", "fast EMA(3,seed=1)"), ("slow", "slow EMA(8,seed=1)")):
        np.testing.assert_array_equal(drawn[label].get_ydata(), kernel_values(day, 0, name))
    assert len(day.kernel[0]) > 40  # a day's worth of closed 5-minute bars


def test_the_first_bars_values_come_from_the_sessions_the_engine_warmed_on(day):
    warmed = lines(day.charts.price("NSE:INFY")().figure.axes[0])["slow EMA(8,seed=1)"].get_ydata()
    cold = Charts(day.engine, day.root, SYNTHETIC)  # the same day, told nothing of the warm-up
    unwarmed = lines(cold.price("NSE:INFY")().figure.axes[0])["slow EMA(8,seed=1)"].get_ydata()
    assert warmed[0] == kernel_values(day, 0, "slow")[0] and np.isfinite(warmed[0])
    assert unwarmed[0] != warmed[0]  # a fresh EMA starts at the day's first close; the engine's carried on


def test_an_indicator_on_its_own_scale_has_its_own_panel_with_the_kernels_values(day):
    price, panel = day.charts.price("SBIN")().figure.axes
    assert "rsi RSI(14)" not in lines(price)
    np.testing.assert_array_equal(lines(panel)["rsi RSI(14)"].get_ydata(), kernel_values(day, 1, "rsi"))


# --- the price ---------------------------------------------------------------------------------
def test_the_candles_are_the_bars_the_kernel_fed_and_the_one_it_is_forming(day):
    ax = day.charts.price("NSE:INFY")().figure.axes[0]
    [bodies] = ax.containers
    wicks = ax.collections[0].get_segments()
    fed = day.kernel[0][-1]  # the row holds the last bar fed: its open, high, low, close
    st = day.engine.arrays.st[0]
    assert len(bodies) == len(day.kernel[0]) + 1  # every closed bar, then the forming one
    for k, (o, h, lo, c) in ((-2, fed[[L.X_OPEN, L.X_HIGH, L.X_LOW, L.X_CLOSE]]),
                             (-1, st[[L.S_BAR_OPEN, L.S_BAR_HIGH, L.S_BAR_LOW, L.S_BAR_CLOSE]])):
        body = bodies[k]
        assert (body.get_y(), body.get_height()) == pytest.approx((min(o, c), abs(c - o)))
        assert (wicks[k][0][1], wicks[k][1][1]) == (lo, h)
    assert bodies[-1].get_facecolor()[3] == pytest.approx(D.FORMING_ALPHA)


def test_trades_are_marked_where_they_filled_with_their_reasons(day):
    trades = day.engine.trades()
    assert trades
    ax = day.charts.price("NSE:INFY")().figure.axes[0]
    marks = {c.get_label(): c.get_offsets() for c in ax.collections if c.get_label() in ("exit", "long entry",
                                                                                            "short entry")}
    np.testing.assert_array_equal(marks["exit"], np.c_[D.x_of([t["exit_time_ns"] for t in trades]),
                                                       [t["exit_price"] for t in trades]])
    for side in ("long", "short"):
        entries = [t for t in trades if t["side"] == side] + [
            {"entry_time_ns": int(day.engine.arrays.clk[0, L.C_ENTRY]), "entry_price": p["entry_price"]}
            for p in day.engine.positions() if p["symbol"] == "NSE:INFY" and (p["qty"] > 0) == (side == "long")]
        expected = np.c_[D.x_of([t["entry_time_ns"] for t in entries]), [t["entry_price"] for t in entries]]
        np.testing.assert_array_equal(marks.get(f"{side} entry", np.empty((0, 2))).reshape(-1, 2), expected)
    texts = [t.get_text() for t in ax.texts]
    for t in trades:
        assert f"{t['exit_reason']} {'−' if t['net_pnl'] < 0 else '+'}₹{abs(t['net_pnl']):,.2f}" in texts


def test_the_open_positions_stop_and_target_are_drawn_at_the_engines_levels(day):
    [held] = day.engine.positions()
    picture = day.charts.price(held["symbol"])()
    levels = {c.get_label(): c.get_segments()[0] for c in picture.figure.axes[0].collections
              if c.get_label().startswith(("stop", "target"))}
    assert set(levels) == {f"stop {held['stop']:.2f}", f"target {held['target']:.2f}"}
    assert levels[f"stop {held['stop']:.2f}"][0][1] == held["stop"]
    assert levels[f"target {held['target']:.2f}"][0][1] == held["target"]
    assert f"stop {held['stop']:.2f}, target {held['target']:.2f}" in picture.caption


def test_a_position_without_a_working_stop_says_so_on_the_picture():
    one = np.array([0], np.int64)
    bars = Bars(one, *(np.array([100.0]),) * 5, one, one)
    day = PriceDay("NSE:INFY", date(2026, 11, 5), "ema_cross", 300 * L.NS_PER_S, bars, 1, [], [],
                   [Level("stop", None, 0), Level("target", 101.0, 0)], "")
    texts = [t.get_text() for t in D.price_figure(day).axes[0].texts]
    assert "NO WORKING STOP" in texts


def test_a_tick_strategy_is_drawn_as_its_ticks_with_its_indicators_after_each(tmp_path):
    day = run_day(tmp_path, config({**EMA, "timeframe": "tick"}), 2000.0)
    drawn = lines(day.charts.price(None)().figure.axes[0])
    np.testing.assert_array_equal(drawn["price (ticks)"].get_ydata(), day.today.price)
    np.testing.assert_array_equal(drawn["fast EMA(3,seed=1)"].get_ydata(), kernel_values(day, 0, "fast"))


def test_a_paper_start_after_the_open_is_drawn_from_the_open_as_the_engine_caught_up(tmp_path):
    day = run_day(tmp_path, config(EMA), 1000.0, start="11:00:00")
    ax = day.charts.price("INFY")().figure.axes[0]
    first = ax.containers[0][0]
    open_bar_middle = D.x_of([int(datetime.fromisoformat("2026-11-05T09:17:30+05:30").timestamp() * 1e9)])[0]
    assert first.get_x() + first.get_width() / 2 == pytest.approx(open_bar_middle)  # from 09:15, not 11:00
    drawn = lines(ax)["slow EMA(8,seed=1)"].get_ydata()
    after = kernel_values(day, 0, "slow")  # the bars the engine closed once it was running
    np.testing.assert_array_equal(drawn[-len(after):], after)


# --- naming, refusals, the picture itself --------------------------------------------------------
def test_an_instrument_is_named_with_or_without_its_exchange_in_any_case(day):
    assert [day.charts.row(s) for s in ("NSE:SBIN", "sbin", "nse:infy", "INFY")] == [1, 1, 0, 0]


def test_named_none_the_chart_is_of_the_open_position(day):
    [held] = day.engine.positions()
    assert day.engine.arrays.symbols[day.charts.row(None)] == held["symbol"] == "NSE:SBIN"


def test_an_instrument_otrade_does_not_trade_is_refused_naming_those_it_does(day):
    with pytest.raises(ChartError, match=r"^TCS is not an instrument OTrade trades: NSE:INFY, NSE:SBIN$"):
        day.charts.price("TCS")


def test_a_replay_records_nothing_to_draw_and_says_so(day):
    replay = Charts(day.engine, day.root, None)
    with pytest.raises(ChartError, match="a replay records nothing"):
        replay.price("INFY")()


def test_the_picture_is_a_1280_by_720_png_with_a_one_line_caption(day):
    picture = day.charts.price("NSE:INFY")()
    image = Image.open(io.BytesIO(picture.png))
    assert (image.format, image.size) == ("PNG", (1280, 720))
    assert "\n" not in picture.caption and picture.caption.startswith("NSE:INFY 05 Nov at ")


def test_the_end_of_day_picture_shows_the_instrument_that_traded_most_then_the_days_money(day):
    figure = day.charts.report("End of day 2026-11-05: a test")().figure
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert titles[0].startswith("NSE:INFY · Thu 05 Nov 2026") and titles[-2].startswith("Net P&L Thu 05 Nov 2026")
    assert figure.get_suptitle() == "End of day 2026-11-05: a test"


def test_drawing_happens_on_the_thread_that_runs_the_work_not_when_asked(day, monkeypatch):
    drawn_on = []
    real = D.png
    monkeypatch.setattr(D, "png", lambda figure: drawn_on.append(threading.get_ident()) or real(figure))
    work = day.charts.price("NSE:INFY")
    assert drawn_on == []  # asking reads the engine only
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert drawn_on == [worker.ident]
