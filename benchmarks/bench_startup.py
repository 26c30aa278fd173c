"""Config load + validate (goal <= 200 us) and `otrade backtest` start-up: with a warm Numba cache
(goal <= 1 s, whole process on a one-tick file) and cold (an empty cache directory)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import report
from config import parse
from config.manager import SHIPPED_DEFAULT
from engine.strategies import default_catalog

ROOT = Path(__file__).resolve().parent.parent


def config_load_us() -> float:
    raw = SHIPPED_DEFAULT.read_bytes()
    for _ in range(100):
        parse(raw, default_catalog())
    times = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        parse(raw, default_catalog())
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3


def startup_s(ticks: Path, env: dict) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "backtest", "--ticks", str(ticks), "--json"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    load_us = config_load_us()
    with tempfile.TemporaryDirectory() as tmp:
        ticks = Path(tmp) / "one.csv"
        ticks.write_text("ts,symbol,price\n2026-11-23T10:00:00+05:30,NSE:INFY,1500.0\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cold_env = {**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "cache")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "backtest", "--ticks", str(ticks)], cwd=ROOT,
                       env=cold_env, check=True, capture_output=True)
        cold = time.perf_counter() - t0
        warm = startup_s(ticks, cold_env)
    rows = [
        {"metric": "config load + validate (median)", "value": f"{load_us:.0f} us", "goal": "<= 200 us",
         "ok": load_us <= 200},
        {"metric": "otrade backtest start-up, warm cache", "value": f"{warm:.2f} s", "goal": "<= 1 s",
         "ok": warm <= 1},
        {"metric": "otrade backtest start-up, cold compile", "value": f"{cold:.2f} s"},
    ]
    report("startup", rows)


if __name__ == "__main__":
    main()
