"""The chaos suite: a few dozen seeded live sessions keep every invariant, and every invariant
checker catches the breach it is for (so a checker cannot pass silently)."""

import logging
import sys
from collections import Counter

import pytest

from engine.services.events import ALERT
from tests.chaos.invariants import (
    BookView,
    ExceptionCheck,
    ExitCheck,
    GapMeter,
    LevelCheck,
    PositionCheck,
    RateCheck,
    RefusalCheck,
    Settle,
    StopCheck,
    TagCheck,
    book_view,
    end_check,
    journal_check,
)
from tests.chaos.plan import make_plan
from tests.chaos.runner import Summary, reproducer, run_seeds
from tests.kite_server import MODIFICATIONS_REFUSAL, FakeKite, OrderCall

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


def test_the_exit_check_catches_an_exit_the_engine_wanted_that_never_reached_kite():
    check = ExitCheck()
    check.want(1.0, "NSE:INFY", 1, "signal")
    check.sent("NSE:INFY", TAG)
    held = BookView(positions={"NSE:INFY": 10})
    assert check.check(2.9, held, []) == []  # within 2 s
    [v] = check.check(3.1, held, [])
    assert v.invariant == "exit" and "signal" in v.detail and TAG in v.detail
    assert check.check(3.2, held, []) == []  # once


def test_the_exit_check_accepts_an_exit_at_kite_a_position_gone_an_alert_or_exits_held_by_a_refusal():
    reached = ExitCheck()
    reached.want(1.0, "NSE:INFY", 1, "flatten")
    reached.sent("NSE:INFY", TAG)
    assert reached.check(3.5, BookView(positions={"NSE:INFY": 10}, arrived={TAG: 1.4}), []) == []
    assert round(reached.slowest[0], 6) == 0.4 and reached.slowest[1] == "NSE:INFY"
    gone = ExitCheck()  # the stop filled first: nothing left to exit
    gone.want(1.0, "NSE:INFY", 1, "signal")
    assert gone.check(3.5, BookView(positions={"NSE:INFY": 0}), []) == []
    alerted = ExitCheck()
    alerted.want(1.0, "NSE:INFY", -1, "square_off")
    short = BookView(positions={"NSE:INFY": -10})
    assert alerted.check(3.5, short, [(1.2, "NSE:INFY exit order not sent: 40 orders in the last minute")]) == []
    advice = ExitCheck()  # an alert about a missing stop that only advises /flatten is not about the exit
    advice.want(1.0, "NSE:INFY", -1, "square_off")
    assert len(advice.check(3.5, short, [(1.2, "NSE:INFY: no working stop; Check Kite, or /flatten")])) == 1
    held = ExitCheck()
    held.want(1.0, "NSE:INFY", 1, "signal", held=True)
    killed = ExitCheck()
    killed.want(1.0, "NSE:INFY", 1, "signal")
    killed.lost()
    assert held.check(3.5, BookView(positions={"NSE:INFY": 10}), []) == [] and held.wanted == 1
    assert killed.check(3.5, BookView(positions={"NSE:INFY": 10}), []) == []
    closed = ExitCheck()  # its stop closed OTrade's position; what Kite still holds is an excess being repaired
    closed.want(1.0, "NSE:INFY", -1, "signal")
    assert closed.check(3.5, short, [], otrade={"NSE:INFY": 0}) == []
    holding = ExitCheck()
    holding.want(1.0, "NSE:INFY", -1, "signal")
    assert len(holding.check(3.5, short, [], otrade={"NSE:INFY": -10})) == 1


def test_the_refusal_check_catches_kite_refusing_a_modification_past_its_cap_or_a_price_outside_a_known_band():
    check = RefusalCheck(slack_s=2.0)
    known = {"NSE:INFY": [(1.0, 5.0), (8.0, float("inf"))]}
    cap = OrderCall(0.5, "modify", 400, MODIFICATIONS_REFUSAL, "NSE:INFY")
    above = "Trigger price cannot be above the upper circuit price"
    [v1, v2] = check.check(9.0, [cap, OrderCall(4.0, "modify", 400, above, "NSE:INFY")], known)
    assert {v1.invariant, v2.invariant} == {"refusal"} and "modifications" in v1.detail and "band known" in v2.detail
    unknown = [OrderCall(6.0, "place", 400, "Price cannot be below the lower circuit price", "NSE:INFY"),
               OrderCall(9.5, "place", 400, above, "NSE:INFY"),  # learned 1.5 s before: sent on the old band
               OrderCall(4.0, "place", 400, above, "NSE:SBIN"),
               OrderCall(4.0, "place", 200, "", "NSE:INFY"),
               OrderCall(4.0, "place", 400, above, "NSE:INFY", answered=6.0)]  # hung: decided on a new band
    assert check.check(10.0, unknown, known) == [] and check.excused == 4


def test_the_gap_meter_measures_how_far_and_how_long_the_engines_stop_and_kites_trigger_were_apart():
    meter = GapMeter()
    meter.measure(1.0, {"NSE:INFY": (100.5, 100.5)})
    meter.measure(2.0, {"NSE:INFY": (101.5, 100.5)})
    meter.measure(2.5, {"NSE:INFY": (102.0, 100.5)})
    meter.measure(3.0, {"NSE:INFY": (102.0, 102.0)})
    meter.measure(4.0, {"NSE:INFY": (103.0, 102.9)})
    meter.measure(4.1, {})  # the position closed
    assert meter.largest == (1.5, 1.0, "NSE:INFY: 102 vs 100.5")
    assert meter.longest == (1.0, 1.5, "NSE:INFY")


