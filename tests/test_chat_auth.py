"""Only the owner drives the bot: edits, other bots' commands, other users' taps, group members.

The real python-telegram-bot polls the local Bot API server. The owner's private chat has the owner's
id (as Telegram gives it); the group is allowed too, and its members are not admins unless listed.
"""

import logging

import pytest

from engine.engine import State
from tests.botapi import BOT_USER
from tests.conftest import DEFAULT, seconds
from tests.test_telegram import ask, feed, running_bot

OWNER, SECOND_ADMIN, MEMBER, STRANGER = 77, 79, 78, 2002
GROUP = -1001


@pytest.fixture
async def chat(request, tmp_path):
    admins = getattr(request, "param", [OWNER, SECOND_ADMIN])
    quiet = {kind: "off" for kind in DEFAULT["bot"]["notify"]}  # only replies in these chats
    async with running_bot(tmp_path, allowed_chats=[OWNER, GROUP], admins=admins, notify=quiet) as running:
        yield running


no_admins = pytest.mark.parametrize("chat", [[]], indirect=True)


async def question(chat, text: str, chat_id: int = GROUP, user: int = OWNER) -> tuple[dict, str]:
    """Ask for something that needs a tap: the question and its Yes button's data."""
    reply = await ask(chat.api, text, chat_id, user)
    [[yes, _]] = reply["reply_markup"]["inline_keyboard"]
    return reply, yes["callback_data"]


async def tap(chat, chat_id: int, user: int, data: str, message_id: int) -> dict:
    query_id = chat.api.press(chat_id, user, data, message_id)
    [answer] = await chat.api.wait_for(lambda: [a for a in chat.api.answers if str(a["callback_query_id"]) == query_id])
    return answer


# --- edited messages -------------------------------------------------------------------------------

async def test_an_edited_message_never_runs_its_command(chat):
    message_id = chat.api.user_says(OWNER, OWNER, "/pause")
    await chat.api.wait_for(lambda: chat.api.to_chat(OWNER))
    before = len(chat.api.to_chat(OWNER))
    chat.api.user_edits(OWNER, OWNER, message_id, "/resume")  # the case: an old /pause edited
    [reply] = await chat.api.wait_for(lambda: chat.api.to_chat(OWNER)[before:])
    assert reply["text"] == "Edited messages never run commands: send it as a new message."
    assert chat.engine.state == State.PAUSED


async def test_an_edited_set_is_not_applied(chat):
    message_id = chat.api.user_says(OWNER, OWNER, "/status")
    await chat.api.wait_for(lambda: chat.api.to_chat(OWNER))
    chat.api.user_edits(OWNER, OWNER, message_id, "/set instruments.0.quantity 99")
    await ask(chat.api, "/version", OWNER, OWNER)  # handled after the edit
    assert chat.engine.cfg.instruments[0].quantity == 10 and chat.manager.config.instruments[0].quantity == 10


# --- commands addressed to a bot -------------------------------------------------------------------

async def test_a_command_for_another_bot_is_left_to_it(chat):
    chat.api.user_says(GROUP, OWNER, "/halt@otherbot")
    reply = await ask(chat.api, "/status", GROUP, OWNER)  # handled after it
    assert chat.engine.state == State.RUNNING and reply["text"].startswith("Engine: RUNNING")
    assert len(chat.api.to_chat(GROUP)) == 1


async def test_a_command_addressed_to_us_runs(chat):
    reply = await ask(chat.api, f"/pause@{BOT_USER['username']} lunch", GROUP, OWNER)
    assert reply["text"].startswith("PAUSED") and chat.engine.state_reason == "lunch"


# --- confirmation buttons --------------------------------------------------------------------------

async def test_another_users_tap_on_a_confirmation_is_refused_and_reveals_nothing(chat):
    reply, yes = await question(chat, "/halt")
    answer = await tap(chat, GROUP, SECOND_ADMIN, yes, reply["message_id"])  # an admin, but not the one who asked
    assert answer["text"] == "This button is not yours."
    assert chat.engine.state == State.RUNNING
    assert [m for m in chat.api.sent if m["method"] == "editMessageText"] == []  # the question stays for its owner


async def test_the_asker_can_still_confirm_after_someone_else_tapped(chat):
    reply, yes = await question(chat, "/halt")
    await tap(chat, GROUP, MEMBER, yes, reply["message_id"])
    await tap(chat, GROUP, OWNER, yes, reply["message_id"])
    assert chat.engine.state == State.HALTED


async def test_a_confirmation_tapped_in_another_chat_is_refused(chat):
    reply, yes = await question(chat, "/halt")
    answer = await tap(chat, OWNER, OWNER, yes, reply["message_id"])  # the asker, but in their private chat
    assert answer["text"] == "This button is not yours." and chat.engine.state == State.RUNNING


# --- admins ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("chat", [[OWNER], []], indirect=True, ids=["admins set", "no admins"])
async def test_a_group_member_who_is_not_an_admin_cannot_flatten(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    reply = await ask(chat.api, "/flatten", GROUP, MEMBER)
    assert reply["text"].startswith(("/flatten is for admins only.", "/flatten needs an admin"))
    assert "reply_markup" not in reply  # no confirmation to tap either
    assert len(chat.engine.positions()) == 1 and chat.engine.state == State.RUNNING


@no_admins
async def test_control_commands_in_a_group_without_admins_are_refused_saying_how_to_set_them(chat):
    reply = await ask(chat.api, "/pause", GROUP, OWNER)
    assert "/set bot.admins [77]" in reply["text"] and "bot.admins in the config file" in reply["text"]
    assert chat.engine.state == State.RUNNING


@no_admins
async def test_the_user_of_an_allowed_private_chat_is_its_admin(chat):
    reply = await ask(chat.api, "/pause", OWNER, OWNER)
    assert reply["text"].startswith("PAUSED") and chat.engine.state == State.PAUSED


async def test_group_members_may_read_the_state(chat):
    reply = await ask(chat.api, "/status", GROUP, MEMBER)
    assert reply["text"].startswith("Engine: RUNNING")


async def test_the_logs_are_for_admins_only_in_a_group(chat):
    reply = await ask(chat.api, "/logs", GROUP, MEMBER)
    assert reply["text"] == "/logs is for admins only."


async def test_a_stranger_gets_nothing_for_a_message_an_edit_or_a_tap(chat):
    message_id = chat.api.user_says(STRANGER, STRANGER, "/status")
    chat.api.user_edits(STRANGER, STRANGER, message_id, "/pause")
    chat.api.press(STRANGER, STRANGER, "refresh:status", 5)
    await ask(chat.api, "/version", OWNER, OWNER)  # handled after the stranger's updates
    assert chat.api.to_chat(STRANGER) == [] and chat.api.answers == [] and chat.engine.state == State.RUNNING


async def test_every_refusal_is_logged_with_chat_and_user_ids(chat, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    await ask(chat.api, "/flatten", GROUP, MEMBER)
    reply, yes = await question(chat, "/halt")
    await tap(chat, GROUP, MEMBER, yes, reply["message_id"])
    chat.api.user_says(STRANGER, STRANGER, "/status")
    await ask(chat.api, "/version", OWNER, OWNER)
    refusals = [r.getMessage() for r in caplog.records if r.name.startswith("bot.") and r.levelno == logging.WARNING]
    assert len(refusals) == 3
    assert all(str(MEMBER) in line and str(GROUP) in line for line in refusals[:2])
    assert "chat 2002 user 2002" in refusals[2]
