"""Secrets the process learns at run time are redacted from the moment it learns them, in every log
line and every message either transport sends."""

import asyncio
import io
import logging
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from bot.commands import CONSOLE, Commands, Reply, Services
from bot.console import ConsoleTransport
from bot.notifier import Message, Notifier
from bot.telegram import TelegramTransport
from config import ConfigManager
from engine.brokers.kite.live import TOKEN_FILE, Credentials, KiteLive, credentials
from engine.brokers.kite.login import LoginCallback, LoginLinks, Renewal
from engine.brokers.paper import PaperBroker
from engine.engine import Engine
from engine.services import logs
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog
from tests.botapi import FakeBotAPI
from tests.conftest import ns
from tests.kite_server import API_KEY, API_SECRET, FakeKite
from tests.test_telegram import CHAT, TOKEN, ask, write_config

REQUEST_TOKEN = "rq-Zx81LmQ4vT"


def clock() -> int:
    return ns("10:00:00")


@pytest.fixture
def log_setup():
    """The process's own logging (stderr and the /logs buffer), undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield logs.setup
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def live_chat(tmp_path, monkeypatch, log_setup):
    """Kite's token exchange against the fake Kite, /token from Telegram, alerts to Telegram and the console."""
    buffer = log_setup()
    kite = FakeKite()
    await kite.start()
    monkeypatch.setenv("KITE_API_BASE", kite.base)
    api = FakeBotAPI(TOKEN)
    base = await api.start()
    write_config(tmp_path / "otrade.json")
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    bus, journal = EventBus(), Journal(tmp_path / "data", clock)
    kite_live = KiteLive(Credentials(API_KEY, API_SECRET, kite.access_token), tmp_path / "data", journal, clock,
                         ["NSE:INFY"], {"NSE:INFY": 0.05}, 10)
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, clock), bus, journal, clock)

    async def renew(text: str) -> None:
        user = await kite_live.exchange(text)
        engine.alert(f"Kite session renewed for {user}", critical=False)

    commands = Commands(Services(engine, manager, tmp_path / "data", clock, buffer, token=renew))
    telegram = TelegramTransport(TOKEN, base, commands, lambda: manager.config.bot.allowed_chats,
                                 timeout=10.0, poll_timeout=1.0)  # generous: a loaded machine answers late
    console = ConsoleTransport(commands, io.StringIO())
    await telegram.start()
    notifier = Notifier(bus.subscribe(), lambda: manager.config.bot, [telegram, console])
    notifier_task = asyncio.create_task(notifier.run())
    try:
        yield api, engine, kite, buffer, console, tmp_path / "data"
    finally:
        notifier_task.cancel()
        await telegram.stop()
        await kite_live.rest.close()
        await api.stop()
        await kite.stop()


async def test_a_token_learned_by_token_is_absent_from_every_log_line_and_message(live_chat, capsys):
    api, engine, kite, buffer, console, data_dir = live_chat
    await ask(api, f"/token https://127.0.0.1/cb?action=login&status=success&request_token={REQUEST_TOKEN}")
    await api.wait_for(lambda: [m for m in api.to_chat(CHAT) if "Kite session renewed for AB1234" in m["text"]])
    access = kite.access_token
    # Whatever mentions them from now on: a careless log line, an alert, /logs on either transport.
    logging.getLogger("engine.somewhere").warning("Kite answered %s for %s", access, REQUEST_TOKEN)
    engine.alert(f"debug: session {access} from {REQUEST_TOKEN}")
    await api.wait_for(lambda: [m for m in api.to_chat(CHAT) if "debug: session" in m["text"]])
    assert "Kite answered *** for ***" in (await ask(api, "/logs"))["text"]
    console.handle_line("/logs")
    engine.journal.flush()
    said = [m["text"] for m in api.sent] + list(buffer.lines) + [console.out.getvalue(), capsys.readouterr().err]
    said += [f.read_text() for f in (data_dir / "journal").glob("*.jsonl")]
    assert access == f"tok-{REQUEST_TOKEN}" and "debug: session *** from ***" in "".join(said)
    assert not [text for text in said if access in text or REQUEST_TOKEN in text]


async def test_a_request_token_reaching_the_login_callback_is_a_secret_even_when_refused():
    links = LoginLinks(lambda: "https://kite.example/connect/login?v=3&api_key=k")

    async def renew(token: str) -> Renewal:
        raise AssertionError("a refused callback must not be exchanged")

    status, _ = await LoginCallback("/cb", links, renew).answer(
        {"request_token": "rq-refused-callback-1", "otrade": "not-a-nonce", "status": "success"})
    assert status == 403 and logs.redact("Kite said rq-refused-callback-1") == "Kite said ***"


async def test_the_login_callbacks_request_token_is_redacted_before_the_exchange():
    links = LoginLinks(lambda: "https://kite.example/connect/login?v=3&api_key=k")
    seen = []

    async def renew(token: str) -> Renewal:
        seen.append(logs.redact(f"exchanging {token}"))
        return Renewal(True, "ok")

    nonce = parse_qs(parse_qs(urlparse(links.issue()).query)["redirect_params"][0])["otrade"][0]
    await LoginCallback("/cb", links, renew).answer(
        {"request_token": "rq-callback-exchange-2", "otrade": nonce, "status": "success"})
    assert seen == ["exchanging ***"]


def test_an_access_token_saved_by_token_is_a_secret_once_read_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("KITE_API_KEY", API_KEY)
    monkeypatch.setenv("KITE_API_SECRET", API_SECRET)
    monkeypatch.delenv("KITE_ACCESS_TOKEN", raising=False)
    (tmp_path / TOKEN_FILE).write_text("saved-access-token-3")
    creds, _ = credentials(tmp_path)
    assert creds.access_token == "saved-access-token-3"
    assert logs.redact("Authorization: token saved-access-token-3") == "Authorization: token ***"


def test_the_console_redacts_replies_and_alerts():
    logs.add_secret("console-secret-4")
    console = ConsoleTransport(None, io.StringIO())  # only printing here
    console.put(Message("alert about console-secret-4", critical=True))
    console.show(Reply("reply about console-secret-4"))
    assert console.out.getvalue() == "!! alert about ***\nreply about ***\n"


async def test_the_journal_records_token_without_the_request_token(tmp_path):
    write_config(tmp_path / "otrade.json")
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    journal = Journal(tmp_path / "data", clock)
    engine = Engine(manager.load(), PaperBroker({"NSE:INFY": 0.05}, clock), EventBus(), journal, clock)

    async def renew(text: str) -> None:
        return None

    commands = Commands(Services(engine, manager, tmp_path / "data", clock, token=renew))
    commands.handle_text(CONSOLE, "/token https://127.0.0.1/cb?request_token=rq-journal-token-5")
    journal.flush()
    [record] = [orjson.loads(line) for f in (tmp_path / "data" / "journal").glob("*.jsonl")
                for line in f.read_bytes().splitlines() if b'"command"' in line]
    assert (record["command"], record["args"]) == ("token", ["***"])


def test_the_api_key_stays_out_of_logs_but_in_the_login_link(monkeypatch, log_setup, capsys):
    monkeypatch.setenv("KITE_API_KEY", "kite-api-key-6")
    log_setup()
    logging.getLogger("engine.somewhere").info("login url has api_key=kite-api-key-6")
    console = ConsoleTransport(None, io.StringIO())
    console.show(Reply("Log in to Kite: https://kite.zerodha.com/connect/login?v=3&api_key=kite-api-key-6"))
    assert "kite-api-key-6" not in capsys.readouterr().err
    assert "api_key=kite-api-key-6" in console.out.getvalue()

