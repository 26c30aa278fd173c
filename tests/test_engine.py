"""The paper engine: state machine, control API, bracket orders at the venue, journal, parity."""

import pytest

from engine.brokers.paper import PaperBroker
from engine.data.synthetic import generate
from engine.engine import ControlError, Engine, State
from engine.research import backtest
from engine.services.events import ALERT, TRADE_CLOSED, EventBus
from engine.services.journal import Journal
from tests.conftest import make_config, make_ticks, seconds

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}


class Clock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def make_engine(cfg, tmp_path):
    clock = Clock()
    broker = PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock)
    bus = EventBus()
    engine = Engine(cfg, broker, bus, Journal(tmp_path, clock), clock)
    engine.start_session()
    return engine, clock, bus


def feed(engine, clock, ticks):
    for k in range(len(ticks)):
        clock.ns = int(ticks.ts[k])
        engine.on_tick(int(ticks.instr[k]), int(ticks.ts[k]), float(ticks.price[k]), float(ticks.volume[k]))


def test_bracket_orders_rest_at_the_venue_after_the_entry_fills(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    working = {o["purpose"]: (o["order_type"], o["status"], o["price"], o["trigger_price"])
               for o in engine.orders()}
    assert working == {"target": ("LIMIT", "OPEN", 102.0, None),
                       "stop": ("SL-M", "TRIGGER PENDING", None, 100.0)}


def test_target_fill_cancels_the_stop(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    statuses = {o["purpose"]: o["status"] for o in engine.orders(working_only=False)}
    assert statuses == {"entry": "COMPLETE", "target": "COMPLETE", "stop": "CANCELLED"}
    assert engine.positions() == []


def test_trailing_moves_the_resting_stop_order(tmp_path, cross_up):
    cfg = make_config(bracket={"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": 0.5})
    engine, clock, _ = make_engine(cfg, tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 102.0])))
    [stop] = [o for o in engine.orders() if o["purpose"] == "stop"]
    assert stop["trigger_price"] == 101.5


def test_pause_stops_new_entries(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    engine.pause("lunch")
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 101.0])))
    assert (engine.state, engine.positions(), engine.orders()) == (State.PAUSED, [], [])


