"""Backtest throughput: the full fill model (sessions, brackets, trailing, square-off, risk) on 10M
ticks loaded from the binary tick format, beside the bare loop (what the same EMA cross costs written
by hand as a jitted loop) and the same fill model run as pure Python (the same code with
NUMBA_DISABLE_JIT=1, in a subprocess, on a slice); the CSV load rate apart.

Measured for an EMA-cross instrument deciding on every tick (the reference case) in the loop compiled
for it and in the loop for any strategy (engine.strategies.compiled), for the same logic as a trader's
own strategy file and as the built-in (on ticks and on 5-minute candles), and for the shipped default
(EMA cross and VWAP reversion on 5-minute candles). Each throughput is the best of three runs, so a
busy neighbour on the machine is measured less. Goals (issue 23): the reference case >= 0.6x the bare
loop; the user's file within 1.1x of the built-in; the 5-minute cases >= 100M ticks/s.

The bare loop: EMA(9) and EMA(21) of every tick's price (seeded with the first), long when the fast
crosses above the slow, short on the mirror, trades counted: no session, no bracket, no risk, the
state in registers. Beside it the same with the session window taken from each tick's time.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numba import njit

from benchmarks.common import report, user_strategy
from config import validate
from config.manager import SHIPPED_DEFAULT
from engine.cli import _load_config
from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY
from engine.data.synthetic import generate
from engine.data.tick_files import load, save
from engine.research import backtest
from engine.strategies import default_catalog

ROOT = Path(__file__).resolve().parent.parent
N = 10_000_000
PY_N = 100_000
TRIES = 3

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


@njit(cache=True, error_model="numpy", _nrt=False)
def bare_cross(price, fast_n, slow_n):
    """The bare loop: EMA cross on every price, the position flipped on each cross; trades made."""
    a_fast, a_slow = 2.0 / (fast_n + 1.0), 2.0 / (slow_n + 1.0)
    fast = slow = price[0]
    pos, trades = 0.0, 0
    for k in range(price.shape[0]):
        p = price[k]
        was_fast, was_slow = fast, slow
        fast += a_fast * (p - fast)
        slow += a_slow * (p - slow)
        if was_fast <= was_slow and fast > slow and pos <= 0.0:
            pos, trades = 1.0, trades + 1
        elif was_fast >= was_slow and fast < slow and pos >= 0.0:
            pos, trades = -1.0, trades + 1
    return trades


@njit(cache=True, error_model="numpy", _nrt=False)
def bare_session_cross(ts, price, open_ns, close_ns, fast_n, slow_n):
    """The bare loop on the ticks inside the session window (time of day from each tick's time)."""
    a_fast, a_slow = 2.0 / (fast_n + 1.0), 2.0 / (slow_n + 1.0)
    fast = slow = price[0]
    pos, trades = 0.0, 0
    for k in range(price.shape[0]):
        tod = (ts[k] + IST_OFFSET_NS) % NS_PER_DAY
        if tod < open_ns or tod >= close_ns:
            continue
        p = price[k]
        was_fast, was_slow = fast, slow
        fast += a_fast * (p - fast)
        slow += a_slow * (p - slow)
        if was_fast <= was_slow and fast > slow and pos <= 0.0:
            pos, trades = 1.0, trades + 1
        elif was_fast >= was_slow and fast < slow and pos >= 0.0:
            pos, trades = -1.0, trades + 1
    return trades


def ema_only(cfg, kind: str = "ema_cross", timeframe: str | int = "tick"):
    """The shipped INFY instrument alone, its EMA cross (9/21) as ``kind`` on ``timeframe``."""
    data = cfg.model_dump(mode="json")
    data["instruments"] = data["instruments"][:1]
    data["instruments"][0]["strategy"].update(kind=kind, timeframe=timeframe)
    return validate(data, default_catalog())


def best(run, n: int) -> tuple[float, object]:
    """Items a second of the best of TRIES runs of ``run()`` over ``n`` items, and what it returned."""
    seconds, out = [], None
    for _ in range(TRIES):
        t0 = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - t0)
    return n / min(seconds), out


def throughput(cfg, ticks, compiled: bool = True) -> tuple[float, int]:
    backtest.run(cfg, ticks.slice(10_000), compiled=compiled)  # compiled, or loaded from the cache
    rate, result = best(lambda: backtest.run(cfg, ticks, compiled=compiled), len(ticks))
    return rate, len(result.tf)


