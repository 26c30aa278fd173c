"""`--report`: one HTML file, plotly.js inside, with equity, drawdown, daily P&L and a day's trades."""

import html
import re
from datetime import date

import pytest

from config import validate
from config.manager import SHIPPED_DEFAULT
from engine import cli
from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY
from engine.data.synthetic import generate
from engine.data.tick_files import save
from engine.data.ticks import Ticks
from engine.research import backtest, report
from engine.strategies import default_catalog
from tests.conftest import DEFAULT

CFG = validate(DEFAULT, default_catalog())


@pytest.fixture(scope="module")
def ticks() -> Ticks:
    return generate(4, 2, ["NSE:INFY", "NSE:SBIN"], tick_interval_ms=500, tick_sizes=[0.1, 0.05])


@pytest.fixture(scope="module")
def result(ticks) -> backtest.Result:
    return backtest.run(CFG, ticks)


def traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_the_backtest_report_is_one_html_file_that_needs_no_network(ticks, tmp_path, capsys):
    data = tmp_path / "ticks.otk"
    save(data, ticks)
    out = tmp_path / "report.html"
    assert cli.main(["backtest", "--config", str(SHIPPED_DEFAULT), "--ticks", str(data), "--report", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("plotly.js v") == 1  # the library itself, once
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)  # nothing fetched from elsewhere


def test_the_curves_add_up_to_the_backtests_own_numbers(result, ticks):
    summary = result.summary()
    t = traces(report.backtest_figure(result, ticks))
    assert t["equity"].y[-1] == pytest.approx(summary["net_pnl"], abs=0.01)
    assert -min(t["drawdown"].y) == pytest.approx(summary["max_drawdown"], abs=0.01)
    assert len(t["daily net"].x) == summary["sessions"] == 4
    assert sum(t["daily net"].y) == pytest.approx(summary["net_pnl"], abs=0.01)


def test_the_chosen_days_entries_and_exits_are_marked_on_its_price(result, ticks):
    day = date(2026, 11, 3)
    t = traces(report.backtest_figure(result, ticks, day))
    for sym in ticks.symbols:
        rows = [r for r in result.trade_rows() if r["symbol"] == sym]
        entries = [r["entry_price"] for r in rows if r["entry_time"].startswith("2026-11-03")]
        exits = [r["exit_price"] for r in rows if r["exit_time"].startswith("2026-11-03")]
        assert list(t[f"{sym} entries"].y) == entries and list(t[f"{sym} exits"].y) == exits and entries
        assert all(str(x).startswith("2026-11-03") for x in t[f"{sym} price"].x)


def test_a_dense_days_price_line_is_thinned_but_keeps_its_extremes(result, ticks):
    day = date(2026, 11, 2)
    t = traces(report.backtest_figure(result, ticks, day))["NSE:INFY price"]
    on_day = ((ticks.ts + IST_OFFSET_NS) // NS_PER_DAY == (day - date(1970, 1, 1)).days) & (ticks.instr == 0)
    prices = ticks.price[on_day]
    assert len(prices) > 40_000 and len(t.y) <= report.LINE_POINTS + 1
    assert (min(t.y), max(t.y), t.y[0], t.y[-1]) == (prices.min(), prices.max(), prices[0], prices[-1])


def test_a_report_day_the_data_lacks_is_an_error_naming_the_days_it_has(result, ticks):
    with pytest.raises(report.ReportError, match=r"no ticks on 2026-11-07; the data has 4 day\(s\), 2026-11-02 to "):
        report.backtest_figure(result, ticks, date(2026, 11, 7))


def sweep_report(ticks, tmp_path, *args: str) -> str:
    data = tmp_path / "ticks.otk"
    save(data, ticks)
    out = tmp_path / "sweep.html"
    assert cli.main(["sweep", "--config", str(SHIPPED_DEFAULT), "--ticks", str(data), "--workers", "1",
                     "--report", str(out), *args]) == 0
    return out.read_text(encoding="utf-8")


def test_the_sweep_report_leads_with_walk_forward_out_of_sample_and_shows_every_window(ticks, tmp_path, capsys):
    page = sweep_report(ticks, tmp_path, "--param", "instruments.0.strategy.fast=3,9", "--train", "1d",
                        "--test", "1d", "--min-trades", "8", "--report-day", "2026-11-04")
    assert page.count("plotly.js v") == 1
    windows = re.search(r'<table class="windows"><thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody>', page)
    header = re.findall(r"<th>(.*?)</th>", windows[1])
    assert header.index("out_of_sample") < header.index("in_sample")
    tests = [re.findall(r"<td>(.*?)</td>", row)[2] for row in re.findall(r"<tr>(.*?)</tr>", windows[2])]
    assert tests == ["2026-11-03..2026-11-03", "2026-11-04..2026-11-04", "2026-11-05..2026-11-05"]  # all three
    order = [page.index(s) for s in ("Walk-forward by net_pnl", "Out of sample: net ₹ on the test days",
                                     "How likely the best on all days is overfit",
                                     "In sample: the top 2 by net_pnl on all 4 days",
                                     "In sample (all days, test days included), the best: "
                                     "instruments.0.strategy.fast=")]
    assert order == sorted(order)
    assert "NSE:SBIN on 2026-11-04" in page


def test_the_sweep_report_says_how_likely_the_winner_is_overfit_with_a_verdict_each(ticks, tmp_path, capsys):
    page = sweep_report(ticks, tmp_path, "--param", "instruments.0.strategy.fast=3,9,15",
                        "--param", "instruments.1.strategy.k=1.5,2.5", "--min-trades", "8")
    printed = capsys.readouterr().out
    dsr = re.search(r"^  (deflated Sharpe .*)$", printed, re.M)[1]
    pbo = re.search(r"^  (PBO .*)$", printed, re.M)[1]
    assert f"<p>{html.escape(dsr)}</p>" in page and f"<p>{html.escape(pbo)}</p>" in page
    assert re.search(r": (worth paper trading|paper trade it before any money|do not trade it)$", dsr)
    assert re.search(r": (not overfit \(.*\)|paper trade it first|do not trade it)$", pbo)


def test_a_sweep_report_with_nothing_ranked_says_so_and_draws_no_winner(ticks, tmp_path, capsys):
    page = sweep_report(ticks, tmp_path, "--param", "instruments.0.strategy.fast=3,9", "--min-trades", "1000")
    assert "<h2>Overfitting not measured: no combination is ranked</h2>" in page
    assert "no combination is ranked (2 made fewer than 1000 trades; the most trades: " in page
    assert "the best: " not in page
