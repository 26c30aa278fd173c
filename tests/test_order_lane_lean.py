"""Less between a frame and the order request written (issue 23 §3): ``submit`` files an order's record once its
request is out, and the journal's flush is one write to one day's file. What they promise stays."""

import time
from datetime import datetime

import pytest

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.core.layout import IST
from engine.live.orders import Caps, OrderState
from engine.orders import Purpose
from engine.services.journal import Journal
from tests.kite_server import API_KEY
from tests.test_order_lane_at_once import Listener, entry, intent
from tests.waiting import LIMIT_S


def at(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=IST).timestamp() * 1e9)


@pytest.fixture
async def lane(tmp_path):
    journal = Journal(tmp_path, time.time_ns)
    kite = Listener(journal)
    rest = KiteREST(API_KEY, "tok-day-1", kite.base, timeout=5.0)
    broker = KiteBroker(rest, journal, {"NSE:INFY": 0.05}, time.time_ns, Caps(per_position_minute=1))
    broker.on_error = lambda text: None
    yield kite, rest, broker, journal
    await rest.close()
    kite.close()


async def test_an_order_written_by_submit_is_known_by_its_tag_and_submitted_as_submit_returns(lane):
    kite, rest, broker, journal = lane
    await rest.prepare_orders()
    request = entry("ot00000000g001")
    intent(journal, request)
    order = broker.submit(request, Purpose.ENTRY)
    assert broker.order("ot00000000g001") is order and order.state == OrderState.SUBMITTED
    assert order.placed_ns > 0 and order.purpose == Purpose.ENTRY
    assert kite.placed.wait(LIMIT_S)  # (written by submit: the loop has had no turn)


async def test_an_order_the_caps_refuse_is_filed_denied_and_never_written(lane):
    kite, rest, broker, journal = lane
    await rest.prepare_orders()
    first, second = entry("ot00000000g002"), entry("ot00000000g003")
    for request in (first, second):
        intent(journal, request)
        broker.submit(request, Purpose.EXIT)  # (an exit keeps no reserve: the cap of 1 lets one through)
    refused = broker.order("ot00000000g003")
    assert refused.state == OrderState.DENIED and "not sent" in refused.status_message
    assert kite.placed.wait(LIMIT_S)
    assert [b"tag=ot00000000g002" in sent for sent, _ in kite.places] == [True]


def test_a_record_of_a_new_day_writes_the_days_before_to_their_file_first(tmp_path):
    now = [at("2026-11-23T23:59:59")]
    journal = Journal(tmp_path, lambda: now[0])
    journal.record("late")
    now[0] += 2 * 10**9
    journal.record("early")  # not flushed yet: still in memory
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["late"]
    assert journal.read_day("2026-11-24") == []
    journal.flush()
    assert [r["kind"] for r in journal.read_day("2026-11-24")] == ["early"]


def test_records_of_a_clock_going_back_and_forth_over_midnight_each_reach_their_days_file_in_order(tmp_path):
    days = {"a": at("2026-11-23T23:59:59"), "b": at("2026-11-24T00:00:01")}
    now = [0]
    journal = Journal(tmp_path, lambda: now[0])
    for seq, kind in enumerate(("a", "b", "a", "a", "b")):
        now[0] = days[kind]
        journal.record(kind, seq=seq)
    journal.flush()
    journal.close()
    assert [r["seq"] for r in journal.read_day("2026-11-23")] == [0, 2, 3]
    assert [r["seq"] for r in journal.read_day("2026-11-24")] == [1, 4]
