"""The monitoring page (``/web``): a read-only view of the running process in a browser, updated by
server-sent events, opened by a signed, expiring link that ``/web`` in the chat hands out.

May import: what ``engine.runtime`` may; never ``engine.runtime.app`` (which mounts it).
"""

from datetime import date, datetime
from pathlib import Path
from typing import Any

from config import Server
from engine.core.layout import IST
from engine.runtime.monitor.auth import Access
from engine.runtime.monitor.routes import COOKIE, page_app
from engine.runtime.monitor.state import Monitor

PREFIX = "/web"


class Page:
    """One process's page: its model (``monitor``, whose ``run`` is a task of the process), who may
    see it (``access``) and its routes (``app``, mounted at ``PREFIX``)."""

    def __init__(self, monitor: Monitor, access: Access, url: str | None = None) -> None:
        self.monitor = monitor
        self.access = access
        self.url = url  # where a browser reaches this server; set by ``listening`` when the config names none
        self.app = page_app(monitor, access)

    def listening(self, port: int) -> None:
        """The server is up on ``port``: without ``server.web_url``, links name this machine's loopback,
        which an SSH tunnel's other end names too."""
        if self.url is None:
            self.url = f"http://127.0.0.1:{port}"

    def link(self) -> tuple[str, datetime]:
        """A new link to the page and when it expires (IST)."""
        token, expiry = self.access.link()
        return f"{self.url}{PREFIX}/login?token={token}", datetime.fromtimestamp(expiry, IST)


def page_for(rt: Any, server: Server) -> Page:
    """The page of a ``Runtime`` (duck-typed: ``engine.runtime.app`` imports this module)."""

    def recording(day: date) -> Path | None:
        from engine.data.store import MARKET, REHEARSAL, SYNTHETIC, recorded, tick_file

        rec = rt.recorder
        if rec is None:
            return None
        kind = REHEARSAL if rec.rehearsal else SYNTHETIC if rec.synthetic else MARKET
        return tick_file(rt.data_dir, day, kind) if recorded(rt.data_dir, day, kind) else None

    monitor = Monitor(rt.engine, rt.bus, rt.clock.now_ns, rt.health_report, rt.engine.journal, recording)
    return Page(monitor, Access.from_environment(server.web_link_hours * 3600), server.web_url)


__all__ = ["COOKIE", "PREFIX", "Access", "Monitor", "Page", "page_for"]
