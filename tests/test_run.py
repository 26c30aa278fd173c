"""`otrade run` as a process: paper trading with no credentials at all."""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engine.data.synthetic import generate
from engine.data.tick_files import save
from tests.conftest import DEFAULT, process_env

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


def replay_config(tmp_path) -> Path:
    """The shipped config replaying, at full speed, a generated day of ticks for its instruments."""
    ticks_file = tmp_path / "day.otk"
    save(ticks_file, generate(1, 3, ["NSE:INFY", "NSE:SBIN"], tick_sizes=[0.1, 0.05]))
    data = copy.deepcopy(DEFAULT)
    data["paper"].update(feed="replay", replay_file=str(ticks_file), speed=0)
    config = tmp_path / "replay.json"
    config.write_bytes(orjson.dumps(data))
    return config


def test_replayed_session_trades_and_journals(tmp_path):
    config = replay_config(tmp_path)
    result = run(tmp_path, "--console", "--for", "6", "--clock", "2026-11-02T09:15:00+05:30", config=config)
    assert result.returncode == 0, result.stderr
    assert "Closed " in result.stdout  # the console prints each event, a replay's at full speed too
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


def start(tmp_path, *args):
    """``otrade run`` in the background, stdin an open pipe nobody writes to (a terminal left alone);
    returns the process once its session has started, and the file its stderr goes to."""
    err = tmp_path / "otrade.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--clock", "2026-11-23T10:00:00+05:30", *args],
                                cwd=tmp_path, env={**process_env(tmp_path), "OTRADE_CONFIG": str(tmp_path / "o.json")},
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while "next: " not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)
    return proc, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_console_process_within_10_s(tmp_path, sig):
    proc, err = start(tmp_path, "--console")
    proc.send_signal(sig)
    try:
        assert proc.wait(timeout=10) == 0, err.read_text()
    finally:
        proc.kill()
        proc.stdin.close()
    assert "stopped in" in err.read_text()


def test_a_stop_that_hangs_past_its_deadline_exits_with_every_threads_stack():
    hung = ("import time\nfrom engine.runtime.app import exit_by\n"
            "def a_step_that_never_ends():\n    time.sleep(600)\n"
            "exit_by(0.5)\na_step_that_never_ends()\n")
    result = subprocess.run([sys.executable, "-c", hung], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "stopping took over 0.5 s: exiting now" in result.stderr
    assert "in a_step_that_never_ends" in result.stderr


def test_orders_fills_trades_state_changes_and_alerts_are_one_log_line_each_without_console(tmp_path):
    config = replay_config(tmp_path)
    result = run(tmp_path, "--for", "6", "--clock", "2026-11-02T09:15:00+05:30", config=config)
    assert result.returncode == 0, result.stderr
    [journal] = (tmp_path / "data" / "journal").iterdir()
    records = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    lines = result.stderr.splitlines()

    def logged(kind):
        return [line for line in lines if f" otrade.events: {kind}:" in line]

    closed = [r for r in records if r["kind"] == "trade_closed"]
    assert closed and len(logged("trade_closed")) == len(closed)
    assert len(logged("order_placed")) == sum(1 for r in records if r["kind"] == "intent")
    assert len(logged("fill")) == 2 * len(closed)  # an entry and an exit fill per trade
    assert len(logged("state_changed")) == sum(1 for r in records if r["kind"] == "state")
    assert any("OTrade stopping" in line for line in logged("alert"))


def test_a_second_run_on_the_same_data_directory_refuses_and_names_the_holder(tmp_path):
    first, _ = start(tmp_path, "--for", "60")
    try:
        second = run(tmp_path, "--for", "5", config=tmp_path / "o.json")
        assert second.returncode == 1
        assert f"in use by another otrade run (pid {first.pid})" in second.stderr
        assert len(second.stderr.splitlines()) == 1
    finally:
        first.kill()  # kill -9: no chance to release anything
        first.wait()
        first.stdin.close()
    after_a_crash = run(tmp_path, "--for", "1", config=tmp_path / "o.json")  # kill -9 left no stale lock
    assert after_a_crash.returncode == 0, after_a_crash.stderr


@pytest.mark.parametrize("clock, why", [("tomorrow", "is not an ISO-8601 date and time"),
                                        ("2026-11-23T10:00:00", "needs a UTC offset")])
def test_a_bad_clock_is_a_one_line_error(tmp_path, clock, why):
    result = run(tmp_path, "--for", "1", "--clock", clock, config=tmp_path / "o.json")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: --clock {clock!r} {why}, e.g. 2026-11-23T09:10:00+05:30"]


def test_a_missing_replay_file_refuses_to_start_in_one_line(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["paper"].update(feed="replay", replay_file=str(tmp_path / "nowhere.otk"), speed=0)
    config = tmp_path / "replay.json"
    config.write_bytes(orjson.dumps(data))
    result = run(tmp_path, "--for", "5", config=config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert error.endswith(f"paper.replay_file cannot be replayed: [Errno 2] No such file or directory: "
                          f"'{tmp_path / 'nowhere.otk'}'")


@pytest.mark.parametrize("argv, env, path", [
    (["run", "--config", "{tmp}"], {}, "{tmp}"),
    (["run", "--config", "{tmp}/o.json"], {"OTRADE_LOG_FILE": "/proc/otrade/x.log"}, "/proc/otrade"),
    (["backtest", "--ticks", "{tmp}/day.csv", "--trades", "{tmp}/no/such/dir/t.csv"], {}, "{tmp}/no/such/dir/t.csv"),
], ids=["config is a directory", "unwritable log file", "trades into a missing directory"])
def test_unusable_files_are_a_one_line_error(tmp_path, argv, env, path):
    save(tmp_path / "day.csv", generate(1, 3, ["NSE:INFY", "NSE:SBIN"], tick_sizes=[0.1, 0.05]))
    (tmp_path / "o.json").write_bytes(orjson.dumps(DEFAULT))  # a config named with --config must exist
    result = subprocess.run([sys.executable, "-m", "engine", *(a.format(tmp=tmp_path) for a in argv)], cwd=tmp_path,
                            env={**process_env(tmp_path), **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {path.format(tmp=tmp_path)}: ")
