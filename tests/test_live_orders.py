"""The live order state machine against the strict local Kite server: Kite's word moves an order,
nothing else does."""

import asyncio
import time

import pytest

from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.live.orders import Caps, OrderState
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.services.journal import Journal
from tests.kite_engine import wait
from tests.kite_server import API_KEY, MODIFICATIONS_REFUSAL, FakeKite


class Venue:
    """A Kite broker on the local server, with what it told the engine and the trader."""

    def __init__(self, server: FakeKite, broker: KiteBroker) -> None:
        self.server, self.broker = server, broker
        self.updates: list[tuple[str, OrderState, int]] = []
        self.errors: list[str] = []
        broker.on_order = lambda order, qty, price: self.updates.append((order.order_id, order.state, qty))
        broker.on_error = self.errors.append
        self.tags = iter(f"ot{n:012x}" for n in range(1, 1000))

    def submit(self, **fields) -> str:
        request = OrderRequest(**{"symbol": "NSE:INFY", "side": Side.SELL, "quantity": 10,
                                  "order_type": OrderType.SL_M, "trigger_price": 990.0, **fields,
                                  "tag": next(self.tags)})
        return self.broker.submit(request, Purpose.STOP).order_id

    def at_kite(self, tag: str) -> list[dict]:
        return [rows[-1] for rows in self.server.orders.values() if rows[-1]["tag"] == tag]


@pytest.fixture
async def venue(tmp_path, request):
    server = FakeKite(**getattr(request, "param", {}))
    server.hang_s = 1.0
    await server.start()
    server.set_ltp("NSE:INFY", 1000.0)
    rest = KiteREST(API_KEY, server.access_token, server.base, timeout=0.5)
    broker = KiteBroker(rest, Journal(tmp_path, time.time_ns), {"NSE:INFY": 0.1}, time.time_ns, Caps(12),
                        lookup_seconds=2.0)
    broker.book_every_s = 0.3
    look_ups = asyncio.create_task(broker.run(every=0.1))
    try:
        yield Venue(server, broker)
    finally:
        look_ups.cancel()
        await rest.close()
        await server.stop()


async def test_an_order_without_kites_answer_is_submitted_never_open(venue):
    venue.server.fault("place", "hang")
    tag = venue.submit()
    await wait(lambda: venue.server.place_calls == 1)  # at Kite, its answer hanging
    assert venue.broker.order(tag).state == OrderState.SUBMITTED and venue.broker.order(tag).working


async def test_kites_acceptance_makes_a_stop_accepted_and_its_trigger_makes_it_triggered(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    [row] = venue.at_kite(tag)
    await venue.server.trigger(row["order_id"])
    await wait(lambda: venue.broker.order(tag).state == OrderState.TRIGGERED)


async def test_a_lost_answer_is_resolved_by_the_tag_in_the_order_book_and_never_sent_twice(venue):
    venue.server.fault("place", "500-after")
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).broker_id is not None)
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    assert len(venue.at_kite(tag)) == 1 and venue.server.place_calls == 1


async def test_an_order_kites_book_never_shows_is_taken_for_never_placed_and_not_sent_again(venue):
    venue.server.fault("place", "500-before")
    tag = venue.submit()
    await wait(lambda: not venue.broker.order(tag).working)
    order = venue.broker.order(tag)
    assert order.state == OrderState.REJECTED and "not placed" in order.status_message
    assert venue.server.place_calls == 1 and venue.at_kite(tag) == []


async def test_an_order_taken_for_never_placed_that_turns_up_working_is_cancelled(venue):
    venue.server.fault("place", "500-before")
    tag = venue.submit()
    await wait(lambda: not venue.broker.order(tag).working)
    late = venue.server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                                   trigger_price=990.0, status="TRIGGER PENDING", tag=tag)
    venue.broker.update(venue.server.orders[late][-1])
    await wait(lambda: venue.server.orders[late][-1]["status"] == "CANCELLED")
    assert any("turned up late" in e for e in venue.errors)


async def test_a_failed_follow_up_look_changes_nothing(venue):
    venue.server.ws_order_messages = "none"
    venue.server.fault("history", "503", times=20)
    tag = venue.submit()
    await asyncio.sleep(0.3)
    assert venue.broker.order(tag).working  # not REJECTED on a failed GET
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)  # the book said so


async def test_a_modify_asked_before_kite_accepted_the_order_waits_and_is_then_applied(venue):
    venue.server.transition_delay_s = 0.3
    tag = venue.submit()
    venue.broker.modify(tag, trigger_price=995.0)
    assert venue.broker.order(tag).request.trigger_price == 990.0  # what Kite confirmed, not what we asked
    await wait(lambda: [r["trigger_price"] for r in venue.at_kite(tag)] == [995.0])
    await wait(lambda: venue.broker.order(tag).request.trigger_price == 995.0)