def test_pause_keeps_protecting_an_open_position(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    engine.pause()
    feed(engine, clock, make_ticks(seconds("10:00:04", [103.0])))
    assert [t["exit_reason"] for t in engine.trades()] == ["target"]


def test_flatten_while_the_entry_is_pending_cancels_it(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", cross_up)))
    engine.flatten()
    feed(engine, clock, make_ticks(seconds("10:00:03", [101.0, 101.5])))
    assert engine.positions() == []
    assert [o["status"] for o in engine.orders(working_only=False)] == ["CANCELLED"]


def test_flatten_exits_an_open_position_at_the_next_tick(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(bracket=WIDE), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    assert engine.flatten() == 1
    feed(engine, clock, make_ticks(seconds("10:00:04", [101.4])))
    [t] = engine.trades()
    assert (t["exit_reason"], t["exit_price"]) == ("flatten", 101.4)


def test_halt_cancels_the_pending_entry_and_refuses_new_ones(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", cross_up)))
    engine.halt("manual")
    feed(engine, clock, make_ticks(seconds("10:00:03", [101.0, 99.0, 101.0, 101.0])))
    assert engine.state == State.HALTED and engine.positions() == []


def test_resume_from_paused_allows_entries_again(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    engine.pause()
    engine.resume()
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    assert engine.state == State.RUNNING and len(engine.positions()) == 1


def test_resume_when_running_is_refused(tmp_path):
    engine, _, _ = make_engine(make_config(), tmp_path)
    with pytest.raises(ControlError, match="cannot resume: engine is RUNNING"):
        engine.resume()


def test_daily_loss_limit_halts_with_a_critical_alert(tmp_path):
    cfg = make_config(bracket=WIDE, risk={"max_daily_loss": 5},
                      strategy={"kind": "orb", "minutes": 1, "allow_short": False})
    engine, clock, bus = make_engine(cfg, tmp_path)
    sub = bus.subscribe()
    rows = seconds("09:15:00", [100.0, 101.0, 99.5]) + seconds("09:16:30", [100.5, 101.5, 101.6, 101.0])
    feed(engine, clock, make_ticks(rows))
    alerts = [e for e in iter(sub.get_nowait, None) if e.kind == ALERT]
    assert engine.state == State.HALTED and alerts and alerts[0].critical


def test_trade_closed_event_carries_the_pnl(tmp_path, cross_up):
    engine, clock, bus = make_engine(make_config(), tmp_path)
    sub = bus.subscribe()
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    [closed] = [e for e in iter(sub.get_nowait, None) if e.kind == TRADE_CLOSED]
    assert (closed.data["exit_reason"], closed.data["pnl"]) == ("target", pytest.approx(10.0))


def test_journal_records_the_intent_before_the_order(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    engine.journal.flush()
    kinds = [(r["kind"], r.get("purpose")) for r in engine.journal.read_day("2026-11-23")
             if r["kind"] in ("intent", "order")]
    assert kinds[:2] == [("intent", "entry"), ("order", "entry")]
    assert ("order", "stop") in kinds


def test_live_config_change_takes_effect_on_the_next_tick(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    engine.apply_config(make_config(quantity=25))
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    assert engine.positions()[0]["qty"] == 25


def test_status_reports_state_ltp_and_position(tmp_path, cross_up):
    engine, clock, _ = make_engine(make_config(), tmp_path)
    feed(engine, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    clock.ns += 2_000_000_000
    status = engine.status()
    [ins] = status["instruments"]
    assert (status["state"], ins["ltp"], ins["ltp_age_s"], ins["position"], ins["open_orders"]) == (
        "RUNNING", 101.0, 2.0, 10, 2)


def test_paper_broker_ends_flat_with_two_fills_per_trade(tmp_path):
    cfg = make_config(strategy={"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True},
                      bracket={"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": 0.1})
    ticks = generate(1, 5, ["NSE:INFY"], tick_sizes=[0.05])
    engine, clock, _ = make_engine(cfg, tmp_path)
    feed(engine, clock, ticks)
    engine.end_session()
    complete = [o for o in engine.orders(working_only=False) if o["status"] == "COMPLETE"]
    assert len(engine.trades()) > 5 and len(complete) == 2 * len(engine.trades())
    assert engine.orders() == [] and engine.positions() == []


@pytest.mark.parametrize("strategy", [
    {"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True},
    {"kind": "orb", "minutes": 5, "allow_short": True},
    {"kind": "vwap_reversion", "window": 50, "k": 1.5, "allow_short": True},
    {"kind": "ema_cross", "fast": 3, "slow": 8, "timeframe": 1, "allow_short": True},
    {"kind": "supertrend", "period": 5, "factor": 1.5, "timeframe": 1, "allow_short": True},
    {"kind": "rsi_reversion", "period": 5, "timeframe": 1, "allow_short": True},
    {"kind": "vwap_reversion", "window": 10, "k": 1.0, "timeframe": 1, "allow_short": True},
])
def test_paper_engine_and_backtest_make_identical_trades(tmp_path, strategy):
    symbols = ("NSE:INFY", "NSE:SBIN")
    cfg = make_config(strategy=strategy, symbols=symbols, slippage_ticks=1,
                      bracket={"target_pct": 0.3, "stop_pct": 0.15, "trail_pct": 0.1},
                      risk={"max_daily_loss": 400, "max_trades_per_day": 30})
    ticks = generate(3, 11, list(symbols), tick_sizes=[0.05, 0.05])
    expected = backtest.run(cfg, ticks).trade_rows()
    engine, clock, _ = make_engine(cfg, tmp_path)
    feed(engine, clock, ticks)
    engine.end_session()
    fields = ("symbol", "entry_price", "exit_price", "exit_reason")
    got = [(*(t[f] for f in fields), backtest.iso(t["entry_time_ns"]), backtest.iso(t["exit_time_ns"]))
           for t in engine.trades()]
    want = [(*(t[f] for f in fields), t["entry_time"], t["exit_time"]) for t in expected]
    assert len(got) > 10
    assert got == want
