"""Backtest throughput: the full fill model (sessions, brackets, trailing, square-off, risk) on 10M
ticks loaded from the binary tick format, against the same fill model run as pure Python (the same
code with NUMBA_DISABLE_JIT=1, in a subprocess, on a slice) in this run; the CSV load rate apart.

Measured for an EMA-cross instrument deciding on every tick (the reference case), for the same
logic as a trader's own strategy file and as the built-in on 5-minute candles, and for the shipped
default (EMA cross and VWAP reversion on 5-minute candles). Goals: >= 50M ticks/s; the user's file
within 1.3x of the built-in.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import report, user_strategy
from config import validate
from config.manager import SHIPPED_DEFAULT
from engine.cli import _load_config
from engine.data.synthetic import generate
from engine.data.tick_files import load, save
from engine.research import backtest
from engine.strategies import default_catalog

ROOT = Path(__file__).resolve().parent.parent
N = 10_000_000
PY_N = 100_000

PURE_PYTHON = """
import sys, time
from engine.research import backtest
from pathlib import Path
from engine.cli import _load_config
from engine.data.tick_files import load
cfg = _load_config(Path(sys.argv[1]))
ticks, _ = load(sys.argv[2], [i.symbol for i in cfg.instruments])
t0 = time.perf_counter()
backtest.run(cfg, ticks)
print(len(ticks) / (time.perf_counter() - t0))
"""


def ema_only(cfg, kind: str = "ema_cross", timeframe: str | int = "tick"):
    """The shipped INFY instrument alone, its EMA cross (9/21) as ``kind`` on ``timeframe``."""
    data = cfg.model_dump(mode="json")
    data["instruments"] = data["instruments"][:1]
    data["instruments"][0]["strategy"].update(kind=kind, timeframe=timeframe)
    return validate(data, default_catalog())


def throughput(cfg, ticks) -> tuple[float, int]:
    backtest.run(cfg, ticks.slice(10_000))  # warm the kernels
    t0 = time.perf_counter()
    result = backtest.run(cfg, ticks)
    return len(ticks) / (time.perf_counter() - t0), len(result.tf)


def main() -> None:
    cfg = _load_config(SHIPPED_DEFAULT)
    ema_cfg = ema_only(cfg)
    symbols = [i.symbol for i in cfg.instruments]
    sizes = [i.tick_size for i in cfg.instruments]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        days = N // (2 * 22_500) + 1
        t0 = time.perf_counter()
        ticks = generate(days, 1, symbols, tick_interval_ms=1000.0, tick_sizes=sizes)
        gen_s = time.perf_counter() - t0
        binary = tmp / "ticks.otk"
        save(binary, ticks)
        t0 = time.perf_counter()
        ticks, _ = load(binary, symbols)
        load_s = time.perf_counter() - t0
        n = len(ticks)
        rate, trades = throughput(cfg, ticks)
        ema_ticks = generate(days * 2, 1, ["NSE:INFY"], tick_interval_ms=1000.0, tick_sizes=[0.1]).slice(N)
        ema_rate, ema_trades = throughput(ema_cfg, ema_ticks)
        builtin_rate, builtin_trades = throughput(ema_only(cfg, timeframe=5), ema_ticks)
        user_rate, user_trades = throughput(ema_only(cfg, user_strategy(tmp), 5), ema_ticks)

        head = ticks.slice(PY_N)
        small = tmp / "head.otk"
        save(small, head)
        env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", PURE_PYTHON, str(SHIPPED_DEFAULT), str(small)],
                             env=env, capture_output=True, text=True, check=True)
        py_rate = float(out.stdout.strip())

        csv_path = tmp / "ticks.csv"
        save(csv_path, ticks.slice(1_000_000))
        t0 = time.perf_counter()
        load(csv_path, symbols)
        csv_rate = 1_000_000 / (time.perf_counter() - t0)

    rows = [
        {"metric": "EMA cross on ticks, 1 instrument: throughput", "value": f"{ema_rate / 1e6:.1f}M ticks/s "
         f"({len(ema_ticks):,} ticks, {ema_trades:,} trades)", "goal": ">= 50M ticks/s", "ok": ema_rate >= 50e6},
        {"metric": "a user's strategy file, 5-minute candles: throughput", "value": f"{user_rate / 1e6:.1f}M ticks/s "
         f"({len(ema_ticks):,} ticks, {user_trades:,} trades)", "goal": ">= 50M ticks/s", "ok": user_rate >= 50e6},
        {"metric": "the same logic built in, 5-minute candles", "value": f"{builtin_rate / 1e6:.1f}M ticks/s "
         f"({builtin_trades:,} trades)"},
        {"metric": "built-in / user's file", "value": f"{builtin_rate / user_rate:.2f}x", "goal": "<= 1.3x",
         "ok": builtin_rate / user_rate <= 1.3},
        {"metric": "shipped default (EMA + VWAP, 5-minute candles)", "value": f"{rate / 1e6:.1f}M ticks/s "
         f"({n:,} ticks, {trades:,} trades)"},
        {"metric": "same fill model, pure Python", "value": f"{py_rate / 1e3:.1f}k ticks/s"},
        {"metric": "ratio jitted / pure Python", "value": f"{rate / py_rate:,.0f}x"},
        {"metric": "binary load", "value": f"{load_s:.3f} s ({n / load_s / 1e6:.0f}M ticks/s)"},
        {"metric": "CSV load", "value": f"{csv_rate / 1e3:.0f}k rows/s"},
        {"metric": "generate", "value": f"{gen_s:.2f} s"},
    ]
    report("backtest", rows)


if __name__ == "__main__":
    main()
