"""Kite's rules for an order, checked before it is sent so that Kite never has to refuse it.

The facts (../shared/kite/README.md): prices and triggers on the instrument's tick grid; a SELL
stop's trigger below the last traded price and a BUY stop's above it; the limit of an SL order on
the executable side of its trigger; at most 25 modifications per order.
"""

import math

from engine.orders import OrderRequest, OrderType, Side

MAX_MODIFICATIONS = 25  # Kite refuses the 26th modification of an order
REPLACE_AT = MAX_MODIFICATIONS - 1  # one modification kept in hand (a resize); past it, cancel and place


def on_grid(price: float, tick: float) -> bool:
    steps = price / tick
    return math.isclose(steps, round(steps), rel_tol=0, abs_tol=1e-6)


def snap(price: float, tick: float, up: bool) -> float:
    """``price`` on the tick grid, rounded towards ``up`` when it is off it."""
    if on_grid(price, tick):
        return round(round(price / tick) * tick, 8)
    steps = math.ceil(price / tick) if up else math.floor(price / tick)
    return round(steps * tick, 8)


def on_the_grid(request: OrderRequest, tick: float) -> None:
    """Put the request's price and trigger on the grid, never to the worse side for us: a sell's
    limit and a stop's trigger round towards safety (a sell stop down, a buy stop up)."""
    sell = request.side == Side.SELL
    if request.price is not None:
        request.price = snap(request.price, tick, up=sell)
    if request.trigger_price is not None:
        request.trigger_price = snap(request.trigger_price, tick, up=not sell)


def trigger_problem(request: OrderRequest, ltp: float) -> str:
    """Why Kite would refuse this stop against the last traded price ('' when it would not)."""
    if request.order_type not in (OrderType.SL, OrderType.SL_M) or request.trigger_price is None:
        return ""
    trigger = request.trigger_price
    if request.side == Side.SELL:
        if ltp == ltp and trigger >= ltp:
            return f"sell stop trigger {trigger:.2f} is not below the last price {ltp:.2f}"
        if request.order_type == OrderType.SL and request.price is not None and request.price > trigger:
            return f"sell stop limit {request.price:.2f} is above its trigger {trigger:.2f}"
    else:
        if ltp == ltp and trigger <= ltp:
            return f"buy stop trigger {trigger:.2f} is not above the last price {ltp:.2f}"
        if request.order_type == OrderType.SL and request.price is not None and request.price < trigger:
            return f"buy stop limit {request.price:.2f} is below its trigger {trigger:.2f}"
    return ""
