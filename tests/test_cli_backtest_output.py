"""What ``otrade backtest`` tells about its run: each trade's charges and net in ``--trades``, the
days the trading calendar has closed, and the data the session window leaves out."""

import copy
import csv
from datetime import datetime, timedelta

import orjson
import pytest

from engine import cli
from engine.data.tick_files import save
from tests.conftest import DEFAULT, make_ticks, seconds

PRICES = [100.0, 99.0, 101.0, 101.0, 102.5, 100.0, 99.0, 97.5, 98.0, 100.0, 101.0, 101.0, 99.5, 98.0]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A config trading NSE:INFY on ticks (EMA 1/2 cross, 1 % brackets) named by OTRADE_CONFIG."""
    monkeypatch.chdir(tmp_path)
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.05, "quantity": 10,
                            "strategy": {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False},
                            "bracket": {"target_pct": 1.0, "stop_pct": 1.0, "trail_pct": None}}]
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))
    monkeypatch.setenv("OTRADE_CONFIG", str(tmp_path / "otrade.json"))
    monkeypatch.setenv("OTRADE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OTRADE_CALENDAR", raising=False)
    return tmp_path


def tick_file(here, *days: str, name: str = "ticks.otk") -> str:
    save(here / name, make_ticks([row for day in days for row in seconds("10:00:00", PRICES, day)]))
    return name


def backtest_json(capsys, *args: str) -> dict:
    assert cli.main(["backtest", *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_the_trades_file_carries_each_trades_gross_charges_and_net(here, capsys):
    summary = backtest_json(capsys, "--ticks", tick_file(here, "2026-11-23"), "--trades", "trades.csv")
    with open(here / "trades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["trades"] >= 2
    assert list(rows[0]) == ["entry_time", "side", "qty", "entry_price", "exit_time", "exit_price", "exit_reason",
                             "gross_pnl", "charges", "net_pnl", "symbol"]
    for row in rows:
        assert float(row["charges"]) > 0
        assert float(row["net_pnl"]) == pytest.approx(float(row["gross_pnl"]) - float(row["charges"]), abs=1e-4)
    for column, total in (("gross_pnl", "gross_pnl"), ("charges", "costs"), ("net_pnl", "net_pnl")):
        assert sum(float(r[column]) for r in rows) == pytest.approx(summary[total], abs=0.01)


def test_ticks_of_days_the_calendar_has_closed_are_traded_and_named(here, capsys):
    # 2026-03-03 is an NSE holiday (config/calendar.json), 2026-03-07 a Saturday
    data = tick_file(here, "2026-03-02", "2026-03-03", "2026-03-07")
    summary = backtest_json(capsys, "--ticks", data)
    assert summary["closed_days"] == ["2026-03-03", "2026-03-07"]
    assert all(day["trades"] > 0 for day in summary["days"])  # traded on what the data holds all the same
    assert cli.main(["backtest", "--ticks", data]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("closed days")]
    assert line.split(None, 2)[2] == ("2026-03-03, 2026-03-07: closed on the trading calendar (holiday or weekend); "
                                      "traded on what the data holds")


def test_open_days_are_not_named(here, capsys):
    summary = backtest_json(capsys, "--ticks", tick_file(here, "2026-03-02", "2026-03-04"))
    assert summary["closed_days"] == []
    assert cli.main(["backtest", "--ticks", "ticks.otk"]) == 0
    assert "closed days" not in capsys.readouterr().out


def test_the_closed_days_come_from_the_calendar_otrade_run_keeps(here, monkeypatch, capsys):
    (here / "calendar.json").write_bytes(orjson.dumps({"holidays": ["2026-03-02"], "special_sessions": []}))
    monkeypatch.setenv("OTRADE_CALENDAR", str(here / "calendar.json"))
    summary = backtest_json(capsys, "--ticks", tick_file(here, "2026-03-02", "2026-03-04"))
    assert summary["closed_days"] == ["2026-03-02"]


def minute_candles(first: str, n: int) -> list[str]:
    start = datetime.fromisoformat(first)
    return [f"{start + timedelta(minutes=k):%Y-%m-%d %H:%M:%S},100,101,99,100.5,10\n" for k in range(n)]


def test_candles_outside_the_session_are_counted_in_the_data_line_not_dropped_silently(here, capsys):
    # an hour of Muhurat trading (2026-11-08, 18:00-19:00 IST) and the first half hour of a regular day
    (here / "NSE_INFY.csv").write_text("date,open,high,low,close,volume\n"
                                       + "".join(minute_candles("2026-11-08 18:00", 60))
                                       + "".join(minute_candles("2026-11-23 09:15", 30)))
    assert cli.main(["data", "import", "NSE_INFY.csv"]) == 0
    capsys.readouterr()
    assert cli.main(["data", "list"]) == 0
    [stored] = [line.split() for line in capsys.readouterr().out.splitlines() if "NSE:INFY" in line]
    assert stored[:3] == ["minute", "NSE:INFY", "90"]  # what `data list` shows ...
    assert cli.main(["backtest", "--candles"]) == 0
    first = capsys.readouterr().out.splitlines()[0]  # ... and what the backtest replays of it, and why not all
    assert first == (f"config {here / 'otrade.json'} · data minute candles of NSE:INFY from 2026-11-23 to 2026-11-23 "
                     "(30 candles), replayed as 4 ticks each by the ohlc rule; 60 candles outside the 09:15–15:30 "
                     "session left out (Muhurat trading is such a session)")


def test_ticks_outside_the_session_are_counted_with_their_days_in_the_data_line(here, capsys):
    rows = seconds("18:00:00", [100.0, 100.5, 101.0], "2026-11-08") + seconds("10:00:00", PRICES, "2026-11-23")
    save(here / "ticks.otk", make_ticks(rows))
    summary = backtest_json(capsys, "--ticks", "ticks.otk")
    assert summary["ticks"] == len(PRICES)
    assert summary["data"] == ("ticks of ticks.otk; 3 ticks outside the 09:15–15:30 session left out "
                               "(on 2026-11-08; Muhurat trading is such a session)")
