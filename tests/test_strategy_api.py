"""A strategy is one file on the public API: written from the template, found by name, checked by
``otrade config check`` (one line, with file and line, for each kind of mistake), and traded the
same in backtest, paper and live."""

import pickle
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import orjson
import pytest

from config import ConfigError
from engine.cli import main
from engine.research import backtest
from engine.strategies import BUILTIN, Catalog, catalog_for, load_file
from engine.strategies.api import StrategyError
from tests.conftest import make_config, make_ticks, seconds
from tests.my_idea import config_check, edit, write_idea
from tests.parity import START, assert_same, backtest_book, live_book, live_run, walk
from tests.test_engine import feed, make_engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_folder(monkeypatch):
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)


@pytest.fixture
def idea(tmp_path) -> Path:
    """A config file beside a strategies folder holding ``my_idea``, written by ``otrade strategy new``."""
    return write_idea(tmp_path / "otrade.json", timeframe=1, length=3, allow_short=True)


# --- the template, in backtest, paper and live ---------------------------------------------------

async def test_a_strategy_from_the_template_trades_the_same_in_backtest_paper_and_live(idea, tmp_path):
    catalog_for(idea)
    cfg = make_config(strategy={"kind": "my_idea", "timeframe": 1, "length": 3, "allow_short": True},
                      bracket={"target_pct": 0.3, "stop_pct": 0.2, "trail_pct": None}, tick_size=0.1,
                      risk={"max_trades_per_day": 1000})
    values = walk(1200, seed=2)  # 20 one-minute bars of a tick a second
    backtested = backtest_book(cfg, values)
    assert {t.reason for t in backtested.trades} == {"signal", "stop", "target"}
    assert {t.side for t in backtested.trades} == {"long", "short"}
    paper, clock, _ = make_engine(cfg, tmp_path / "paper")
    feed(paper, clock, make_ticks(seconds(START, values)))
    assert_same(live_book(paper), backtested)
    live, _ = await live_run(tmp_path / "live", cfg, values)
    assert_same(live, backtested)


def test_the_templates_own_test_passes(idea):
    test = idea.parent / "strategies" / "test_my_idea.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]


def test_config_check_compiles_the_strategy_and_says_how_long_it_took(idea, capsys):
    code, lines = config_check(idea, capsys)
    assert code == 0
    assert lines[0].startswith("my_idea: ") and lines[0].endswith(" s")


def test_a_strategy_compiles_once_and_later_runs_load_it_from_the_cache(idea):
    script = ("import sys; from engine.strategies import load_file; s = load_file(sys.argv[1]); s.compile(); "
              "print(s.cached)")
    path = idea.parent / "strategies" / "my_idea.py"
    runs = [subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()[-1] for _ in range(2)]
    assert runs == ["False", "True"]


# --- a broken file of each kind: its one-line error from config check ------------------------------

@pytest.mark.parametrize(("old", "new", "line", "says"), [
    ("close, average = x[CLOSE], x[EMA]", "close, average = x[CLOSE], x[EMA", 46, "SyntaxError: '[' was never closed"),
    ("    return NONE\n", "    return 0.5\n", 40, "the decision returns float64; it must answer one of NONE, LONG"),
    ("    return NONE\n", "    return 7\n", 40, "the decision answered 7 (bar 0, position +0); it must answer"),
    ("    return NONE\n", "    pass\n", 54, "a path through it returns nothing"),
    ('Param(20, low=2', 'Param(1, low=2', 19, "Param default 1 is outside its range (2..500)"),
    ("    x[PREV_CLOSE] = close  #", "    x[PREV_CLOSE] = close.upper()  #", 48,
     "Numba cannot compile the decision: Unknown attribute 'upper' of type float64"),
    ("    x[PREV_CLOSE] = close  #", "    x[PREV_CLOSE] = [close][0]  #", 48,
     "Numba cannot compile the decision: it allocates"),
], ids=["syntax", "return-type", "return-value", "no-return", "param-range", "numba", "allocation"])
def test_a_broken_strategy_file_gets_one_line_naming_its_file_and_line(idea, capsys, old, new, line, says):
    path = edit(idea.parent, old, new)
    code, lines = config_check(idea, capsys)
    assert code == 1
    [error] = lines
    assert f"{path}:{line}: " in error and says in error


def test_a_parameter_out_of_its_range_in_the_config_names_the_field(idea, capsys):
    data = orjson.loads(idea.read_bytes())
    data["instruments"][0]["strategy"]["length"] = 1
    idea.write_bytes(orjson.dumps(data))
    assert config_check(idea, capsys) == (1, ["instruments[0].strategy.length: 1 must be greater than or equal to 2"])


