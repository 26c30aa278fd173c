"""SuperTrend: long when the trend turns up; when it turns down, out of the long, and short if
allowed. A turn that finds the other side open closes it, and the new side is taken on the next
bar while the trend lasts (the engine never reverses on one answer)."""

from engine.core.indicators import supertrend
from engine.strategies.api import EXIT, LONG, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "supertrend",
    about="long when the SuperTrend turns up; out (and short, if allowed) when it turns down",
    params={"period": Param(10, low=1, high=500, about="bars of its ATR"),
            "factor": Param(3.0, low=0.1, high=20.0, about="ATRs from the bar's middle to its bands")},
    indicators=lambda p: {"st": supertrend(p.period, p.factor)},
    memory={"follow": 0.0},  # the side of the last turn, until a position on that side was seen
    timeframe=5,
)

FLIP = strategy.slot("st", "flip")
FOLLOW = strategy.mem("follow")


@strategy.decision
def decide(x, pos):
    if x[FLIP] != 0.0:
        x[FOLLOW] = x[FLIP]
    follow = x[FOLLOW]
    if follow == 0.0:
        return NONE
    if pos == follow:  # on the trend's side: nothing more to do until the next turn
        x[FOLLOW] = 0.0
        return NONE
    if pos != 0.0:
        return EXIT
    return LONG if follow > 0.0 else SHORT
