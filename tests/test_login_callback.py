"""One-tap Kite login: the process's own web server takes Kite's redirect, for logins /login started."""

import argparse
import asyncio
import hashlib
import html
import logging
import stat
from datetime import datetime
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from bot.commands import CONSOLE, Commands, Services
from config import ConfigError, ConfigManager, validate
from engine.brokers.kite.live import TOKEN_FILE, Credentials, KiteLive
from engine.brokers.paper import PaperBroker
from engine.engine import Engine, State
from engine.runtime.app import Runtime, _serve, _wire_kite
from engine.services.events import ALERT, EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.conftest import DEFAULT, make_config
from tests.kite_server import API_KEY, API_SECRET, FakeKite

PATH = "/kite/callback"
REQUEST_TOKEN = "rqtok-7Hq2xZ"
NOW_NS = int(datetime.fromisoformat("2026-11-23T10:00:00+05:30").timestamp() * 1e9)


class Clock:
    """The engine's clock, and a monotonic one for nonce lifetimes that tests move by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def now_ns(self) -> int:
        return NOW_NS

    def monotonic(self) -> float:
        return self.mono


class RecordingKite(FakeKite):
    """The fake Kite, keeping every /session/token form it was sent; refuses them all when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.session_forms: list[dict] = []
        self.refuse_sessions = False

    async def session_token(self, request):
        self.session_forms.append(dict(await request.post()))
        if self.refuse_sessions:
            return self.error(403, "TokenException", "Token is invalid or has expired.")
        return await super().session_token(request)


class Live:
    def __init__(self, rt: Runtime, kite: RecordingKite, clock: Clock, base: str, data_dir) -> None:
        self.rt, self.kite, self.clock, self.base, self.data_dir = rt, kite, clock, base, data_dir
        self.alerts = rt.bus.subscribe()

    async def get(self, **query: str) -> tuple[int, str]:
        """The status and the page's text as the browser shows it."""
        async with aiohttp.ClientSession() as session, session.get(self.base + PATH, params=query) as response:
            return response.status, html.unescape(await response.text())

    def redirect(self, url: str, **kite: str) -> dict[str, str]:
        """What Kite sends the browser to after a login from ``url``: its own fields plus redirect_params."""
        extra = {k: v[0] for k, v in parse_qs(parse_qs(urlparse(url).query)["redirect_params"][0]).items()}
        return {"action": "login", "type": "login", "status": "success", "request_token": REQUEST_TOKEN,
                **extra, **kite}

    def alert_texts(self) -> list[tuple[bool, str]]:
        return [(e.critical, e.data["text"]) for e in iter(self.alerts.get_nowait, None) if e.kind == ALERT]


def runtime(tmp_path, engine: Engine, bus: EventBus, clock: Clock) -> Runtime:
    manager = ConfigManager(tmp_path / "c.json", tmp_path, default_catalog())
    return Runtime(argparse.Namespace(), manager, engine, bus, clock,
                   tmp_path / "data", LogBuffer())


@pytest.fixture
async def live(tmp_path, monkeypatch):
    """A live Runtime wired to the fake Kite, its session expired, the web server on 127.0.0.1."""
    kite = RecordingKite()
    await kite.start()
    monkeypatch.setenv("KITE_API_BASE", kite.base)
    monkeypatch.setenv("PORT", "0")
    clock, bus = Clock(), EventBus()
    cfg = make_config(server={"host": "127.0.0.1", "login_callback": PATH})
    journal = Journal(tmp_path, clock.now_ns)
    kite_live = KiteLive(Credentials(API_KEY, API_SECRET, kite.access_token), tmp_path / "data", journal,
                         clock.now_ns, ["NSE:INFY"], {"NSE:INFY": 0.05}, 10)
    engine = Engine(cfg, kite_live.broker, bus, journal, clock.now_ns)
    engine.start_session()
    engine.token_expired("Token is invalid or has expired.")
    rt = runtime(tmp_path, engine, bus, clock)
    _wire_kite(rt, kite_live)
    runner = await _serve(rt, cfg.server, kite_live, now=clock.monotonic)
    host, port = runner.addresses[0][:2]
    yield Live(rt, kite, clock, f"http://{host}:{port}", tmp_path / "data")
    await runner.cleanup()
    await kite_live.rest.close()
    await kite.stop()


