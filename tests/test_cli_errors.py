"""Bad input to the command line is one line saying what is wrong, before any work, and changes
nothing; a reader that stops early (``| head``) ends the command quietly."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine import cli
from engine.data.tick_files import save
from tests.conftest import DEFAULT, make_ticks, seconds
from tests.kite_server import API_KEY, FakeKite

ROOT = Path(__file__).resolve().parent.parent
CSV_HEAD = "date,open,high,low,close,volume\n"


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A working directory with its own config and data directory; no credentials in the environment."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "otrade.json"
    config.write_bytes(orjson.dumps({**DEFAULT, "instruments": DEFAULT["instruments"][:1]}))  # NSE:INFY
    monkeypatch.setenv("OTRADE_CONFIG", str(config))
    monkeypatch.setenv("OTRADE_DATA_DIR", str(tmp_path / "data"))
    for name in [n for n in os.environ if n.startswith("KITE_")]:
        monkeypatch.delenv(name)
    return tmp_path


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def usage_error(argv: list[str], capsys) -> str:
    """The one error line argparse gives for ``argv`` (exit 2)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


# --- ticks generate --------------------------------------------------------------------------------
def test_generating_fewer_than_one_day_is_refused(here, capsys):
    error = usage_error(["ticks", "generate", "--days", "-3", "--out", "t.csv"], capsys)
    assert error == "otrade ticks generate: error: argument --days: -3 must be >= 1"
    assert files(here) == ["otrade.json"]


def test_an_unknown_tick_file_type_is_refused_before_anything_is_generated(here, capsys):
    error = usage_error(["ticks", "generate", "--days", "400", "--out", "x.txt"], capsys)
    assert error == "otrade ticks generate: error: argument --out: x.txt: unknown tick file type .txt: " \
                    "name a .csv or .otk file"
    assert files(here) == ["otrade.json"]


# --- backtest --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--candles", "nope.parquet"], ["--candles", "nope.csv", "--interval", "minute"],
                                  ["--ticks", "nope.csv"], ["--ticks", "nope", "--date", "2026-11-23"]])
def test_a_missing_data_file_is_called_missing(here, args, capsys):
    assert cli.main(["backtest", *args]) == 1
    assert capsys.readouterr().err == f"error: {args[0]} {args[1]} is missing: no such file or directory\n"


def backtest_process(here: Path) -> subprocess.Popen:
    save(here / "day.otk", make_ticks(seconds("10:00:00", [100.0, 101.0, 100.5])))
    return subprocess.Popen([sys.executable, "-m", "engine", "backtest", "--ticks", "day.otk", "--trades",
                             "trades.csv"], cwd=here, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_reader_that_is_gone_ends_the_command_quietly_as_a_closed_pipe_does(here):
    proc = backtest_process(here)
    proc.stdout.close()  # every write now meets a pipe with no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE
    assert err == ""


def test_a_reader_that_stops_after_the_first_line_costs_no_file_and_no_error(here):
    proc = backtest_process(here)
    assert proc.stdout.readline().decode().startswith("config ")
    proc.stdout.close()  # as `| head -1` does: the summary may or may not have been written by now
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) in (0, 128 + signal.SIGPIPE)
    assert err == ""
    assert (here / "trades.csv").read_text().startswith("entry_time,")


