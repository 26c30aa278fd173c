"""The monitoring page's server side (issue 22 §2): who may see it, what it answers, the event stream.
No browser here: tests/test_monitor_page.py drives Chromium against the same server."""

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest

from bot.auth import Caller
from bot.commands import Commands, Services
from config import ConfigError, validate
from engine.runtime.monitor import COOKIE, Access
from engine.strategies import default_catalog
from tests.conftest import DEFAULT, ns
from tests.monitor_harness import GROUP, MEMBER, OWNER, open_desk
from tests.waiting import until

KEY = "k" * 40  # OTRADE_WEB_KEY: links signed with it can be made here as the process would
PAGES = ("/web/", "/web/api/state", "/web/api/stream", "/web/static/app.js", "/web/static/uPlot.iife.min.js",
         "/web/static/app.css", "/web/no-such-page", "/web/login")


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: keeps 127.0.0.1's cookies


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def open_session(http: aiohttp.ClientSession, link: str) -> aiohttp.ClientResponse:
    async with http.get(link, allow_redirects=False) as response:
        await response.read()
        return response


async def messages(response: aiohttp.ClientResponse):
    """The stream's events, parsed, as they arrive."""
    async for line in response.content:
        if line.startswith(b"data: "):
            yield orjson.loads(line[6:])


