"""Money after charges, everywhere: each trade carries gross, charges and net; the loss limit counts
net; every figure the trader sees says which it is, net first."""

import argparse
import re
from datetime import datetime

import numpy as np
import pytest

from bot.commands import CONSOLE, Commands, Services
from bot.notifier import format_event
from config import ConfigManager
from engine.arrays import rates
from engine.brokers.paper import PaperBroker
from engine.core.costs import round_trip_costs
from engine.core.layout import IST
from engine.data.synthetic import generate
from engine.engine import LOSS_HALT, Engine, State
from engine.runtime.app import Runtime, _session_hooks
from engine.services.calendar import Session
from engine.services.events import REPORT, TRADE_CLOSED, EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import make_config, make_ticks, seconds

RUPEES = r"₹(-?[\d,]+\.\d\d)"


class Clock:
    def __init__(self, at: int = 0) -> None:
        self.ns = at

    def __call__(self) -> int:
        return self.ns

    def now_ns(self) -> int:
        return self.ns


def feed(engine, clock, ticks):
    for k in range(len(ticks)):
        clock.ns = int(ticks.ts[k])
        engine.on_tick(int(ticks.instr[k]), int(ticks.ts[k]), float(ticks.price[k]), float(ticks.volume[k]))


def engine_for(cfg, tmp_path, clock, bus=None):
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), bus or EventBus(),
                    Journal(tmp_path, clock), clock)
    engine.start_session()
    return engine


@pytest.fixture
def session(tmp_path):
    """A paper session of the shipped config (INFY and SBIN) over a generated day, closed."""
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    ticks = generate(1, 7, [i.symbol for i in cfg.instruments], tick_sizes=[i.tick_size for i in cfg.instruments])
    clock, bus = Clock(int(ticks.ts[0])), EventBus()
    engine = engine_for(cfg, tmp_path / "data", clock, bus)
    feed(engine, clock, ticks)
    engine.end_session()
    assert len(engine.trades()) >= 3  # the shipped strategies trade a handful of times a day
    return engine, Commands(Services(engine, manager, tmp_path / "data", clock)), bus, manager, clock


def rupees(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(RUPEES, text)]


def test_a_closed_trade_carries_its_gross_pnl_charges_and_net(tmp_path, cross_up):
    clock = Clock()
    engine = engine_for(make_config(quantity=100), tmp_path, clock)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    # long 100 at 101.00, target 102.00: buy 10,100, sell 10,200, turnover 20,300
    # brokerage 3.03 + 3.06 = 6.09; STT 2.55 → ₹3; exchange 0.60291 → 0.60; SEBI 0.0203 → 0.02
    # GST 18 % × 6.71 = 1.2078 → 1.21; stamp 0.303 → 0.30; charges 11.22, net 100 − 11.22 = 88.78
    [t] = engine.trades()
    assert (t["pnl"], t["charges"], t["net_pnl"]) == (pytest.approx(100.0), 11.22, pytest.approx(88.78))


def test_the_daily_loss_limit_counts_the_charges_of_an_open_entry(tmp_path, cross_up):
    clock = Clock()
    engine = engine_for(make_config(quantity=1000, risk={"max_daily_loss": 30}), tmp_path, clock)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    # bought 1,000 at 101.00 and still at 101.00: gross 0, but the entry cost brokerage 20 (the cap),
    # exchange 2.9997 → 3.00, SEBI 0.101 → 0.10, GST 18 % × 23.10 = 4.158 → 4.16, stamp 3.03: ₹30.29
    assert (engine.pnl()["gross"], engine.pnl()["net"]) == (0.0, pytest.approx(-30.29))
    assert (engine.state, engine.state_reason) == (State.HALTED, LOSS_HALT)


def test_pnl_net_is_gross_minus_charges_over_a_paper_session(session):
    engine, commands, *_ = session
    net, gross, charges = rupees(commands.handle_text(CONSOLE, "/pnl").text.splitlines()[0])
    trades = engine.trades()
    side = np.array([1.0 if t["side"] == "long" else -1.0 for t in trades])
    paid = round_trip_costs(side, np.array([t["qty"] for t in trades]), np.array([t["entry_price"] for t in trades]),
                            np.array([t["exit_price"] for t in trades]), rates(engine.cfg.costs)).sum()
    assert charges == round(paid, 2) and charges > 0
    assert net == pytest.approx(gross - charges, abs=0.011)


def test_trades_lists_each_trade_net(session):
    engine, commands, *_ = session
    lines = commands.handle_text(CONSOLE, "/trades").text.splitlines()
    assert all(line.endswith(f"₹{t['net_pnl']:,.2f} net") for line, t in zip(lines, engine.trades()[-20:], strict=True))


def test_status_shows_the_day_net(session):
    engine, commands, *_ = session
    assert f"P&L today ₹{engine.pnl()['net']:,.2f} net" in commands.handle_text(CONSOLE, "/status").text


def test_risk_counts_the_daily_loss_net(session):
    engine, commands, *_ = session
    assert commands.handle_text(CONSOLE, "/risk").text.startswith(f"Daily loss: ₹{engine.pnl()['net']:,.2f} net of")


async def test_daily_shows_today_net_with_gross_and_charges(session):
    engine, commands, *_ = session
    trades = engine.trades()
    gross, charges = sum(t["pnl"] for t in trades), sum(t["charges"] for t in trades)
    assert (await commands.handle_text(CONSOLE, "/daily")).text == (
        f"{engine.today()}: ₹{gross - charges:,.2f} net (₹{gross:,.2f} gross, ₹{charges:,.2f} charges) "
        f"over {len(trades)} trade(s)")


def test_a_trade_alert_shows_net_then_gross_and_charges(tmp_path, cross_up):
    clock, bus = Clock(), EventBus()
    sub = bus.subscribe()
    engine = engine_for(make_config(quantity=100), tmp_path, clock, bus)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    [closed] = [e for e in iter(sub.get_nowait, None) if e.kind == TRADE_CLOSED]
    assert format_event(closed).endswith("(target) P&L ₹88.78 net (₹100.00 gross, ₹11.22 charges)")


async def test_the_end_of_day_report_shows_net_then_gross_and_charges(session):
    engine, _, bus, manager, clock = session
    sub = bus.subscribe()
    rt = Runtime(argparse.Namespace(), manager, engine, bus, clock, engine.journal.dir.parent, LogBuffer())
    at = datetime(2026, 11, 23, 15, 30, tzinfo=IST)
    await _session_hooks(rt)["report"](Session(at.date(), at, at, at))
    [report] = [e.data["text"] for e in iter(sub.get_nowait, None) if e.kind == REPORT]
    p = engine.pnl()
    assert f"P&L ₹{p['net']:,.2f} net (₹{p['gross']:,.2f} gross, ₹{p['charges']:,.2f} charges)" in report
    assert all(line.endswith(" net") for line in report.splitlines()[1:-1])  # the last: the parity audit's
