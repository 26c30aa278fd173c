"""Start-up: config load + validate (goal <= 200 us); `otrade backtest` on a one-tick file, whole
process, with a warm Numba cache (goal <= 0.5 s) and on a fresh install's empty cache (goal <= 10 s),
its compiles kernel by kernel; `otrade run` (paper, the shipped config) from its start to trading, the
same two ways; and `otrade warm` on an empty cache: what each kernel costs to compile, the kernels a live
restart compiles before it re-arms protection apart (tests/test_cold_restart.py times the stop itself).
The compiling rows give CPU seconds (user + sys, the processes' own children too) beside the wall time:
on a machine shared with other work, the CPU time moves less."""

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import report
from config import parse
from config.manager import SHIPPED_DEFAULT
from engine.engine import RECONCILE_KERNELS
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


def children_cpu_s() -> float:
    """CPU seconds (user + sys) of every finished process this one started, their own children with
    them: beside a wall time, what a busy machine disturbs less."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def backtest_s(ticks: Path, env: dict) -> tuple[float, float]:
    """`otrade backtest` on a one-tick file: wall and CPU seconds."""
    cpu, t0 = children_cpu_s(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine", "backtest", "--ticks", str(ticks), "--json"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0, children_cpu_s() - cpu


# `otrade backtest` with each compile timed (Numba's compile events), less the compiles nested in it.
_BY_KERNEL = """
import json, sys, time
import numba.core.event as ev
from engine.cli import main
stack, took = [], {}
class Timer(ev.Listener):
    def on_start(self, event):
        stack.append([time.perf_counter(), 0.0])
    def on_end(self, event):
        began, inner = stack.pop()
        spent = time.perf_counter() - began
        if stack:
            stack[-1][1] += spent
        name = event.data["dispatcher"].py_func.__name__
        took[name] = took.get(name, 0.0) + spent - inner
ev.register("numba:compile", Timer())
main(["backtest", "--ticks", sys.argv[1], "--json"])
print(json.dumps(took))
"""


def backtest_kernels(ticks: Path, env: dict) -> dict[str, float]:
    """`otrade backtest` on an empty cache: each kernel's own compile seconds, the largest first."""
    out = subprocess.run([sys.executable, "-c", _BY_KERNEL, str(ticks)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    took = json.loads(out.strip().splitlines()[-1])
    return dict(sorted(took.items(), key=lambda kv: -kv[1]))


def run_s(tmp: Path, env: dict) -> tuple[float, float]:
    """`otrade run` (paper) from its start to its "paper trading" line: kernels compiled or loaded, the
    strategies warmed on the synthetic sessions before today. Wall seconds to that line, and CPU
    seconds of the run and the child it compiles in, to their exit (a second of trading after it)."""
    env = {**env, "OTRADE_DATA_DIR": str(tmp / "data"), "OTRADE_CONFIG": str(tmp / "otrade.json"), "PORT": "0"}
    cpu, t0 = children_cpu_s(), time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "engine", "run", "--for", "1"], cwd=tmp, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        took = next((time.perf_counter() - t0 for line in proc.stderr if "paper trading" in line), None)
        proc.stderr.read()
    if proc.returncode or took is None:
        raise SystemExit(f"otrade run failed (exit {proc.returncode})")
    return took, children_cpu_s() - cpu


def warm_cold(env: dict) -> tuple[float, float, dict[str, float]]:
    """`otrade warm` on an empty cache: its wall and CPU seconds (its child's too) and each piece's
    seconds as it printed them."""
    cpu, t0 = children_cpu_s(), time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "engine", "warm"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    took = time.perf_counter() - t0
    return took, children_cpu_s() - cpu, {name: float(s)
                                          for name, s in re.findall(r"^  (\S.*?) +(\d+\.\d\d) s$", out, re.M)}


def main() -> None:
    load_us = config_load_us()
    with tempfile.TemporaryDirectory() as tmp:
        ticks = Path(tmp) / "one.csv"
        ticks.write_text("ts,symbol,price\n2026-11-23T10:00:00+05:30,NSE:INFY,1500.0\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        warmed, warmed_cpu, pieces = warm_cold({**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "warm")})
        cold_env = {**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "cache")}
        cold, cold_cpu = backtest_s(ticks, cold_env)
        warm = min(backtest_s(ticks, cold_env)[0] for _ in range(5))
        by_kernel = backtest_kernels(ticks, {**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "profiled")})
        run_env = {**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "run-cache")}
        run_cold, run_cold_cpu = run_s(Path(tmp), run_env)
        run_warm = min(run_s(Path(tmp), run_env)[0] for _ in range(5))
    first = sum(pieces[k] for k in RECONCILE_KERNELS)
    rows = [
        {"metric": "config load + validate (median)", "value": f"{load_us:.0f} us", "goal": "<= 200 us",
         "ok": load_us <= 200},
        {"metric": "otrade backtest start-up, warm cache", "value": f"{warm:.2f} s", "goal": "<= 0.5 s",
         "ok": warm <= 0.5},
        {"metric": "otrade backtest on a fresh install (cold compile)", "value": f"{cold:.1f} s (CPU {cold_cpu:.1f} s)",
         "goal": "<= 10 s", "ok": cold <= 10},
        {"metric": "  its compiles, by kernel (less those nested)", "value": f"{sum(by_kernel.values()):.1f} s"},
        *({"metric": f"    {name}", "value": f"{s:.2f} s"} for name, s in by_kernel.items() if s >= 0.05),
        {"metric": "otrade run (paper) start to trading, warm cache", "value": f"{run_warm:.2f} s"},
        {"metric": "otrade run (paper) first start on a fresh install",
         "value": f"{run_cold:.1f} s (CPU of both processes, to exit: {run_cold_cpu:.1f} s)", "goal": "<= 10 s",
         "ok": run_cold <= 10},
        {"metric": "otrade warm on an empty cache (everything)", "value": f"{warmed:.1f} s (CPU {warmed_cpu:.1f} s)"},
        {"metric": "  a live restart's kernels before it re-arms stops", "value": f"{first:.2f} s"},
        *({"metric": f"  {name}", "value": f"{s:.2f} s"} for name, s in pieces.items()),
    ]
    report("startup", rows)


if __name__ == "__main__":
    main()
