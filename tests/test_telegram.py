"""Chat-ops over the real python-telegram-bot, polling a local Bot API server on 127.0.0.1."""

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from bot.commands import Commands, Services
from bot.notifier import Notifier
from bot.telegram import TelegramTransport, split
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.charts import Charts
from engine.data.store import SYNTHETIC
from engine.engine import Engine, State
from engine.services.events import ALERT, Event, EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog
from tests.botapi import FakeBotAPI
from tests.conftest import DEFAULT, make_ticks, ns, seconds

TOKEN = "123456:TEST-secret-token-abcdef"
ADMIN, NOT_ADMIN, OTHER_CHAT = 77, 78, 2002
CHAT = ADMIN  # the admin's private chat: Telegram gives it the user's id
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.ns = ns("10:00:00")

    def __call__(self) -> int:
        return self.ns


def write_config(path: Path, **bot) -> None:
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.05, "quantity": 10,
                            "strategy": {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False},
                            "bracket": {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}}]
    # Session notices off: the session opening in the fixture must not race the replies tests wait for.
    data["bot"].update({"allowed_chats": [CHAT], "admins": [ADMIN], "coalesce_ms": 50, **bot})
    data["bot"]["notify"]["session"] = "off"
    path.write_bytes(orjson.dumps(data))


@contextlib.asynccontextmanager
async def running_bot(tmp_path: Path, timeout: float = 10.0, charts: bool = False, **bot
                      ) -> AsyncIterator[SimpleNamespace]:
    """The engine on paper, its commands on the real PTB polling the local Bot API, and the notifier;
    ``timeout`` is the Telegram client's (generous: a loaded machine answers a local call late);
    ``charts``: the commands draw pictures (/chart, /equity) from the data directory."""
    api = FakeBotAPI(TOKEN)
    base = await api.start()
    write_config(tmp_path / "otrade.json", **bot)
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    clock = Clock()
    bus = EventBus()
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, clock), bus, Journal(tmp_path / "data", clock), clock)
    manager.add_check(engine.check_config)
    manager.subscribe(lambda old, new, changes: engine.apply_config(new))
    commands = Commands(Services(engine, manager, tmp_path / "data", clock,
                                 charts=Charts(engine, tmp_path / "data", SYNTHETIC) if charts else None))
    telegram = TelegramTransport(TOKEN, base, commands, lambda: manager.config.bot.allowed_chats,
                                 timeout=timeout, poll_timeout=1.0)
    await telegram.start()
    notifier = Notifier(bus.subscribe(), lambda: manager.config.bot, [telegram])
    notifier_task = asyncio.create_task(notifier.run())
    engine.start_session()
    try:
        yield SimpleNamespace(api=api, engine=engine, manager=manager, clock=clock, bus=bus, telegram=telegram,
                              commands=commands)
    finally:
        notifier_task.cancel()
        await telegram.stop()
        await api.stop()


@pytest.fixture
async def chat(tmp_path):
    async with running_bot(tmp_path) as running:
        yield running


def feed(engine, clock, rows):
    ticks = make_ticks(rows)
    for k in range(len(ticks)):
        clock.ns = int(ticks.ts[k])
        engine.on_tick(0, int(ticks.ts[k]), float(ticks.price[k]))


NOTICE = re.compile(r"\d\d:\d\d:\d\d ([→✓◐✗⚠]|Closed |Engine )|Burst of |\(\d+ info message")  # the notifier's


async def ask(api: FakeBotAPI, text: str, chat_id: int = CHAT, user: int = ADMIN) -> dict:
    """Say ``text`` in the chat; the bot's reply (notifications sent meanwhile are passed over)."""
    before = len(api.to_chat(chat_id))
    api.user_says(chat_id, user, text)
    return (await api.wait_for(lambda: [m for m in api.to_chat(chat_id)[before:] if not NOTICE.match(m["text"])]))[0]


async def test_status_answers_with_the_live_state(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [1500.0]))
    reply = await ask(chat.api, "/status")
    assert "Engine: RUNNING" in reply["text"] and "NSE:INFY: 1500.00" in reply["text"]


