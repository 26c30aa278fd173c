"""The live path's parity: the same ticks through the backtest and through the live engine trading
at the strict local Kite server (tests/parity.py) give the same trades: entry and exit times (the
ticks'), prices, quantities, exit reasons and P&L.

The compared window is 10:00 to 10:07 IST, far from the square-off and the session's end, where
live and backtest differ by design: the backtest exits at the square-off tick itself (README, "The
fill model"), the live square-off sends a market order that fills at the next tick; and at the end
of the data the backtest closes what is open at the last tick, while the live position stays at
Kite (both are compared as "held").

A signal on the very tick that fills an order is decided on the position that fill leaves, live
as in the backtest (engine/core/step.py ``_decide_again``), and a tick that trades through a resting
leg waits for that leg's fill before it decides (``_leg_crossed``).
"""

import pytest

from tests.conftest import make_config
from tests.parity import (
    assert_same,
    backtest_book,
    ema_cross_signal_ticks,
    live_run,
    walk,
)

TICK = 0.1  # Kite's tick size for INFY
FAST, SLOW = 5, 20
WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}


def config(bracket: dict, allow_short: bool = False, fast: int = FAST, slow: int = SLOW):
    return make_config(strategy={"kind": "ema_cross", "fast": fast, "slow": slow, "allow_short": allow_short},
                       bracket=bracket, tick_size=TICK, risk={"max_trades_per_day": 1000})


async def test_a_bracket_trades_the_same_live_as_in_the_backtest(tmp_path):
    cfg = config({"target_pct": 0.2, "stop_pct": 0.05, "trail_pct": None})
    values = walk(400, seed=33)
    backtested = backtest_book(cfg, values)
    assert {t.reason for t in backtested.trades} == {"target", "stop", "signal"}
    live, _ = await live_run(tmp_path, cfg, values)
    assert_same(live, backtested)


async def test_a_trailing_stop_trades_the_same_live_as_in_the_backtest(tmp_path):
    cfg = config({"target_pct": 0.3, "stop_pct": 0.1, "trail_pct": 0.05}, allow_short=True)
    values = walk(400, seed=19)
    backtested = backtest_book(cfg, values)
    assert {t.reason for t in backtested.trades} == {"trail", "signal"}
    assert {t.side for t in backtested.trades} == {"long", "short"}
    live, run = await live_run(tmp_path, cfg, values)
    assert len(run.server.modifies) >= 10  # the trailing moved the stops at Kite
    assert_same(live, backtested)


async def test_a_crossover_on_the_tick_that_fills_the_entry_exits_at_the_next_tick(tmp_path):
    cfg = config(WIDE, fast=1, slow=2)
    values = [100.0, 99.0, 101.0, 100.0, 100.0, 100.0]  # up on tick 2; down on tick 3, where the entry fills
    backtested = backtest_book(cfg, values)
    assert [(t.entry_price, t.exit_price, t.reason) for t in backtested.trades] == [(100.0, 100.0, "signal")]
    live, _ = await live_run(tmp_path, cfg, values)
    assert_same(live, backtested)


async def test_a_crossover_on_the_tick_that_fills_the_exit_enters_at_the_next_tick(tmp_path):
    cfg = config(WIDE, fast=1, slow=2)
    values = [100.0, 99.0, 101.0, 101.5, 100.0, 102.0, 102.5, 102.6]  # down on tick 4; up on 5, where the exit fills
    backtested = backtest_book(cfg, values)
    assert backtested.held is not None and backtested.held.entry_price == 102.5
    live, _ = await live_run(tmp_path, cfg, values)
    assert_same(live, backtested)


async def test_a_stop_and_a_crossover_on_one_tick_exit_at_the_stop(tmp_path):
    cfg = config({"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": None}, fast=1, slow=2)
    # the entry fills at 101.5 (stop 100.5); tick 4 trades through the stop and crosses down
    values = [100.0, 99.0, 101.0, 101.5, 100.0, 100.2, 100.2]
    backtested = backtest_book(cfg, values)
    assert [(t.exit_price, t.reason) for t in backtested.trades] == [(100.0, "stop")]
    live, _ = await live_run(tmp_path, cfg, values)
    assert_same(live, backtested)


@pytest.mark.parametrize("seed", range(8))
async def test_random_walks_with_signals_on_fill_ticks_trade_the_same_live(tmp_path, seed):
    cfg = config({"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": 0.05}, allow_short=True, fast=2, slow=5)
    values = walk(300, seed=100 + seed)
    backtested = backtest_book(cfg, values)
    assert backtested.fill_ticks() & ema_cross_signal_ticks(values, 2, 5)  # the hard case is in the walk
    live, _ = await live_run(tmp_path, cfg, values)
    assert_same(live, backtested)
