"""EMA crossover: long when the fast EMA crosses above the slow one, short on the mirror.

The EMAs are seeded with their first value (TradingView's ta.ema); no answer counts before ``slow``
bars (ticks) were seen. On ticks the indicators start again each session, as the engine always did.
"""

from engine.core.indicators import ema
from engine.strategies.api import LONG, NAN, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "ema_cross",
    about="long when the fast EMA crosses above the slow one, short on the mirror",
    params={"fast": Param(9, low=1, about="bars of the fast EMA"),
            "slow": Param(21, low=2, about="bars of the slow EMA")},
    indicators=lambda p: {"fast": ema(p.fast, seed=1), "slow": ema(p.slow, seed=1)},
    memory={"fast": NAN, "slow": NAN},  # the previous bar's EMAs: a cross is between two bars
    warmup=lambda p: p.slow,
    rules=lambda p: [("fast", f"{p.fast} must be smaller than slow ({p.slow})")] if p.fast >= p.slow else [],
)

FAST, SLOW = strategy.slot("fast"), strategy.slot("slow")
PREV_FAST, PREV_SLOW = strategy.mem("fast"), strategy.mem("slow")


@strategy.decision
def decide(x, pos):
    prev_fast, prev_slow = x[PREV_FAST], x[PREV_SLOW]
    fast, slow = x[FAST], x[SLOW]
    x[PREV_FAST] = fast
    x[PREV_SLOW] = slow
    if prev_fast <= prev_slow and fast > slow:
        return LONG
    if prev_fast >= prev_slow and fast < slow:
        return SHORT
    return NONE
