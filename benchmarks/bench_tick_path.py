"""Live tick path: tick -> decision (indicators, decision, bracket step, risk) through Engine.on_tick.

Goals: one instrument p50 <= 1 us, p99 <= 5 us over 1M ticks; 200 instruments configured, one tick
arriving, p99 <= 5 us: the shipped instrument (EMA cross on 5-minute candles), and a trader's own
strategy file deciding on every tick (its indicators and its decision on each). Each call is timed
with perf_counter_ns; the timer's own cost is measured and reported beside it (not subtracted).
"""

import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from benchmarks.common import percentiles, report, user_strategy
from config import validate
from engine.brokers.paper import PaperBroker
from engine.data.synthetic import generate
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog

DEFAULT = orjson.loads((Path(__file__).resolve().parent.parent / "config" / "default.json").read_bytes())


def config(n: int, strategy: dict | None = None):
    data = copy.deepcopy(DEFAULT)
    base = data["instruments"][0]
    base["strategy"].update(strategy or {})
    data["instruments"] = [{**copy.deepcopy(base), "symbol": f"NSE:SYM{k:03d}"} for k in range(n)]
    return validate(data, default_catalog())


def measure(n_instruments: int, n_ticks: int, strategy: dict | None = None) -> np.ndarray:
    cfg = config(n_instruments, strategy)
    symbols = [i.symbol for i in cfg.instruments]
    days = max(1, n_ticks // 22_000 + 1)
    ticks = generate(days, 3, symbols, tick_interval_ms=1000.0 * n_instruments,
                     tick_sizes=[i.tick_size for i in cfg.instruments])
    ticks = ticks.slice(n_ticks)
    ts, price, instr = ticks.ts.tolist(), ticks.price.tolist(), ticks.instr.tolist()
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.time_ns
        broker = PaperBroker({s: i.tick_size for s, i in zip(symbols, cfg.instruments, strict=True)}, clock)
        engine = Engine(cfg, broker, EventBus(), Journal(Path(tmp), clock), clock)
        engine.start_session()
        on_tick = engine.on_tick
        on_tick(instr[0], ts[0], price[0])  # compiled and warm before timing
        lat = np.empty(len(ts), dtype=np.int64)
        pc = time.perf_counter_ns
        for k in range(len(ts)):
            t0 = pc()
            on_tick(instr[k], ts[k], price[k])
            lat[k] = pc() - t0
    return lat


def timer_cost() -> float:
    pc = time.perf_counter_ns
    lat = np.empty(100_000, dtype=np.int64)
    for k in range(len(lat)):
        t0 = pc()
        lat[k] = pc() - t0
    return float(np.median(lat))


def main() -> None:
    one = percentiles(measure(1, 1_000_000))
    many = percentiles(measure(200, 200_000))
    with tempfile.TemporaryDirectory() as tmp:
        users = percentiles(measure(200, 200_000, {"kind": user_strategy(Path(tmp)), "timeframe": "tick"}))
    rows = [
        {"metric": "1 instrument, 1M ticks: p50", "value": f"{one['p50_us']:.2f} us", "goal": "<= 1 us",
         "ok": one["p50_us"] <= 1},
        {"metric": "1 instrument, 1M ticks: p99", "value": f"{one['p99_us']:.2f} us", "goal": "<= 5 us",
         "ok": one["p99_us"] <= 5},
        {"metric": "1 instrument, 1M ticks: p99.9", "value": f"{one['p999_us']:.2f} us"},
        {"metric": "200 instruments, 200k ticks: p50", "value": f"{many['p50_us']:.2f} us"},
        {"metric": "200 instruments, 200k ticks: p99", "value": f"{many['p99_us']:.2f} us", "goal": "<= 5 us",
         "ok": many["p99_us"] <= 5},
        {"metric": "200 instruments, a user's file deciding every tick: p50", "value": f"{users['p50_us']:.2f} us"},
        {"metric": "200 instruments, a user's file deciding every tick: p99", "value": f"{users['p99_us']:.2f} us",
         "goal": "<= 5 us", "ok": users["p99_us"] <= 5},
        {"metric": "timer cost (median, included above)", "value": f"{timer_cost() / 1e3:.3f} us"},
    ]
    report("tick_path", rows)


if __name__ == "__main__":
    main()