async def test_without_a_session_every_page_and_api_answers_401_and_reveals_nothing(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        desk.tick("10:00:00", 1500.0)
        for path in PAGES:
            async with http.get(desk.base + path) as response:
                body = await response.text()
                assert response.status == 401, path
                assert "INFY" not in body and "1500" not in body and "Set-Cookie" not in response.headers, path
        async with http.get(desk.base + "/web/", cookies={COOKIE: "s.9999999999.x.forged"}) as response:
            assert response.status == 401


async def test_a_link_opens_the_page_with_an_httponly_samesite_strict_cookie(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        desk.tick("10:00:00", 1500.0)
        response = await open_session(http, desk.link())
        cookie = response.headers["Set-Cookie"]
        assert response.status == 200 and 'http-equiv="refresh" content="0;url=./"' in await response.text()
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert 4 * 3600 - 60 <= int(cookie.split("Max-Age=")[1].split(";")[0]) <= 4 * 3600  # server.web_link_hours
        async with http.get(desk.base + "/web/api/state") as state:
            data = await state.json()
        assert state.status == 200 and data["engine"]["state"] == "RUNNING"
        assert data["instruments"][0]["symbol"] == "NSE:INFY" and data["instruments"][0]["ltp"] == 1500.0
        assert state.headers["Cache-Control"] == "no-store" and "default-src 'none'" in state.headers[
            "Content-Security-Policy"]


async def test_a_tampered_link_is_refused_and_sets_no_cookie(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        link = desk.link()
        kind, expiry, nonce, mac = token_of(link).split(".")
        forged = [f"{kind}.{int(expiry) + 86400}.{nonce}.{mac}",  # a longer life
                  f"{kind}.{expiry}.{nonce}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # another signature
                  f"s.{expiry}.{nonce}.{mac}",  # passed off as a session
                  "", "garbage"]
        for token in forged:
            async with http.get(f"{desk.base}/web/login", params={"token": token}, allow_redirects=False) as response:
                assert response.status == 401, token
                assert "expired" in await response.text() and "Set-Cookie" not in response.headers
        assert (await open_session(http, link)).status == 200  # the link itself still works


async def test_an_expired_link_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OTRADE_WEB_KEY", KEY)
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        made_5_hours_ago = Access(KEY.encode(), 4 * 3600, now=lambda: time.time() - 5 * 3600)
        token, _ = made_5_hours_ago.link()
        async with http.get(f"{desk.base}/web/login", params={"token": token}) as response:
            assert response.status == 401 and "Set-Cookie" not in response.headers
        fresh, _ = Access(KEY.encode(), 60).link()  # the same key, within its time: accepted
        async with http.get(f"{desk.base}/web/login", params={"token": fresh}, allow_redirects=False) as response:
            assert response.status == 200


async def test_a_session_ends_when_its_link_expires(tmp_path, monkeypatch):
    monkeypatch.setenv("OTRADE_WEB_KEY", KEY)
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        then = Access(KEY.encode(), 3600, now=lambda: time.time() - 2 * 3600)
        session, _ = then.open(then.link()[0])
        for path in ("/web/", "/web/api/state", "/web/api/stream"):
            async with http.get(desk.base + path, cookies={COOKIE: session}) as response:
                assert response.status == 401, path


async def test_the_stream_sends_a_paper_fill_within_a_second(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        await open_session(http, desk.link())
        async with http.get(desk.base + "/web/api/stream") as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            stream = messages(response)
            first = await anext(stream)
            assert first["orders"] == [] and first["series"]["prices"]["NSE:INFY"]["reset"]
            for at, price in (("10:00:00", 100.0), ("10:00:01", 99.0), ("10:00:02", 101.0)):
                desk.tick(at, price)
            started = time.monotonic()
            desk.tick("10:00:03", 101.5)  # the entry fills on this tick
            filled = None
            async with asyncio.timeout(30):
                while filled is None:
                    update = await anext(stream)
                    filled = next((o for o in update.get("orders", []) if o["status"] == "COMPLETE"), None)
            took = time.monotonic() - started
        assert filled["purpose"] == "entry" and filled["average_price"] == 101.5
        assert took < 1.0, f"the fill reached the stream after {took:.2f} s"


async def test_the_stream_sends_only_what_changed_and_the_new_chart_points(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        await open_session(http, desk.link())
        desk.tick("10:00:00", 1500.0)
        desk.monitor.sample()
        async with http.get(desk.base + "/web/api/stream") as response:
            stream = messages(response)
            first = await anext(stream)
            assert first["series"]["prices"]["NSE:INFY"] == {"t": [desk.clock.ns / 1e9], "v": [1500.0],
                                                             "reset": True}
            desk.tick("10:00:01", 1499.0)  # falling: no signal, no order
            desk.monitor.sample()
            async with asyncio.timeout(30):
                update = await anext(stream)
                while not update["series"]["prices"]["NSE:INFY"]["v"]:
                    update = await anext(stream)
        assert update["series"]["prices"]["NSE:INFY"] == {"t": [desk.clock.ns / 1e9], "v": [1499.0], "reset": False}
        assert "orders" not in update and "trades" not in update and "report" not in update  # unchanged: not sent


async def test_a_restarted_process_charts_the_day_it_recorded_before(tmp_path, monkeypatch):
    earlier = (("09:30:00", 1490.0), ("09:30:00.5", 1491.0), ("09:30:01", 1492.0))  # a point a second: its last
    async with open_desk(tmp_path, monkeypatch, recorded=earlier) as desk, client() as http:
        await until(lambda: desk.monitor.prices["NSE:INFY"].count)
        await open_session(http, desk.link())
        async with http.get(desk.base + "/web/api/state") as response:
            prices = (await response.json())["series"]["prices"]["NSE:INFY"]
    assert prices == {"t": [ns("09:30:00.5") / 1e9, ns("09:30:01") / 1e9], "v": [1491.0, 1492.0], "reset": True}


async def test_a_replay_is_charted_on_its_ticks_own_day(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        past = ns("11:00:00", "2026-11-20")  # the replayed file's day; the process's clock is days later
        desk.engine.on_tick(0, past, 1400.0)
        desk.monitor.sample()
        await open_session(http, desk.link())
        async with http.get(desk.base + "/web/api/state") as response:
            prices = (await response.json())["series"]["prices"]["NSE:INFY"]
    assert prices["t"] == [past / 1e9] and prices["v"] == [1400.0]


async def test_no_secret_appears_in_the_page_or_any_answer(tmp_path, monkeypatch):
    secrets = {"TELEGRAM_BOT_TOKEN": "123456:AAF-telegram-SECRET", "KITE_API_KEY": "kiteapikeySECRET1",
               "KITE_API_SECRET": "kite-api-SECRET-2", "KITE_ACCESS_TOKEN": "kite-access-SECRET-3",
               "OTRADE_WEB_KEY": KEY}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        desk.tick("10:00:00", 1500.0)
        desk.engine.alert("Kite said: " + " ".join(secrets.values()))  # a careless message carrying them all
        await until(lambda: desk.monitor.alerts)
        link = desk.link()
        await open_session(http, link)
        bodies = []
        for path in ("/web/", "/web/api/state", "/web/static/app.js", "/web/static/charts.js",
                     "/web/static/format.js", "/web/static/app.css", "/web/static/uPlot.iife.min.js"):
            async with http.get(desk.base + path) as response:
                assert response.status == 200, path
                bodies.append(await response.text())
        async with http.get(desk.base + "/web/api/stream") as response:
            async with asyncio.timeout(30):
                bodies.append((await response.content.readline()).decode())
    state = orjson.loads(bodies[1])
    assert state["alerts"][0]["text"].startswith("Kite said: ***")  # the alert is there, its secrets are not
    for body in bodies:
        for value in (*secrets.values(), token_of(link)):
            assert value not in body


async def test_the_server_stops_at_once_with_a_page_open(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        await open_session(http, desk.link())
        async with http.get(desk.base + "/web/api/stream") as response:
            await response.content.readline()
            started = time.monotonic()
            await asyncio.wait_for(desk.runner.cleanup(), 30)
            assert time.monotonic() - started < 2.0  # within the process's 8 s shutdown budget, with room
            assert await asyncio.wait_for(response.content.read(), 30) is not None  # the stream has ended


async def test_the_page_task_stops_when_cancelled_as_an_event_arrives(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk:
        await until(lambda: desk.monitor.equity.count)  # running: sampled once, waiting for events
        desk.engine.alert("OTrade stopping")  # as at shutdown: the last alert, then every task cancelled
        desk.task.cancel()
        done, _ = await asyncio.wait({desk.task}, timeout=30)
        assert done, "the page's task went on after it was cancelled: the process would never stop"


def commands_for(desk, web=True) -> Commands:
    rt = desk.rt
    return Commands(Services(rt.engine, rt.config, rt.data_dir, rt.clock.now_ns, web=rt.web_link if web else None))


async def test_web_in_the_chat_gives_an_admin_a_working_link(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk, client() as http:
        reply = commands_for(desk).handle_text(Caller(OWNER, OWNER), "/web")
        link = next(word for word in reply.text.split() if word.startswith("http"))
        assert link.startswith(f"{desk.base}/web/login?token=") and desk.base.startswith("http://127.0.0.1:")
        assert "read-only" in reply.text and "SSH tunnel" in reply.text and "server.web_url" in reply.text
        assert (await open_session(http, link)).status == 200
        async with http.get(desk.base + "/web/") as page:
            assert page.status == 200 and "OTrade monitor" in await page.text()


async def test_web_is_for_admins_only(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk:
        commands = commands_for(desk)
        assert commands.handle_text(Caller(GROUP, MEMBER), "/web").text == "/web is for admins only."
        assert commands.handle_text(Caller(2002, 2002), "/web") is None  # a stranger gets no answer at all
        assert "token=" in commands.handle_text(Caller(GROUP, OWNER), "/web").text


async def test_web_says_when_there_is_no_page_and_takes_no_arguments(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk:
        off = commands_for(desk, web=False).handle_text(Caller(OWNER, OWNER), "/web")
        extra = commands_for(desk).handle_text(Caller(OWNER, OWNER), "/web now")
    assert off.text == "The monitoring page is off: the web server is not listening (see /logs)."
    assert extra.text == "/web: takes no arguments: send /web alone"


async def test_a_configured_web_url_names_the_links(tmp_path, monkeypatch):
    server = {"web_url": "https://otrade.example.ts.net/", "web_link_hours": 0.5}
    async with open_desk(tmp_path, monkeypatch, server=server) as desk:
        link, expiry = desk.rt.web_link()
        reply = commands_for(desk).handle_text(Caller(OWNER, OWNER), "/web")
    assert link.startswith("https://otrade.example.ts.net/web/login?token=")
    assert 29 * 60 <= expiry.timestamp() - time.time() <= 30 * 60
    assert "SSH tunnel" not in reply.text


async def test_the_server_listens_on_loopback_by_default(tmp_path, monkeypatch):
    async with open_desk(tmp_path, monkeypatch) as desk:
        assert desk.runner.addresses[0][0] == "127.0.0.1"


def with_server(**server):
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["server"].update(server)
    return validate(data, default_catalog())


@pytest.mark.parametrize("url", ["ftp://host", "javascript:alert(1)", "https://host/?a=b", "host:8080"])
def test_a_web_url_that_is_no_http_address_is_refused(url):
    with pytest.raises(ConfigError) as refused:
        with_server(web_url=url)
    assert "server.web_url" in str(refused.value) and "must be an http:// or https:// address" in str(refused.value)


def test_the_login_callback_may_not_take_the_page_path():
    with pytest.raises(ConfigError) as refused:
        with_server(login_callback="/web/login")
    assert "must not be under /web" in str(refused.value)


def test_a_link_lasts_hours_within_a_week():
    assert with_server().server.web_link_hours == 4.0
    with pytest.raises(ConfigError) as refused:
        with_server(web_link_hours=0)
    assert "server.web_link_hours" in str(refused.value)


def test_the_page_and_its_scripts_come_from_the_package():
    from importlib.resources import files

    static = files("engine.runtime.monitor") / "static"
    html = (static / "index.html").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "app.js", "charts.js", "format.js"):
        assert (static / name).is_file(), name
    assert "http" not in html.replace('http-equiv', "")  # no CDN: every script and style is the process's own
