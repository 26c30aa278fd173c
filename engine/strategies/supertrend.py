"""SuperTrend: long when the trend turns up; when it turns down, out of the long, and short if
allowed. A turn that finds the other side open closes it, and the new side is asked for on the next
bar while the trend lasts (the engine never reverses on one answer).

The turn is a wish kept in memory until it is answered: the entry is asked for once, whether the
engine takes it or refuses it (after the square-off, a risk limit, warming up, the session's last
bar). The engine does not say which, and a long its stop closed before the next bar looks flat
there just like a refused one: asked again, either would be an entry without a turn.
"""

from engine.core.indicators import supertrend
from engine.strategies.api import EXIT, LONG, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "supertrend",
    about="long when the SuperTrend turns up; out (and short, if allowed) when it turns down",
    params={"period": Param(10, low=1, high=500, about="bars of its ATR"),
            "factor": Param(3.0, low=0.1, high=20.0, about="ATRs from the bar's middle to its bands")},
    indicators=lambda p: {"st": supertrend(p.period, p.factor)},
    memory={"follow": 0.0},  # the side of the last turn while it still wants a position on that side
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
    if pos == -follow:  # the other side is open: out of it first, the turn's side on the next bar
        return EXIT
    x[FOLLOW] = 0.0  # answered: on the turn's side already, or asked for it once, taken or not
    if pos != 0.0:
        return NONE
    return LONG if follow > 0.0 else SHORT
