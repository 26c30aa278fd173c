"""Sweep throughput: a year of 1-minute candles for 2 instruments (synthetic: a year of generated
ticks made into minute OHLC), replayed as 4 ticks a candle by the ohlc rule (250 days x 375 bars x
4 = 375k ticks an instrument), under 1,000 parameter sets of the shipped default (EMA cross fast x
slow, VWAP reversion k).

Goals: throughput (ticks x parameter sets per second) on all cores >= 1.7x one core, on the same
200 sets (the better of two interleaved tries each: the cores may be shared, so CPU seconds and the
load average are reported too, and so is this machine's own ceiling: the same backtests run as
independent processes, one per core, against one process); the 1,000 sets in <= 60 s on all
cores. Walk-forward (60d / 20d) and a local Ray run of 100 sets are measured beside them.

A sweep of a tick strategy apart (issue 23): EMA cross deciding on every tick of a year of generated
ticks of one instrument, 40 sets (fast x slow), on all cores, the better of two tries: goal >= 100M
ticks x sets per second on 2 cores.
"""

import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.common import report
from config import validate
from config.manager import SHIPPED_DEFAULT
from engine.cli import _load_config
from engine.data import candles
from engine.data.synthetic import generate
from engine.data.ticks import Ticks
from engine.research import sweep
from engine.strategies import default_catalog

DAYS = 250
MINUTE_NS = 60_000_000_000
PARAMS = ["instruments.0.strategy.fast=2:20:2", "instruments.0.strategy.slow=25:70:5",
          "instruments.1.strategy.k=1.0:3.25:0.25"]
TICK_PARAMS = ["instruments.0.strategy.fast=2:20:2", "instruments.0.strategy.slow=25:70:15"]


