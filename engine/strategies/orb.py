"""Opening-range breakout: the range is the high and low of the first ``minutes`` of the session;
after it, a close crossing above the high goes long, one crossing below the low goes short. A
session with no tick (bar) inside the range's minutes has no range and no trade."""

from engine.core.indicators import opening_range
from engine.strategies.api import CLOSE, LONG, NAN, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "orb",
    about="a close crossing out of the opening range goes that way",
    params={"minutes": Param(15, low=1, high=360, about="minutes of the opening range")},
    indicators=lambda p: {"range": opening_range(p.minutes)},
    memory={"close": NAN},  # the previous close: a breakout is a cross
)

RANGE_HIGH, RANGE_LOW = strategy.slot("range", "high"), strategy.slot("range", "low")
PREV = strategy.mem("close")


@strategy.decision
def decide(x, pos):
    prev, price = x[PREV], x[CLOSE]
    x[PREV] = price
    high = x[RANGE_HIGH]
    if prev <= high < price:
        return LONG
    low = x[RANGE_LOW]
    if prev >= low > price:
        return SHORT
    return NONE