async def test_changes_asked_while_a_modify_is_in_flight_reach_kite_as_the_latest_wish(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    venue.server.fault("modify", "hang-after")
    venue.broker.modify(tag, trigger_price=991.0)
    await wait(lambda: venue.server.modifies)  # in flight, its answer hanging
    for trigger in (992.0, 993.0, 994.0, 995.0):
        venue.broker.modify(tag, trigger_price=trigger)
    # Kite applies the second modify before its answer reaches OTrade, which counts it then
    await wait(lambda: venue.at_kite(tag)[0]["trigger_price"] == 995.0 and venue.broker.order(tag).modifications == 2)
    assert len(venue.server.modifies) == 2


async def test_a_modify_kite_refuses_leaves_the_order_as_kite_has_it_and_alerts(venue):
    venue.server.max_modifications = 0
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    venue.broker.order(tag).modifications = 0
    venue.broker.modify(tag, trigger_price=995.0)
    await wait(lambda: venue.errors)
    assert MODIFICATIONS_REFUSAL in venue.errors[0] and venue.broker.order(tag).request.trigger_price == 990.0
    assert not venue.broker.order(tag).pending


async def test_an_order_near_kites_modification_cap_is_replaced_before_the_old_one_is_cancelled(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    replaced = []
    venue.broker.on_replaced = lambda old, new: replaced.append((old.order_id, new.order_id))
    venue.broker.order(tag).modifications = 24
    venue.broker.modify(tag, trigger_price=995.0)
    [(old, new)] = await wait(lambda: replaced)
    await wait(lambda: venue.at_kite(old)[0]["status"] == "CANCELLED")
    [row] = venue.at_kite(new)
    assert row["trigger_price"] == 995.0 and row["status"] == "TRIGGER PENDING"
    first, second = (min(k for k, r in venue.server.orders.items() if r[-1]["tag"] == t) for t in (old, new))
    cancelled_at = next(r["exchange_update_timestamp"] for r in venue.server.orders[first]
                        if r["status"] == "CANCEL PENDING")
    assert venue.server.orders[second][0]["order_timestamp"] <= cancelled_at


async def test_an_order_replaced_near_the_cap_is_cancelled_only_once_kite_has_its_successor(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    venue.broker.order(tag).modifications = 24
    venue.server.fault("place", "hang")  # the successor reaches Kite a second late
    venue.broker.modify(tag, trigger_price=995.0)
    await wait(lambda: venue.server.place_calls == 2)  # the successor at Kite, its answer hanging
    [old] = venue.at_kite(tag)
    assert old["status"] == "TRIGGER PENDING"  # still protecting: its successor is not at Kite yet
    new = await wait(lambda: [r for r in venue.server.orders.values() if r[-1]["trigger_price"] == 995.0])
    await wait(lambda: venue.at_kite(tag)[0]["status"] == "CANCELLED")
    accepted = next(r["exchange_update_timestamp"] for r in new[0] if r["status"] == "TRIGGER PENDING")
    cancelling = next(r["exchange_update_timestamp"] for r in venue.server.orders[old["order_id"]]
                      if r["status"] == "CANCEL PENDING")
    assert accepted <= cancelling


async def test_a_fill_reported_by_every_channel_is_counted_once(venue):
    tag = venue.submit(order_type=OrderType.LIMIT, trigger_price=None, price=1010.0)
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    [row] = venue.at_kite(tag)
    await venue.server.fill(row["order_id"], 4, 1010.0)
    for _ in range(3):  # the ticker said it; the book and the history say it again, in any order
        for current in (venue.server.orders[row["order_id"]][-1], *await venue.broker.rest.orders()):
            venue.broker.update(current)
    await wait(lambda: venue.broker.filled(tag) == 4)
    assert sum(q for t, _, q in venue.updates if t == tag) == 4
    assert venue.broker.order(tag).state == OrderState.PARTIALLY_FILLED


async def test_a_final_order_stays_final_whatever_stale_row_arrives(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    [row] = venue.at_kite(tag)
    stale = dict(row)
    venue.broker.cancel(tag)
    await wait(lambda: venue.broker.order(tag).state == OrderState.CANCELED)
    venue.broker.update(stale)
    assert venue.broker.order(tag).state == OrderState.CANCELED


async def test_orders_beyond_the_per_position_cap_are_denied_and_alerted(venue):
    venue.broker.caps = Caps(3)
    tags = [venue.submit() for _ in range(4)]
    await asyncio.sleep(0.1)
    assert [venue.broker.order(t).state for t in tags][-1] == OrderState.DENIED
    assert "max_orders_per_position_minute" in venue.errors[-1]


async def test_a_modify_refused_while_kite_still_works_on_a_lost_one_stays_wanted_until_kite_confirms_it(venue):
    tag = venue.submit()
    await wait(lambda: venue.broker.order(tag).state == OrderState.ACCEPTED)
    venue.server.transition_delay_s = 1.5  # Kite works on a change for a while
    venue.server.fault("modify", "500-after")  # it took the first modify; its answer is lost
    venue.broker.modify(tag, trigger_price=995.0)
    await wait(lambda: any("cannot be modified as it is MODIFY" in c.message for c in venue.server.order_calls))
    assert venue.broker.order(tag).wants("trigger_price") == 995.0  # Kite's "busy" is not its no to the change
    await wait(lambda: venue.broker.order(tag).request.trigger_price == 995.0)
    assert not venue.broker.order(tag).pending and not venue.errors
    assert [r["trigger_price"] for r in venue.at_kite(tag)] == [995.0]
