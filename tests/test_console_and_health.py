"""The console transport, the health endpoint and secret-free logs."""

import io
import logging
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request

import orjson
import pytest

from bot.commands import Commands
from bot.console import ConsoleTransport
from engine.engine import State
from engine.services import logs
from tests.conftest import process_env
from tests.paper_services import paper_services


@pytest.fixture
def console(tmp_path):
    services = paper_services(tmp_path)
    services.engine.start_session()
    out = io.StringIO()
    return ConsoleTransport(Commands(services), out), services.engine, out


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
    env = process_env(tmp_path, OTRADE_CONFIG=str(tmp_path / "o.json"))  # PORT=0: the log names the port taken
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--for", "8", "--clock",
                             "2026-11-23T10:00:00+05:30"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ports: queue.Queue[int] = queue.Queue()
    threading.Thread(target=_health_port, args=(proc.stderr, ports), daemon=True).start()
    try:
        port, body = ports.get(timeout=60), None
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    body = orjson.loads(response.read())
                    if body["last_tick_age_s"] is not None:
                        break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    assert body["state"] == "RUNNING" and body["telegram"] == "off" and body["feed"] == "synthetic"
    assert body["last_tick_age_s"] < 5


def _health_port(stream, ports: queue.Queue) -> None:
    """The port the process's health endpoint took, from its log (read to the end: the pipe never fills)."""
    for line in stream:
        if found := re.search(r"health on http://[^:]+:(\d+)/healthz", line):
            ports.put(int(found.group(1)))
