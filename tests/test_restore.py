"""The day survives a restart: a new engine on the same data directory rebuilds today from the journal.

A crash is modelled as the journal's last flush being all that is left of the first engine (what a
kill -9 leaves on disk); the second engine is a new process's: fresh broker, fresh arrays.
"""

import pytest

from engine.brokers.paper import PaperBroker
from engine.data.synthetic import generate
from engine.engine import LOSS_HALT, STOPPING, Engine, State
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from tests.conftest import DAY, make_config, make_ticks, ns, seconds
from tests.kite_engine import kite_engine

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}


class Clock:
    def __init__(self, at: int) -> None:
        self.ns = at

    def __call__(self) -> int:
        return self.ns


def process(cfg, tmp_path, clock):
    """An engine as ``otrade run`` makes one: restored from today's journal, then the session joined."""
    bus = EventBus()
    alerts = bus.subscribe()
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), bus,
                    Journal(tmp_path, clock), clock)
    engine.restore()
    engine.start_session()
    return engine, alerts


def feed(engine, clock, ticks):
    for k in range(len(ticks)):
        clock.ns = int(ticks.ts[k])
        engine.on_tick(int(ticks.instr[k]), int(ticks.ts[k]), float(ticks.price[k]), float(ticks.volume[k]))


def crash(engine):
    """kill -9: what was flushed is on disk, the rest of the process is gone."""
    engine.journal.flush()


def restored_text(alerts) -> str:
    [text] = [e.data["text"] for e in iter(alerts.get_nowait, None)
              if e.kind == ALERT and e.data["text"].startswith("Restored")]
    return text


def test_a_restart_brings_back_the_days_trades_their_money_and_the_entries_taken(tmp_path):
    cfg = make_config(strategy={"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True},
                      bracket={"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": 0.1})
    ticks = generate(1, 5, ["NSE:INFY"], tick_sizes=[0.05])
    clock = Clock(int(ticks.ts[0]))
    first, _ = process(cfg, tmp_path, clock)
    feed(first, clock, ticks.slice(len(ticks) // 2))
    crash(first)
    before = (first.trades(), first.pnl()["realised"], first.risk()["trades_today"])
    second, _ = process(cfg, tmp_path, clock)
    assert len(before[0]) > 3
    assert (second.trades(), second.pnl()["realised"], second.risk()["trades_today"]) == before


def test_the_charges_of_the_day_come_back_with_it(tmp_path, cross_up):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0, *cross_up, 101.0])))
    crash(first)
    second, _ = process(make_config(), tmp_path, clock)
    assert second.pnl()["charges"] == pytest.approx(first.pnl()["charges"])
    assert second.pnl()["net"] == pytest.approx(first.pnl()["realised"] - first.pnl()["charges"])


def test_an_open_paper_position_comes_back_with_its_levels_and_its_bracket_at_the_venue(tmp_path, cross_up):
    cfg = make_config(bracket={"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": 0.5})
    clock = Clock(ns("10:00:00"))
    first, _ = process(cfg, tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 102.0])))  # the stop trailed to 101.5
    crash(first)
    second, _ = process(cfg, tmp_path, clock)
    fields = ("symbol", "qty", "entry_price", "target", "stop", "trailing")
    assert [{f: p[f] for f in fields} for p in second.positions()] == [
        {"symbol": "NSE:INFY", "qty": 10, "entry_price": 101.0, "target": 106.05, "stop": 101.5, "trailing": True}]
    working = {o["purpose"]: (o["order_type"], o["quantity"], o["price"], o["trigger_price"]) for o in second.orders()}
    assert working == {"target": ("LIMIT", 10, 106.05, None), "stop": ("SL-M", 10, None, 101.5)}


def test_a_restored_position_closes_as_the_original_would_have(tmp_path, cross_up):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    crash(first)
    second, _ = process(make_config(), tmp_path, clock)
    feed(second, clock, make_ticks(seconds("10:05:00", [101.5, 102.5])))
    [t] = second.trades()
    assert (t["entry_price"], t["entry_time_ns"], t["exit_reason"], t["exit_price"], t["pnl"]) == (
        101.0, ns("10:00:03"), "target", 102.0, pytest.approx(10.0))


def test_a_restored_position_the_close_finds_without_a_tick_exits_at_its_entry_price(tmp_path, cross_up):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    crash(first)
    clock.ns = ns("15:29:00")
    second, _ = process(make_config(), tmp_path, clock)
    second.end_session()
    [t] = second.trades()
    assert (t["exit_reason"], t["exit_price"], t["pnl"]) == ("square_off", 101.0, 0.0)


def test_each_restart_sees_what_the_runs_before_it_did(tmp_path, cross_up):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    crash(first)
    second, _ = process(make_config(), tmp_path, clock)  # its orders are numbered after the first run's
    feed(second, clock, make_ticks(seconds("10:05:00", [100.5, 99.5])))  # the restored stop fills
    crash(second)
    third, _ = process(make_config(), tmp_path, clock)
    assert (third.trades(), third.positions(), third.orders()) == (second.trades(), [], [])


def test_a_day_halted_by_the_loss_limit_stays_halted(tmp_path, cross_up):
    cfg = make_config(quantity=1000, risk={"max_daily_loss": 30})  # the entry's charges alone pass ₹30
    clock = Clock(ns("10:00:00"))
    first, _ = process(cfg, tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 101.0])))
    assert first.state == State.HALTED
    crash(first)
    second, _ = process(cfg, tmp_path, clock)
    feed(second, clock, make_ticks(seconds("10:05:00", [*cross_up, 101.0, 101.0])))
    assert (second.state, second.state_reason, second.positions(), second.orders()) == (
        State.HALTED, LOSS_HALT, [], [])


