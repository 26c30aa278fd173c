"""`otrade sweep`: parameter ranges, rows equal to single backtests, walk-forward, local Ray."""

import copy
import csv
import math
import statistics

import numpy as np
import orjson
import pytest

from config import ConfigError, validate
from config.manager import SHIPPED_DEFAULT
from engine import cli
from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY
from engine.data import candles
from engine.data.synthetic import generate
from engine.data.tick_files import save
from engine.data.ticks import Ticks
from engine.research import backtest, overfit, sweep
from engine.strategies import default_catalog
from tests.conftest import DEFAULT

BASE = validate(DEFAULT, default_catalog())  # EMA cross on NSE:INFY, VWAP reversion on NSE:SBIN
FAST, SLOW, K = "instruments.0.strategy.fast", "instruments.0.strategy.slow", "instruments.1.strategy.k"
SUMMARY = [c for c in sweep.COLUMNS if c != "profit_factor"]  # what `otrade backtest` itself reports


@pytest.fixture(scope="module")
def ticks() -> Ticks:
    return generate(8, 5, ["NSE:INFY", "NSE:SBIN"], tick_interval_ms=4000, tick_sizes=[0.1, 0.05])


def combos(*specs: str) -> list[dict]:
    return sweep.grid([sweep.parse_param(s) for s in specs])


def on_days(ticks: Ticks, first: str, last: str) -> Ticks:
    """The ticks of the IST days first..last, picked independently of the sweep's own slicing."""
    day = (ticks.ts + IST_OFFSET_NS) // NS_PER_DAY
    lo, hi = (np.datetime64(d, "D").astype(np.int64) for d in (first, last))
    keep = (day >= lo) & (day <= hi)
    return Ticks(ticks.ts[keep], ticks.price[keep], ticks.volume[keep], ticks.instr[keep], ticks.symbols)


def minute_candles(ticks: Ticks, k: int) -> candles.Candles:
    mine = ticks.instr == k
    ts, price = ticks.ts[mine], ticks.price[mine]
    starts, first = np.unique(ts // 60_000_000_000 * 60_000_000_000, return_index=True)
    last = np.append(first[1:], len(ts)) - 1
    return candles.Candles(starts, price[first], np.maximum.reduceat(price, first),
                           np.minimum.reduceat(price, first), price[last], np.add.reduceat(ticks.volume[mine], first))


def assert_row_is_backtest(row: dict, ticks: Ticks, partner: np.ndarray | None = None) -> None:
    result = backtest.run(sweep.configure(BASE, {p: row[p] for p in (FAST, SLOW, K) if p in row}), ticks,
                          partner=partner)
    summary = result.summary()
    assert {c: row[c] for c in SUMMARY} == {c: summary[c] for c in SUMMARY}
    won, lost = result.net[result.net > 0].sum(), -result.net[result.net < 0].sum()
    assert row["profit_factor"] == pytest.approx(won / lost if lost else (math.inf if won else 0.0), abs=1e-4)


def test_a_range_includes_both_ends_and_floats_keep_the_steps_decimals():
    assert sweep.parse_param(f"{FAST}=5:30:5").values == (5, 10, 15, 20, 25, 30)
    assert sweep.parse_param(f"{K}=0.1:0.5:0.1").values == (0.1, 0.2, 0.3, 0.4, 0.5)


def test_a_list_takes_json_values_or_plain_text_and_a_time_is_not_a_range():
    assert sweep.parse_param("a.b=1,2.5,true,replay").values == (1, 2.5, True, "replay")
    assert sweep.parse_param("session.square_off=15:00,15:10").values == ("15:00", "15:10")
    assert sweep.parse_param("instruments[0].quantity=5").path == "instruments.0.quantity"


def test_an_empty_range_is_an_error_naming_the_setting():
    with pytest.raises(sweep.SweepError, match=rf"{FAST}: range 30:5:5 is empty"):
        sweep.parse_param(f"{FAST}=30:5:5")


def test_samples_are_a_seeded_draw_of_distinct_grid_combinations():
    params = [sweep.parse_param(f"{FAST}=1:10:1"), sweep.parse_param(f"{SLOW}=20:60:10")]
    full = sweep.grid(params)
    drawn = sweep.grid(params, samples=7, seed=3)
    assert drawn == sweep.grid(params, samples=7, seed=3) != sweep.grid(params, samples=7, seed=4)
    assert len(drawn) == 7 and all(c in full for c in drawn) and len({tuple(c.values()) for c in drawn}) == 7


def test_a_value_no_combination_accepts_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"instruments\[0\]\.strategy\.fast: 0 must be greater than or equal to 1"):
        sweep.configs(BASE, combos(f"{FAST}=0,5"))


