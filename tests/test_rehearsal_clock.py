"""The rehearsal clock starts when the process is ready to trade, and a first start that compiles
says so instead of staying silent."""

import copy
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

from engine.brokers.paper import PaperBroker
from engine.engine import Engine
from engine.runtime.app import kernels_cached
from engine.services.clock import RehearsalClock
from engine.services.events import EventBus
from engine.services.journal import Journal
from tests.conftest import DEFAULT, make_config, process_env

ROOT = Path(__file__).resolve().parent.parent
START = datetime.fromisoformat("2026-11-23T09:14:58+05:30")


def test_a_held_rehearsal_clock_stands_at_its_start_until_it_runs():
    clock = RehearsalClock(START, running=False)
    time.sleep(0.05)
    assert clock.now_ns() == int(START.timestamp()) * 10**9
    clock.run()
    time.sleep(0.05)
    assert 0.04 < clock.now_ns() / 1e9 - START.timestamp() < 1.0


def test_the_kernel_cache_tells_a_first_start_from_a_later_one(tmp_path, monkeypatch):
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, time.time_ns), EventBus(),
                    Journal(tmp_path, time.time_ns))
    assert kernels_cached(engine.kernels.key)  # the engine compiled its kernels into the cache, or loaded them
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty"))
    assert not kernels_cached(engine.kernels.key)


def environ(tmp_path: Path, **extra: str) -> dict:
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "o.json"), **extra)
    return env


def test_a_start_on_an_empty_kernel_cache_first_says_it_is_compiling(tmp_path):
    err = tmp_path / "err"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--clock", START.isoformat()], cwd=tmp_path,
                            env=environ(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache")),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err.open("w"))
    try:
        deadline = time.monotonic() + 60
        while " INFO " not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    first = next(line for line in err.read_text().splitlines() if " INFO " in line)
    assert first.endswith("INFO otrade: compiling the kernels (first run only, about 10 s)")


def test_the_rehearsal_clock_starts_when_the_process_is_ready_to_trade(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["paper"]["tick_interval_ms"] = 20  # a week of synthetic history at 100 ticks a second: seconds to warm
    (tmp_path / "o.json").write_bytes(orjson.dumps(data))
    result = subprocess.run([sys.executable, "-m", "engine", "run", "--console", "--clock", START.isoformat(),
                             "--for", "5"], cwd=tmp_path, env=environ(tmp_path), stdin=subprocess.PIPE,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    ready = float(re.search(r"strategies warm in ([\d.]+) s", result.stderr).group(1))
    lines = result.stdout.splitlines()
    assert ready > 1.0  # had the clock run meanwhile, the first line would be stamped that much later
    assert lines[0] == "·· 09:14:58 next: open at Mon 23 Nov 09:15 IST (regular session 09:15–15:30 IST)"
    assert "·· 09:15:00 Engine IDLE → RUNNING (session open)" in lines
