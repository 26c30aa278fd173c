"""The live kernels compiled per set of strategies (engine.strategies.compiled) move the state exactly as
engine.core.step's for any strategy: tick by tick, fill by fill and in a warm-up; and the backtest loop
compiled for each benchmark's case makes the generic loop's trades on that benchmark's data."""

import numpy as np
import pytest

from benchmarks import bench_backtest, bench_tick_path
from benchmarks.common import user_strategy
from config import validate
from config.manager import SHIPPED_DEFAULT
from engine.arrays import Arrays, build
from engine.cli import _load_config
from engine.core import layout as L
from engine.core import step
from engine.data.synthetic import generate
from engine.research import backtest
from engine.strategies import default_catalog
from engine.strategies.compiled import kernels_for

SHIPPED = _load_config(SHIPPED_DEFAULT)


def arrays_equal(a: Arrays, b: Arrays) -> bool:
    """Bit for bit, NaN too."""
    return all(np.array_equal(getattr(a, n).view(np.int64), getattr(b, n).view(np.int64))
               for n in ("st", "clk", "acct", "rows"))


def replay(cfg, ticks, live: bool) -> None:
    """``ticks`` through the kernels compiled for ``cfg``'s strategies and through engine.core.step's, side
    by side, each reporting the same bits and leaving the same state after every tick. Live: each order
    a tick sent is filled at the next tick's price before it (entries through ``apply_entry_fill``, exits
    through ``apply_exit_fill``, each deciding again), as a broker's fills come back between ticks."""
    mine, generic = build(cfg), build(cfg)
    k = kernels_for(mine.strategies)
    k.bind(mine.strategies, mine.links)
    sides = ((mine, k.on_tick, k.apply_entry_fill, k.apply_exit_fill),
             (generic, step.on_tick, step.apply_entry_fill, step.apply_exit_fill))
    for a, *_ in sides:
        a.acct[L.A_LIVE] = 1.0 if live else 0.0
    fills = 0  # entry and exit fills, the fill model's or the broker's
    for n in range(len(ticks)):
        i, ts, price, volume = int(ticks.instr[n]), int(ticks.ts[n]), float(ticks.price[n]), float(ticks.volume[n])
        seen = []
        for a, on_tick, entry_fill, exit_fill in sides:
            st, fill = a.st, 0
            if live and st[i, L.S_PEND_KIND] == L.ORDER_ENTRY:
                fill = entry_fill(*a.kernel(), i, ts, st[i, L.S_PEND_SIDE] * a.pr[i, L.P_QTY], price, True)
            elif live and st[i, L.S_PEND_KIND] == L.ORDER_EXIT and st[i, L.S_POS] != 0.0:
                fill = exit_fill(*a.kernel(), i, ts, abs(st[i, L.S_POS]), price, int(st[i, L.S_PEND_REASON]))
            seen.append((fill, on_tick(*a.kernel(), i, ts, price, volume)))
        fills += bool(seen[0][0] or seen[0][1] & (L.ACT_ENTRY_FILL | L.ACT_EXIT_FILL))
        assert seen[0] == seen[1], f"tick {n}"
        assert arrays_equal(mine, generic), f"tick {n}"
    assert fills >= 10  # enough to tell two kernels apart


@pytest.mark.parametrize("live", [False, True], ids=["paper", "live"])
def test_the_tick_kernel_compiled_for_the_shipped_instrument_moves_the_state_as_the_generic_one(live):
    cfg = bench_tick_path.config(3, {"timeframe": 1})  # bench_tick_path's instruments, on 1-minute bars
    ticks = generate(3, 3, [i.symbol for i in cfg.instruments], tick_interval_ms=3000.0,
                     tick_sizes=[i.tick_size for i in cfg.instruments])
    replay(cfg, ticks, live)


@pytest.mark.parametrize("live", [False, True], ids=["paper", "live"])
def test_the_tick_kernel_compiled_for_a_traders_file_deciding_every_tick_moves_the_state_as_the_generic_one(
        live, tmp_path):
    cfg = bench_tick_path.config(2, {"kind": user_strategy(tmp_path), "timeframe": "tick"})
    ticks = generate(2, 5, [i.symbol for i in cfg.instruments], tick_interval_ms=2000.0,
                     tick_sizes=[i.tick_size for i in cfg.instruments])
    replay(cfg, ticks, live)


