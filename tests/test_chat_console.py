"""The console as a newcomer meets it: a number answers the bot's last question (read from the real
stdin), and ``otrade run --console`` shows each event once, in order, on the engine's clock in IST."""

import io
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from bot.console import NO_QUESTION, ConsoleTransport
from engine.core.layout import IST
from engine.engine import State
from tests.conftest import DAY, DEFAULT
from tests.test_chat_config import make_commands

ROOT = Path(__file__).resolve().parent.parent


async def typed(tmp_path, monkeypatch, *lines: str) -> tuple[ConsoleTransport, str]:
    """The console after reading ``lines`` from stdin to its end, and what it printed."""
    console = ConsoleTransport(make_commands(tmp_path), io.StringIO())
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    await console.run()
    return console, console.out.getvalue()


async def test_a_number_answers_the_last_question_after_other_messages(tmp_path, monkeypatch):
    console, out = await typed(tmp_path, monkeypatch, "/halt", "/positions", "1")
    assert console.commands.s.engine.state == State.HALTED and "HALTED: working entries cancelled" in out


async def test_a_number_with_no_question_waiting_says_so(tmp_path, monkeypatch):
    _, out = await typed(tmp_path, monkeypatch, "/positions", "1")
    assert out.splitlines()[-1] == NO_QUESTION and "Unknown command" not in out


async def test_a_question_is_answered_once(tmp_path, monkeypatch):
    console, out = await typed(tmp_path, monkeypatch, "/halt", "2", "1")
    assert out.splitlines()[-2:] == ["/halt cancelled.", NO_QUESTION]
    assert console.commands.s.engine.state == State.RUNNING


async def test_a_number_answers_only_the_most_recent_question(tmp_path, monkeypatch):
    console, out = await typed(tmp_path, monkeypatch, "/halt", "/flatten", "1")
    assert console.commands.s.engine.state == State.PAUSED  # flattened and paused, not halted
    assert out.splitlines()[-1] == "Nothing to flatten; flat and paused; /resume to trade again."


async def test_a_number_beyond_the_options_says_which_there_are_and_does_nothing(tmp_path, monkeypatch):
    console, out = await typed(tmp_path, monkeypatch, "/halt", "3")
    assert out.splitlines()[-1] == "No option 3: the last question's options are numbered 1 to 2."
    assert console.commands.s.engine.state == State.RUNNING


# --- the process's terminal --------------------------------------------------------------------------

STAMP = re.compile(r"^(\d\d:\d\d:\d\d) ")
EVENT_LINE = re.compile(r"^(!!|--|··) (\d\d:\d\d:\d\d) (.*)$")
LOGGED_EVENT = re.compile(r" otrade\.events: (\w+)")


def kind_of(text: str) -> str:
    """The event kind a console event line shows (session and report lines are plain text)."""
    for marks, kind in (("→", "order_placed"), ("✓◐", "fill"), ("✗·", "order_updated"), ("⚠", "alert")):
        if text[0] in marks:
            return kind
    return "trade_closed" if text.startswith("Closed ") else "state_changed" if text.startswith("Engine ") else "text"


def rehearsal_start() -> datetime:
    """In a trading day's session, at a time of day far from the wall clock's, so that a stamp on the
    wrong clock cannot pass."""
    now = datetime.now(IST)
    hour = 10 if not 8 <= now.hour < 12 else 14
    return datetime.fromisoformat(f"{DAY}T{hour}:00:00+05:30")


def test_the_console_shows_each_event_once_in_order_on_the_engines_clock(tmp_path):
    data = orjson.loads(orjson.dumps(DEFAULT))
    for ins in data["instruments"]:  # trades within seconds, open positions at the stop
        ins["strategy"] = {"kind": "ema_cross", "timeframe": "tick", "fast": 1, "slow": 2, "allow_short": True}
        ins["bracket"] = {"target_pct": 0.05, "stop_pct": 0.05, "trail_pct": None}
    data["session"]["on_shutdown"] = "flatten"
    data["paper"]["tick_interval_ms"] = 100
    data["risk"]["max_trades_per_day"] = 500
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))
    start = rehearsal_start()
    env = {**os.environ, "OTRADE_DATA_DIR": str(tmp_path / "data"), "OTRADE_CONFIG": str(tmp_path / "otrade.json"),
           "OTRADE_LOG_FILE": str(tmp_path / "otrade.log"), "PORT": "0", "PYTHONPATH": str(ROOT)}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "engine", "run", "--console", "--for", "6", "--clock",
                           start.isoformat()], cwd=tmp_path, env=env, input="/set risk.max_quantity 500\n",
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    out, err = done.stdout.splitlines(), done.stderr.splitlines()
    logged = [m[1] for line in (tmp_path / "otrade.log").read_text().splitlines() if (m := LOGGED_EVENT.search(line))]
    shown = [m.groups() for line in out if (m := EVENT_LINE.match(line))]

    assert "risk.max_quantity: 1000 → 500 (saved, live)" in out
    assert not [line for line in err if "otrade.events" in line]  # not echoed: the console printed them
    assert len(shown) > 20 and shown[-1][2].startswith("⚠ OTrade stopping")
    # Once each and in the order they happened: the event log's order, but for config_changed, which
    # names nothing: the config's own line says what changed.
    assert [kind_of(text) for _, _, text in shown] == [
        "text" if kind in ("session", "report") else kind for kind in logged if kind != "config_changed"]
    [config_line] = [line for line in err if "config changed by set" in line]
    assert config_line.endswith("INFO config.manager: config changed by set: risk.max_quantity: 1000 -> 500")
    window = (start.strftime("%H:%M:%S"), (start + timedelta(minutes=2)).strftime("%H:%M:%S"))
    stamps = [at for _, at, _ in shown] + [STAMP.match(config_line)[1]]
    assert all(window[0] <= at <= window[1] for at in stamps), (window, stamps)

