"""A backtest loop compiled per set of strategies (engine.strategies.compiled): the generic loop's
trades exactly, loaded from Numba's cache by the next process, and made again when a file it
depends on changes."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config import validate
from engine.core.indicators import (
    IndicatorLayout,
    atr,
    bollinger,
    donchian,
    ema,
    macd,
    opening_range,
    rsi,
    sma,
    supertrend,
    update_all,
    vwap,
)
from engine.core.indicators._base import KIND
from engine.core.indicators.layout import FEEDS
from engine.data import candles
from engine.data.synthetic import generate
from engine.research import backtest
from engine.strategies import catalog_for, default_catalog
from engine.strategies.compiled import cache_key, kernels_for
from tests.conftest import DEFAULT, ROOT, process_env
from tests.strategy_files import long_above_an_imported_level

DAYS = 4
MINUTE_NS = 60_000_000_000
EMA_CROSS = (ROOT / "engine" / "strategies" / "ema_cross.py").read_text()


def config(*instruments: dict, short: bool = True):
    """The shipped config trading ``instruments`` (symbol, strategy, bracket overrides on the shipped INFY)."""
    data = copy.deepcopy(DEFAULT)
    base = data["instruments"][0]
    data["instruments"] = [{**copy.deepcopy(base), **i, "strategy": {"allow_short": short, **i["strategy"]}}
                           for i in instruments]
    data["risk"]["max_trades_per_day"] = 1000
    return validate(data, default_catalog())


def ticks_of(cfg, seed: int = 3):
    symbols = [i.symbol for i in cfg.instruments]
    return generate(DAYS, seed, symbols, tick_interval_ms=1000.0, tick_sizes=[i.tick_size for i in cfg.instruments])


def user_cross(folder: Path) -> str:
    """The built-in ema_cross as a trader's own file in ``folder``; its name."""
    (folder / "strategies").mkdir(parents=True, exist_ok=True)
    (folder / "strategies" / "user_cross.py").write_text(EMA_CROSS.replace('"ema_cross"', '"user_cross"'))
    catalog_for(folder / "otrade.json")
    return "user_cross"


def assert_same_trades(cfg, ticks, partner=None) -> None:
    mine = backtest.run(cfg, ticks, partner=partner)
    generic = backtest.run(cfg, ticks, partner=partner, compiled=False)
    assert len(generic.tf) >= 10  # enough trades to tell two loops apart
    assert np.array_equal(mine.tf, generic.tf) and np.array_equal(mine.ti, generic.ti)
    assert np.array_equal(mine.costs, generic.costs) and np.array_equal(mine.days, generic.days)
    assert mine.ticks == generic.ticks


def test_ema_cross_on_ticks_makes_the_generic_loops_trades():
    cfg = config({"strategy": {"kind": "ema_cross", "timeframe": "tick", "fast": 9, "slow": 21},
                  "bracket": {"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": 0.1}})
    assert_same_trades(cfg, ticks_of(cfg))


def test_the_shipped_mix_on_five_minute_candles_makes_the_generic_loops_trades():
    cfg = validate(DEFAULT, default_catalog())  # ema_cross on INFY, vwap_reversion on SBIN: two strategies, one loop
    assert_same_trades(cfg, ticks_of(cfg, seed=5))


def test_supertrend_orb_and_rsi_reversion_side_by_side_make_the_generic_loops_trades():
    cfg = config({"symbol": "NSE:INFY", "strategy": {"kind": "supertrend", "timeframe": 5}},
                 {"symbol": "NSE:TCS", "strategy": {"kind": "orb", "timeframe": 1, "minutes": 30}},
                 {"symbol": "NSE:SBIN", "strategy": {"kind": "rsi_reversion", "timeframe": 3, "period": 7}})
    assert_same_trades(cfg, ticks_of(cfg, seed=8))


def test_a_traders_strategy_file_makes_the_generic_loops_trades(tmp_path):
    cfg = config({"strategy": {"kind": user_cross(tmp_path), "timeframe": "tick", "fast": 5, "slow": 40}})
    assert_same_trades(cfg, ticks_of(cfg, seed=9))