async def test_a_valid_callback_exchanges_the_token_with_kites_checksum(live):
    status, _ = await live.get(**live.redirect(live.rt.login()))
    assert status == 200
    assert live.kite.session_forms == [{"api_key": API_KEY, "request_token": REQUEST_TOKEN, "checksum": hashlib.sha256(
        f"{API_KEY}{REQUEST_TOKEN}{API_SECRET}".encode()).hexdigest()}]


async def test_a_valid_callback_saves_the_new_token_owner_only(live):
    await live.get(**live.redirect(live.rt.login()))
    saved = live.data_dir / TOKEN_FILE
    assert saved.read_text() == live.kite.access_token == f"tok-{REQUEST_TOKEN}"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


async def test_a_valid_callback_resumes_entries_the_expiry_paused(live):
    assert (live.rt.engine.state, live.rt.engine.token_ok) == (State.PAUSED, False)
    await live.get(**live.redirect(live.rt.login()))
    assert (live.rt.engine.state, live.rt.engine.token_ok) == (State.RUNNING, True)


async def test_the_success_page_names_the_user_and_shows_no_token(live):
    status, page = await live.get(**live.redirect(live.rt.login()))
    assert status == 200
    assert "Kite session renewed for AB1234; OTrade resumed entries paused by the expiry" in page
    assert REQUEST_TOKEN not in page and live.kite.access_token not in page


async def test_a_valid_callback_alerts_like_token_does(live):
    await live.get(**live.redirect(live.rt.login()))
    assert live.alert_texts()[-1] == (False, "Kite session renewed for AB1234; OTrade resumed entries paused by "
                                             "the expiry")


async def test_the_token_command_renews_through_the_same_path(live):
    commands = Commands(Services(live.rt.engine, live.rt.config, live.data_dir, live.clock.now_ns,
                                 token=live.rt.token))
    assert commands.handle_text(CONSOLE, f"/token https://example.test/?request_token={REQUEST_TOKEN}").text == (
        "Exchanging the token with Kite…")
    for _ in range(100):
        if live.rt.engine.token_ok:
            break
        await asyncio.sleep(0.02)
    assert live.alert_texts()[-1] == (False, "Kite session renewed for AB1234; OTrade resumed entries paused by "
                                             "the expiry")
    assert live.rt.engine.state == State.RUNNING


async def test_a_failed_exchange_shows_kites_reason_and_raises_a_critical_alert(live):
    live.kite.refuse_sessions = True
    status, page = await live.get(**live.redirect(live.rt.login()))
    assert status == 502 and "Kite login failed: Token is invalid or has expired." in page
    assert live.alert_texts()[-1] == (True, "Kite login failed: Token is invalid or has expired.")
    assert live.rt.engine.state == State.PAUSED


async def test_secrets_stay_out_of_pages_alerts_and_logs(live, caplog):
    caplog.set_level(logging.DEBUG)
    _, page = await live.get(**live.redirect(live.rt.login()))
    shown = page + caplog.text + repr(live.alert_texts())
    for secret in (API_SECRET, REQUEST_TOKEN, live.kite.access_token):
        assert secret not in shown


async def test_a_reused_nonce_is_refused_and_nothing_is_exchanged(live):
    url = live.rt.login()
    await live.get(**live.redirect(url))
    status, page = await live.get(**live.redirect(url, request_token="rqtok-second"))
    assert status == 403 and "unknown or was already used" in page
    assert len(live.kite.session_forms) == 1 and live.kite.access_token == f"tok-{REQUEST_TOKEN}"


async def test_an_unknown_nonce_is_refused(live):
    status, page = await live.get(**live.redirect(live.rt.login(), otrade="made-up-nonce"))
    assert status == 403 and "unknown or was already used" in page and live.kite.session_forms == []