def test_backtest_refuses_a_broken_strategy_in_one_line_before_any_tick(idea, tmp_path, capsys):
    edit(idea.parent, "    x[PREV_CLOSE] = close  #", "    x[PREV_CLOSE] = close.upper()  #")
    with pytest.raises(SystemExit) as stop:
        main(["backtest", "--config", str(idea), "--ticks", str(tmp_path / "none.csv")])
    assert "my_idea.py:48: Numba cannot compile the decision" in str(stop.value)
    assert "\n" not in str(stop.value)


# --- found by name ---------------------------------------------------------------------------------

def test_a_strategy_is_found_by_its_file_name_in_the_folder_beside_the_config(idea):
    assert catalog_for(idea).get("my_idea").file == str(idea.parent / "strategies" / "my_idea.py")


def test_the_strategies_folder_can_be_set_by_the_environment(idea, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    (idea.parent / "strategies").rename(moved)
    monkeypatch.setenv("OTRADE_STRATEGIES", str(moved))
    assert catalog_for(idea).get("my_idea").file == str(moved / "my_idea.py")


def test_an_unknown_kind_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(ValueError, match=r"'nope' must be one of 'ema_cross', .*'vwap_reversion', or a file "
                                         r"nope\.py in .*strategies"):
        Catalog([tmp_path / "strategies"]).get("nope")


def test_a_file_must_declare_the_strategy_its_name_says(tmp_path):
    (tmp_path / "other.py").write_text(
        "from engine.strategies.api import Strategy\nstrategy = Strategy('mine', about='')\n")
    with pytest.raises(StrategyError, match=r"other\.py:2: the strategy in other\.py must be named 'other'"):
        load_file(tmp_path / "other.py")


def test_strategy_new_refuses_a_built_in_name(tmp_path, capsys):
    assert main(["strategy", "new", "supertrend", "--dir", str(tmp_path)]) == 1
    assert "a built-in strategy's name" in capsys.readouterr().err


def test_strategy_list_shows_each_strategy_with_its_parameters(idea, capsys):
    assert main(["strategy", "list", "--config", str(idea)]) == 0
    out = capsys.readouterr().out
    assert [name for name in (*BUILTIN, "my_idea") if f"\n{name}  " in out] == [*BUILTIN, "my_idea"]
    assert "    length = 20 (2..500): bars of the EMA" in out
    assert "    period = 10 (1..500): bars of its ATR" in out


def test_a_config_naming_a_folders_strategy_survives_pickling_into_a_worker(idea):
    catalog_for(idea)
    cfg = make_config(strategy={"kind": "my_idea", "length": 5})
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and type(again.instruments[0].strategy).__strategy__.name == "my_idea"


def test_a_strategys_slots_are_checked_where_the_file_asks_for_them(tmp_path):
    (tmp_path / "slots.py").write_text(
        "from engine.strategies.api import Strategy\nstrategy = Strategy('slots', about='')\n"
        "X = strategy.param('lenght')\n")
    with pytest.raises(StrategyError, match=r"slots\.py:3: slots has no parameter 'lenght'; it has none"):
        load_file(tmp_path / "slots.py")


def test_the_built_ins_parameters_are_validated_like_the_config():
    with pytest.raises(ConfigError, match=r"oversold: 80 must be below overbought \(70\)"):
        make_config(strategy={"kind": "rsi_reversion", "oversold": 80})
    with pytest.raises(ConfigError, match=r"timeframe: 0 must be 'tick' or whole minutes from 1 to 375"):
        make_config(strategy={"kind": "supertrend", "timeframe": 0})


def test_a_tick_strategys_bars_are_its_ticks(tmp_path):
    cfg = make_config(strategy={"kind": "ema_cross", "fast": 1, "slow": 2}, bracket={"target_pct": 5.0,
                      "stop_pct": 5.0, "trail_pct": None})
    [t] = backtest.run(cfg, make_ticks(seconds("10:00:00", [100.0, 99.0, 101.0, 101.5, 101.6]))).trade_rows()
    assert t["entry_price"] == 101.5


def test_a_packaged_strategy_is_found_through_its_entry_point(tmp_path, monkeypatch):
    import engine.strategies as strategies

    (tmp_path / "my_package.py").write_text(
        "from engine.strategies.api import NONE, Strategy\nstrategy = Strategy('packaged', about='from a package')\n"
        "@strategy.decision\ndef decide(x, pos):\n    return NONE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("packaged", "my_package:strategy", strategies.ENTRY_POINT_GROUP)
    monkeypatch.setattr(strategies, "entry_points", lambda group: [point] if group == point.group else [])
    strategies._packaged.cache_clear()
    try:
        assert Catalog().get("packaged").about == "from a package"
        assert make_config(strategy={"kind": "packaged"}).instruments[0].strategy.kind == "packaged"
    finally:
        strategies._packaged.cache_clear()
