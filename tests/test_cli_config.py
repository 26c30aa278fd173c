"""One config for every command: ``--config``, else ``$OTRADE_CONFIG``, else ``config/otrade.json`` made
from the shipped default on first use; a config named with ``--config`` must exist; each command's
first line names the config and the data."""

import argparse
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine import cli
from engine.data.tick_files import save
from tests.conftest import DEFAULT, make_ticks, process_env, seconds

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A working directory with no config in it, nothing in the environment naming one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTRADE_CONFIG", raising=False)
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)
    monkeypatch.setenv("OTRADE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def ticks_file(tmp_path) -> Path:
    file = tmp_path / "day.otk"
    rows = [(d, t, p, "NSE:INFY") for d, t, p, _ in seconds("10:00:00", [100.0, 101.0, 102.0, 101.0])]
    save(file, make_ticks([r for d, t, p, s in rows for r in ((d, t, p, s), (d, t, 800.0, "NSE:SBIN"))],
                          ("NSE:INFY", "NSE:SBIN")))
    return file


@pytest.mark.parametrize("command", [
    ["backtest", "--ticks", "{ticks}"],
    ["sweep", "--ticks", "{ticks}", "--param", "instruments.0.strategy.fast=3", "--workers", "1"],
    ["ticks", "generate", "--out", "{tmp}/gen.otk", "--interval-ms", "60000"],
    ["strategy", "list"],
    ["strategy", "new", "my_idea"],
])
def test_a_command_without_config_uses_config_otrade_json_made_from_the_shipped_default(
        command, here, ticks_file, capsys):
    argv = [a.format(ticks=ticks_file, tmp=here) for a in command]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("config config/otrade.json (new, from the shipped default) · ")
    assert orjson.loads((here / "config" / "otrade.json").read_bytes()) == DEFAULT


def test_the_config_made_once_is_the_one_used_next_time(here, ticks_file, capsys):
    assert cli.main(["backtest", "--ticks", str(ticks_file)]) == 0
    capsys.readouterr()
    assert cli.main(["backtest", "--ticks", str(ticks_file)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"config config/otrade.json · data ticks of {ticks_file}"


def test_otrade_config_names_the_config_of_every_command_without_config(here, ticks_file, monkeypatch, capsys):
    config = here / "mine.json"
    config.write_bytes(orjson.dumps(DEFAULT))
    monkeypatch.setenv("OTRADE_CONFIG", str(config))
    assert cli.main(["backtest", "--ticks", str(ticks_file), "--json"]) == 0
    out, err = capsys.readouterr()
    assert orjson.loads(out)["config"] == str(config)
    assert err.splitlines()[0] == f"config {config} · data ticks of {ticks_file}"
    assert not (here / "config").exists()


def test_a_missing_otrade_config_file_is_made_from_the_shipped_default(here, monkeypatch, capsys):
    monkeypatch.setenv("OTRADE_CONFIG", str(here / "volume" / "otrade.json"))
    assert cli.main(["strategy", "list"]) == 0
    assert orjson.loads((here / "volume" / "otrade.json").read_bytes()) == DEFAULT


def test_with_json_the_config_line_goes_to_stderr_and_stdout_is_only_json(here, ticks_file, capsys):
    assert cli.main(["backtest", "--ticks", str(ticks_file), "--json"]) == 0
    out, err = capsys.readouterr()
    summary = orjson.loads(out)
    assert (summary["config"], summary["data"]) == ("config/otrade.json", f"ticks of {ticks_file}")
    assert err.startswith("config config/otrade.json (new, from the shipped default) · data ticks of ")


@pytest.mark.parametrize("command", [
    ["run", "--for", "1"],
    ["backtest", "--ticks", "{ticks}"],
    ["sweep", "--ticks", "{ticks}", "--param", "instruments.0.strategy.fast=3"],
    ["ticks", "generate", "--out", "{tmp}/gen.otk"],
    ["strategy", "list"],
    ["strategy", "new", "my_idea"],
])
def test_a_config_named_with_config_that_does_not_exist_is_an_error_and_is_not_made(
        command, here, ticks_file, capsys):
    argv = [a.format(ticks=ticks_file, tmp=here) for a in command] + ["--config", "nope.json"]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: --config nope.json: no such file (a config named with --config is never created")
    assert out == ""
    assert sorted(p.name for p in here.iterdir()) == ["day.otk"]  # nothing made: no config, no data, no output


def test_run_names_its_config_and_data_directory_first(tmp_path):
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "o.json"))
    result = subprocess.run([sys.executable, "-m", "engine", "run", "--for", "1", "--clock",
                             "2026-11-23T10:00:00+05:30"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == \
        f"config {tmp_path / 'o.json'} (new, from the shipped default) · data {tmp_path / 'data'}"


def subparsers(p: argparse.ArgumentParser, path: str = "otrade"):
    """Every command's parser with its name, the groups' included."""
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subparsers(child, f"{path} {name}")


def test_every_argument_of_every_command_says_what_it_is():
    unexplained = [f"{path} {action.dest}" for path, p in subparsers(cli.parser()) for action in p._actions
                   if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert unexplained == []


def test_help_shows_the_default_config_and_what_days_and_seed_are(monkeypatch, capsys):
    monkeypatch.delenv("OTRADE_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["ticks", "generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--config FILE the config whose instruments (symbols, tick sizes) get ticks (default: $OTRADE_CONFIG, " \
           "else config/otrade.json;" in text
    assert "--days DAYS trading sessions to generate" in text
    assert "--seed SEED seed of the random walk" in text
