"""The page's routes, mounted under ``/web`` on the process's server: ``login`` (a link from the chat
opens a session), the page and its files, ``api/state`` and ``api/stream`` (server-sent events: the
state on connect, then what changed, on each event and once a second). Without a session every one
of them, and any other path under ``/web``, answers 401 and nothing else.
"""

import asyncio
import os
from importlib.resources import files

import orjson
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from engine.runtime.monitor.auth import KEY_VAR, Access
from engine.runtime.monitor.state import Monitor
from engine.services.logs import LOG_ONLY_VARS, MIN_SECRET, SECRET_VARS, redact

COOKIE = "otrade_web"
COALESCE_S = 0.05  # a burst of events (an entry, its fill, its bracket) goes out as one update
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain",
         ".LICENSE": "text/plain"}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
REFUSED = "401: Unauthorized. Send /web in the chat for a link to this page."
EXPIRED = "401: this link is not valid or has expired. Send /web in the chat for a new one."
# The session cookie is set on a page of our own that then moves on: a SameSite=Strict cookie set
# while following a link from elsewhere (Telegram) would not go with a redirect of that same step.
OPENED = ("<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
          "content=\"width=device-width\"><meta http-equiv=\"refresh\" content=\"0;url=./\"><link rel=\"icon\" "
          "href=\"data:,\"><title>OTrade</title>"
          "</head><body><p><a href=\"./\">Open the OTrade monitor</a></p></body></html>")


def _static() -> dict[str, tuple[bytes, str]]:
    folder = files("engine.runtime.monitor") / "static"
    out = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in TYPES:
            out[item.name] = (item.read_bytes(), TYPES[suffix])
    return out


class Scrub:
    """Every answer leaves through here: the secrets the process knows (the environment's, those
    learned at run time, the page's key) never reach a page."""

    def __init__(self) -> None:
        names = (*SECRET_VARS, *LOG_ONLY_VARS, KEY_VAR)
        self.fixed = [v for v in (os.environ.get(n, "") for n in names) if len(v) >= MIN_SECRET]

    def __call__(self, data: bytes) -> bytes:
        text = redact(data.decode())
        for secret in self.fixed:
            text = text.replace(secret, "***")
        return text.encode()


def _json(data: object) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def page_app(monitor: Monitor, access: Access) -> web.Application:
    static = _static()
    scrub = Scrub()

    @web.middleware
    async def guard(request: web.Request, handler):
        route = request.match_info.route
        if route.name != "login" and access.session(request.cookies.get(COOKIE, "")) is None:
            return web.Response(text=REFUSED, status=401)
        return await handler(request)

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(HEADERS)

    async def login(request: web.Request) -> web.Response:
        opened = access.open(request.query.get("token", ""))
        if opened is None:
            return web.Response(text=EXPIRED, status=401)
        token, expiry = opened
        response = web.Response(text=OPENED, content_type="text/html")
        https = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        response.set_cookie(COOKIE, token, max_age=max(1, int(expiry - access.now())), path="/", httponly=True,
                            samesite="Strict", secure=https)
        return response

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=static["index.html"][0], content_type="text/html")

    async def asset(request: web.Request) -> web.Response:
        found = static.get(request.match_info["name"])
        if found is None or found[1] == "text/html":
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type=found[1])

    async def state(request: web.Request) -> web.Response:
        body = _json({**monitor.view(), "series": monitor.series({})})
        return web.Response(body=scrub(body), content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        expiry = access.session(request.cookies.get(COOKIE, "")) or 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        sent: dict[str, bytes] = {}  # each part of the view as last sent: only changed ones go again
        cursors: dict[str, tuple[int, int]] = {}
        try:
            while not monitor.closing and access.now() < expiry:
                parts = {k: _json(v) for k, v in monitor.view().items()}
                changed = [b'"%s":%s' % (k.encode(), v) for k, v in parts.items() if sent.get(k) != v]
                changed.append(b'"series":' + _json(monitor.series(cursors)))
                await response.write(b"data: " + scrub(b"{" + b",".join(changed) + b"}") + b"\n\n")
                sent = parts
                await monitor.changed(1.0)
                await asyncio.sleep(COALESCE_S)
        except (ConnectionResetError, ClientConnectionResetError):
            pass  # the page was closed
        return response

    async def stop_streams(app: web.Application) -> None:
        monitor.close()

    app = web.Application(middlewares=[guard])
    app.on_response_prepare.append(headers)
    app.on_shutdown.append(stop_streams)
    app.router.add_get("/login", login, name="login", allow_head=False)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/stream", stream)
    return app
