"""Backtests on candles: each candle replayed as four ticks by a stated rule (ohlc, or pessimistic:
the stop before the target), through the same kernels; the output names the data and the rule,
and a multi-day backtest prints a per-day table."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.data import candles
from engine.data.candles import Candles, replay
from engine.research import backtest
from tests.conftest import DEFAULT, make_config, make_ticks, ns

ROOT = Path(__file__).resolve().parent.parent
OPEN_NS, CLOSE_NS = (9 * 3600 + 15 * 60) * 10**9, (15 * 3600 + 30 * 60) * 10**9


def bars(*rows, day="2026-11-23") -> Candles:
    """rows: (HH:MM, open, high, low, close) with a volume of 40 each."""
    ts = [ns(f"{r[0]}:00", day) for r in rows]
    o, h, lo, c = (np.array([r[k] for r in rows], float) for k in range(1, 5))
    return Candles(ts, o, h, lo, c, np.full(len(rows), 40.0))


def ticks_of(c: Candles, rule: str = "ohlc", interval: str = "minute"):
    return replay({"NSE:INFY": c}, ["NSE:INFY"], interval, rule, OPEN_NS, CLOSE_NS)


def trades(c: Candles, rule: str, strategy=None) -> list[dict]:
    r = ticks_of(c, rule)
    return backtest.run(make_config(strategy=strategy), r.ticks, partner=r.partner).trade_rows()


def test_ohlc_rule_goes_open_then_the_nearer_extreme_then_the_other_then_close():
    r = ticks_of(bars(("09:15", 100, 103, 99, 102)))
    assert r.ticks.price.tolist() == [100, 99, 103, 102]
    assert r.ticks.ts.tolist() == [ns(t) for t in ("09:15:00", "09:15:15", "09:15:30", "09:15:45")]
    assert r.ticks.volume.tolist() == [10.0] * 4 and r.partner is None


def test_ohlc_rule_takes_the_high_first_when_it_is_nearer_the_open():
    assert ticks_of(bars(("09:15", 100, 101, 97, 98))).ticks.price.tolist() == [100, 101, 97, 98]


def test_an_open_midway_dips_first_on_a_green_candle_and_rallies_first_on_a_red_one():
    r = ticks_of(bars(("09:15", 100, 102, 98, 101), ("09:16", 100, 102, 98, 99)))
    assert r.ticks.price.tolist() == [100, 98, 102, 101, 100, 102, 98, 99]


def test_a_day_candle_is_replayed_inside_the_session_window():
    day = Candles([ns("00:00:00")], [100.0], [103.0], [99.0], [102.0], [4000.0])  # Kite stamps it at midnight
    r = ticks_of(day, interval="day")
    assert r.ticks.ts.tolist() == [ns(t) for t in ("09:15:00", "10:48:45", "12:22:30", "13:56:15")]


def test_candles_of_several_instruments_merge_in_time_order_each_pairing_its_own_extremes():
    two = {"NSE:INFY": bars(("09:15", 100, 103, 99, 102)), "NSE:SBIN": bars(("09:15", 800, 801, 790, 795))}
    r = replay(two, ["NSE:INFY", "NSE:SBIN"], "minute", "pessimistic", OPEN_NS, CLOSE_NS)
    assert r.ticks.instr.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert r.ticks.price.tolist() == [100, 800, 99, 801, 103, 790, 102, 795]
    assert r.partner.tolist() == [0, 0, 2, 2, 0, 0, 0, 0]  # the low's pair is the high two ticks on


# ema_cross 1/2 on 1-minute bars: 09:16's rise is a cross, decided at 09:17's open; the long fills at
# 09:17's first extreme, 101 (a flat candle): stop 100, target 102. At 09:18 the high, 102.5, is
# nearer the open than the low, 99: both levels lie inside the candle.
CANDLES_1 = {"kind": "ema_cross", "fast": 1, "slow": 2, "timeframe": 1}
SHORTS_1 = {**CANDLES_1, "allow_short": True}
FLAT_THEN_UP = (("09:15", 100, 100, 100, 100), ("09:16", 101, 101, 101, 101), ("09:17", 101, 101, 101, 101))
LONG_THEN_BOTH = bars(*FLAT_THEN_UP, ("09:18", 101, 102.5, 99, 101))
# The mirror: short at 99 (stop 100, target 98); 09:18's low is nearer the open.
SHORT_THEN_BOTH = bars(("09:15", 100, 100, 100, 100), ("09:16", 99, 99, 99, 99), ("09:17", 99, 99, 99, 99),
                       ("09:18", 99, 101, 97.5, 99))


def test_ohlc_rule_takes_a_longs_target_when_the_high_is_nearer_the_open():
    first = trades(LONG_THEN_BOTH, "ohlc", CANDLES_1)[0]
    assert (first["side"], first["entry_price"], first["exit_reason"]) == ("long", 101.0, "target")


def test_pessimistic_rule_takes_a_held_longs_stop_before_its_target():
    first = trades(LONG_THEN_BOTH, "pessimistic", CANDLES_1)[0]
    assert (first["side"], first["entry_price"], first["exit_reason"]) == ("long", 101.0, "stop")
    assert first["exit_time"].startswith("2026-11-23T09:18:15")  # at the low, the candle's second tick


def test_pessimistic_rule_takes_a_held_shorts_stop_before_its_target():
    assert trades(SHORT_THEN_BOTH, "ohlc", SHORTS_1)[0]["exit_reason"] == "target"
    first = trades(SHORT_THEN_BOTH, "pessimistic", SHORTS_1)[0]
    assert (first["side"], first["entry_price"], first["exit_reason"]) == ("short", 99.0, "stop")


def test_pessimistic_rule_fills_an_entry_pending_at_the_open_at_the_worse_extreme():
    # the cross of 09:16 is decided at 09:17's open: the long's order fills at the candle's first extreme
    c = bars(*FLAT_THEN_UP[:2], ("09:17", 101, 102, 100.5, 101.5))
    assert trades(c, "ohlc", CANDLES_1)[0]["entry_price"] == 100.5  # the low is nearer the open
    assert trades(c, "pessimistic", CANDLES_1)[0]["entry_price"] == 102.0  # bought at the high


def test_a_pessimistic_replay_leaves_its_ticks_as_they_were_for_the_next_run():
    r = ticks_of(LONG_THEN_BOTH, "pessimistic")
    before = r.ticks.price.copy()
    cfg = make_config(strategy=CANDLES_1)
    results = [backtest.run(cfg, r.ticks, partner=r.partner).trade_rows() for _ in range(2)]
    assert np.array_equal(r.ticks.price, before) and results[0] == results[1]


def test_per_day_rows_give_each_days_trades_gross_charges_and_net():
    rows = [(day, t, p, "NSE:INFY") for day in ("2026-11-23", "2026-11-25")
            for t, p in (("09:20:00", 100.0), ("09:20:01", 99.0), ("09:20:02", 101.0), ("09:20:03", 101.0),
                         ("09:20:04", 103.0))]
    result = backtest.run(make_config(), make_ticks(rows))
    days = result.per_day()
    assert [(d["day"], d["trades"]) for d in days] == [("2026-11-23", 1), ("2026-11-25", 1)]
    for d, pnl, cost in zip(days, result.tf[:, backtest.T_PNL], result.costs, strict=True):
        assert (d["gross"], d["charges"], d["net"]) == (round(pnl, 2), round(cost, 2), round(pnl - cost, 2))


def test_backtest_on_candles_names_the_data_and_rule_and_prints_a_per_day_table(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [i for i in data["instruments"] if i["symbol"] == "NSE:INFY"]
    config = tmp_path / "infy.json"
    config.write_bytes(orjson.dumps(data))
    rng = np.random.default_rng(5)
    for day in ("2026-11-23", "2026-11-25"):  # the 24th is a holiday
        close = 1000 * np.exp(np.cumsum(rng.normal(0, 1e-3, 375)))
        o = np.concatenate(([1000.0], close[:-1]))
        wick = np.abs(rng.normal(0, 0.5, (2, 375)))
        start = ns("09:15:00", day) + np.arange(375) * 60 * 10**9
        file = candles.path(tmp_path / "data", "minute", "NSE:INFY")
        stored = candles.read(file) if file.exists() else Candles(*[[]] * 6)
        candles.write(file, stored.merged(Candles(start, o, np.maximum(o, close) + wick[0],
                                                  np.minimum(o, close) - wick[1], close, np.full(375, 100.0))))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTRADE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "engine", "backtest", "--config", str(config), "--candles",
                             "--candle-rule", "pessimistic"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"config {config} · data minute candles of NSE:INFY from 2026-11-23 to 2026-11-25 "
                        "(750 candles), replayed as 4 ticks each by the pessimistic rule")
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["day", "trades", "gross", "charges", "net"]
    assert [row.split()[0] for row in table[1:]] == ["2026-11-23", "2026-11-25"]


@pytest.mark.parametrize(("args", "message"), [
    (["--candles", "{tmp}/nowhere"], "no minute candles for NSE:INFY, NSE:SBIN under {tmp}/nowhere/candles/minute"),
    (["--candles", "{tmp}/c.parquet"], "c.parquet: say which --interval its candles are"),
    (["--ticks", "{tmp}/t.csv", "--candles"], "give the data as --ticks or as --candles"),
])
def test_bad_candle_input_is_one_line_naming_it(tmp_path, args, message):
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "c.parquet").touch()  # there: a missing one is called missing (tests/test_cli_errors.py)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "engine", "backtest", "--config",
                             str(ROOT / "config" / "default.json"), *(a.format(tmp=tmp_path) for a in args)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {message.format(tmp=tmp_path)}") and result.stderr.count("\n") == 1