def test_the_trades_per_day_limit_still_binds_after_a_restart(tmp_path, cross_up):
    cfg = make_config(risk={"max_trades_per_day": 1})
    clock = Clock(ns("10:00:00"))
    first, _ = process(cfg, tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    crash(first)
    second, _ = process(cfg, tmp_path, clock)
    feed(second, clock, make_ticks(seconds("10:05:00", [*cross_up, 101.0, 101.0])))
    assert (second.risk()["trades_today"], second.positions()) == (1, [])


def test_a_pause_by_the_trader_survives_a_restart(tmp_path):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    first.pause("lunch")
    crash(first)
    second, _ = process(make_config(), tmp_path, clock)
    assert (second.state, second.state_reason) == (State.PAUSED, "lunch")


def test_the_pause_of_a_stopping_process_ends_with_it(tmp_path):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    first.pause(STOPPING)
    crash(first)
    second, _ = process(make_config(), tmp_path, clock)
    assert second.state == State.RUNNING


def test_the_first_message_says_what_was_restored(tmp_path, cross_up):
    cfg = make_config(bracket={"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": None}, quantity=100)
    clock = Clock(ns("10:00:00"))
    first, _ = process(cfg, tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0])))
    first.halt("manual")
    crash(first)
    _, alerts = process(cfg, tmp_path, clock)
    # the entry's charges: buy 100 × 101 = 10,100; brokerage 3.03, exchange 0.29997 → 0.30, SEBI 0.0101
    # → 0.01, GST 18 % × 3.34 = 0.6012 → 0.60, stamp 0.303 → 0.30: ₹4.24
    assert restored_text(alerts) == (
        "Restored from the journal: 0 trade(s), P&L ₹-4.24 net (₹0.00 gross, ₹4.24 charges), 1 of 20 entries "
        "today, 1 open position(s) NSE:INFY +100 @ 101.00 with target 106.05 / stop 100.00, HALTED (manual)")


def test_a_torn_last_line_is_skipped_and_reported_with_its_number(tmp_path, cross_up):
    clock = Clock(ns("10:00:00"))
    first, _ = process(make_config(), tmp_path, clock)
    feed(first, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 103.0])))
    crash(first)
    path = first.journal.path(DAY)
    lines = len(path.read_bytes().splitlines())
    with path.open("ab") as fh:
        fh.write(b'{"ts":"2026-11-23T10:00:06+05:30","kind":"ord')  # the crash came mid-write
    second, alerts = process(make_config(), tmp_path, clock)
    assert len(second.trades()) == 1
    assert f"journal line {lines + 1} was torn by a crash: skipped" in restored_text(alerts)


def test_an_empty_journal_restores_nothing_and_says_nothing(tmp_path):
    clock = Clock(ns("10:00:00"))
    engine, alerts = process(make_config(), tmp_path, clock)
    assert engine.restore() == "" and [e for e in iter(alerts.get_nowait, None) if e.kind == ALERT] == []


def test_daily_shows_today_as_the_engine_has_it_and_earlier_days_from_the_journal(tmp_path, cross_up):
    clock = Clock(ns("10:00:00", "2026-11-20"))
    friday, _ = process(make_config(), tmp_path, clock)
    feed(friday, clock, make_ticks([("2026-11-20", f"10:00:0{k}", p, "NSE:INFY")
                                    for k, p in enumerate([*cross_up, 101.0, 103.0])]))
    friday.journal.flush()
    clock.ns = ns("10:00:00")
    monday, _ = process(make_config(), tmp_path, clock)
    feed(monday, clock, make_ticks(seconds("10:00:00", [*cross_up, 101.0, 100.0])))
    [fri, mon] = monday.daily(5)
    [won], [lost] = friday.trades(), monday.trades()
    assert (fri["date"], fri["trades"], fri["net"]) == ("2026-11-20", 1, pytest.approx(won["net_pnl"]))
    assert (mon["date"], mon["trades"], mon["net"]) == (DAY, 1, pytest.approx(lost["net_pnl"]))


async def test_live_the_day_comes_back_from_the_journal_and_a_position_kite_lacks_is_alerted(tmp_path, cross_up):
    clock = Clock(ns("09:50:00"))
    earlier, _ = process(make_config(bracket=WIDE), tmp_path, clock)  # an earlier run of the day
    feed(earlier, clock, make_ticks(seconds("09:50:00", [*cross_up, 101.0, 100.0, 100.0, 99.0, 101.0, 101.0])))
    earlier.halt("manual")
    crash(earlier)
    assert (len(earlier.trades()), len(earlier.positions())) == (1, 1)
    async with kite_engine(tmp_path) as (_, live, bus):  # Kite: no orders today, so no position
        alerts = bus.subscribe()
        live.restore()
        texts = [e.data["text"] for e in iter(alerts.get_nowait, None) if e.kind == ALERT]
        assert (live.trades(), live.risk()["trades_today"], live.state, live.positions()) == (
            earlier.trades(), 2, State.HALTED, [])
    assert ("NSE:INFY: the journal shows +10 open but Kite's orders of the day leave +0; Kite's is kept (a fill "
            "while OTrade was down is not among today's trades: check Kite)") in texts
