"""The chaos suite: a few dozen seeded live sessions keep every invariant, and every invariant
checker catches the breach it is for (so a checker cannot pass silently)."""

import logging
import sys

import pytest

from engine.services.events import ALERT
from tests.chaos.invariants import (
    BookView,
    ExceptionCheck,
    PositionCheck,
    RateCheck,
    Settle,
    StopCheck,
    TagCheck,
    book_view,
    end_check,
    journal_check,
)
from tests.chaos.plan import make_plan
from tests.chaos.runner import Summary, reproducer, run_seeds
from tests.kite_server import FakeKite

SEEDS = range(24)
TAG = "ot0a1b2c000001"


def test_seeded_sessions_keep_every_invariant():
    results = run_seeds(SEEDS, jobs=2, concurrency=6)
    assert [r.seed for r in results] == list(SEEDS)
    broken = [r for r in results if r.violations]
    summary = Summary(results, sum(r.seconds for r in results)).text()
    if broken:  # the reproducers, not the results' repr
        pytest.fail("\n\n".join([*(reproducer(r) for r in broken[:2]), summary,
                                  "broken seeds: " + ", ".join(str(r.seed) for r in broken)]), pytrace=False)


# --- each checker fires on the situation it is for ------------------------------------------------
def _book(*orders: dict) -> BookView:
    server = FakeKite()
    for order in orders:
        server.seed_order(**{"exchange": "NSE", "quantity": 10, **order})
    return book_view(server)


ENTRY = {"tradingsymbol": "INFY", "transaction_type": "BUY", "order_type": "MARKET", "status": "COMPLETE",
         "filled_quantity": 10, "average_price": 1000.0, "tag": TAG}


def _stop(quantity: int = 10, status: str = "TRIGGER PENDING") -> dict:
    return {"tradingsymbol": "INFY", "transaction_type": "SELL", "order_type": "SL-M", "status": status,
            "quantity": quantity, "trigger_price": 990.0, "tag": "ot0a1b2c000002"}


def test_the_position_check_catches_otrade_and_kite_disagreeing_once_settled():
    check = PositionCheck()
    assert check.check(1.0, False, {"NSE:INFY": 10}, {"NSE:INFY": 0}) == []  # not settled: no verdict
    [v] = check.check(2.0, True, {"NSE:INFY": 10}, {"NSE:INFY": 0})
    assert v.invariant == "position" and "+0" in v.detail and "+10" in v.detail
    assert check.check(3.0, True, {"NSE:INFY": 10}, {"NSE:INFY": 0}) == []  # the same episode, reported once
    assert check.check(4.0, True, {"NSE:INFY": 10}, {"NSE:INFY": 10}) == []


def test_the_stop_check_catches_a_position_at_kite_without_a_stop():
    view = _book(ENTRY)
    assert view.positions == {"NSE:INFY": 10}
    check = StopCheck()
    assert check.check(0.0, view, []) == []
    assert check.check(1.9, view, []) == []  # within 2 s of the fill
    [v] = check.check(2.1, view, [])
    assert v.invariant == "stop" and "NSE:INFY" in v.detail
    assert check.longest[0] >= 2.1


def test_the_stop_check_accepts_a_covering_stop_and_a_refusal_that_was_alerted():
    covered = StopCheck()
    covered.check(0.0, _book(ENTRY, _stop()), [])
    assert covered.check(5.0, _book(ENTRY, _stop()), []) == [] and covered.longest[0] == 0.0
    short = StopCheck()  # a stop for half the position does not cover it
    short.check(0.0, _book(ENTRY, _stop(5)), [])
    assert len(short.check(2.5, _book(ENTRY, _stop(5)), [])) == 1
    refused = StopCheck()
    refused.check(0.0, _book(ENTRY), [])
    alerts = [(0.1, "NSE:INFY stop order rejected: Tick size for this script is 0.10")]
    assert refused.check(2.5, _book(ENTRY), alerts) == []
    unrelated = StopCheck()  # an alert that is not about a missing stop excuses nothing
    unrelated.check(0.0, _book(ENTRY), [])
    assert len(unrelated.check(2.5, _book(ENTRY), [(0.1, "NSE:INFY exit order rejected; stop and target "
                                                         "re-armed")])) == 1


