"""Commands that read or sync files (/daily, /set, /undo) do it off the event loop: ticks keep flowing."""

import asyncio
import os
import time

import orjson
import pytest

from bot.commands import CONSOLE, Commands, resolve
from tests.paper_services import paper_services

SLOW_S = 0.3


@pytest.fixture
def commands(tmp_path):
    services = paper_services(tmp_path)
    services.config.subscribe(lambda old, new, changes: services.engine.apply_config(new))
    return Commands(services)


async def longest_stall(work):
    """``work``'s result, and the longest the event loop went without running anything else meanwhile."""
    gaps, done = [0.0], False

    async def beat():
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(beat())
    await asyncio.sleep(0)
    result = await work
    done = True
    await beating
    return result, max(gaps)


def slow_fsync(monkeypatch):
    real = os.fsync

    def fsync(fd):
        time.sleep(SLOW_S)  # a slow disk
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


async def test_set_syncs_the_config_file_off_the_event_loop(commands, monkeypatch):
    slow_fsync(monkeypatch)
    reply, stall = await longest_stall(resolve(commands.handle_text(CONSOLE, "/set risk.max_quantity 500")))
    assert reply.text == "risk.max_quantity: 1000 → 500 (saved, live)"
    assert commands.s.engine.risk()["max_quantity"] == 500
    assert orjson.loads(commands.s.config.path.read_bytes())["risk"]["max_quantity"] == 500
    assert stall < SLOW_S / 2


async def test_undo_syncs_the_config_file_off_the_event_loop(commands, monkeypatch):
    await resolve(commands.handle_text(CONSOLE, "/set risk.max_quantity 500"))
    slow_fsync(monkeypatch)
    reply, stall = await longest_stall(resolve(commands.handle_text(CONSOLE, "/undo")))
    assert reply.text.startswith("Undone (saved, live):\nrisk.max_quantity: 500 → 1000\n")
    assert commands.s.config.config.risk.max_quantity == 1000
    assert stall < SLOW_S / 2


async def test_daily_reads_the_journal_off_the_event_loop(commands, monkeypatch):
    real = commands.s.engine.daily

    def slow_daily(n):
        time.sleep(SLOW_S)  # many large journal files
        return real(n)

    monkeypatch.setattr(commands.s.engine, "daily", slow_daily)
    reply, stall = await longest_stall(resolve(commands.handle_text(CONSOLE, "/daily")))
    assert "net" in reply.text
    assert stall < SLOW_S / 2
