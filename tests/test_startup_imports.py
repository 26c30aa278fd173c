"""A warm start imports only what it runs (issue 23: warm start-up <= 0.5 s). exchange_calendars and
pandas cost 0.3 s to import: the trading calendar reads XBOM's closed days from a small file in the
cache folder, named by the library's version, and asks the library only when that file is missing,
damaged, or another version's."""

import json
import subprocess
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from engine.services import calendar
from engine.services.calendar import (
    LIBRARY_FILES,
    TradingCalendar,
    days_file,
    exchange_days,
    library_folder,
    library_key,
)
from tests.conftest import process_env

ROOT = Path(__file__).resolve().parent.parent
TRADING_DAY = date(2026, 11, 23)  # a Monday XBOM trades
INDEPENDENCE_DAY = date(2025, 8, 15)  # a Friday it does not (and the overrides do not list)
HEAVY = ("pandas", "exchange_calendars", "matplotlib")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder of this process's own, and no exchange days read yet."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    exchange_days.cache_clear()
    yield tmp_path
    exchange_days.cache_clear()


def write_days(file: Path, closed: list[date], made: date, bounded: bool = True) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(orjson.dumps({"made": made.isoformat(), "bounded": bounded,
                                   "closed": [d.isoformat() for d in closed]}))


def own_file() -> Path:
    file = days_file(library_key(library_folder()))
    assert file is not None
    return file


def test_the_days_file_says_what_the_library_says(cache):
    import exchange_calendars as xcals

    days = exchange_days()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xbom = xcals.get_calendar("XBOM")
    day, differ = xbom.first_session.date(), []
    while day <= xbom.last_session.date():
        if day.weekday() < 5 and (day in days.closed) == xbom.is_session(day.isoformat()):
            differ.append(day)
        day += timedelta(days=1)
    assert differ == []
    assert own_file().is_file()  # made once, for the next process


def test_a_process_reads_the_days_file_and_not_the_library(cache):
    write_days(own_file(), [TRADING_DAY], date(2000, 1, 1))  # says a trading day is closed: only the file can
    assert TradingCalendar().session(TRADING_DAY) is None


def test_another_library_versions_file_is_never_read(cache, tmp_path):
    other = tmp_path / "exchange_calendars"
    other.mkdir()
    for name in LIBRARY_FILES:
        (other / name).write_bytes((library_folder() / name).read_bytes())
    (other / "_version.py").write_text((other / "_version.py").read_text() + "\n# 99.0\n")
    assert library_key(other) != library_key(library_folder())
    stale = days_file(library_key(other))
    write_days(stale, [TRADING_DAY], date.today())
    assert TradingCalendar().session(TRADING_DAY) is not None  # the installed library's days, not that file's
    assert TRADING_DAY not in calendar._read(own_file()).closed


def test_a_damaged_days_file_is_made_again(cache):
    own_file().parent.mkdir(parents=True)
    own_file().write_text('{"made": "2026-')
    assert TradingCalendar().session(INDEPENDENCE_DAY) is None
    assert INDEPENDENCE_DAY in calendar._read(own_file()).closed


def test_a_range_that_moves_daily_is_made_again_the_next_day(cache):
    write_days(own_file(), [TRADING_DAY], date.today() - timedelta(days=1), bounded=False)
    assert TradingCalendar().session(TRADING_DAY) is not None


def test_a_warm_backtest_imports_neither_pandas_nor_exchange_calendars(tmp_path):
    exchange_days()  # the days file of this test process's cache folder, which the child inherits
    ticks = tmp_path / "one.csv"
    ticks.write_text("ts,symbol,price\n2026-11-23T10:00:00+05:30,NSE:INFY,1500.0\n")
    script = ("import json, sys\nfrom engine.cli import main\n"
              f"code = main(['backtest', '--ticks', {str(ticks)!r}, '--json'])\n"
              f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))")
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "otrade.json"))  # NUMBA_CACHE_DIR: this process's
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    code, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert code == 0
    assert heavy == []
