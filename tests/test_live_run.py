"""`otrade run --live` as a process against the local Kite server."""

import asyncio
import os
import signal
import sys
from datetime import datetime, time
from pathlib import Path

import orjson
import pytest

from engine.brokers.kite.ticker_codec import Tick
from engine.layout import IST
from tests.conftest import DEFAULT
from tests.kite_server import API_KEY, API_SECRET, FakeKite

ROOT = Path(__file__).resolve().parent.parent
INFY = 408065


def env_for(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
    env.update(OTRADE_DATA_DIR=str(tmp_path / "data"), OTRADE_CONFIG=str(tmp_path / "otrade.json"), PORT="0",
               PYTHONPATH=str(ROOT), **extra)
    return env


def write_config(tmp_path: Path) -> None:
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 10,
                            "strategy": {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False},
                            "bracket": {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}}]
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))


async def test_live_without_credentials_refuses_and_names_what_is_missing(tmp_path):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", "--live", cwd=tmp_path,
                                                env=env_for(tmp_path, KITE_API_KEY="k"),
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "refusing to start live: missing KITE_API_SECRET, KITE_ACCESS_TOKEN" in err.decode()


async def test_live_trades_through_kite_and_stops_cleanly(tmp_path):
    server = FakeKite()
    base = await server.start()
    write_config(tmp_path)
    env = env_for(tmp_path, KITE_API_KEY=API_KEY, KITE_API_SECRET=API_SECRET, KITE_ACCESS_TOKEN=server.access_token,
                  KITE_API_BASE=base, KITE_WS_URL=base.replace("http", "ws") + "/ws")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", "--live", cwd=tmp_path,
                                                env=env, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(300):
            if server.modes:
                break
            await asyncio.sleep(0.05)
        now = int(datetime.now().timestamp())
        for k, price in enumerate([100.0, 99.0, 101.0]):
            await server.push([Tick(INFY, price, "full", True, exchange_timestamp=now + k)])
        for _ in range(100):
            if server.orders:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await server.stop()
    text = err.decode()
    assert proc.returncode == 0 and "LIVE (Kite) trading NSE:INFY" in text and server.modes == {INFY: "full"}
    assert server.access_token not in text and API_SECRET not in text


def all_day_session(tmp_path: Path) -> dict:
    """Today (IST) is a session from 00:00 to 23:59, whatever the weekday or holiday, so the process trades now."""
    today = datetime.now(IST).date().isoformat()
    (tmp_path / "calendar.json").write_bytes(orjson.dumps(
        {"holidays": [], "special_sessions": [{"date": today, "open": "00:00", "close": "23:59", "name": "test"}]}))
    data = orjson.loads((tmp_path / "otrade.json").read_bytes())
    data["session"].update({"open": "00:00", "close": "23:59", "square_off": "23:58", "token_check": "00:00"})
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))
    return {"OTRADE_CALENDAR": str(tmp_path / "calendar.json")}


async def wait_for(predicate, timeout: float = 15.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return predicate()
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_the_live_process_enters_arms_its_bracket_and_closes_on_the_target(tmp_path):
    if datetime.now(IST).time() >= time(23, 57):
        pytest.skip("the all-day test session ends at 23:58 IST")
    server = FakeKite()
    base = await server.start()
    write_config(tmp_path)
    env = env_for(tmp_path, KITE_API_KEY=API_KEY, KITE_API_SECRET=API_SECRET, KITE_ACCESS_TOKEN=server.access_token,
                  KITE_API_BASE=base, KITE_WS_URL=base.replace("http", "ws") + "/ws", **all_day_session(tmp_path))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", "--live", cwd=tmp_path,
                                                env=env, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        await wait_for(lambda: server.modes, 60)
        now = int(datetime.now().timestamp())
        for k in range(60):  # until the scheduler has opened the session: a dip and a rise, each buys
            for j, price in enumerate([100.0, 99.0, 101.0]):
                await server.push([Tick(INFY, price, "full", True, exchange_timestamp=now + 3 * k + j)])
            await asyncio.sleep(0.25)
            if server.orders:
                break
        [(entry_id, entry)] = (await wait_for(lambda: server.working())).items()
        await server.fill(entry_id, 4, 101.0)  # in two parts: the bracket follows the position
        await server.fill(entry_id, 6, 101.0)
        legs = await wait_for(lambda: len(server.working()) == 2
                              and {r["quantity"] for r in server.working().values()} == {10} and server.working())
        [target_id] = [k for k, r in legs.items() if r["order_type"] == "LIMIT"]
        await server.complete(target_id, 106.1)
        await wait_for(lambda: not server.working())
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
        await server.stop()
    journal = [orjson.loads(line) for f in (tmp_path / "data" / "journal").glob("*.jsonl")
               for line in f.read_bytes().splitlines()]
    [trade] = [r for r in journal if r["kind"] == "trade_closed"]
    assert (trade["qty"], trade["exit_reason"], trade["pnl"]) == (10, "target", pytest.approx(51.0))
    assert entry["transaction_type"] == "BUY" and proc.returncode == 0, err.decode()[-2000:]


async def test_a_calendar_file_that_is_not_valid_stops_the_start_with_the_reason(tmp_path):
    (tmp_path / "calendar.json").write_text('{"holidays": ["2026-13-45"]}')
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", cwd=tmp_path,
                                                env=env_for(tmp_path, OTRADE_CALENDAR=str(tmp_path / "calendar.json")),
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "calendar.json is not valid: ValueError" in err.decode()
