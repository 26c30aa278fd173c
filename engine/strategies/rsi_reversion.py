"""RSI reversion: long when the RSI (Wilder's) climbs back above ``oversold``, short (if allowed)
when it falls back below ``overbought``; a long leaves once the RSI reaches ``overbought``, a short
once it reaches ``oversold``."""

from engine.core.indicators import rsi
from engine.strategies.api import EXIT_LONG, EXIT_SHORT, LONG, NAN, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "rsi_reversion",
    about="long as the RSI leaves oversold, short as it leaves overbought; out at the other extreme",
    params={"period": Param(14, low=2, high=200, about="bars of the RSI"),
            "oversold": Param(30.0, low=1.0, high=99.0, about="RSI at or below which the price is oversold"),
            "overbought": Param(70.0, low=1.0, high=99.0, about="RSI at or above which it is overbought")},
    indicators=lambda p: {"rsi": rsi(p.period)},
    memory={"rsi": NAN},  # the previous bar's RSI: entries are crossings
    timeframe=5,
    rules=lambda p: [("oversold", f"{p.oversold:g} must be below overbought ({p.overbought:g})")]
    if p.oversold >= p.overbought else [],
)

RSI = strategy.slot("rsi")
PREV = strategy.mem("rsi")
OVERSOLD, OVERBOUGHT = strategy.param("oversold"), strategy.param("overbought")


@strategy.decision
def decide(x, pos):
    prev, now = x[PREV], x[RSI]
    x[PREV] = now
    low, high = x[OVERSOLD], x[OVERBOUGHT]
    if prev <= low < now:
        return LONG
    if prev >= high > now:
        return SHORT
    if pos > 0.0 and now >= high:
        return EXIT_LONG
    if pos < 0.0 and now <= low:
        return EXIT_SHORT
    return NONE