def test_the_level_check_takes_a_new_position_of_otrades_as_a_new_one_when_kite_was_never_flat_between():
    check = LevelCheck()
    excess = BookView(positions={"NSE:INFY": -1})  # left at Kite when OTrade closed its short, being undone
    assert check.check(1.9, excess, otrade={"NSE:INFY": -10}) == []
    assert check.check(2.0, excess, otrade={"NSE:INFY": 0}) == []
    late = BookView(positions={"NSE:INFY": -1}, stops={"NSE:INFY": [(2.1, "BUY", 99.0, "1")]})  # the old trade's,
    assert check.check(2.1, late, otrade={"NSE:INFY": 0}) == []  # its place call hung: at Kite after the close
    assert check.check(2.5, excess, otrade={"NSE:INFY": 0}) == []  # cancelled
    assert check.check(3.0, BookView(positions={"NSE:INFY": -11}), otrade={"NSE:INFY": -10}) == []  # a new short
    new = BookView(positions={"NSE:INFY": -11}, stops={"NSE:INFY": [(3.1, "BUY", 101.0, "2")]})
    assert check.check(3.1, new, otrade={"NSE:INFY": -10}) == []  # its own stop, looser than the old trade's
    looser = BookView(positions={"NSE:INFY": -11}, stops={"NSE:INFY": [(3.1, "BUY", 101.5, "2")]})
    assert len(check.check(3.2, looser, otrade={"NSE:INFY": -10})) == 1


def test_the_level_check_leaves_out_a_stop_otrade_counts_as_no_positions_protection():
    check = LevelCheck()
    held = {"NSE:INFY": 10}
    late = BookView(positions=held, stops={"NSE:INFY": [(1.0, "SELL", 100.5, "1"), (2.0, "SELL", 101.0, "2")]})
    assert check.check(2.0, late, strays={"2"}) == []  # a closed trade's stop that reached Kite late: cancelled
    assert check.check(3.0, BookView(positions=held, stops={"NSE:INFY": [(1.0, "SELL", 100.5, "1")]})) == []
    [v] = check.check(4.0, BookView(positions=held, stops={"NSE:INFY": [(3.5, "SELL", 100.0, "3")]}))
    assert "100.5" in v.detail and "at 100 " in v.detail


def test_the_level_check_takes_what_is_left_after_a_stop_filled_in_full_as_a_new_position():
    check = LevelCheck()
    short = {"NSE:INFY": -10}  # fills OTrade never saw leave Kite short after the stop for its part filled
    assert check.check(1.0, BookView(positions=short, stops={"NSE:INFY": [(0.5, "BUY", 100.5, "1")]})) == []
    filled = BookView(positions={"NSE:INFY": -6}, stops_done=Counter({"NSE:INFY": 1}))
    assert check.check(2.0, filled) == []
    again = BookView(positions={"NSE:INFY": -6}, stops={"NSE:INFY": [(2.5, "BUY", 103.0, "2")]},
                     stops_done=Counter({"NSE:INFY": 1}))
    assert check.check(3.0, again) == []  # from the market now, not from the stop that did its work
    looser = BookView(positions={"NSE:INFY": -6}, stops={"NSE:INFY": [(3.5, "BUY", 103.5, "3")]},
                      stops_done=Counter({"NSE:INFY": 1}))
    assert len(check.check(4.0, looser)) == 1


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


def test_the_level_check_measures_from_the_stop_left_resting_when_the_exchange_takes_the_tightest():
    check = LevelCheck()
    held = {"NSE:INFY": 10}
    both = BookView(positions=held, stops={"NSE:INFY": [(1.0, "SELL", 100.1, "1"), (2.0, "SELL", 100.3, "2")]})
    assert check.check(2.0, both) == []  # a successor at 100.3 works beside its predecessor at 100.1
    left = BookView(positions=held, stops={"NSE:INFY": [(1.0, "SELL", 100.1, "1")]})
    assert check.check(3.0, left, taken={"2"}) == []  # the exchange cancelled the successor: the old one protects
    [v] = check.check(4.0, BookView(positions=held, stops={"NSE:INFY": [(1.0, "SELL", 99.9, "1")]}), taken={"2"})
    assert "99.9" in v.detail and "100.1" in v.detail  # and it is never loosened from there


def test_the_level_check_takes_a_stop_otrade_cancelled_or_the_exchange_took_alone_as_still_binding():
    check = LevelCheck()
    held = {"NSE:INFY": 10}
    assert check.check(1.0, BookView(positions=held, stops={"NSE:INFY": [(0.5, "SELL", 100.3, "1")]})) == []
    both = BookView(positions=held, stops={"NSE:INFY": [(0.5, "SELL", 100.3, "1"), (1.5, "SELL", 100.1, "2")]})
    assert len(check.check(2.0, BookView(positions=held, stops={"NSE:INFY": [(1.5, "SELL", 100.1, "2")]}))) == 1
    check = LevelCheck()
    assert check.check(1.0, both) == []
    assert check.check(2.0, BookView(positions=held), taken={"1", "2"}) == []  # the exchange took every stop
    [v] = check.check(3.0, BookView(positions=held, stops={"NSE:INFY": [(2.5, "SELL", 100.2, "3")]}), taken={"1", "2"})
    assert "100.2" in v.detail and "100.3" in v.detail  # armed again looser than the stop Kite held
