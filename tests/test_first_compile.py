"""On an empty Numba cache, compiling uses two cores at once (issue 23: a fresh install's first run
compiles in <= 10 s; Numba compiles on one). A paper start compiles the tick kernel in the process and
the other kernels paper calls in a child (``otrade warm --only run --skip ...``), all before the first
tick; ``otrade warm`` compiles the backtest's loop beside a child compiling ``otrade run``'s."""

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import process_env

ROOT = Path(__file__).resolve().parent.parent

# The second start, with Numba's compile events recorded: what it compiled, after the first's compiles.
SECOND_START = """
import json, sys
from numba.core.event import install_recorder
from engine.cli import main
with install_recorder("numba:compile") as compiled:
    code = main(["run", "--for", "1"])
print(json.dumps([code, sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in compiled.buffer})]))
"""


def host(tmp_path: Path) -> dict:
    """An empty cache of its own, the data and config under ``tmp_path``."""
    return process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "otrade.json"), NUMBA_CACHE_DIR=str(tmp_path / "numba"))


def test_a_paper_first_start_leaves_the_other_kernels_to_a_child_and_a_second_compiles_nothing(tmp_path):
    first = subprocess.run([sys.executable, "-m", "engine", "run", "--for", "1"], cwd=tmp_path, env=host(tmp_path),
                           capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "the other kernels compiled in a child process" in first.stderr
    assert "paper trading" in first.stderr
    second = subprocess.run([sys.executable, "-c", SECOND_START], cwd=tmp_path, env=host(tmp_path),
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout.strip().splitlines()[-1]) == [0, []]
    assert "child process" not in second.stderr


def test_warm_refuses_to_skip_a_kernel_that_is_not_one(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine", "warm", "--only", "run", "--skip", "on_tick,no_such"],
                            cwd=tmp_path, env=process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "otrade.json")),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 2
    assert "error: --skip: no kernel no_such" in result.stderr
    assert "live engine" not in result.stdout


def test_warm_compiles_both_parts_side_by_side_and_a_second_warm_loads_them(tmp_path):
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "otrade.json"), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    first = subprocess.run([sys.executable, "-m", "engine", "warm"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    heads = [line for line in first.stdout.splitlines() if not line.startswith(("  ", "config "))]
    assert heads[:3] == ["strategies: compiled", "backtest loop (otrade backtest, sweep, audit): compiled",
                         "live engine (otrade run): compiled"]
    assert re.fullmatch(r"\d+\.\d s in all; the cache holds \d+ files", heads[3])
    assert re.search(r"^  on_tick +\d+\.\d\d s$", first.stdout, re.M)  # the child's pieces, each with its seconds
    second = subprocess.run([sys.executable, "-m", "engine", "warm"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [line.split(": ")[1] for line in second.stdout.splitlines() if ": " in line and not line.startswith(
        ("  ", "config "))] == ["from the cache"] * 3
