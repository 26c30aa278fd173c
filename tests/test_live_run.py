"""`otrade run --live` as a process against the local Kite server."""

import asyncio
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import orjson

from engine.brokers.kite.ticker_codec import Tick
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
