"""`otrade run --live` as a process against the local Kite server: the pieces tests share."""

import asyncio
import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import orjson

from engine.brokers.kite.ticker_codec import Tick
from engine.core.layout import IST
from tests.conftest import DEFAULT
from tests.kite_engine import wait
from tests.kite_server import API_KEY, API_SECRET, FakeKite

ROOT = Path(__file__).resolve().parent.parent
INFY = 408065


def env_for(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
    env.update(OTRADE_DATA_DIR=str(tmp_path / "data"), OTRADE_CONFIG=str(tmp_path / "otrade.json"), PORT="0",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def write_config(tmp_path: Path) -> None:
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 10,
                            "strategy": {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False},
                            "bracket": {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}}]
    (tmp_path / "otrade.json").write_bytes(orjson.dumps(data))


def all_day_session(tmp_path: Path) -> None:
    """Today (IST) is a special session from 00:00 to 23:59 on the calendar, whatever the weekday or holiday, so
    the process trades now. The config keeps NSE's hours, which live accepts: a special session takes the
    calendar's, squaring off as long before its close as the config's square-off is before its close."""
    today = datetime.now(IST).date().isoformat()
    (tmp_path / "calendar.json").write_bytes(orjson.dumps(
        {"holidays": [], "special_sessions": [{"date": today, "open": "00:00", "close": "23:59", "name": "test"}]}))


@asynccontextmanager
async def live_process(tmp_path: Path, server: FakeKite, console: bool = False, **env: str):
    """`otrade run --live` against ``server``; killed on the way out if the test did not stop it. With
    ``console``, commands go in on its stdin and replies come out on its stdout."""
    env = env_for(tmp_path, KITE_API_KEY=API_KEY, KITE_API_SECRET=API_SECRET, KITE_ACCESS_TOKEN=server.access_token,
                  KITE_API_BASE=server.base, KITE_WS_URL=server.base.replace("http", "ws") + "/ws",
                  OTRADE_CALENDAR=str(tmp_path / "calendar.json"), **env)
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", "run", "--live",
                                                *(["--console"] if console else []), cwd=tmp_path, env=env,
                                                stderr=pipe, stdin=pipe if console else asyncio.subprocess.DEVNULL,
                                                stdout=pipe if console else None)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


STOP_WITHIN_S = 5.0  # the product's claim: a live restart's first line to its missing stop's arrival at Kite


async def restart_holding_without_a_stop(tmp_path: Path, server: FakeKite, cache: str) -> tuple[float, dict, str]:
    """`otrade run --live` started holding 10 INFY an earlier run bought, with no stop at Kite, Numba's cache at
    ``cache``: seconds from its first line to the stop's arrival at Kite, the stop's row, and what it logged
    until it stopped (once the rest compiled and it subscribed to the ticker)."""
    server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                      status="COMPLETE", filled_quantity=10, average_price=1070.0, tag="otabc123000001")
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1070.0}]
    lines: list[str] = []
    async with live_process(tmp_path, server, NUMBA_CACHE_DIR=cache) as proc:
        lines.append((await asyncio.wait_for(proc.stderr.readline(), 120)).decode())
        started = time.monotonic()  # the server's clock too (FakeKite's default)

        async def read() -> None:
            while line := await proc.stderr.readline():
                lines.append(line.decode())

        reader = asyncio.create_task(read())
        [stop] = await wait(lambda: [rows[0] for rows in server.orders.values() if rows[0]["order_type"] == "SL-M"],
                            120)
        await wait(lambda: server.sockets, 900)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(reader, 120)
        assert await asyncio.wait_for(proc.wait(), 120) == 0, "".join(lines)
    return stop["_at"] - started, stop, "".join(lines)


async def stopped(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err.decode()


async def buy(server: FakeKite) -> str:
    """Ticks until the session is open and the EMA cross buys; the entry's order id."""
    await wait(lambda: server.sockets, 60)
    now = int(datetime.now().timestamp())
    for k in range(60):  # a dip and a rise, each of which buys once the scheduler has opened the session
        for j, price in enumerate([100.0, 99.0, 101.0]):
            await server.push([Tick(INFY, price, "full", True, exchange_timestamp=now + 3 * k + j)])
        await asyncio.sleep(0.25)
        if server.orders:
            break
    [(entry_id, entry)] = (await wait(lambda: server.working())).items()
    assert (entry["transaction_type"], entry["order_type"]) == ("BUY", "MARKET")
    return entry_id


def journal_of(tmp_path: Path) -> list[dict]:
    return [orjson.loads(line) for f in (tmp_path / "data" / "journal").glob("*.jsonl")
            for line in f.read_bytes().splitlines()]
