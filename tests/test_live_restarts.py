"""A restart against the local Kite server: an earlier run's orders, in Kite's book or still on their way
to it, keep the roles its journal gave them; whatever belongs to no position is cancelled; a reconcile
waits for Kite to answer; the book is read even once the day's orders are all final."""

import asyncio
import time

from engine.live.orders import IDLE_BOOK_S
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.services.journal import Journal
from tests.kite_engine import T0, alerts, enter, kite_engine, net_at_kite, real_time, wait, working_of

INFY = "NSE:INFY"


async def tend_for(engine, seconds: float, every: float = 0.1) -> None:
    """The app's tending (every second there), here every ``every`` s for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        engine.tend()
        await asyncio.sleep(every)


def earlier_run(tmp_path, *sent: tuple[Purpose, OrderRequest]) -> None:
    """Today's journal as an earlier run left it: an intent written before each order left."""
    journal = Journal(tmp_path, lambda: (T0 - 1800) * 10**9)  # 09:30 IST the same day
    for purpose, request in sent:
        journal.record("intent", purpose=str(purpose), **request.__dict__)
    journal.flush()
    journal.close()


def seed(server, tag: str, side: str, order_type: str, quantity: int, status: str, **row) -> str:
    return server.seed_order(tradingsymbol="INFY", transaction_type=side, order_type=order_type,
                             quantity=quantity, status=status, tag=tag, **row)


async def test_a_duplicate_that_fills_before_its_cancel_reaches_kite_is_undone_at_market(tmp_path):
    async with kite_engine(tmp_path) as (server, engine, bus):
        sub = bus.subscribe()
        seed(server, "otabc123000001", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=1000.0)
        kept = seed(server, "otabc123000002", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=950.0)
        second = seed(server, "otabc123000003", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=951.0)
        server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1000.0}]
        notes = engine.reconcile(server.net_positions, await engine.broker.rest.orders())
        assert any("a stray SL-M SELL (cancelled)" in n for n in notes)
        await server.fill(second, 10, 950.9)  # the exchange filled it before the cancel reached Kite
        [repair] = await wait(lambda: working_of(server, "MARKET"))
        assert (repair["transaction_type"], repair["quantity"]) == ("BUY", 10)
        texts = [a.data["text"] for a in alerts(sub) if a.critical]
        assert any("filled before its cancel reached Kite" in t and "BUY 10 at market to undo the excess" in t
                   for t in texts)
        assert engine.positions()[0]["qty"] == 10 and engine.trades() == []
        assert engine.positions()[0]["stop"] == 950.0 and kept in server.working()
        await server.complete(repair["order_id"], 951.2)
        await wait(lambda: not working_of(server, "MARKET"))
        await asyncio.sleep(0.1)
        assert net_at_kite(server) == 10 == engine.positions()[0]["qty"]
        assert engine.trades() == []