def main() -> None:
    cfg = _load_config(SHIPPED_DEFAULT)
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
        bare_cross(ema_ticks.price[:100], 9, 21)
        bare_rate, bare_trades = best(lambda: bare_cross(ema_ticks.price, 9, 21), len(ema_ticks))
        window = cfg.session.ns_after_midnight("open"), cfg.session.ns_after_midnight("close")
        bare_session_cross(ema_ticks.ts[:100], ema_ticks.price[:100], *window, 9, 21)
        session_rate, _ = best(lambda: bare_session_cross(ema_ticks.ts, ema_ticks.price, *window, 9, 21),
                               len(ema_ticks))
        ema_rate, ema_trades = throughput(ema_only(cfg), ema_ticks)
        generic_rate, _ = throughput(ema_only(cfg), ema_ticks, compiled=False)
        user = user_strategy(tmp)
        user_tick_rate, _ = throughput(ema_only(cfg, user), ema_ticks)
        builtin_rate, builtin_trades = throughput(ema_only(cfg, timeframe=5), ema_ticks)
        user_rate, user_trades = throughput(ema_only(cfg, user, 5), ema_ticks)

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

    slower_tick, slower_bar = ema_rate / user_tick_rate, builtin_rate / user_rate
    rows = [
        {"metric": "bare loop: EMA cross on every price, jitted by hand",
         "value": f"{bare_rate / 1e6:.1f}M ticks/s ({bare_trades:,} trades)"},
        {"metric": "  the same on the session window, from each tick's time",
         "value": f"{session_rate / 1e6:.1f}M ticks/s"},
        {"metric": "EMA cross on ticks, 1 instrument: the loop compiled for it",
         "value": f"{ema_rate / 1e6:.1f}M ticks/s ({len(ema_ticks):,} ticks, {ema_trades:,} trades), "
                  f"{ema_rate / bare_rate:.2f}x the bare loop ({ema_rate / session_rate:.2f}x on the session window)",
         "goal": ">= 0.6x the bare loop", "ok": ema_rate >= 0.6 * bare_rate},
        {"metric": "  the same, the loop for any strategy", "value": f"{generic_rate / 1e6:.1f}M ticks/s "
         f"(compiled {ema_rate / generic_rate:.2f}x faster)"},
        {"metric": "a user's strategy file (the same logic) on ticks", "value": f"{user_tick_rate / 1e6:.1f}M ticks/s; "
         f"built-in / user's {slower_tick:.2f}x", "goal": "<= 1.1x", "ok": slower_tick <= 1.1},
        {"metric": "the same logic built in, 5-minute candles", "value": f"{builtin_rate / 1e6:.1f}M ticks/s "
         f"({builtin_trades:,} trades)", "goal": ">= 100M ticks/s", "ok": builtin_rate >= 100e6},
        {"metric": "a user's strategy file, 5-minute candles", "value": f"{user_rate / 1e6:.1f}M ticks/s "
         f"({user_trades:,} trades)", "goal": ">= 100M ticks/s", "ok": user_rate >= 100e6},
        {"metric": "built-in / user's file, 5-minute candles", "value": f"{slower_bar:.2f}x", "goal": "<= 1.1x",
         "ok": slower_bar <= 1.1},
        {"metric": "shipped default (EMA + VWAP, 5-minute candles)", "value": f"{rate / 1e6:.1f}M ticks/s "
         f"({n:,} ticks, {trades:,} trades)", "goal": ">= 100M ticks/s", "ok": rate >= 100e6},
        {"metric": "same fill model, pure Python", "value": f"{py_rate / 1e3:.1f}k ticks/s"},
        {"metric": "ratio jitted / pure Python", "value": f"{rate / py_rate:,.0f}x"},
        {"metric": "binary load", "value": f"{load_s:.3f} s ({n / load_s / 1e6:.0f}M ticks/s)"},
        {"metric": "CSV load", "value": f"{csv_rate / 1e3:.0f}k rows/s"},
        {"metric": "generate", "value": f"{gen_s:.2f} s"},
    ]
    report("backtest", rows)


if __name__ == "__main__":
    main()
