"""Chat commands a newcomer tripped on: /logs N answering N lines, on Telegram too when it says to
wait, and /flatten resume ending RUNNING whatever the state it was asked in."""

import logging

import pytest

from bot.commands import CONSOLE, Commands, resolve
from engine.engine import State
from engine.services.logs import LogBuffer
from tests.conftest import seconds
from tests.test_chat_config import make_commands
from tests.test_telegram import ADMIN, CHAT, feed, running_bot


@pytest.fixture
def commands(tmp_path) -> Commands:
    return make_commands(tmp_path)


@pytest.fixture
def logged():
    """A logger writing into its own /logs buffer."""
    buffer, logger = LogBuffer(), logging.getLogger("tests.chat.logs")
    logger.addHandler(buffer)
    logger.setLevel(logging.INFO)
    yield logger, buffer
    logger.removeHandler(buffer)


# --- /logs -----------------------------------------------------------------------------------------

def test_logs_n_answers_the_last_n_lines_when_a_record_spans_several(commands, logged):
    logger, commands.s.logs = logged
    for k in range(30):
        logger.info("line %02d", k)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("a traceback")  # one record, several lines
    logger.info("the last line")
    lines = commands.handle_text(CONSOLE, "/logs 12").text.splitlines()
    assert len(lines) == 12 and lines[-1].endswith("the last line") and "ValueError: boom" in lines
    everything = commands.handle_text(CONSOLE, "/logs 500").text.splitlines()
    assert len(everything) > 32 and everything[0].endswith("line 00")


def test_logs_with_fewer_lines_than_asked_answers_them_all(commands, logged):
    logger, commands.s.logs = logged
    logger.info("only line")
    assert commands.handle_text(CONSOLE, "/logs 5").text.endswith("tests.chat.logs: only line")


def test_logs_lines_are_stamped_in_ist_on_the_engines_clock(commands, logged):
    logger, commands.s.logs = logged
    commands.s.logs.stamp_with(commands.s.now_ns)  # as otrade run does: a rehearsal's 10:00 IST, whatever the wall's
    logger.info("stamped")
    assert commands.handle_text(CONSOLE, "/logs 1").text == "10:00:00 INFO tests.chat.logs: stamped"


async def test_a_long_logs_answer_arrives_whole_when_telegram_says_to_wait(tmp_path, logged):
    logger, buffer = logged
    async with running_bot(tmp_path) as chat:
        chat.telegram.commands.s.logs = buffer
        for k in range(200):
            logger.info("line %03d %s", k, "x" * 60)  # about 16 kB: Telegram takes it in 5 parts
        chat.api.fail_next(("hang", 0), ("429", 1))  # the first part goes, the second is told to wait 1 s
        before = len(chat.api.to_chat(CHAT))
        chat.api.user_says(CHAT, ADMIN, "/logs 200")

        def received() -> list[str] | None:
            lines = [line for m in chat.api.to_chat(CHAT)[before:] for line in m["text"].splitlines()]
            return lines if len(lines) >= 200 else None

        lines = await chat.api.wait_for(received, timeout=30)
    assert [line.split(": ", 1)[1][:8] for line in lines] == [f"line {k:03d}" for k in range(200)]


# --- /flatten resume -------------------------------------------------------------------------------

async def answer_yes(commands: Commands, text: str) -> tuple[str, str]:
    """The question ``text`` asks, and the answer to tapping Yes."""
    question = commands.handle_text(CONSOLE, text)
    return question.text, (await resolve(commands.handle_button(CONSOLE, question.buttons[0][1]))).text


def open_a_long(commands: Commands) -> None:
    feed(commands.s.engine, commands.s.now_ns, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    assert len(commands.s.engine.positions()) == 1


@pytest.mark.parametrize(("stopped", "asked"), [
    ("PAUSED", "Flatten every open position at market and resume trading (now PAUSED)?"),
    ("HALTED", "Flatten every open position at market, then lift the HALT and trade again?")])
async def test_flatten_resume_flattens_and_trades_again_whether_paused_or_halted(commands, stopped, asked):
    open_a_long(commands)
    engine = commands.s.engine
    if stopped == "PAUSED":
        engine.pause("coffee")
    else:
        engine.halt("kill switch")
    assert engine.state == State[stopped]
    question, answer = await answer_yes(commands, "/flatten resume")
    assert question.startswith(asked)
    assert answer == "Flattening: 1 exit order(s) sent; RUNNING again: entries on the next signal."
    assert engine.state == State.RUNNING
    feed(engine, commands.s.now_ns, seconds("10:00:05", [101.6, 100.0, 99.0, 101.0, 101.5]))
    assert engine.trades()[0]["exit_reason"] == "flatten" and len(engine.positions()) == 1


async def test_flatten_without_resume_while_paused_stays_paused(commands):
    open_a_long(commands)
    commands.s.engine.pause("coffee")
    _, answer = await answer_yes(commands, "/flatten")
    assert answer == "Flattening: 1 exit order(s) sent; flat and paused; /resume to trade again."
    assert commands.s.engine.state == State.PAUSED