def test_an_unknown_setting_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"instruments\.0\.strategy\.fastt: no such setting"):
        sweep.configs(BASE, combos("instruments.0.strategy.fastt=5"))


def test_combinations_refused_only_together_are_left_out_and_counted():
    kept, cfgs, notes = sweep.configs(BASE, combos(f"{FAST}=5,30", f"{SLOW}=21,40"))
    assert kept == [{FAST: 5, SLOW: 21}, {FAST: 5, SLOW: 40}, {FAST: 30, SLOW: 40}]
    assert [c.instruments[0].strategy.fast for c in cfgs] == [5, 5, 30]
    assert notes == ["1 of 4 combinations refused, e.g. "
                     "instruments[0].strategy.fast: 30 must be smaller than slow (21)"]


def test_every_row_equals_a_single_backtest_of_its_parameters(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9", f"{SLOW}=15,30", f"{K}=1.5,2.5"), workers=2)
    assert len(res.rows) == 8 and {r["segment"] for r in res.rows} == {"all"}
    for row in res.rows:
        assert_row_is_backtest(row, ticks)


def test_rows_on_candles_replayed_pessimistically_equal_single_backtests_of_that_replay(ticks):
    found = {symbol: minute_candles(ticks, k) for k, symbol in enumerate(ticks.symbols)}
    replay = candles.replay(found, ticks.symbols, "minute", "pessimistic", BASE.session.ns_after_midnight("open"),
                            BASE.session.ns_after_midnight("close"))
    data = sweep.Data(replay.ticks, replay.partner, replay.data)
    res = sweep.run(BASE, data, combos(f"{FAST}=3,9", f"{SLOW}=30"), walk=(5, 3), workers=2)
    for row in res.rows:
        day = (data.ticks.ts + IST_OFFSET_NS) // NS_PER_DAY
        lo, hi = (np.datetime64(row[d], "D").astype(np.int64) for d in ("first_day", "last_day"))
        keep = np.flatnonzero((day >= lo) & (day <= hi))
        window = data.part(keep[0], keep[-1] + 1)
        assert_row_is_backtest(row, window.ticks, window.partner)


def test_the_rows_go_to_a_parquet_file_as_they_are(ticks, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9"), walk=(5, 3), workers=1)
    res.write(tmp_path / "rows.parquet")
    assert pq.read_table(tmp_path / "rows.parquet").to_pylist() == res.rows


def test_ranking_by_max_drawdown_puts_the_smallest_first(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9,15", f"{SLOW}=30"), metric="max_drawdown",
                    workers=1)
    drawdowns = [r["max_drawdown"] for r in res.ranked()]
    assert drawdowns == sorted(drawdowns) and len(set(drawdowns)) > 1


def test_walk_forward_windows_are_whole_days_rolling_on_by_the_test_length(ticks):
    pairs = sweep.windows(ticks, train=3, test=2)
    dates = [(a.first.day, a.last.day, b.first.day, b.last.day) for a, b in pairs]
    assert dates == [(2, 4, 5, 6), (4, 6, 9, 10), (6, 10, 11, 11)]  # weekdays of Nov 2026; the last test is short
    day = (ticks.ts + IST_OFFSET_NS) // NS_PER_DAY
    for segment in (s for pair in pairs for s in pair):
        inside = day[segment.lo:segment.hi]
        assert inside[0] != day[segment.lo - 1] and (segment.hi == len(day) or inside[-1] != day[segment.hi])


def test_walk_forward_needs_more_days_than_the_train_window(ticks):
    with pytest.raises(sweep.SweepError, match="needs more days of data than that; the data has 8"):
        sweep.windows(ticks, train=8, test=2)


def test_each_window_scores_its_train_winner_on_the_following_test_days(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9,15", f"{SLOW}=30"), metric="sharpe_daily",
                    walk=(3, 2), workers=2)
    side_by_side = []
    for k in (1, 2, 3):
        train = [r for r in res.rows if r["segment"] == "train" and r["window"] == k]
        [chosen] = [r for r in train if r["chosen"]]
        [test] = [r for r in res.rows if r["segment"] == "test" and r["window"] == k]
        assert chosen["sharpe_daily"] == max(r["sharpe_daily"] for r in train if not r["excluded"])
        assert test[FAST] == chosen[FAST]
        assert_row_is_backtest(chosen, on_days(ticks, chosen["first_day"], chosen["last_day"]))
        assert_row_is_backtest(test, on_days(ticks, test["first_day"], test["last_day"]))
        side_by_side.append((chosen["sharpe_daily"], test["sharpe_daily"]))
    assert [(w["in_sample"], w["out_of_sample"]) for w in res.walk_forward()] == side_by_side


def test_the_sweep_command_writes_rows_equal_to_what_otrade_backtest_prints(ticks, tmp_path, capsys):
    data = tmp_path / "ticks.otk"
    save(data, ticks)
    out = tmp_path / "rows.csv"
    assert cli.main(["sweep", "--config", str(SHIPPED_DEFAULT), "--ticks", str(data), "--param", f"{FAST}=3:9:6",
                     "--param", f"{K}=1.5,2.5", "--out", str(out), "--workers", "2"]) == 0
    assert "top 4 by net_pnl" in capsys.readouterr().out
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        cfg = copy.deepcopy(DEFAULT)
        cfg["instruments"][0]["strategy"]["fast"] = int(row[FAST])
        cfg["instruments"][1]["strategy"]["k"] = float(row[K])
        config = tmp_path / "one.json"
        config.write_bytes(orjson.dumps(cfg))
        assert cli.main(["backtest", "--config", str(config), "--ticks", str(data), "--json"]) == 0
        printed = orjson.loads(capsys.readouterr().out)
        assert {c: float(row[c]) for c in SUMMARY} == {c: float(printed[c]) for c in SUMMARY}


def test_a_local_ray_sweep_equals_the_local_one(ticks):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra: pip install 'otrade[ray]'")
    grid = combos(f"{FAST}=3,9,15", f"{SLOW}=30", f"{K}=1.5,2.5")
    local = sweep.run(BASE, sweep.Data(ticks), grid, walk=(3, 2), workers=1)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        remote = sweep.run(BASE, sweep.Data(ticks), grid, walk=(3, 2), ray="auto")
    finally:
        ray.shutdown()
    assert remote.rows == local.rows


@pytest.fixture(scope="module")
def one_day() -> Ticks:
    """A day on which one trade a day is one winning trade, and twenty a day are four, one of them lost."""
    return generate(1, 10, ["NSE:INFY", "NSE:SBIN"], tick_interval_ms=4000, tick_sizes=[0.1, 0.05])


def test_a_combination_with_fewer_trades_than_the_minimum_is_not_ranked_but_counted(one_day):
    res = sweep.run(BASE, sweep.Data(one_day), combos("risk.max_trades_per_day=1,20"), workers=1, min_trades=2)
    thin, busy = res.rows
    assert (thin["trades"], busy["trades"]) == (1, 4) and thin["net_pnl"] < busy["net_pnl"]
    assert (thin["rank"], thin["excluded"]) == (None, "made fewer than 2 trades")
    assert res.ranked() == [busy] and busy["rank"] == 1
    assert res.exclusion() == "not ranked: 1 of 2 combinations: 1 made fewer than 2 trades"


def test_a_profit_factor_with_no_losing_trade_is_never_best(one_day):
    res = sweep.run(BASE, sweep.Data(one_day), combos("risk.max_trades_per_day=1,20"), metric="profit_factor",
                    workers=1, min_trades=0)
    thin, busy = res.rows
    assert thin["profit_factor"] == math.inf and math.isfinite(busy["profit_factor"])
    assert (thin["rank"], thin["excluded"]) == (None, "had no losing trade (profit_factor undefined)")
    assert res.ranked() == [busy]


def test_a_train_window_ranks_only_combinations_with_its_share_of_the_minimum(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos("risk.max_trades_per_day=1,20", f"{FAST}=3,9"),
                    metric="profit_factor", walk=(3, 2), workers=2)
    need = math.ceil(sweep.MIN_TRADES * 3 / 8)  # 3 train days of 8
    train = [r for r in res.rows if r["segment"] == "train"]
    thin = [r for r in train if r["trades"] < need]
    assert thin and all(r["excluded"] == f"made fewer than {need} trades" and not r["chosen"] for r in thin)
    for k in (1, 2, 3):
        mine = [r for r in train if r["window"] == k and not r["excluded"]]
        [chosen] = [r for r in mine if r["chosen"]]
        assert chosen["profit_factor"] == max(r["profit_factor"] for r in mine)


def test_a_window_where_no_combination_traded_enough_is_not_traded_and_named(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9"), walk=(3, 2), workers=1, min_trades=1000)
    assert [r for r in res.rows if r["segment"] == "test"] == [] and res.ranked() == []
    assert [w["out_of_sample"] for w in res.walk_forward()] == [None, None, None]
    assert res.out_of_sample()["traded"] == 0
    text = res.table()
    assert "window 1 not traded: no combination made 375 trades on its train days (2026-11-02..2026-11-04)" in text
    assert "overfitting not measured: no combination is ranked" in text
    assert "no combination is ranked (2 made fewer than 1000 trades; the most trades: " in text


def test_the_table_leads_with_walk_forward_out_of_sample_then_overfitting_then_the_in_sample_ranking(ticks):
    res = sweep.run(BASE, sweep.Data(ticks), combos(f"{FAST}=3,9,15", f"{K}=1.5,2.5"), walk=(3, 2), workers=2)
    lines = res.table().splitlines()
    oos = lines.index(res.headline())
    assert lines[oos].startswith("out of sample, 5 days: net ₹")
    header = lines[oos + 1].split()
    assert header.index("out_of_sample") < header.index("in_sample")
    assert [line.split()[0] for line in lines[oos + 2:oos + 5]] == ["1", "2", "3"]  # every window
    overfit_at = lines.index("how likely the best on all days is overfit, of 6 combinations tried:")
    assert lines[overfit_at + 1].strip().startswith("deflated Sharpe ")
    assert lines[overfit_at + 2].strip().startswith("PBO ")
    ranking = next(k for k, line in enumerate(lines) if line.startswith("top 6 by net_pnl on all 8 days"))
    assert oos < overfit_at < ranking and "(in sample" in lines[ranking]


def daily_net(result: backtest.Result) -> list[float]:
    """Net ₹ per session, from the trades' own exit times (not the sweep's day arithmetic)."""
    days = dict.fromkeys((d["day"] for d in result.per_day()), 0.0)
    for trade, net in zip(result.trade_rows(), result.net, strict=True):
        days[trade["exit_time"][:10]] += float(net)
    return list(days.values())


def test_the_winners_overfitting_figures_come_from_every_combinations_own_days(ticks):
    grid = combos(f"{FAST}=3,9,15", f"{K}=1.5,2.5")
    res = sweep.run(BASE, sweep.Data(ticks), grid, workers=2)
    returns = np.array([daily_net(backtest.run(sweep.configure(BASE, c), ticks)) for c in grid]).T
    sharpes = [statistics.mean(c) / statistics.stdev(c) for c in returns.T]
    [winner] = [k for k, r in enumerate(res.rows) if r["rank"] == 1]
    expected = overfit.deflated_sharpe(returns[:, winner], np.array(sharpes))
    assert res.deflated.probability == pytest.approx(expected.probability)
    assert res.deflated.trials == 6 and res.deflated.days == 8
    assert res.overfitting.probability == pytest.approx(overfit.pbo(returns, score="sum").probability)
    row = res.rows[winner]
    assert row["deflated_sharpe"] == round(expected.probability, 4)
    assert row["pbo"] == round(res.overfitting.probability, 4)
    assert row["verdict"] == f"{res.deflated.verdict()}; {res.overfitting.verdict()}"


def test_the_out_file_carries_the_ranking_and_the_winners_overfitting_verdict(ticks, tmp_path, capsys):
    data = tmp_path / "ticks.otk"
    save(data, ticks)
    out = tmp_path / "rows.csv"
    assert cli.main(["sweep", "--config", str(SHIPPED_DEFAULT), "--ticks", str(data), "--param", f"{FAST}=3,9,15",
                     "--param", "risk.max_trades_per_day=1,20", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    busy = sorted((r for r in rows if r["risk.max_trades_per_day"] == "20"), key=lambda r: r["rank"])
    assert [r["rank"] for r in busy] == ["1", "2", "3"]
    assert [float(r["net_pnl"]) for r in busy] == sorted((float(r["net_pnl"]) for r in busy), reverse=True)
    thin = [r for r in rows if r["risk.max_trades_per_day"] == "1"]
    assert [r["excluded"] for r in thin] == ["made fewer than 30 trades"] * 3 and {r["rank"] for r in thin} == {""}
    [winner] = [r for r in rows if r["rank"] == "1"]
    assert float(winner["pbo"]) >= 0 and "deflated Sharpe" in winner["verdict"] and "PBO" in winner["verdict"]
    assert "not ranked: 3 of 6 combinations: 3 made fewer than 30 trades" in printed
    assert winner["verdict"].split("; ")[0] in printed


def test_a_negative_minimum_of_trades_is_an_error_naming_it_and_writes_nothing(ticks, tmp_path, capsys):
    data = tmp_path / "ticks.otk"
    save(data, ticks)
    out = tmp_path / "rows.csv"
    assert cli.main(["sweep", "--config", str(SHIPPED_DEFAULT), "--ticks", str(data), "--param", f"{FAST}=3,9",
                     "--min-trades", "-1", "--out", str(out)]) == 1
    assert "error: --min-trades -1: a number of trades, 0 or more" in capsys.readouterr().err
    assert not out.exists()
