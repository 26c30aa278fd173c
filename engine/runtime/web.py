"""The small HTTP side of the process: GET /healthz for the host's health checks, in live mode
when configured the path Kite's login redirect lands on, the monitoring page under /web, and
Prometheus' /metrics."""

import html
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from engine.brokers.kite.login import LoginCallback

PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
        "content=\"width=device-width\"><title>OTrade</title></head><body><p>{text}</p></body></html>")
# The address carries a request token: keep the page out of caches and its address out of referrers.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def make_app(health: Callable[[], dict[str, Any]], login: LoginCallback | None = None,
             page: web.Application | None = None,
             metrics: Callable[[web.Request], Awaitable[web.Response]] | None = None) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        body = health()
        status = 200 if body.get("ok", True) else 503
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    async def kite_login(request: web.Request) -> web.Response:
        status, text = await login.answer(request.query)
        return web.Response(text=PAGE.format(text=html.escape(text)), status=status, content_type="text/html",
                            headers=PRIVATE)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if login is not None:
        app.router.add_get(login.path, kite_login, allow_head=False)  # a HEAD must not spend a nonce
    if page is not None:  # the monitoring page (engine.runtime.monitor), under its own access rule
        app.add_subapp("/web", page)
    if metrics is not None:  # Prometheus' scrape (engine.runtime.metrics), under its own access rule
        app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