def test_candles_replayed_by_the_pessimistic_rule_make_the_generic_loops_trades():
    cfg = validate(DEFAULT, default_catalog())
    raw = ticks_of(cfg, seed=11)
    five = {s: _candles(raw, k, 5) for k, s in enumerate(raw.symbols)}
    r = candles.replay(five, list(raw.symbols), "5minute", "pessimistic", cfg.session.ns_after_midnight("open"),
                       cfg.session.ns_after_midnight("close"))
    assert_same_trades(cfg, r.ticks, r.partner)


def _candles(ticks, k: int, minutes: int) -> candles.Candles:
    mine = ticks.instr == k
    ts, price = ticks.ts[mine], ticks.price[mine]
    step = minutes * MINUTE_NS
    starts, first = np.unique(ts // step * step, return_index=True)
    last = np.append(first[1:], len(ts)) - 1
    return candles.Candles(starts, price[first], np.maximum.reduceat(price, first), np.minimum.reduceat(price, first),
                           price[last], np.add.reduceat(ticks.volume[mine], first))


LOADED = """
import sys
from config import validate
from engine.data.synthetic import generate
from engine.research import backtest
from engine.strategies import default_catalog
from engine.strategies.compiled import kernels_for
from tests.conftest import DEFAULT
cfg = validate(DEFAULT, default_catalog())
backtest.run(cfg, generate(1, 1, [i.symbol for i in cfg.instruments], tick_interval_ms=5000.0))
stats = kernels_for([type(i.strategy).__strategy__ for i in cfg.instruments]).run_ticks.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def test_the_next_process_loads_the_compiled_loop_from_the_cache(tmp_path):
    def run() -> list[int]:
        out = subprocess.run([sys.executable, "-c", LOADED], env=process_env(tmp_path), cwd=ROOT,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr
        return [int(n) for n in out.stdout.split()]

    run()  # compiles it, unless an earlier run did
    assert run() == [1, 0]  # one signature loaded, none compiled


def test_the_same_strategy_file_in_another_folder_runs_the_same_loop(tmp_path):
    user_cross(tmp_path / "a")
    one = kernels_for([default_catalog().get("user_cross")])
    user_cross(tmp_path / "b")  # now found first
    other = kernels_for([default_catalog().get("user_cross")])
    assert one.strategies != other.strategies and one.key == other.key
    assert one.run_ticks is other.run_ticks


def test_a_change_in_a_file_the_strategy_imports_names_another_loop(tmp_path, monkeypatch):
    strategy, rule = long_above_an_imported_level(tmp_path, monkeypatch, "gapped", "GAP")
    gapped = [strategy]
    before = cache_key(gapped)
    assert cache_key(gapped) == before
    rule.write_text("GAP = 100.0\n")  # frozen into the machine code as a constant: Numba would not notice
    assert cache_key(gapped) != before


def test_a_loop_refuses_a_strategy_it_was_not_compiled_for():
    catalog = default_catalog()
    loop = kernels_for([catalog.get("orb")])
    links = np.zeros((2, 8), np.int64)
    with pytest.raises(ValueError, match="compiled for orb, not for supertrend"):
        loop.bind([catalog.get("orb"), catalog.get("supertrend")], links)
    assert not links.any()  # nothing written


@pytest.mark.parametrize("indicator", [ema(9), ema(5, seed=1), rsi(14), supertrend(10, 3.0), vwap(), atr(14), sma(20),
                                       bollinger(20, 2.0), macd(), donchian(20), opening_range(15)],
                         ids=lambda i: i.label)
def test_each_kinds_update_is_the_one_update_all_makes(indicator):
    rng = np.random.default_rng(4)
    layout = IndicatorLayout(x=indicator)
    by_kind, by_feed = layout.fresh.copy(), layout.fresh.copy()
    feed = FEEDS[indicator.head[KIND]]
    for k in range(400):
        close = 100.0 + rng.normal(0.0, 1.0)
        high, low, session, start = close + rng.exponential(0.5), close - rng.exponential(0.5), k // 75, k % 75 * 3e11
        update_all(by_kind, layout.offsets_array, session, start, high, low, close, 10.0)
        feed(by_feed, 0, session, start, high, low, close, 10.0)
        assert np.array_equal(by_feed.view(np.int64), by_kind.view(np.int64))  # bit for bit, NaN too


def test_every_indicator_kind_has_its_update():
    from engine.core.indicators import _base

    kinds = {v for k, v in vars(_base).items() if k.startswith("KIND_")}
    assert set(FEEDS) == kinds
