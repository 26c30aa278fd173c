"""The console transport, the health endpoint and secret-free logs."""

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bot.commands import Commands, Services
from bot.console import ConsoleTransport
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.engine import Engine, State
from engine.services import logs
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def console(tmp_path):
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    clock = time.time_ns
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), EventBus(),
                    Journal(tmp_path / "data", clock), clock)
    engine.start_session()
    out = io.StringIO()
    return ConsoleTransport(Commands(Services(engine, manager, tmp_path / "data", clock)), out), engine, out


def test_console_commands_need_no_slash(console):
    transport, engine, out = console
    transport.handle_line("pause coffee")
    assert engine.state == State.PAUSED and "PAUSED" in out.getvalue()


def test_console_confirms_dangerous_commands_by_number(console):
    transport, engine, out = console
    transport.handle_line("/halt")
    assert engine.state == State.RUNNING and "[1] Yes, /halt" in out.getvalue()
    transport.handle_line("1")
    assert engine.state == State.HALTED


def test_bad_arguments_get_a_specific_answer_and_change_nothing(console):
    transport, _, out = console
    transport.handle_line("/logs many")
    transport.handle_line("/set risk.max_daily_loss")
    assert "/logs: 'many' is not a number of lines (1–500)" in out.getvalue()
    assert "/set: usage: /set <path> <value>" in out.getvalue()


def test_help_lists_every_command(console):
    transport, _, out = console
    transport.handle_line("/help")
    for name in ("status", "pause", "resume", "halt", "flatten", "positions", "orders", "trades", "pnl", "daily",
                 "config", "set", "undo", "reload", "risk", "logs", "version"):
        assert f"/{name}" in out.getvalue()


def test_secrets_from_the_environment_are_redacted_in_logs(monkeypatch, capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "987654:SECRET-abcdef")
    logs.setup()
    logging.getLogger("x").info("calling https://api.telegram.org/bot987654:SECRET-abcdef/getMe")
    assert "SECRET" not in capsys.readouterr().err
    logging.getLogger().handlers.clear()


def test_healthz_reports_state_and_components(tmp_path):
    env = {**os.environ, "OTRADE_DATA_DIR": str(tmp_path / "data"), "OTRADE_CONFIG": str(tmp_path / "o.json"),
           "PORT": "18777", "PYTHONPATH": str(ROOT)}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--for", "8", "--clock",
                             "2026-11-23T10:00:00+05:30"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import urllib.request

        body = None
        for _ in range(60):
            try:
                with urllib.request.urlopen("http://127.0.0.1:18777/healthz", timeout=1) as response:
                    body = orjson.loads(response.read())
                    if body["last_tick_age_s"] is not None:
                        break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert body["state"] == "RUNNING" and body["telegram"] == "off" and body["feed"] == "synthetic"
    assert body["last_tick_age_s"] < 5
