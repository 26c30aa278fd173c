"""The small HTTP side of the process: GET /healthz for the host's health checks."""

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web


def make_app(health: Callable[[], dict[str, Any]]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        body = health()
        status = 200 if body.get("ok", True) else 503
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
