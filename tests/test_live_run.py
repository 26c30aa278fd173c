"""`otrade run --live` as a process against the local Kite server."""

import asyncio
import sys

import pytest

from tests.kite_engine import wait
from tests.kite_server import API_SECRET
from tests.live_process import INFY, buy, env_for, journal_of, live_process, stopped


async def test_live_without_credentials_refuses_and_names_what_is_missing(tmp_path):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", "--live", cwd=tmp_path,
                                                env=env_for(tmp_path, KITE_API_KEY="k"),
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "refusing to start live: missing KITE_API_SECRET, KITE_ACCESS_TOKEN" in err.decode()


async def test_live_subscribes_its_instruments_trades_and_stops_cleanly_without_leaking_secrets(tmp_path, kite_day):
    server = kite_day
    async with live_process(tmp_path, server) as proc:
        await buy(server)
        text = await stopped(proc)
    assert "LIVE (Kite) trading NSE:INFY" in text and server.modes == {INFY: "full"}
    assert server.access_token not in text and API_SECRET not in text


async def test_the_live_process_enters_arms_its_bracket_and_closes_on_the_target(tmp_path, kite_day):
    server = kite_day
    async with live_process(tmp_path, server) as proc:
        entry_id = await buy(server)
        await server.fill(entry_id, 4, 101.0)  # in two parts: the bracket follows the position
        await server.fill(entry_id, 6, 101.0)
        legs = await wait(lambda: len(server.working()) == 2
                          and {r["quantity"] for r in server.working().values()} == {10} and server.working(), 15)
        [target_id] = [k for k, r in legs.items() if r["order_type"] == "LIMIT"]
        await server.complete(target_id, 106.1)
        await wait(lambda: not server.working())
        await stopped(proc)
    [trade] = [r for r in journal_of(tmp_path) if r["kind"] == "trade_closed"]
    assert (trade["qty"], trade["exit_reason"], trade["pnl"]) == (10, "target", pytest.approx(51.0))


async def test_a_restart_adopts_the_open_position_and_its_bracket_without_sending_them_again(tmp_path, kite_day):
    server = kite_day
    async with live_process(tmp_path, server) as first:
        await server.complete(await buy(server), 101.0)
        legs = await wait(lambda: len(server.working()) == 2 and server.working())
        await stopped(first)  # session.on_shutdown "keep": the position and its bracket stay at Kite
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 101.0}]
    placed = len(server.orders)
    async with live_process(tmp_path, server) as second:
        await wait(lambda: server.sockets, 60)
        await asyncio.sleep(1.0)
        assert len(server.orders) == placed and server.working() == legs
        [stop_id] = [k for k, r in legs.items() if r["order_type"] == "SL-M"]
        await server.complete(stop_id, 95.9)
        await wait(lambda: not server.working())
        await stopped(second)
    [trade] = [r for r in journal_of(tmp_path) if r["kind"] == "trade_closed"]
    assert (trade["qty"], trade["exit_reason"], trade["entry_price"]) == (10, "stop", 101.0)


async def test_a_calendar_file_that_is_not_valid_stops_the_start_with_the_reason(tmp_path):
    (tmp_path / "calendar.json").write_text('{"holidays": ["2026-13-45"]}')
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", cwd=tmp_path,
                                                env=env_for(tmp_path, OTRADE_CALENDAR=str(tmp_path / "calendar.json")),
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "calendar.json is not valid: ValueError" in err.decode()
