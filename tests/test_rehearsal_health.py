"""The process's one HTTP server (/healthz) listens on this machine only unless configured otherwise."""

import aiohttp

from config import validate
from engine.runtime.app import _serve
from engine.strategies import default_catalog
from tests.conftest import DEFAULT
from tests.test_trading_days import runtime


async def serving(tmp_path, monkeypatch, server):
    monkeypatch.setenv("PORT", "0")
    rt = runtime(tmp_path, "2026-11-23T10:00:00+05:30")
    runner = await _serve(rt, server, None)
    assert runner is not None
    return runner


async def test_the_shipped_config_serves_healthz_on_the_loopback_address_only(tmp_path, monkeypatch):
    runner = await serving(tmp_path, monkeypatch, validate(DEFAULT, default_catalog()).server)
    try:
        [(host, port)] = runner.addresses
        assert host == "127.0.0.1"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200 and (await response.json())["state"] == "IDLE"
    finally:
        await runner.cleanup()


async def test_server_host_opens_it_to_other_machines_when_configured(tmp_path, monkeypatch):
    data = {**DEFAULT, "server": {**DEFAULT["server"], "host": "0.0.0.0"}}
    runner = await serving(tmp_path, monkeypatch, validate(data, default_catalog()).server)
    try:
        assert [host for host, _ in runner.addresses] == ["0.0.0.0"]
    finally:
        await runner.cleanup()
