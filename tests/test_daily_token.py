"""The daily chore, end to end: Kite's token dies mid-session, the trader is told on Telegram, taps the
/login link, Kite redirects to OTrade, trading resumes. The real process, the real python-telegram-bot
against the local Bot API server, the local Kite server."""

import asyncio
import socket
from urllib.parse import parse_qs, urlparse

import aiohttp
import orjson
import pytest

from tests.botapi import FakeBotAPI
from tests.kite_engine import wait
from tests.live_process import live_process, stopped

TOKEN = "123456:TEST-daily-token-bot"
CHAT, ADMIN = 1001, 77


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_chat_and_callback(tmp_path) -> None:
    data = orjson.loads((tmp_path / "otrade.json").read_bytes())
    data["bot"].update({"allowed_chats": [CHAT], "admins": [ADMIN], "coalesce_ms": 50})
    data["server"].update({"host": "127.0.0.1", "login_callback": "/kite/callback"})
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))


async def ask(api: FakeBotAPI, text: str) -> str:
    before = len(api.to_chat(CHAT))
    api.user_says(CHAT, ADMIN, text)
    replies = await api.wait_for(lambda: [m for m in api.to_chat(CHAT)[before:] if text != "/status"
                                          or "Engine:" in m["text"]], timeout=60)
    return replies[0]["text"]


async def status_until(api: FakeBotAPI, text: str, tries: int = 40) -> None:
    """/status every half second until it says ``text`` (the scheduler opens the session shortly after start)."""
    for _ in range(tries):
        if text in await ask(api, "/status"):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"/status never said {text!r}")


@pytest.fixture
async def api():
    api = FakeBotAPI(TOKEN)
    await api.start()
    yield api
    await api.stop()


async def test_an_expired_token_pauses_alerts_and_one_tap_on_the_login_link_resumes(tmp_path, kite_day, api):
    server = kite_day
    with_chat_and_callback(tmp_path)
    port = free_port()
    async with live_process(tmp_path, server, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE=api.base,
                            PORT=str(port)) as proc:
        await wait(lambda: server.sockets, 60)
        await status_until(api, "Engine: RUNNING")

        server.access_token = "rotated-at-6am"
        await server.drop()  # the ticker reconnects and Kite refuses the dead token with HTTP 403
        await api.wait_for(lambda: [m for m in api.to_chat(CHAT) if "Broker session expired" in m["text"]], 60)
        assert "PAUSED" in await ask(api, "/status")

        link = urlparse((await ask(api, "/login")).split()[4])
        nonce = parse_qs(parse_qs(link.query)["redirect_params"][0])["otrade"][0]
        redirect = {"request_token": "req-day-2", "action": "login", "status": "success", "otrade": nonce}
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/kite/callback", params=redirect) as r:  # the phone, sent back
            page = await r.text()
        assert r.status == 200 and "Kite session renewed for AB1234" in page and "tok-req-day-2" not in page

        await wait(lambda: server.sockets and server.access_token == "tok-req-day-2", 20)
        await status_until(api, "Engine: RUNNING")
        assert (tmp_path / "data" / "kite_access_token").read_text() == "tok-req-day-2"
        err = await stopped(proc)
    assert "tok-req-day-2" not in err and TOKEN not in err
