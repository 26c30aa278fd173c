"""`otrade run` as a process: paper trading with no credentials at all."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import orjson

from engine.ticks import generate, save
from tests.conftest import DEFAULT

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path, *args, config=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
    env.update(OTRADE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), PORT="0")
    if config is not None:
        env["OTRADE_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "engine", "run", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_first_run_creates_the_config_from_the_default_and_trades_on_paper(tmp_path):
    result = run(tmp_path, "--for", "2", "--clock", "2026-11-23T10:00:00+05:30", config=tmp_path / "o.json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads((tmp_path / "o.json").read_bytes()) == DEFAULT
    assert "paper trading NSE:INFY, NSE:SBIN" in result.stderr


def test_replayed_session_trades_and_journals(tmp_path):
    ticks_file = tmp_path / "day.otk"
    save(ticks_file, generate(1, 3, ["NSE:INFY", "NSE:SBIN"], tick_sizes=[0.1, 0.05]))
    data = copy.deepcopy(DEFAULT)
    data["paper"].update(feed="replay", replay_file=str(ticks_file), speed=0)
    config = tmp_path / "replay.json"
    config.write_bytes(orjson.dumps(data))
    result = run(tmp_path, "--console", "--for", "6", "--clock", "2026-11-02T09:15:00+05:30", config=config)
    assert result.returncode == 0, result.stderr
    assert "trade closed" in result.stdout  # a replay at full speed arrives as one digest
    [journal] = (tmp_path / "data" / "journal").iterdir()
    kinds = {orjson.loads(line)["kind"] for line in journal.read_bytes().splitlines()}
    assert {"intent", "order", "trade_closed"} <= kinds


def test_an_invalid_config_refuses_to_start_and_says_why(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["risk"]["max_daily_loss"] = -1
    config = tmp_path / "bad.json"
    config.write_bytes(orjson.dumps(data))
    result = run(tmp_path, "--for", "1", config=config)
    assert result.returncode == 1
    assert "risk.max_daily_loss: -1 must be greater than 0" in result.stderr
