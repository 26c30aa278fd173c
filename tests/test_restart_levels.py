"""A restarted OTrade's levels against the strict local Kite server (issue 20's leftovers): from the moment
the kernel holds an adopted position, its stop and target are Kite's, or the journal's, or the bracket of
the position's own fills; never a bracket made from a price nobody traded at. A stop of ours that Kite's
book shows late is Kite's word on the position's stop: never loosened, nor cancelled for an older level."""

import pytest

from engine.brokers.kite.ticker_codec import Tick
from engine.core import layout as L
from engine.engine import State
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.services.journal import Journal
from tests.kite_engine import (
    INFY,
    T0,
    TICK,
    TRAILING,
    alerts,
    enter,
    kernel_stop,
    kite_engine,
    restarted,
    trail,
    wait,
    working_of,
    working_stops,
)
from tests.kite_server import IN_FLIGHT, FakeKite

FAR_TARGET = {**TRAILING, "target_pct": 10.0}  # fill 101.50: stop 100.50, the target at 111.65, out of the way


async def trailed_to_108_30_unseen(tmp_path, server) -> str:
    """A run that bought at 101.50 and trailed its stop to 107.80 (confirmed: the journal has it), then
    to 108.30: Kite took that trail, but its answer was lost and no row of it reached OTrade before the
    run died, so its journal's last stop is 107.80. Returns the stop's id."""
    async with kite_engine(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (_, engine, _):
        stop_id = (await enter(server, engine))["SL-M"][0]
        await trail(server, engine, [108.35])
        server.ws_filter = server.book_filter = lambda row: row["trigger_price"] != 108.3
        server.fault("modify", "503")  # Kite takes the trail, its answer is a 503
        await server.push([Tick(INFY, 108.85, "full", True, exchange_timestamp=T0 + 200)])
        await wait(lambda: server.orders[stop_id][-1]["trigger_price"] == 108.3)
    server.ws_filter = server.book_filter = None
    return stop_id


def settled(server, engine) -> bool:
    return bool(engine.positions()) and engine.broker.in_flight == 0 and not any(
        rows[-1]["status"] in IN_FLIGHT for rows in server.orders.values())


def rested_since(server, before: set[str]) -> list[float]:
    """Triggers at which a stop placed after ``before`` rested at Kite."""
    return [r["trigger_price"] for oid, rows in server.orders.items() if oid not in before for r in rows
            if r["order_type"] == "SL-M" and r["status"] == "TRIGGER PENDING"]


@pytest.fixture
async def server():
    """The local Kite the earlier run and the restart both trade with."""
    kite = FakeKite()
    await kite.start()
    yield kite
    await kite.stop()


async def test_a_stop_kite_trailed_unseen_is_taken_when_a_lagging_book_shows_it_never_the_journals_older_one(
        tmp_path, server):
    stop_id = await trailed_to_108_30_unseen(tmp_path, server)
    server.book_lag_s, before = 3600.0, set(server.orders)  # the book shows none of the earlier run's orders yet
    async with restarted(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (engine, _):
        server.book_lag_s = 0.0  # it catches up
        await wait(lambda: settled(server, engine) and engine.brackets[0].stop is not None, timeout=30)
        assert [(r["order_id"], r["trigger_price"]) for r in working_stops(server)] == [(stop_id, 108.3)]
        assert rested_since(server, before) == [], "a stop was armed beside the one Kite holds"
        assert kernel_stop(engine) == 108.3 and engine.positions()[0]["stop"] == 108.3
        assert engine.brackets[0].floor == (1.0, 108.3)


async def test_a_stop_kite_trailed_unseen_that_the_book_shows_after_its_position_replaces_the_one_armed_anew(
        tmp_path, server):
    stop_id = await trailed_to_108_30_unseen(tmp_path, server)
    server.book_filter = lambda row: row["order_id"] != stop_id  # the book shows the entry, not the stop yet
    async with restarted(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (engine, _):
        [armed] = await wait(lambda: [r for r in working_stops(server) if r["order_id"] != stop_id])
        assert armed["trigger_price"] == 107.8  # the journal's last stop: all OTrade knows of yet
        server.book_filter = None  # the book shows Kite's own stop
        await wait(lambda: len(working_stops(server)) == 1 and settled(server, engine))  # one of the two goes
        assert [(r["order_id"], r["trigger_price"]) for r in working_stops(server)] == [(stop_id, 108.3)]
        assert kernel_stop(engine) == 108.3 and engine.positions()[0]["stop"] == 108.3
        assert engine.brackets[0].floor == (1.0, 108.3)


async def test_a_row_showing_an_earlier_runs_stop_looser_than_the_positions_neither_cancels_it_nor_moves_the_level(
        tmp_path, server):
    stop_id = await trailed_to_108_30_unseen(tmp_path, server)
    server.book_filter = lambda row: row["order_id"] != stop_id
    async with restarted(tmp_path, server, bracket=FAR_TARGET, tick_size=TICK) as (engine, _):
        [armed] = await wait(lambda: [r for r in working_stops(server) if r["order_id"] != stop_id])
        assert armed["trigger_price"] == 107.8  # the journal's last stop
        server.book_filter = lambda row: row["order_id"] != stop_id or row["trigger_price"] == 100.5  # it lags
        await wait(lambda: [o for o in engine.broker.all_orders() if o.broker_id == stop_id
                            and o.request.trigger_price == 100.5 and o.working and o.acked.is_set()])
        assert engine.broker.order(engine.brackets[0].stop).broker_id == armed["order_id"]
        assert sorted(r["trigger_price"] for r in working_stops(server)) == [107.8, 108.3]
        assert kernel_stop(engine) == 107.8
        server.book_filter = None  # the row of the trail Kite took
        await wait(lambda: len(working_stops(server)) == 1 and settled(server, engine))
        assert [(r["order_id"], r["trigger_price"]) for r in working_stops(server)] == [(stop_id, 108.3)]
        assert kernel_stop(engine) == 108.3


# --- an earlier run's journal and Kite's book, as a restart finds them -----------------------------------------------
SYMBOL = "NSE:INFY"


def earlier_run(tmp_path, *records: dict) -> None:
    """Today's journal as an earlier run left it (09:30 IST the same day): ``records`` in order."""
    journal = Journal(tmp_path, lambda: (T0 - 1800) * 10**9)
    for record in records:
        journal.record(**record)
    journal.flush()
    journal.close()


def intent(purpose: Purpose, side: Side, tag: str) -> dict:
    request = OrderRequest(SYMBOL, side, 10, OrderType.MARKET, tag=tag)
    return {"kind": "intent", "purpose": str(purpose), **request.__dict__}


def ended(purpose: Purpose, side: Side, tag: str, status: str, price: float = 0.0, message: str = "") -> dict:
    """An ``order`` record of the journal, as the engine writes one: the order's state as it last was."""
    request = OrderRequest(SYMBOL, side, 10, OrderType.MARKET, tag=tag)
    return {"kind": "order", **request.__dict__, "order_id": tag, "status": status,
            "filled_quantity": 10 if status == "COMPLETE" else 0, "average_price": price, "status_message": message,
            "purpose": str(purpose)}


def seed(server, tag: str, side: str, status: str, price: float = 0.0) -> str:
    filled = {"filled_quantity": 10, "average_price": price} if status == "COMPLETE" else {}
    return server.seed_order(tradingsymbol="INFY", transaction_type=side, order_type="MARKET", quantity=10,
                             status=status, tag=tag, **filled)


def new_orders(engine, tags: set[str]) -> list:
    """Orders the restarted engine sent itself (any order it sends is filed before it leaves)."""
    return [o for o in engine.broker.all_orders() if o.order_id not in tags]


async def test_an_earlier_runs_stop_that_turns_up_for_a_position_that_never_comes_is_cancelled(tmp_path):
    """Chaos seed 40316 (with a version of this fix that kept such a stop for the journal's position): that
    position's entry was given up and undone, so the stop Kite showed late protected nothing and, left resting,
    would have opened a short."""
    stop = OrderRequest(SYMBOL, Side.SELL, 10, OrderType.SL_M, trigger_price=950.0, tag="otabc123000002")
    earlier_run(tmp_path, intent(Purpose.ENTRY, Side.BUY, "otabc123000001"),
                ended(Purpose.ENTRY, Side.BUY, "otabc123000001", "COMPLETE", 1000.0),  # the journal holds +10
                {"kind": "intent", "purpose": str(Purpose.STOP), **stop.__dict__})
    async with kite_engine(tmp_path) as (server, engine, _):
        notes = engine.reconcile([], await engine.broker.rest.orders())  # the book shows neither yet
        assert engine.positions() == [] and engine.protection.awaited, notes
        late = server.seed_order(tradingsymbol="INFY", transaction_type="SELL", order_type="SL-M", quantity=10,
                                 status="TRIGGER PENDING", trigger_price=950.0, tag="otabc123000002")
        await wait(lambda: server.orders[late][-1]["status"] == "CANCELLED")
        assert engine.positions() == [] and not server.working()


# --- the entry price, and so the bracket and the P&L, of an adopted position ----------------------------------------
async def test_a_repair_the_journal_saw_refused_is_not_counted_as_a_position_after_a_restart(tmp_path):
    """How chaos runs adopted positions priced at 0 (seed 40413's momentary -0.1 stop; 11 times in seeds
    40000-40599 at 2a91d18): the earlier run's repair of a late entry fill was held back by its order caps (never
    at Kite) and sent again, which filled. Counting the first as still to fill made a short nobody held."""
    tags = {f"otabc123{n:06d}" for n in range(1, 6)}
    earlier_run(tmp_path,
                intent(Purpose.ENTRY, Side.BUY, "otabc123000001"),
                ended(Purpose.ENTRY, Side.BUY, "otabc123000001", "COMPLETE", 1000.0),
                intent(Purpose.EXIT, Side.SELL, "otabc123000002"),
                ended(Purpose.EXIT, Side.SELL, "otabc123000002", "COMPLETE", 1005.0),
                intent(Purpose.ENTRY, Side.BUY, "otabc123000003"),  # given up, then filled
                ended(Purpose.ENTRY, Side.BUY, "otabc123000003", "COMPLETE", 1004.0),
                intent(Purpose.REPAIR, Side.SELL, "otabc123000004"),
                ended(Purpose.REPAIR, Side.SELL, "otabc123000004", "REJECTED",
                      message="not sent: 12 orders for NSE:INFY in the last minute"),
                intent(Purpose.REPAIR, Side.SELL, "otabc123000005"),  # sent again
                ended(Purpose.REPAIR, Side.SELL, "otabc123000005", "COMPLETE", 1003.0))
    async with kite_engine(tmp_path) as (server, engine, _):
        seed(server, "otabc123000001", "BUY", "COMPLETE", 1000.0)
        seed(server, "otabc123000002", "SELL", "COMPLETE", 1005.0)
        seed(server, "otabc123000003", "BUY", "COMPLETE", 1004.0)
        seed(server, "otabc123000005", "SELL", "COMPLETE", 1003.0)
        notes = engine.reconcile([], await engine.broker.rest.orders())
        assert (engine.positions(), new_orders(engine, tags)) == ([], []), notes


def short_behind_a_repair(server) -> set[str]:
    """Kite's book after an earlier run's entry BUY filled once given up (an excess of 10, its repair SELL 10
    still working), then a new entry SELL 10 filled at 1004: OTrade's orders would leave -10 once the repair
    fills, but Kite's fills net 0 so far."""
    seed(server, "otabc123000001", "BUY", "COMPLETE", 1000.0)
    seed(server, "otabc123000002", "SELL", "OPEN")
    seed(server, "otabc123000003", "SELL", "COMPLETE", 1004.0)
    server.set_ltp(SYMBOL, 1004.0)
    return {"otabc123000001", "otabc123000002", "otabc123000003"}


def repair_and_short(tmp_path) -> None:
    earlier_run(tmp_path, intent(Purpose.ENTRY, Side.BUY, "otabc123000001"),
                intent(Purpose.REPAIR, Side.SELL, "otabc123000002"),
                intent(Purpose.ENTRY, Side.SELL, "otabc123000003"))


def tend_for(engine, seconds: float) -> None:
    """The app's tending every 0.5 s for ``seconds`` of the engine's clock, moved by hand."""
    now = [T0 * 10**9]
    engine.now_ns = lambda: now[0]
    for _ in range(int(seconds / 0.5)):
        engine.tend()
        now[0] += 500_000_000


async def test_a_short_behind_a_bigger_repair_is_taken_once_the_repair_fills_with_the_bracket_of_that_fill(tmp_path):
    repair_and_short(tmp_path)
    async with kite_engine(tmp_path) as (server, engine, _):  # a 5% target and stop
        tags = short_behind_a_repair(server)
        engine.reconcile([], await engine.broker.rest.orders())
        assert (engine.positions(), new_orders(engine, tags)) == ([], [])  # Kite holds no position yet
        await server.complete(next(k for k, r in server.orders.items() if r[-1]["tag"] == "otabc123000002"), 1000.0)
        await wait(lambda: engine.broker.order("otabc123000002").filled_quantity == 10)
        tend_for(engine, 1.5)
        [held] = engine.positions()
        assert (held["qty"], held["entry_price"], kernel_stop(engine)) == (-10, 1000.0, 1050.0)
        legs = await wait(lambda: len(working_of(server, "SL-M") + working_of(server, "LIMIT")) == 2
                          and working_of(server, "SL-M") + working_of(server, "LIMIT"))
        assert sorted((r["order_type"], r["transaction_type"], r["trigger_price"] or r["price"]) for r in legs) == [
            ("LIMIT", "BUY", 950.0), ("SL-M", "BUY", 1050.0)]


async def test_the_first_tick_after_a_restart_behind_a_bigger_repair_neither_halts_the_day_nor_sends_an_order(
        tmp_path):
    repair_and_short(tmp_path)
    async with kite_engine(tmp_path) as (server, engine, _):
        tags = short_behind_a_repair(server)
        engine.reconcile([], await engine.broker.rest.orders())
        await server.push([Tick(INFY, 1004.0, "full", True, exchange_timestamp=T0 + 1)])
        await wait(lambda: engine.arrays.st[0, L.S_LTP] == 1004.0)
        assert engine.state != State.HALTED and new_orders(engine, tags) == []


async def test_a_position_no_fill_of_its_side_prices_is_not_taken_from_a_price_of_0(tmp_path):
    """Chaos seeds 40421 and 40541 at 2a91d18: Kite's book lagged at the restart, showing neither the earlier
    run's excess fill nor the repair undoing it; the journal's repair alone made OTrade's orders leave -10."""
    repair_and_short(tmp_path)
    async with kite_engine(tmp_path) as (_, engine, _):
        [note] = engine.reconcile([], await engine.broker.rest.orders())
        assert (engine.positions(), new_orders(engine, {"otabc123000001", "otabc123000002", "otabc123000003"})) == (
            [], [])
        assert "leave no position on that side: not taken until they do" in note


async def test_a_position_no_fill_prices_is_said_once_not_alerted_at_every_tend(tmp_path):
    repair_and_short(tmp_path)
    async with kite_engine(tmp_path) as (_, engine, bus):
        engine.reconcile([], await engine.broker.rest.orders())
        sub = bus.subscribe()
        tend_for(engine, 5.0)  # each beat past the realignment's second
        assert [a.data["text"] for a in alerts(sub) if "differed from its fills" in a.data["text"]] == []
        assert engine.positions() == []