def test_the_warm_up_compiled_for_the_shipped_strategies_feeds_the_rows_as_the_generic_one():
    mine, generic = build(SHIPPED), build(SHIPPED)
    k = kernels_for(mine.strategies)
    k.bind(mine.strategies, mine.links)
    t = generate(3, 7, list(mine.symbols), tick_interval_ms=1000.0,
                 tick_sizes=[i.tick_size for i in SHIPPED.instruments])
    fed = k.warm(t.ts, t.price, t.volume, t.instr, mine.st, mine.pr, mine.clk, mine.rows, mine.links, False)
    assert fed == step.warm(t.ts, t.price, t.volume, t.instr, generic.st, generic.pr, generic.clk, generic.rows,
                            generic.links, False) > 100
    assert arrays_equal(mine, generic)


def test_a_paper_engine_trades_a_session_on_the_kernels_it_compiled_at_its_construction(tmp_path):
    from datetime import date

    from tests.conftest import make_config
    from tests.test_engine import feed, make_engine

    engine, clock, _ = make_engine(make_config(strategy={"kind": "ema_cross", "fast": 2, "slow": 5,
                                                         "allow_short": True}), tmp_path)
    roots = [getattr(engine.kernels, name) for name in ("on_tick", "end_bar", "warm")]
    before = [set(r.signatures) for r in roots]
    assert all(before)  # compiled, or loaded from the cache, by the engine's warm-up
    feed(engine, clock, generate(2, seed=3, symbols=["NSE:INFY"], start=date(2026, 11, 16)))
    engine.end_session()
    assert len(engine.trades()) > 10
    assert [set(r.signatures) for r in roots] == before  # nothing compiled while trading


def same_trades(cfg, ticks) -> None:
    mine = backtest.run(cfg, ticks)
    generic = backtest.run(cfg, ticks, compiled=False)
    assert len(generic.tf) >= 10  # enough trades to tell two loops apart
    assert np.array_equal(mine.tf, generic.tf) and np.array_equal(mine.ti, generic.ti)
    assert np.array_equal(mine.days, generic.days) and mine.ticks == generic.ticks


EMA_TICKS = generate(12, 1, ["NSE:INFY"], tick_interval_ms=1000.0, tick_sizes=[0.1])  # bench_backtest's, shorter


@pytest.mark.parametrize("timeframe", ["tick", 5])
def test_bench_backtests_ema_cross_makes_the_generic_loops_trades(timeframe):
    same_trades(bench_backtest.ema_only(SHIPPED, timeframe=timeframe), EMA_TICKS)


@pytest.mark.parametrize("timeframe", ["tick", 5])
def test_bench_backtests_traders_file_makes_the_generic_loops_trades(timeframe, tmp_path):
    same_trades(bench_backtest.ema_only(SHIPPED, user_strategy(tmp_path), timeframe), EMA_TICKS)


def test_bench_backtests_shipped_default_makes_the_generic_loops_trades():
    symbols = [i.symbol for i in SHIPPED.instruments]
    same_trades(SHIPPED, generate(12, 1, symbols, tick_interval_ms=1000.0,
                                  tick_sizes=[i.tick_size for i in SHIPPED.instruments]))


def test_bench_sweeps_tick_sets_make_the_generic_loops_trades():
    data = bench_backtest.ema_only(SHIPPED).model_dump(mode="json")
    for fast, slow in ((2, 25), (20, 70)):  # the corners of bench_sweep's TICK_PARAMS
        data["instruments"][0]["strategy"].update(fast=fast, slow=slow)
        same_trades(validate(data, default_catalog()), EMA_TICKS)


def test_a_backtests_trade_buffer_grows_past_its_first_size_keeping_every_trade():
    cfg = bench_backtest.ema_only(SHIPPED)
    data = cfg.model_dump(mode="json")
    data["instruments"][0]["strategy"].update(fast=1, slow=2)  # a cross every few ticks
    data["instruments"][0]["bracket"].update(target_pct=0.01, stop_pct=0.01)
    data["risk"]["max_trades_per_day"] = 100_000
    cfg = validate(data, default_catalog())
    ticks = EMA_TICKS.slice(200_000)
    result = backtest.run(cfg, ticks)
    assert len(result.tf) > 1024 + len(ticks) // 2048  # more than the buffer it started with
    same_trades(cfg, ticks)
