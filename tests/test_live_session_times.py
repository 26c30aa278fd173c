"""Session times the exchange or Zerodha would defeat (issue 20 §3): refused for live trading, with the
reason, by ``config check --live``, ``/set`` on a live process and ``otrade run --live``; paper takes any
hours, and a calendar's special session keeps its own (``tests/live_process.py`` trades all day on one)."""

import asyncio
from pathlib import Path

import orjson

from config import Session, live_session_problems
from engine.cli import main
from tests.live_process import live_process, stopped, write_config
from tests.test_chat_config import make_commands, on_disk, say

ALL_DAY = {"open": "00:00", "square_off": "23:58", "close": "23:59"}


def with_session(path: Path, **times: str) -> bytes:
    """The config at ``path`` with these session times; its bytes as written."""
    data = orjson.loads(path.read_bytes())
    data["session"].update(times)
    path.write_bytes(orjson.dumps(data))
    return path.read_bytes()


def check(path: Path, capsys, *flags: str) -> tuple[int, str, list[str]]:
    """``otrade config check``: its exit code, its first line and the lines under it."""
    code = main(["config", "check", *flags, str(path)])
    out = capsys.readouterr()
    first, *rest = (out.err or out.out).splitlines()
    return code, first, [line.strip() for line in rest]


# --- the rule ------------------------------------------------------------------------------------

def test_an_open_in_the_pre_open_is_refused_for_live_as_the_exchanges_rule():
    [problem] = live_session_problems(Session(open="09:14"))
    assert problem.startswith("session.open: '09:14' must be 09:15 or later for live trading: ")
    assert "pre-open call auction (09:00–09:15)" in problem and problem.endswith("(the exchange's rule)")


def test_a_square_off_from_1520_is_refused_for_live_as_zerodhas_rule_not_the_exchanges():
    [problem] = live_session_problems(Session(square_off="15:20"))
    assert problem.startswith("session.square_off: '15:20' must be before 15:20 for live trading: ")
    assert "Zerodha squares off open intraday (MIS) positions itself" in problem
    assert "(Zerodha's rule, not the exchange's: NSE trades to 15:30)" in problem


def test_a_close_after_1530_is_refused_for_live_as_the_exchanges_rule():
    [problem] = live_session_problems(Session(square_off="15:15", close="15:31"))
    assert problem.startswith("session.close: '15:31' must be 15:30 or earlier for live trading: ")
    assert problem.endswith("(the exchange's rule)")


def test_nse_hours_with_a_square_off_before_zerodhas_are_fine_for_live():
    assert live_session_problems(Session(open="09:15", square_off="15:19", close="15:30")) == []


def test_every_time_live_would_refuse_is_named_at_once():
    problems = live_session_problems(Session(**ALL_DAY))
    assert [p.split(":")[0] for p in problems] == ["session.open", "session.square_off", "session.close"]


# --- otrade config check -------------------------------------------------------------------------

def test_config_check_live_fails_on_hours_live_would_refuse_and_changes_nothing(tmp_path, capsys):
    write_config(tmp_path)
    before = with_session(tmp_path / "otrade.json", square_off="15:25")
    code, first, lines = check(tmp_path / "otrade.json", capsys, "--live")
    assert (code, first) == (1, f"{tmp_path / 'otrade.json'}: 1 error(s)")
    assert lines == live_session_problems(Session(square_off="15:25"))
    assert (tmp_path / "otrade.json").read_bytes() == before


def test_config_check_for_paper_passes_all_day_hours_and_warns_that_live_would_refuse_them(tmp_path, capsys):
    write_config(tmp_path)
    with_session(tmp_path / "otrade.json", **ALL_DAY)
    code, first, lines = check(tmp_path / "otrade.json", capsys)
    assert (code, first) == (0, f"{tmp_path / 'otrade.json'}: OK")
    assert [line for line in lines if line.startswith("warning")] == [
        f"warning (otrade run --live would refuse it): {p}" for p in live_session_problems(Session(**ALL_DAY))]


def test_config_check_live_passes_the_shipped_hours(tmp_path, capsys):
    write_config(tmp_path)
    code, first, lines = check(tmp_path / "otrade.json", capsys, "--live")
    assert (code, first) == (0, f"{tmp_path / 'otrade.json'}: OK")
    assert not [line for line in lines if line.startswith("warning")]


# --- /set ----------------------------------------------------------------------------------------

async def test_set_on_a_live_process_refuses_a_square_off_after_zerodhas_and_keeps_the_file(tmp_path, kite_day):
    before = (tmp_path / "otrade.json").read_bytes()
    async with live_process(tmp_path, kite_day, console=True) as proc:
        proc.stdin.write(b"/set session.square_off 15:25\n")
        await proc.stdin.drain()

        async def reply() -> str:  # refused or taken, the answer names the setting
            while "session.square_off" not in (line := (await proc.stdout.readline()).decode()):
                assert line, "the process ended without answering /set"
            return line.rstrip("\n")

        answer = await asyncio.wait_for(reply(), 120)
        await stopped(proc)
    assert answer == f"/set: {live_session_problems(Session(square_off='15:25'))[0]}"
    assert (tmp_path / "otrade.json").read_bytes() == before


async def test_set_on_paper_takes_hours_live_would_refuse(tmp_path):
    commands = make_commands(tmp_path)
    answer = await say(commands, "/set session.square_off 15:25")
    assert answer.startswith('session.square_off: "15:15" → "15:25"')
    assert on_disk(commands)["session"]["square_off"] == "15:25"


# --- otrade run --live ---------------------------------------------------------------------------

async def test_run_live_refuses_to_start_on_a_close_after_1530_before_calling_kite(tmp_path, kite_now):
    before = with_session(tmp_path / "otrade.json", close="15:45")
    async with live_process(tmp_path, kite_now) as proc:
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1
    assert (f"refusing to start live: config {tmp_path / 'otrade.json'}:\n"
            f"{live_session_problems(Session(close='15:45'))[0]}") in err.decode()
    assert not kite_now.calls and not kite_now.sockets  # Kite never heard of it
    assert (tmp_path / "otrade.json").read_bytes() == before
