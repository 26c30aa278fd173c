"""`otrade warm` compiles ahead what the runs load from Numba's cache, which OTRADE_NUMBA_CACHE=data keeps
under the data directory: a Procfile host that wipes its disk but keeps a volume starts warm."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import process_env

ROOT = Path(__file__).resolve().parent.parent
LIVE_KERNELS = ("adopt_position", "book_entry_charges", "flatten", "apply_entry_fill", "apply_exit_fill",
                "cancel_entry", "decide_again", "start_session", "close_session", "end_bar", "on_tick", "warm",
                "ticker decoder")


def on_the_volume(tmp_path: Path) -> dict:
    """A host's environment: the data directory on its volume, the kernel cache in it."""
    env = process_env(tmp_path, OTRADE_NUMBA_CACHE="data")
    env.pop("NUMBA_CACHE_DIR", None)  # this test process's own, which a child would otherwise inherit
    return env


def otrade(tmp_path: Path, env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def warmed(tmp_path_factory) -> tuple[Path, str]:
    """A fresh install's first ``otrade warm --only run``, on an empty volume: (the host's dir, its output)."""
    tmp_path = tmp_path_factory.mktemp("host")
    result = otrade(tmp_path, on_the_volume(tmp_path), "warm", "--only", "run")
    assert result.returncode == 0, result.stderr
    return tmp_path, result.stdout


def test_warm_compiles_the_live_kernels_into_the_data_directory(warmed):
    tmp_path, out = warmed
    [cache] = (tmp_path / "data" / "numba").iterdir()
    assert re.fullmatch(r"numba-[0-9a-f]{12}", cache.name)  # named for the kernels' sources: never a stale one
    assert f"numba cache {cache}" in out.splitlines()[0]
    part = out.split("live engine (otrade run): compiled\n")[1]
    assert re.findall(r"^  (\S.*?) +\d+\.\d\d s$", part, re.M) == list(LIVE_KERNELS)  # each with its seconds
    assert any(cache.rglob("loop_*.on_tick-*.nbc"))  # the tick kernel compiled for the config's strategies


def test_a_second_warm_finds_everything_in_the_cache(warmed):
    tmp_path, _ = warmed
    result = otrade(tmp_path, on_the_volume(tmp_path), "warm", "--only", "run")
    assert result.returncode == 0, result.stderr
    assert "strategies: from the cache" in result.stdout
    assert "live engine (otrade run): from the cache" in result.stdout


def test_a_run_on_the_same_volume_starts_with_its_kernels_cached(warmed):
    tmp_path, _ = warmed
    probe = ("from pathlib import Path; from config import parse; from engine.arrays import in_use; "
             "from engine.strategies import catalog_for; from engine.strategies.compiled import cache_key; "
             "from engine.runtime.app import kernels_cached; config = Path('config/otrade.json'); "
             "print(kernels_cached(cache_key(in_use(parse(config.read_bytes(), catalog_for(config))))))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=on_the_volume(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


def test_an_unknown_cache_place_is_refused_naming_the_two(tmp_path):
    env = {**on_the_volume(tmp_path), "OTRADE_NUMBA_CACHE": "volume"}
    result = otrade(tmp_path, env, "warm", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: OTRADE_NUMBA_CACHE='volume': it is package (beside the code, the "
                                     "default) or data (under OTRADE_DATA_DIR)")
    assert not (tmp_path / "data").exists()