def test_a_report_says_it_was_written_and_where(here, capsys):
    save(here / "day.otk", make_ticks(seconds("10:00:00", [100.0, 101.0])))
    assert cli.main(["backtest", "--ticks", "day.otk", "--report", "R.html", "--report-day", "2026-11-23"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote the report to {here / 'R.html'}"
    assert (here / "R.html").read_text().startswith("<!DOCTYPE html>")


def test_a_file_to_write_in_a_folder_that_is_not_there_is_refused_before_the_backtest(here, capsys):
    assert cli.main(["backtest", "--ticks", "nope.csv", "--trades", "out/t.csv"]) == 1  # nope.csv: not read
    assert capsys.readouterr().err == "error: out/t.csv: no folder out to write it in\n"


def test_a_bad_report_day_is_refused_before_the_backtest(here, capsys):
    assert cli.main(["backtest", "--ticks", "nope.csv", "--report", "R.html", "--report-day", "23/11"]) == 2
    assert capsys.readouterr().err == "error: --report-day '23/11' is not a date, e.g. 2026-11-23\n"


# --- data import -----------------------------------------------------------------------------------
def test_importing_a_missing_file_says_it_is_missing(here, capsys):
    assert cli.main(["data", "import", "nope.csv"]) == 1
    assert capsys.readouterr().err == "error: nope.csv is missing: no such file\n"


def test_a_symbol_without_its_exchange_is_refused_naming_it(here, capsys):
    (here / "tcs.csv").write_text(CSV_HEAD + "2026-11-23 09:15:00,1,1,1,1,1\n")
    assert cli.main(["data", "import", "tcs.csv", "--symbol", "TCS"]) == 1
    assert capsys.readouterr().err == "error: TCS: name the exchange, e.g. NSE:TCS\n"
    assert not (here / "data").exists()


@pytest.mark.parametrize(("rows", "error"), [
    (["09:16:00", "09:15:00", "09:17:00"],
     "line 3: 2026-11-23 09:15:00 IST comes before line 2's 2026-11-23 09:16:00"),
    (["09:15:00", "09:16:00", "09:16:00"], "line 4: 2026-11-23 09:16:00 IST is line 3's start again"),
])
def test_rows_out_of_time_order_are_refused_with_their_line_numbers(here, rows, error, capsys):
    (here / "NSE_INFY.csv").write_text(CSV_HEAD + "".join(f"2026-11-23 {t},1,1,1,1,1\n" for t in rows))
    assert cli.main(["data", "import", "NSE_INFY.csv"]) == 1
    assert capsys.readouterr().err == f"error: NSE_INFY.csv {error}: candles must be in time order, one per start\n"
    assert not (here / "data").exists()


# --- data fetch ------------------------------------------------------------------------------------
DAY = ["--from", "2026-11-23", "--to", "2026-11-23"]


@pytest.mark.parametrize(("args", "error"), [
    (["--symbols", "INFY", *DAY], "INFY: name the exchange, e.g. NSE:INFY"),
    (["--symbols", "NSE:INFY", *DAY, "--interval", "hour"], "unknown interval 'hour': one of minute, 3minute"),
    (["--symbols", "NSE:INFY", "--from", "2026-13-01", "--to", "2026-11-23"], "--from '2026-13-01' is not yyyy-mm-dd"),
    (["--symbols", "NSE:INFY", "--from", "2026-11-24", "--to", "2026-11-23"],
     "--from 2026-11-24 is after --to 2026-11-23"),
    (["--symbols", "NSE:INFY", "--from", "2999-01-01", "--to", "2999-01-02"], "--from 2999-01-01 is in the future"),
])
def test_fetch_checks_its_arguments_before_asking_for_credentials(here, args, error, capsys):
    assert cli.main(["data", "fetch", *args]) == 1  # no credentials: they would be the error if asked for first
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}") and err.count("\n") == 1


async def test_a_fetch_that_fails_before_any_request_does_not_count_requests(tmp_path):
    kite = FakeKite()
    await kite.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
        env.update(KITE_API_KEY=API_KEY, KITE_ACCESS_TOKEN=kite.access_token, KITE_API_BASE=kite.base,
                   OTRADE_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "data", "fetch", "--symbols", "NSE:NOPE", "--from", "2026-11-23",
            "--to", "2026-11-23", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await kite.stop()
    assert proc.returncode == 1
    assert err.decode() == "error: unknown symbol NSE:NOPE: not in Kite's instruments list\n"