def minute_candles(ticks: Ticks, k: int) -> candles.Candles:
    mine = ticks.instr == k
    ts, price = ticks.ts[mine], ticks.price[mine]
    starts, first = np.unique(ts // MINUTE_NS * MINUTE_NS, return_index=True)
    last = np.append(first[1:], len(ts)) - 1
    return candles.Candles(starts, price[first], np.maximum.reduceat(price, first),
                           np.minimum.reduceat(price, first), price[last], np.add.reduceat(ticks.volume[mine], first))


def cpu() -> float:
    """CPU seconds of this process and of its finished workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(cfg, data, combos, **kw) -> tuple[float, float, sweep.SweepResult]:
    """Wall and CPU seconds of one sweep, and its result."""
    t0, c0 = time.perf_counter(), cpu()
    res = sweep.run(cfg, data, combos, **kw)
    return time.perf_counter() - t0, cpu() - c0, res


def _alone(job: tuple) -> float:
    """Seconds this process takes for the backtests ``job`` names, on its own data."""
    data, settings = job
    t0 = time.perf_counter()
    for s in settings:
        sweep.evaluate(data, s, 0, len(data.ticks))
    return time.perf_counter() - t0


def ceiling(data: sweep.Data, settings: list[dict], cores: int) -> float:
    """How much faster ``cores`` processes doing the same backtests each, side by side, get through
    them than one process: what the machine allows a sweep at best."""
    one = _alone((data, settings))
    with ProcessPoolExecutor(cores) as pool:
        pool.submit(_alone, (data, settings[:1])).result()  # started and warm
        t0 = time.perf_counter()
        list(pool.map(_alone, [(data, settings)] * cores))
        every = time.perf_counter() - t0
    return cores * one / every


def tick_sweep(cfg, cores: int) -> dict:
    """The tick strategy's sweep: its row."""
    data = cfg.model_dump(mode="json")
    data["instruments"] = data["instruments"][:1]
    data["instruments"][0]["strategy"].update(timeframe="tick")
    one = validate(data, default_catalog())
    ticks = generate(DAYS, 2, [one.instruments[0].symbol], tick_interval_ms=1000.0,
                     tick_sizes=[one.instruments[0].tick_size])
    combos = sweep.grid([sweep.parse_param(p) for p in TICK_PARAMS])
    whole = sweep.Data(ticks, None, "generated ticks")
    sweep.run(one, sweep.Data(ticks.slice(10_000)), combos[:1], workers=1)  # compiled outside the timing
    wall, cpu_s, _ = min((timed(one, whole, combos, workers=cores) for _ in range(2)), key=lambda r: r[0])
    rate = len(ticks) * len(combos) / wall
    return {"metric": f"EMA cross on ticks, {len(ticks):,} ticks x {len(combos)} sets on {cores} cores",
            "value": f"{wall:.1f} s, {cpu_s:.1f} s CPU ({rate / 1e6:.1f}M ticks x sets/s)",
            "goal": ">= 100M ticks x sets/s", "ok": rate >= 100e6}


def main() -> None:
    cfg = _load_config(SHIPPED_DEFAULT)
    symbols = [i.symbol for i in cfg.instruments]
    raw = generate(DAYS, 1, symbols, tick_interval_ms=1000.0, tick_sizes=[i.tick_size for i in cfg.instruments])
    replay = candles.replay({s: minute_candles(raw, k) for k, s in enumerate(symbols)}, symbols, "minute", "ohlc",
                            cfg.session.ns_after_midnight("open"), cfg.session.ns_after_midnight("close"))
    ticks = replay.ticks
    data = sweep.Data(ticks, replay.partner, replay.data)
    combos = sweep.grid([sweep.parse_param(p) for p in PARAMS])
    subset, ratio_sets = combos[::10], combos[::5]
    cores = os.cpu_count() or 1
    sweep.run(cfg, data.part(0, 10_000), subset[:1], workers=1)  # compile outside the timings

    load = os.getloadavg()[0]
    tries = [timed(cfg, data, ratio_sets, workers=w) for _ in range(2) for w in (1, cores)]  # interleaved
    one_s, one_cpu, _ = min(tries[0::2], key=lambda r: r[0])
    all_s, all_cpu, _ = min(tries[1::2], key=lambda r: r[0])
    machine = ceiling(data, [c.model_dump(mode="json") for c in sweep.configs(cfg, ratio_sets[:20])[1]], cores)
    full_s, full_cpu, res = timed(cfg, data, combos, workers=cores)
    walk_s, _, walk = timed(cfg, data, subset, workers=cores, walk=(60, 20))
    n = len(ticks)
    one, every = n * len(ratio_sets) / one_s, n * len(ratio_sets) / all_s
    oos = walk.out_of_sample()
    rows = [
        {"metric": "data", "value": f"{replay.data}: {n:,} ticks, {len(combos):,} parameter sets"},
        {"metric": "load average (1 min) at start, end", "value": f"{load:.1f}, {os.getloadavg()[0]:.1f}"},
        {"metric": f"one core, {len(ratio_sets)} sets",
         "value": f"{one_s:.1f} s, {one_cpu:.1f} s CPU ({one / 1e6:.1f}M ticks x sets/s)"},
        {"metric": f"{cores} cores, the same {len(ratio_sets)} sets",
         "value": f"{all_s:.1f} s, {all_cpu:.1f} s CPU ({every / 1e6:.1f}M ticks x sets/s)"},
        {"metric": "all cores / one core", "value": f"{every / one:.2f}x", "goal": ">= 1.7x", "ok": every / one >= 1.7},
        {"metric": "  this machine's ceiling (the same backtests as independent processes)",
         "value": f"{machine:.2f}x"},
        {"metric": f"{len(combos):,} sets on {cores} cores", "value": f"{full_s:.1f} s, {full_cpu:.1f} s CPU "
         f"({n * len(combos) / full_s / 1e6:.1f}M ticks x sets/s)", "goal": "<= 60 s", "ok": full_s <= 60},
        {"metric": f"walk-forward 60d/20d, {len(subset)} sets", "value": f"{walk_s:.1f} s "
         f"({len(walk.walk_forward())} windows, {len(walk.rows):,} backtests; out of sample "
         f"₹{oos['oos_net_per_day']:,.2f}/day vs in sample ₹{oos['is_net_per_day']:,.2f}/day)"},
        {"metric": "best by net P&L", "value": str({p: res.ranked()[0][p] for p in res.paths})},
        tick_sweep(cfg, cores),
    ]
    try:
        import ray
    except ImportError:
        rows.append({"metric": f"local Ray, {len(subset)} sets", "value": "skipped: Ray is not installed"})
    else:
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False)
        up_s = time.perf_counter() - t0
        ray_s, _, ray_res = timed(cfg, data, subset, ray="auto")
        ray.shutdown()
        same = ray_res.rows == sweep.run(cfg, data, subset, workers=cores).rows
        rows.append({"metric": f"local Ray ({cores} CPUs), {len(subset)} sets",
                     "value": f"{ray_s:.1f} s after {up_s:.1f} s start-up; rows identical to local: {same}"})
    report("sweep", rows)


if __name__ == "__main__":
    main()