async def test_a_callback_without_a_nonce_is_refused(live):
    status, page = await live.get(action="login", status="success", request_token=REQUEST_TOKEN)
    assert status == 403 and "did not come from an OTrade /login link" in page and live.kite.session_forms == []


async def test_an_expired_nonce_is_refused(live):
    url = live.rt.login()
    live.clock.mono += 601
    status, page = await live.get(**live.redirect(url))
    assert status == 403 and "this login link expired (links last 10 minutes)" in page
    assert live.kite.session_forms == [] and live.rt.engine.state == State.PAUSED


async def test_a_status_other_than_success_is_refused_with_that_status(live):
    status, page = await live.get(**live.redirect(live.rt.login(), status="cancelled"))
    assert status == 400 and "Kite reports the login as 'cancelled', not 'success'" in page
    assert live.kite.session_forms == [] and live.rt.engine.state == State.PAUSED


async def test_a_callback_without_a_request_token_is_refused(live):
    query = live.redirect(live.rt.login())
    del query["request_token"]
    status, page = await live.get(**query)
    assert status == 400 and "Kite's redirect carries no request_token" in page
    assert live.kite.session_forms == [] and live.rt.engine.state == State.PAUSED


async def test_the_page_escapes_what_the_request_carries(live):
    async with aiohttp.ClientSession() as session, session.get(
            live.base + PATH, params=live.redirect(live.rt.login(), status="<b>x</b>")) as response:
        page = await response.text()
    assert response.status == 400 and "<b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


async def test_a_head_request_does_not_spend_the_nonce(live):
    query = live.redirect(live.rt.login())
    async with aiohttp.ClientSession() as session, session.head(live.base + PATH, params=query) as response:
        assert response.status == 405
    status, _ = await live.get(**query)
    assert status == 200


async def test_login_says_tapping_the_link_is_enough(live):
    commands = Commands(Services(live.rt.engine, live.rt.config, live.data_dir, live.clock.now_ns,
                                 login=live.rt.login, login_tap=live.rt.login_tap))
    text = commands.handle_text(CONSOLE, "/login").text
    assert "redirect_params=otrade%3D" in text and "Tapping through is enough" in text and "/token" not in text


async def test_paper_mode_serves_no_callback(tmp_path, monkeypatch):
    monkeypatch.setenv("PORT", "0")
    clock, bus = Clock(), EventBus()
    cfg = make_config(server={"host": "127.0.0.1", "login_callback": PATH})
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, clock.now_ns), bus, Journal(tmp_path, clock.now_ns),
                    clock.now_ns)
    rt = runtime(tmp_path, engine, bus, clock)
    runner = await _serve(rt, cfg.server, None)
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://{host}:{port}{PATH}", params={"status": "success", "request_token": "x"}) as response:
            assert response.status == 404
    finally:
        await runner.cleanup()
    assert rt.login is None and not rt.login_tap


def test_login_callback_is_off_by_default():
    assert validate(DEFAULT, default_catalog()).server.login_callback is None


@pytest.mark.parametrize("path", ["/kite/callback", "/cb", "/otrade/kite-login_1.v2"])
def test_login_callback_takes_an_absolute_path(path):
    assert make_config(server={"login_callback": path}).server.login_callback == path


@pytest.mark.parametrize("path", ["kite/callback", "/kite/callback/", "/", "/kite/../healthz", "/kite?x=1",
                                  "https://example.com/kite", "/kite callback"])
def test_login_callback_must_be_an_absolute_path(path):
    with pytest.raises(ConfigError) as info:
        make_config(server={"login_callback": path})
    assert info.value.errors == [f"server.login_callback: {path!r} must be an absolute path of letters, digits "
                                 "and -_.~ segments, e.g. '/kite/callback'"]


def test_login_callback_must_not_be_the_health_path():
    with pytest.raises(ConfigError) as info:
        make_config(server={"login_callback": "/healthz"})
    assert info.value.errors == ["server.login_callback: '/healthz' must not be the health check's path"]
