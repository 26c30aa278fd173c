"""A newcomer's first hour with a strategy of their own: the file lands outside the project's packages
and lint, its test runs with the first install, and ``otrade config check`` stops a decision that
never answers and refuses one that writes what only the engine may write."""

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.strategies import catalog_for, folder_for, load_file
from engine.strategies.api import StrategyError
from engine.strategies.scaffold import write
from tests.my_idea import config_check, edit, write_idea

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path("config", "otrade.json")  # a project's config file


@pytest.fixture(autouse=True)
def _own_folder(monkeypatch):
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)


@pytest.fixture
def project(tmp_path) -> Path:
    """A trader's project: ``config/otrade.json`` naming ``my_idea``, which ``otrade strategy new`` wrote."""
    (tmp_path / CONFIG).parent.mkdir()
    write_idea(tmp_path / CONFIG, timeframe=1, length=3)
    return tmp_path


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def children() -> set[int]:
    """This process's child processes, zombies included."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


# --- where the files go --------------------------------------------------------------------------

@pytest.mark.parametrize(("config", "folder"), [
    ("config/otrade.json", "strategies"),
    ("otrade.json", "strategies"),
    ("bots/infy.json", "bots/strategies"),
], ids=["in-a-config-folder", "at-the-root", "elsewhere"])
def test_the_strategies_folder_sits_beside_the_config_or_beside_its_config_folder(tmp_path, config, folder):
    assert folder_for(tmp_path / config) == tmp_path / folder


def test_strategy_new_writes_into_the_project_not_into_the_config_package(project):
    assert sorted(p.name for p in (project / "strategies").iterdir()) == ["my_idea.py", "test_my_idea.py"]
    assert [p.name for p in (project / "config").iterdir()] == ["otrade.json"]
    assert catalog_for(project / CONFIG).get("my_idea").file == str(project / "strategies" / "my_idea.py")


def test_strategies_an_earlier_version_wrote_into_config_are_still_found(tmp_path, caplog):
    config = tmp_path / "config" / "otrade.json"
    write("old_idea", tmp_path / "config" / "strategies")
    with caplog.at_level(logging.WARNING, logger="engine.strategies"):
        catalog = catalog_for(config)
    assert catalog.get("old_idea").file == str(tmp_path / "config" / "strategies" / "old_idea.py")
    assert "old_idea" in catalog.names()
    assert (f"the strategies in {tmp_path / 'config' / 'strategies'} (where earlier versions wrote them) are still "
            f"found; new ones go to {tmp_path / 'strategies'}") in caplog.messages


def test_new_strategies_go_to_the_new_folder_while_the_earlier_one_is_still_read(tmp_path):
    config = tmp_path / "config" / "otrade.json"
    write("old_idea", tmp_path / "config" / "strategies")
    write("new_idea", folder_for(config))
    catalog = catalog_for(config)
    assert catalog.get("new_idea").file == str(tmp_path / "strategies" / "new_idea.py")
    assert catalog.get("old_idea").file == str(tmp_path / "config" / "strategies" / "old_idea.py")


def test_the_projects_lint_never_reads_a_traders_strategy_files(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    unused = "import os\n"
    for path in ("strategies/mine.py", "config/strategies/older.py", "engine/ours.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(unused)
    done = subprocess.run([sys.executable, "-m", "ruff", "check", ".", "--no-cache", "--output-format", "concise"],
                          cwd=tmp_path, capture_output=True, text=True)
    flagged = {line.split(":")[0] for line in done.stdout.splitlines() if ":" in line}
    assert flagged == {"engine/ours.py"}  # the project's own files are still linted


def test_git_ignores_a_traders_strategy_files():
    paths = ["strategies/my_idea.py", "config/strategies/old_idea.py"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == paths


# --- the template's test, with the first install -------------------------------------------------

def run_the_template_test(project: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python strategies/test_my_idea.py`` in the project, as the README says, where pytest cannot
    be imported (the first install, ``pip install -e .``, has none)."""
    no_pytest = tmp_path / "no_pytest"
    no_pytest.mkdir(exist_ok=True)
    (no_pytest / "pytest.py").write_text("raise ImportError('pytest is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(no_pytest)}
    return subprocess.run([sys.executable, "strategies/test_my_idea.py"], cwd=project, env=env,
                          capture_output=True, text=True)


def test_a_new_strategys_test_passes_as_a_plain_script_without_pytest(project, tmp_path):
    done = run_the_template_test(project, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "ok      test_a_close_crossing_above_the_ema_goes_long",
        "ok      test_a_close_crossing_below_the_ema_goes_short_from_flat",
        "ok      test_a_close_staying_above_the_ema_does_nothing",
        "ok      test_it_compiles_and_trades_on_a_generated_day",
        "all passed",
    ]


def test_the_template_test_script_fails_when_a_test_fails(project, tmp_path):
    test = project / "strategies" / "test_my_idea.py"
    test.write_text(test.read_text().replace('if __name__ == "__main__":', (
        "def test_a_rise_goes_short():\n    assert strategy.decide(row(99.0, 100.0, 101.0, 100.0), 0.0) == SHORT\n\n\n"
        'if __name__ == "__main__":')))
    done = run_the_template_test(project, tmp_path)
    assert done.returncode == 1
    assert "FAILED  test_a_rise_goes_short" in done.stdout and "AssertionError" in done.stderr
    assert done.stdout.splitlines()[-1] == "1 failed: test_a_rise_goes_short"


# --- a decision that never answers ---------------------------------------------------------------

def test_config_check_gives_up_on_a_decision_that_never_answers_and_leaves_nothing_running(project, capsys):
    path = edit(project, "    close, average = x[CLOSE], x[EMA]\n",
                "    while pos == 0.0:\n        close = x[CLOSE]\n    close, average = x[CLOSE], x[EMA]\n")
    before = children()
    started = time.monotonic()
    code, lines = config_check(project / CONFIG, capsys)
    assert code == 1
    assert lines == [f"{path}:{line_of(path, '@strategy.decision')}: decide() did not answer within 5 s on bar 0 "
                     "(position +0): an endless loop?"]
    assert time.monotonic() - started < 120  # bounded (5 s without progress), however loaded the machine
    assert children() == before  # the trial's process was killed and reaped: no core left spinning


def test_a_decision_that_crashes_the_trial_is_named_not_fatal(project, capsys):
    path = edit(project, "    x[PREV_EMA] = average\n", "    x[PREV_EMA] = average\n    x[1000000000000] = 1.0\n")
    code, [error] = config_check(project / CONFIG, capsys)
    assert code == 1
    assert error.startswith(f"{path}:{line_of(path, '@strategy.decision')}: decide() crashed on bar 0 (position +0) "
                            "(SIG")


# --- only memory may be written ------------------------------------------------------------------

@pytest.mark.parametrize("slot", ["CLOSE", "EMA", "EXIT_BELOW"], ids=["bar", "indicator", "parameter"])
def test_a_decision_writing_a_named_slot_other_than_memory_is_refused_at_its_line(project, capsys, slot):
    path = edit(project, "    x[PREV_EMA] = average\n", f"    x[PREV_EMA] = average\n    x[{slot}] = 0.0\n")
    code, lines = config_check(project / CONFIG, capsys)
    assert code == 1
    assert lines == [f"{path}:{line_of(path, f'x[{slot}] = 0.0')}: decide() writes x[{slot}]: only memory slots "
                     "may be written"]


def test_a_backtest_refuses_a_decision_writing_the_bar_before_any_tick(project, tmp_path):
    edit(project, "    x[PREV_EMA] = average\n", "    x[PREV_EMA] = average\n    x[CLOSE] = 0.0\n")
    with pytest.raises(SystemExit, match=r"my_idea\.py:\d+: decide\(\) writes x\[CLOSE\]: only memory slots"):
        main(["backtest", "--config", str(project / CONFIG), "--ticks", str(tmp_path / "no.csv")])


def test_a_write_through_a_computed_index_is_caught_by_the_trial(project, capsys):
    path = edit(project, "    x[PREV_EMA] = average\n",
                "    x[PREV_EMA] = average\n    i = int(x[EXIT_BELOW]) + 2\n    x[i] = 0.0\n")
    code, lines = config_check(project / CONFIG, capsys)
    assert code == 1
    assert lines == [f"{path}:{line_of(path, '@strategy.decision')}: decide() writes x[CLOSE] (bar 0): only memory "
                     "slots may be written"]


def test_writing_memory_and_scratch_stays_allowed(tmp_path):
    (tmp_path / "keeper.py").write_text(
        "from engine.strategies.api import CLOSE, NONE, SCRATCH, Strategy\n"
        "strategy = Strategy('keeper', about='', memory={'last': 0.0, 'ring': SCRATCH}, scratch=lambda p: 4)\n"
        "LAST, RING = strategy.mem('last'), strategy.mem('ring')\n"
        "@strategy.decision\n"
        "def decide(x, pos):\n"
        "    x[LAST] = x[CLOSE]\n"
        "    x[int(x[RING]) + int(x[CLOSE]) % 4] = x[CLOSE]\n"
        "    return NONE\n")
    strategy = load_file(tmp_path / "keeper.py")
    strategy.check(strategy.defaults)


def test_a_refused_write_is_a_strategy_error_from_compile(tmp_path):
    (tmp_path / "writer.py").write_text(
        "from engine.strategies.api import NONE, VOLUME, Strategy\n"
        "strategy = Strategy('writer', about='')\n"
        "@strategy.decision\n"
        "def decide(row, pos):\n"
        "    if pos > 0:\n"
        "        row[VOLUME] += 1.0\n"
        "    return NONE\n")
    with pytest.raises(StrategyError, match=r"writer\.py:6: decide\(\) writes row\[VOLUME\]: only memory slots"):
        load_file(tmp_path / "writer.py").compile()