async def test_an_earlier_runs_repair_stays_a_repair_after_a_restart(tmp_path):
    """The earlier run's first entry was taken for never placed, then filled beside the second: it sent
    a SELL 10 repair, which Kite has not filled yet when the run dies."""
    earlier_run(tmp_path,
                (Purpose.ENTRY, OrderRequest(INFY, Side.BUY, 10, OrderType.MARKET, tag="otabc123000001")),
                (Purpose.ENTRY, OrderRequest(INFY, Side.BUY, 10, OrderType.MARKET, tag="otabc123000002")),
                (Purpose.REPAIR, OrderRequest(INFY, Side.SELL, 10, OrderType.MARKET, tag="otabc123000003")))
    async with kite_engine(tmp_path, tick_size=0.1) as (server, engine, _):  # INFY's grid at the server
        seed(server, "otabc123000001", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=101.5)
        seed(server, "otabc123000002", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=101.6)
        repair_id = seed(server, "otabc123000003", "SELL", "MARKET", 10, "OPEN")
        server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 20, "average_price": 101.55}]
        [note] = engine.reconcile(server.net_positions, await engine.broker.rest.orders())
        assert note.startswith("NSE:INFY: adopted position +10 @ 101.55") and "kept its repair (working)" in note
        repair = engine.broker.order("otabc123000003")
        assert repair.purpose == Purpose.REPAIR and engine.brackets[0].exit is None
        assert engine.positions()[0]["qty"] == 10
        legs = await wait(lambda: len(working_of(server, "SL-M")) == 1 and len(working_of(server, "LIMIT")) == 1
                          and working_of(server, "SL-M") + working_of(server, "LIMIT"))
        assert sorted((r["order_type"], r["transaction_type"], r["quantity"]) for r in legs) == [
            ("LIMIT", "SELL", 10), ("SL-M", "SELL", 10)]  # for the 10 held net of the repair, not the 20 filled
        assert repair_id in server.working()  # neither cancelled nor re-priced into something else
        await server.complete(repair_id, 101.4)
        await wait(lambda: not repair.working)
        await asyncio.sleep(0.1)
        assert engine.positions()[0]["qty"] == 10 == net_at_kite(server) and engine.trades() == []
        assert [r["quantity"] for r in working_of(server, "SL-M")] == [10]


async def test_an_earlier_runs_stop_the_book_shows_after_the_new_run_armed_its_own_leaves_one_stop_kites(tmp_path):
    """The earlier run's stop was still on its way to Kite when the run died: it reaches the book after
    the new run has armed its own. As tight as that one, it is Kite's word on the position's stop (a row
    of Kite's may show less than a trail it took): kept, and the new one cancelled."""
    earlier_run(tmp_path,
                (Purpose.ENTRY, OrderRequest(INFY, Side.BUY, 10, OrderType.MARKET, tag="otabc123000001")),
                (Purpose.STOP, OrderRequest(INFY, Side.SELL, 10, OrderType.SL_M, trigger_price=96.4,
                                            tag="otabc123000002")))
    async with kite_engine(tmp_path) as (server, engine, _):
        seed(server, "otabc123000001", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=101.5)
        server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 101.5}]
        [note] = engine.reconcile(server.net_positions, await engine.broker.rest.orders())
        assert "its SL-M SELL stop, not in Kite's book yet (taken if it turns up at least as tight as the " \
               "position's)" in note
        [ours] = await wait(lambda: working_of(server, "SL-M"))
        late = seed(server, "otabc123000002", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=96.4)
        await wait(lambda: server.orders[ours["order_id"]][-1]["status"] == "CANCELLED")
        stop = engine.broker.order(engine.brackets[0].stop)
        assert stop.broker_id == late != ours["order_id"] and engine.positions()[0]["stop"] == 96.4
        assert [r["order_id"] for r in working_of(server, "SL-M")] == [late]
        assert net_at_kite(server) == 10 == engine.positions()[0]["qty"]


async def test_an_earlier_runs_stop_that_turns_up_once_the_position_is_closed_is_cancelled(tmp_path):
    """Flat at Kite (the target filled) and no order of this run working: the book is still read for
    the stop the journal has, and a stop that would open a short position is cancelled."""
    earlier_run(tmp_path,
                (Purpose.ENTRY, OrderRequest(INFY, Side.BUY, 10, OrderType.MARKET, tag="otabc123000001")),
                (Purpose.TARGET, OrderRequest(INFY, Side.SELL, 10, OrderType.LIMIT, price=106.6,
                                              tag="otabc123000002")),
                (Purpose.STOP, OrderRequest(INFY, Side.SELL, 10, OrderType.SL_M, trigger_price=96.4,
                                            tag="otabc123000003")))
    async with kite_engine(tmp_path) as (server, engine, _):
        seed(server, "otabc123000001", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=101.5)
        seed(server, "otabc123000002", "SELL", "LIMIT", 10, "COMPLETE", price=106.6, filled_quantity=10,
             average_price=106.6)
        engine.reconcile([], await engine.broker.rest.orders())
        assert engine.positions() == [] and not server.working()
        late = seed(server, "otabc123000003", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=96.4)
        await wait(lambda: server.orders[late][-1]["status"] == "CANCELLED")
        assert engine.positions() == [] and net_at_kite(server) == 0 and not server.working()


