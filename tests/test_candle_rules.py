"""Candle rules as written (issue 21 §1): the decision runs on every closed bar, the session's last
included (its answer dropped), so a strategy's memory always holds the previous bar, yesterday's
last before today's first; and a wish kept in memory is spent once answered, taken or refused.

Each backtest is checked against an independent reading of the rule: the bars written out, their
EMAs (pandas) or SuperTrend (numpy, from its definition) computed here, and the trades the words
call for listed from them, not from the engine's output."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from engine.core.indicators import update_all
from engine.research import backtest
from engine.strategies import BUILTIN, load_builtin
from engine.strategies.api import CLOSE, HIGH, LOW, N_BAR, OPEN, SESSION, START, VOLUME
from tests.conftest import make_config, make_ticks
from tests.test_engine import feed, make_engine

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}
SQUARE_OFF = "15:15:00"
TICKS_AT = (0, 20, 40)  # seconds into each 1-minute bar: it closes at the next bar's first tick


def minute_bars(*sessions):
    """(day, first bar's HH:MM, [(price at :00, :20, :40), ...]): consecutive 1-minute bars, all in
    the session (its last bar is the session's)."""
    rows = []
    for day, first, prices in sessions:
        start = datetime.fromisoformat(f"{day}T{first}:00")
        assert (start + timedelta(minutes=len(prices) - 1)).strftime("%H:%M") <= "15:29"
        for k, ticks in enumerate(prices):
            rows.append({"day": day, "start": start + timedelta(minutes=k), "ticks": ticks,
                         "high": max(ticks), "low": min(ticks), "close": ticks[-1], "last": k == len(prices) - 1})
    return pd.DataFrame(rows)


def ticks_of(bars):
    return make_ticks([(r.day, (r.start + timedelta(seconds=s)).strftime("%H:%M:%S"), p, "NSE:INFY")
                       for r in bars.itertuples() for s, p in zip(TICKS_AT, r.ticks, strict=True)])


def entries_by_the_rule(bars, wants_long, leaves_long, warmup):
    """Entry times the words call for: a bar's answer counts after ``warmup`` bars, not on the
    session's last bar (its answer is dropped), and a long entry only while flat and before the
    square-off: decided at the next bar's first tick, filled at the tick after it."""
    entries, long = [], False
    for b, r in enumerate(bars.itertuples()):
        if r.last or b + 1 < warmup:
            continue
        filled = r.start + timedelta(minutes=1, seconds=TICKS_AT[1])
        if not long and wants_long[b] and filled.strftime("%H:%M:%S") < SQUARE_OFF:
            entries.append(filled.strftime("%Y-%m-%dT%H:%M:%S"))
            long = True
        elif long and leaves_long[b]:
            long = False
    return entries


def entry_times(cfg, bars):
    return [t["entry_time"][:19] for t in backtest.run(cfg, ticks_of(bars)).trade_rows()]


# --- ema_cross: memory holds the previous bar's EMAs ---------------------------------------------

EMA = {"kind": "ema_cross", "fast": 2, "slow": 4, "timeframe": 1}


def ema_crosses(bars):
    fast = bars.close.ewm(span=EMA["fast"], adjust=False).mean()  # seeded with the first close
    slow = bars.close.ewm(span=EMA["slow"], adjust=False).mean()
    above = fast > slow
    below = fast < slow
    return (above & ~above.shift(fill_value=True)).to_numpy(), (below & ~below.shift(fill_value=True)).to_numpy()


def flat(p, n=3):
    return [(p, p, p)] * n


# Yesterday closes falling, the last bar's jump crosses the fast EMA above the slow one; today goes
# on rising (no cross) until a dip and a new rise cross down and up again.
CROSS_ON_LAST_BAR = minute_bars(
    ("2026-11-23", "15:20", [(100 - k, 100 - k, 100 - k) for k in range(9)] + [(92.0, 95.0, 97.0)]),
    ("2026-11-24", "09:15", [(97.5, 97.5, 98.0), (98.5, 98.5, 99.0), (99.5, 99.5, 100.0), (96.0, 95.0, 94.0),
                             (93.0, 93.0, 93.0), (96.0, 98.0, 99.0), *flat(99.5), *flat(100.0)]))

# Yesterday rising, the last bar's drop crosses the fast EMA below; today's first bar jumps back above.
CROSS_FROM_LAST_BAR_TO_FIRST = minute_bars(
    ("2026-11-23", "15:20", [(90 + k, 90 + k, 90 + k) for k in range(9)] + [(98.0, 96.0, 94.0)]),
    ("2026-11-24", "09:15", [(99.0, 100.0, 101.0), *flat(101.5), *flat(102.0), *flat(102.5)]))


def test_a_cross_on_the_sessions_last_bar_is_not_traded_the_next_morning():
    up, down = ema_crosses(CROSS_ON_LAST_BAR)
    assert up[9] and not up[10]  # the reading itself: the cross is yesterday's last bar's, not today's first
    expected = entries_by_the_rule(CROSS_ON_LAST_BAR, up, down, EMA["slow"])
    assert expected == ["2026-11-24T09:21:20"]
    assert entry_times(make_config(strategy=EMA, bracket=WIDE), CROSS_ON_LAST_BAR) == expected


def test_a_cross_from_yesterdays_last_bar_to_todays_first_is_traded():
    up, down = ema_crosses(CROSS_FROM_LAST_BAR_TO_FIRST)
    assert down[9] and up[10]
    expected = entries_by_the_rule(CROSS_FROM_LAST_BAR_TO_FIRST, up, down, EMA["slow"])
    assert expected == ["2026-11-24T09:16:20"]
    assert entry_times(make_config(strategy=EMA, bracket=WIDE), CROSS_FROM_LAST_BAR_TO_FIRST) == expected


# --- supertrend: a turn is acted on once ----------------------------------------------------------

ST = {"kind": "supertrend", "period": 2, "factor": 1.0, "timeframe": 1}


def supertrend_turns(bars, n=ST["period"], factor=ST["factor"]):
    """Up and down turns per bar of SuperTrend(n, factor) as charting tools define it: Wilder's ATR
    seeded with the mean of the first n true ranges (the first is high - low); bands hl2 ± factor·ATR;
    the lower band keeps its value unless the new one is higher or the previous close fell below it,
    the upper band the mirror; the trend starts down, turns up on a close above the upper band and
    down on a close below the lower one."""
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    tr = np.concatenate(([high[0] - low[0]], np.maximum.reduce(
        [high[1:] - low[1:], abs(high[1:] - close[:-1]), abs(low[1:] - close[:-1])])))
    trend = np.full(len(close), np.nan)
    atr = tr[:n].mean()
    upper = lower = None
    for b in range(n - 1, len(close)):
        if b >= n:
            atr += (tr[b] - atr) / n
        hl2 = (high[b] + low[b]) / 2
        u, lo = hl2 + factor * atr, hl2 - factor * atr
        if upper is None:
            trend[b] = -1
        else:
            lo = lo if lo > lower or close[b - 1] < lower else lower
            u = u if u < upper or close[b - 1] > upper else upper
            trend[b] = (1 if close[b] > u else -1) if trend[b - 1] < 0 else (-1 if close[b] < lo else 1)
        upper, lower = u, lo
    turned = np.diff(trend, prepend=np.nan)
    return turned > 0, turned < 0


def test_supertrend_does_not_enter_again_after_a_stop_closed_its_long_between_two_bars():
    # the trend turns up on 09:19's bar; the long fills at 09:20:20 (102.1, stop 101.9) and the dip
    # to 101.7 at 09:20:40 stops it out before 09:20's bar closes, the trend still up
    bars = minute_bars(("2026-11-23", "09:15", [
        (100.0, 100.2, 99.9), (99.9, 99.8, 99.6), (99.6, 99.5, 99.3), (99.3, 99.2, 99.0), (99.0, 101.5, 102.0),
        (102.0, 102.1, 101.7), (101.8, 102.0, 102.2), (102.2, 102.3, 102.4), (102.4, 102.5, 102.6)]))
    up, down = supertrend_turns(bars)
    expected = entries_by_the_rule(bars, up, down, ST["period"])
    assert expected == ["2026-11-23T09:20:20"] and not up[5:].any()
    trades = backtest.run(make_config(strategy=ST, bracket={"target_pct": 5.0, "stop_pct": 0.2, "trail_pct": None}),
                          ticks_of(bars)).trade_rows()
    assert [(t["entry_time"][:19], t["exit_reason"]) for t in trades] == [(expected[0], "stop")]


def test_supertrend_turn_refused_after_the_square_off_does_not_carry_overnight():
    # yesterday's trend turns up on 15:25's bar, after the square-off; today it stays up, turns down
    # at 09:20 and up again on 09:22's bar: the one long the rule calls for
    bars = minute_bars(
        ("2026-11-23", "15:20", [(100.0, 100.2, 99.9), (99.9, 99.8, 99.6), (99.6, 99.5, 99.3), (99.3, 99.2, 99.0),
                                 (99.0, 99.0, 98.8), (99.0, 101.5, 102.0), *flat(102.2, 2), *flat(102.4, 2)]),
        ("2026-11-24", "09:15", [*flat(102.8), *flat(103.0, 2), (102.0, 101.0, 100.0), (99.0, 98.5, 98.0),
                                 (99.0, 101.0, 103.0), *flat(103.2, 2)]))
    up, down = supertrend_turns(bars)
    assert up[5] and bars.start[5].strftime("%H:%M") == "15:25"  # the reading: yesterday's turn is after 15:15
    expected = entries_by_the_rule(bars, up, down, ST["period"])
    assert expected == ["2026-11-24T09:23:20"]
    assert entry_times(make_config(strategy=ST, bracket=WIDE), bars) == expected


# parameters short enough for the session's end to move each one's memory
SHORT_MEMORY = {"ema_cross": {}, "orb": {}, "rsi_reversion": {"period": 3},
                "supertrend": {"period": 2, "factor": 0.3}, "vwap_reversion": {}}


@pytest.mark.parametrize("name", BUILTIN)
def test_each_built_ins_memory_after_the_session_has_seen_its_last_bar(name, tmp_path):
    """The engine's row after a session that ends (paper: ``end_session``) against the strategy's own
    decision run here on every bar of it, the last included (a SuperTrend(2, 0.3) turn). The bars come
    after the square-off, so no position changes what the decision sees."""
    strategy = load_builtin(name)
    cfg = make_config(strategy={"kind": name, "timeframe": 1, **SHORT_MEMORY[name]}, bracket=WIDE)
    bars = minute_bars(("2026-11-23", "15:16", [(100 + np.sin(k / 3), 100 + np.sin(k / 3 + 1), 100 + np.sin(k / 2))
                                                 for k in range(13)]))
    engine, clock, _ = make_engine(cfg, tmp_path)
    feed(engine, clock, ticks_of(bars))
    engine.end_session()

    x, offsets = strategy.row(cfg.instruments[0].strategy)
    for r in bars.itertuples():
        since_open = (r.start - r.start.replace(hour=9, minute=15)).total_seconds() * 1e9
        day = float((r.start.date() - datetime(1970, 1, 1).date()).days)
        x[OPEN], x[HIGH], x[LOW], x[CLOSE], x[VOLUME], x[START], x[SESSION] = (
            r.ticks[0], r.high, r.low, r.close, len(r.ticks), since_open, day)
        update_all(x, offsets, day, since_open, r.high, r.low, r.close, float(len(r.ticks)))
        strategy.decide(x, 0.0)
    memory = slice(N_BAR + len(strategy.params), strategy.base)
    assert np.array_equal(engine.arrays.x[0, memory], x[memory], equal_nan=True)
