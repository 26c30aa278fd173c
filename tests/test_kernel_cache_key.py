"""Start-up finds this config's kernels precisely (issue 23 §2): Numba's cache counts as warm only when it
holds the tick kernel compiled for these strategies, named by ``cache_key``; a digest of each file that
key hashes is kept by its path, modification time and size, and a change to the file still changes the
key; a warm backtest imports neither asyncio nor tqdm, and its kernels compile once each."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

from engine.brokers.paper import PaperBroker
from engine.engine import Engine
from engine.runtime.app import kernels_cached
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import catalog_for, default_catalog
from engine.strategies.compiled import SOURCES, cache_key, loop_dir
from tests.conftest import make_config, process_env
from tests.live_process import STOP_WITHIN_S, env_for, restart_holding_without_a_stop
from tests.strategy_files import long_above_an_imported_level

ROOT = Path(__file__).resolve().parent.parent
HOUR_NS = 3600 * 10**9

OTHER = """
from engine.strategies.api import CLOSE, LONG, NONE, Strategy

strategy = Strategy("other_set", about="long above 100 (a set of strategies no other test compiles)")


@strategy.decision
def decide(x, pos):
    return LONG if x[CLOSE] > 100.0 else NONE
"""


def test_a_cache_holding_another_strategy_sets_tick_kernel_is_not_taken_as_this_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, time.time_ns), EventBus(),
                    Journal(tmp_path, time.time_ns))  # its tick kernel compiled into the cache, or loaded from it
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "other_set.py").write_text(OTHER)
    catalog_for(tmp_path / "otrade.json")
    other = cache_key([default_catalog().get("other_set")])
    assert kernels_cached(engine.kernels.key)
    assert other != engine.kernels.key
    assert not kernels_cached(other)


def test_a_kept_file_digest_is_used_until_the_file_changes(tmp_path, monkeypatch):
    strategy, rule = long_above_an_imported_level(tmp_path, monkeypatch, "levelled", "LEVEL")
    levelled = [strategy]
    rule.write_text("LEVEL = 1.0\n")
    old = time.time_ns() - HOUR_NS
    os.utime(rule, ns=(old, old))  # long since written: its digest is kept
    before = cache_key(levelled)
    kept = orjson.loads((loop_dir() / SOURCES).read_bytes())
    assert kept[str(rule.resolve())][:2] == [old, rule.stat().st_size]
    assert str((tmp_path / "strategies" / "levelled.py").resolve()) not in kept  # written just now: not kept
    rule.write_text("LEVEL = 2.0\n")  # the same size
    os.utime(rule, ns=(old + 10**9, old + 10**9))  # and an old time, a second on: only the time tells
    assert cache_key(levelled) != before


def test_a_warm_backtest_imports_neither_asyncio_nor_tqdm(tmp_path):
    ticks = tmp_path / "one.csv"
    ticks.write_text("ts,symbol,price\n2026-11-23T10:00:00+05:30,NSE:INFY,1500.0\n")
    script = ("import json, sys\nfrom engine.cli import main\n"
              f"code = main(['backtest', '--ticks', {str(ticks)!r}, '--json'])\n"
              "print(json.dumps([code, [m for m in ('asyncio', 'tqdm') if m in sys.modules]]))")
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "otrade.json"))  # NUMBA_CACHE_DIR: this process's
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, []]


def test_each_kernel_a_backtest_and_a_paper_start_call_compiles_once(tmp_path):
    """One signature each: the rows as int64 and the day as a float wherever they are called from (an int32
    row from a tick file, an int day from the clock or a literal reason compiled a kernel again)."""
    script = textwrap.dedent(f"""
        import json, time
        import numpy as np
        from numba.core.dispatcher import Dispatcher
        from engine.arrays import build
        from engine.brokers.paper import PaperBroker
        from engine.data.synthetic import generate
        from engine.engine import Engine
        from engine.research.backtest import run
        from engine.services.events import EventBus
        from engine.services.journal import Journal
        from tests.conftest import make_config

        cfg = make_config()
        days = generate(2, seed=3, symbols=["NSE:INFY"])
        run(cfg, days)
        engine = Engine(cfg, PaperBroker({{"NSE:INFY": 0.05}}, time.time_ns), EventBus(), Journal({str(tmp_path)!r},
                        time.time_ns))
        engine.warm_strategies(days)
        import gc
        seen = {{}}
        for d in gc.get_objects():
            if isinstance(d, Dispatcher) and d.py_func.__module__.startswith(("engine.core", "_otrade_loops")):
                if len(d.signatures) > 1 and not d.targetoptions.get("inline"):
                    seen[d.py_func.__module__ + "." + d.py_func.__name__] = [str(s) for s in d.signatures]
        print(json.dumps(seen))
    """)
    env = process_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


async def test_a_live_restart_over_another_strategy_sets_kernels_compiles_its_own_in_a_child(tmp_path, kite_day):
    server = kite_day
    cache = str(tmp_path / "numba")
    other = orjson.loads((tmp_path / "otrade.json").read_bytes())
    other["instruments"][0]["strategy"] = {"kind": "orb"}
    (tmp_path / "other.json").write_bytes(orjson.dumps(other))
    kernels = ("adopt_position,book_entry_charges,flatten,apply_entry_fill,apply_exit_fill,cancel_entry,"
               "decide_again,start_session,close_session,warm,ticker decoder")  # all but the tick kernel
    warmed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "warm", "--only", "run", "--config", str(tmp_path / "other.json"),
        "--skip", kernels, cwd=tmp_path, env=env_for(tmp_path, NUMBA_CACHE_DIR=cache),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(warmed.communicate(), 900)
    assert warmed.returncode == 0, err.decode()
    assert list(Path(cache).glob("*/loop_*.on_tick-*.nbi"))  # another set's tick kernel: what a restart finds
    took, _, text = await restart_holding_without_a_stop(tmp_path, server, cache)
    assert took <= STOP_WITHIN_S, f"the stop reached Kite {took:.1f} s after the start:\n{text}"
    assert "compiling the kernels (first run only" in text, text
    assert "the other kernels compiled in a child process" in text, text