async def test_an_entry_the_journal_has_and_the_book_does_not_is_alerted_as_possibly_unprotected(tmp_path):
    earlier_run(tmp_path, (Purpose.ENTRY, OrderRequest(INFY, Side.BUY, 10, OrderType.MARKET, tag="otabc123000001")))
    async with kite_engine(tmp_path) as (server, engine, bus):
        engine.broker.lookup_seconds = 2.0  # risk.order_lookup_seconds, as the app passes it to the broker
        sub = bus.subscribe()
        real_time(engine)
        assert engine.reconcile([], await engine.broker.rest.orders()) == ["NSE:INFY: kept its entry"]
        entry = engine.broker.order("otabc123000001")
        assert entry.working and entry.broker_id is None
        await tend_for(engine, 1.3)
        [alarm] = [a for a in alerts(sub) if a.critical]
        assert "an entry for 10 has had no word from Kite" in alarm.data["text"]
        assert "no working stop" in alarm.data["text"]
        await wait(lambda: not entry.working)
        assert entry.status == "REJECTED" and "not placed" in entry.status_message
        assert engine.brackets[0].entry is None and engine.orders() == [] and engine.positions() == []
        assert server.orders == {}
        await tend_for(engine, 1.2)
        assert not [a for a in alerts(sub) if "no word from Kite" in a.data["text"]]


async def test_a_reconcile_kite_cannot_answer_is_tried_again_until_it_does(tmp_path):
    async with kite_engine(tmp_path) as (server, engine, bus):
        sub = bus.subscribe()
        seed(server, "otabc123000001", "BUY", "MARKET", 10, "COMPLETE", filled_quantity=10, average_price=1000.0)
        stop_id = seed(server, "otabc123000002", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=950.0)
        server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1000.0}]
        server.fault("orders", "503", times=3)
        server.fault("orders", "429", times=2)  # more than the REST client's own five tries
        notes = await asyncio.wait_for(engine.broker.resync(engine.reconcile, "start"), 60)
        assert [k for e, k in server.fault_log if e == "orders"] == ["503", "503", "503", "429", "429"]
        failures = [a for a in alerts(sub) if "Could not reconcile with Kite after start" in a.data["text"]]
        assert len(failures) == 1 and failures[0].critical
        assert engine.positions()[0]["qty"] == 10 and engine.brackets[0].stop == "otabc123000002"
        [target] = await wait(lambda: working_of(server, "LIMIT"))
        assert (target["transaction_type"], target["quantity"], target["price"]) == ("SELL", 10, 1050.0)
        assert stop_id in server.working()
        assert notes == ["NSE:INFY: adopted position +10 @ 1000.00, kept its stop, bracket armed"]


async def test_the_book_is_read_every_few_seconds_once_the_day_has_had_orders(tmp_path):
    async with kite_engine(tmp_path) as (server, engine, _):
        legs = await enter(server, engine)
        await server.complete(legs["LIMIT"][0], 106.6)
        await wait(lambda: not server.working() and not engine.orders())
        await asyncio.sleep(1.0)  # the look-up has read the book once all were final
        server.ws_order_messages = "none"
        late = seed(server, "otabc123000009", "SELL", "SL-M", 10, "TRIGGER PENDING", trigger_price=96.4)
        seen = time.monotonic()
        await wait(lambda: server.orders[late][-1]["status"] == "CANCELLED", timeout=IDLE_BOOK_S + 1.5)
        assert time.monotonic() - seen <= IDLE_BOOK_S + 1.0
        assert not [m for m in server.order_messages if m["order_id"] == late]  # the book told, not the ticker
        assert engine.positions() == [] and net_at_kite(server) == 0
        assert [t["exit_reason"] for t in engine.trades()] == ["target"]