def test_the_stop_check_does_not_hold_a_process_that_is_down_to_the_limit():
    check = StopCheck()
    view = _book(ENTRY)
    check.check(0.0, view, [], watching=False)
    assert check.check(3.0, view, [], watching=False) == []  # restarting: nobody can place a stop
    assert check.check(4.5, view, [], watching=True) == []
    assert len(check.check(5.1, view, [], watching=True)) == 1  # 2 s after it came back
    assert check.longest[0] >= 5.1


def test_the_tag_check_catches_a_tag_placed_twice():
    view = _book(ENTRY, {**ENTRY, "status": "OPEN", "filled_quantity": 0})
    [v] = TagCheck().check(1.0, view)
    assert v.invariant == "tag" and TAG in v.detail


def test_the_rate_check_catches_too_many_orders_in_a_minute():
    check = RateCheck(cap=3)
    assert check.check(1.0, BookView(placed={"NSE:INFY": [0.0, 61.0, 122.0, 183.0]})) == []
    [v] = check.check(2.0, BookView(placed={"NSE:INFY": [0.0, 10.0, 20.0, 59.0]}))
    assert v.invariant == "rate" and "4 orders" in v.detail


def test_the_exception_check_catches_tracebacks_dead_tasks_and_internal_faults():
    check = ExceptionCheck()
    try:
        raise KeyError("filled_quantity")
    except KeyError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("engine.live.orders", logging.ERROR, __file__, 1, "order %s failed", ("x",), exc_info)
    [v] = check.log_record(1.0, record)
    assert v.invariant == "exception" and "KeyError" in v.detail
    warning = logging.LogRecord("engine.live.orders", logging.WARNING, __file__, 1, "history unavailable", (), None)
    assert check.log_record(1.0, warning) == []
    assert len(check.alert(1.0, "Internal fault on the tick path (BrokerError: unknown order None)")) == 1
    assert check.alert(1.0, "NSE:INFY stop order rejected") == []
    assert len(check.task_died(1.0, "feed", RuntimeError("boom"))) == 1
    assert ALERT == "alert"


def test_the_journal_check_catches_a_trade_the_journal_lacks_or_invents():
    a = {"symbol": "NSE:INFY", "side": "long", "qty": 10, "pnl": 5.0}
    b = {"symbol": "NSE:SBIN", "side": "short", "qty": 10, "pnl": -2.0}
    assert journal_check(1.0, [{**a, "ts": "t", "kind": "trade_closed"}], [[a]], []) == []
    assert len(journal_check(1.0, [a], [[a], [b]], [])) == 1  # b closed in a run, not in the journal
    assert journal_check(1.0, [a], [[a], [b]], [b]) == []  # unless a kill -9 took it before the flush
    assert len(journal_check(1.0, [a, b], [[a]], [])) == 1  # a journal trade no run closed


def test_the_end_check_catches_a_position_or_a_working_order_left_after_flatten():
    assert end_check(1.0, _book(), {"NSE:INFY": 0}) == []
    assert len(end_check(1.0, _book(ENTRY), {"NSE:INFY": 0})) == 1
    flat_with_stop = _book(ENTRY, {**ENTRY, "transaction_type": "SELL", "tag": "ot0a1b2c000003"}, _stop())
    assert not any(flat_with_stop.positions.values())
    [v] = end_check(1.0, flat_with_stop, {"NSE:INFY": 0})
    assert "still working" in v.detail


def test_the_book_settles_only_after_a_quiet_second_without_changes():
    settle = Settle(1.0)
    assert not settle.update(0.0, True, 1)
    assert not settle.update(0.9, True, 1)
    assert settle.update(1.0, True, 1)
    assert not settle.update(1.1, True, 2)  # the book changed: a new second starts
    assert not settle.update(2.2, False, 2)  # something in flight
    assert not settle.update(2.3, True, 2) and settle.update(3.3, True, 2)


def test_a_seed_always_draws_the_same_schedule_and_prints_its_reproducer():
    assert make_plan(7).describe() == make_plan(7).describe()
    assert make_plan(7).prices == make_plan(7).prices
    assert make_plan(7).describe() != make_plan(8).describe()
    results = run_seeds([3], jobs=1, concurrency=1, steps=40)
    text = reproducer(results[0])
    assert "python -m tests.chaos --seed 3 --verbose" in text and "seed 3:" in text
