"""The paper venue: Kite's statuses, rejections with a reason, positions from fills."""

import pytest

from engine.brokers.paper import PaperBroker
from engine.live.venue import BrokerError, OrderRejected
from engine.orders import OrderRequest, OrderType, Side, Status


@pytest.fixture
def broker():
    return PaperBroker({"NSE:INFY": 0.05}, lambda: 0)


def req(**kw) -> OrderRequest:
    base = {"symbol": "NSE:INFY", "side": Side.BUY, "quantity": 10, "order_type": OrderType.LIMIT, "price": 1074.35}
    return OrderRequest(**{**base, **kw})


@pytest.mark.parametrize(("request_", "reason"), [
    (req(quantity=0), "quantity 0 must be positive"),
    (req(price=1074.33), "price 1074.33 is not a positive multiple of the tick size 0.05"),
    (req(symbol="NSE:XYZ"), "unknown symbol NSE:XYZ"),
    (req(order_type=OrderType.SL_M, price=None), "a SL-M order needs a trigger price"),
], ids=["quantity", "tick", "symbol", "trigger"])
async def test_invalid_orders_are_rejected_with_the_reason(broker, request_, reason):
    with pytest.raises(OrderRejected) as info:
        await broker.place_order(request_)
    assert (info.value.order.status, info.value.order.status_message) == (Status.REJECTED, reason)


async def test_a_limit_order_rests_open_and_a_stop_waits_for_its_trigger(broker):
    limit = await broker.place_order(req())
    stop = await broker.place_order(req(side=Side.SELL, order_type=OrderType.SL_M, price=None, trigger_price=1070.0))
    assert (limit.status, stop.status) == (Status.OPEN, Status.TRIGGER_PENDING)


async def test_fills_build_the_position_and_realised_pnl(broker):
    buy = await broker.place_order(req(order_type=OrderType.MARKET, price=None))
    broker.fill(buy.order_id, 1074.35)
    sell = await broker.place_order(req(side=Side.SELL, order_type=OrderType.MARKET, price=None))
    broker.fill(sell.order_id, 1080.35)
    [position] = await broker.positions()
    assert (position.quantity, position.realised) == (0, pytest.approx(60.0))


async def test_a_final_order_cannot_be_cancelled_or_modified(broker):
    order = await broker.place_order(req())
    await broker.cancel_order(order.order_id)
    with pytest.raises(BrokerError, match="already CANCELLED"):
        await broker.cancel_order(order.order_id)
    with pytest.raises(BrokerError, match="already CANCELLED"):
        await broker.modify_order(order.order_id, price=1074.4)


async def test_a_modified_price_must_be_on_the_tick_grid(broker):
    order = await broker.place_order(req())
    with pytest.raises(BrokerError, match="not a multiple of the tick size"):
        await broker.modify_order(order.order_id, price=1074.37)