async def test_status_carries_a_refresh_button(chat):
    reply = await ask(chat.api, "/status")
    assert reply["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "refresh:status"


async def test_pause_then_status_shows_paused_and_no_entry_happens(chat):
    assert "PAUSED" in (await ask(chat.api, "/pause lunch"))["text"]
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    assert "Engine: PAUSED — lunch" in (await ask(chat.api, "/status"))["text"]
    assert chat.engine.positions() == [] and chat.engine.orders() == []


async def test_positions_lists_the_open_position_with_its_levels(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    reply = await ask(chat.api, "/positions")
    assert reply["text"] == ("NSE:INFY +10 @ 101.50 · LTP 101.50 · unrealised ₹0.00 · target 106.60 · "
                             "stop 96.40")


async def test_set_with_a_valid_value_changes_the_running_engine_and_the_file(chat):
    reply = await ask(chat.api, "/set instruments.0.quantity 25")
    assert reply["text"] == "instruments.0.quantity: 10 → 25 (saved, live)"
    assert chat.engine.cfg.instruments[0].quantity == 25
    assert orjson.loads(chat.manager.path.read_bytes())["instruments"][0]["quantity"] == 25
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    assert chat.engine.positions()[0]["qty"] == 25


async def test_set_with_an_invalid_value_changes_neither_engine_nor_file(chat):
    before = chat.manager.path.read_bytes()
    reply = await ask(chat.api, "/set instruments.0.strategy.fast 30")
    assert "instruments[0].strategy.fast: 30 must be smaller than slow (2)" in reply["text"]
    assert chat.manager.path.read_bytes() == before and chat.engine.cfg.instruments[0].strategy.fast == 1


async def test_a_chat_not_allowed_gets_nothing_and_changes_nothing(chat):
    chat.api.user_says(OTHER_CHAT, ADMIN, "/pause")
    chat.api.press(OTHER_CHAT, ADMIN, "refresh:status", 5)
    await ask(chat.api, "/status")  # processed after the intruder's updates
    assert chat.api.to_chat(OTHER_CHAT) == [] and chat.engine.state == State.RUNNING


async def test_unknown_commands_get_a_short_answer(chat):
    assert (await ask(chat.api, "/moon"))["text"] == "Unknown command /moon. Send /help for the list."


async def tap_yes(api: FakeBotAPI, reply: dict) -> str:
    """Tap Yes under a question; the text the question is edited into."""
    [[yes, _]] = reply["reply_markup"]["inline_keyboard"]
    before = len(api.sent)
    api.press(CHAT, ADMIN, yes["callback_data"], reply["message_id"])
    [done] = await api.wait_for(lambda: [m for m in api.sent[before:] if m["method"] == "editMessageText"])
    return done["text"]


async def confirm(api: FakeBotAPI, text: str) -> str:
    return await tap_yes(api, await ask(api, text))


async def test_flatten_needs_the_button(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    reply = await ask(chat.api, "/flatten")
    assert reply["text"].startswith("Flatten every open position at market and pause?")
    assert len(chat.engine.positions()) == 1 and chat.engine.state == State.RUNNING
    await tap_yes(chat.api, reply)
    feed(chat.engine, chat.clock, seconds("10:00:05", [101.6]))
    assert chat.engine.positions() == [] and chat.engine.trades()[0]["exit_reason"] == "flatten"


async def test_flatten_leaves_the_engine_paused_so_the_next_signal_does_not_enter(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    text = await confirm(chat.api, "/flatten")
    assert text == "Flattening: 1 exit order(s) sent; flat and paused; /resume to trade again."
    feed(chat.engine, chat.clock, seconds("10:00:05", [101.6, 100.0, 99.0, 101.0, 101.5]))  # another cross up
    assert chat.engine.state == State.PAUSED and chat.engine.positions() == [] and len(chat.engine.trades()) == 1


async def test_flatten_resume_flattens_and_keeps_trading(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    text = await confirm(chat.api, "/flatten resume")
    assert text == "Flattening: 1 exit order(s) sent; still RUNNING: entries on the next signal."
    feed(chat.engine, chat.clock, seconds("10:00:05", [101.6, 100.0, 99.0, 101.0, 101.5]))  # another cross up
    assert chat.engine.trades()[0]["exit_reason"] == "flatten" and len(chat.engine.positions()) == 1


async def test_flatten_while_an_exit_is_working_says_what_is_working(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    chat.engine.flatten()  # its exit fills at the next tick, which has not come
    text = await confirm(chat.api, "/flatten")
    assert text.startswith("Exits already working, nothing new sent; flat and paused; /resume to trade again.\n")
    assert text.splitlines()[1].endswith("SELL 10 NSE:INFY MARKET · OPEN (exit)")


async def test_flatten_with_nothing_open_still_pauses(chat):
    assert await confirm(chat.api, "/flatten") == "Nothing to flatten; flat and paused; /resume to trade again."
    assert chat.engine.state == State.PAUSED


async def test_config_takes_a_path_in_either_spelling_like_set(chat):
    dotted = await ask(chat.api, "/config instruments.0.quantity")
    bracketed = await ask(chat.api, "/config instruments[0].quantity")
    assert dotted["text"] == bracketed["text"] == "10"


async def test_the_flatten_button_expires(chat):
    feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5]))
    reply = await ask(chat.api, "/flatten")
    [[yes, _]] = reply["reply_markup"]["inline_keyboard"]
    chat.clock.ns += 31 * 10**9
    before = len(chat.api.sent)
    chat.api.press(CHAT, ADMIN, yes["callback_data"], reply["message_id"])
    [done] = await chat.api.wait_for(lambda: [m for m in chat.api.sent[before:] if m["method"] == "editMessageText"])
    assert done["text"] == "That confirmation expired; send /flatten again."
    assert len(chat.engine.positions()) == 1


async def test_resume_from_halted_asks_for_confirmation(chat):
    chat.engine.halt("test")
    reply = await ask(chat.api, "/resume")
    assert reply["text"].startswith("Resume trading from HALTED?") and chat.engine.state == State.HALTED


async def test_alerts_survive_telegram_failing_while_the_engine_trades(tmp_path):
    async with running_bot(tmp_path, timeout=1.0) as chat:  # the hang below outlasts the client's timeout
        chat.api.fail_next(("502", 0), ("429", 1), ("hang", 2.5), ("502", 0))
        started = time.perf_counter()
        feed(chat.engine, chat.clock, seconds("10:00:00", [100.0, 99.0, 101.0, 101.5, 110.0]))
        trading_took = time.perf_counter() - started
        chat.bus.publish(Event(ALERT, chat.clock(), {"text": "feed stalled"}, critical=True))
        assert chat.engine.trades()[0]["exit_reason"] == "target" and trading_took < 1.0

        def delivered():
            texts = [m["text"] for m in chat.api.to_chat(CHAT)
                     if "feed stalled" in m["text"] or "trade closed" in m["text"]]
            return texts if len(texts) == 2 else None

        assert await chat.api.wait_for(delivered, timeout=40)


def test_long_replies_are_split_at_line_breaks_within_telegrams_limit():
    text = "\n".join(f"line {k:05d} " + "x" * 60 for k in range(200))
    parts = split(text)
    assert all(len(p) <= 4096 for p in parts) and "\n".join(parts) == text


async def test_the_process_stops_on_sigterm_within_ten_seconds_and_says_so(tmp_path):
    api = FakeBotAPI(TOKEN)
    base = await api.start()
    write_config(tmp_path / "otrade.json")
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": base, "PORT": "0",
           "OTRADE_DATA_DIR": str(tmp_path / "data"), "OTRADE_CONFIG": str(tmp_path / "otrade.json"),
           "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "run", "--clock", "2026-11-23T10:00:00+05:30", cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        reply = await ask(api, "/status")
        assert "Engine: RUNNING" in reply["text"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
        await api.stop()
    assert proc.returncode == 0 and took < 10
    assert any("OTrade stopping" in m["text"] for m in api.to_chat(CHAT))
    assert TOKEN not in stderr.decode()
