"""Candle fetch against the local Kite server (tests/kite_server.py) on loopback.

A year of minute candles for one symbol: the requests sent (retries included) against the fewest
Kite's 60-day limit allows, ceil(365 / 60) = 7. Goal: equal (a 429 retried would make it more).
Also each interval's year, and the wall time at Kite's 3 requests a second (each request's place
held until a second after its answer).
"""

import asyncio
import math
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.common import report
from engine.brokers.kite.rest import KiteREST
from engine.core.layout import IST
from engine.data.fetch import MAX_DAYS, fetch, parse_time
from tests.kite_server import API_KEY, FakeKite

FIRST, LAST, DAYS = "2025-12-01", "2026-11-30", 365
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=IST)


async def year(interval: str) -> tuple[int, int, float]:
    """(requests sent, candles stored, seconds) for one symbol's year of ``interval`` candles."""
    server = FakeKite()
    await server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with KiteREST(API_KEY, server.access_token, server.base) as rest:
                started = time.perf_counter()
                [result] = await fetch(rest, ["NSE:INFY"], interval, parse_time(FIRST), parse_time(LAST, end=True),
                                       Path(tmp), now=NOW)
                return rest.historical_requests, result.stored, time.perf_counter() - started
    finally:
        await server.stop()


def main() -> None:
    rows = []
    for interval in MAX_DAYS:
        sent, stored, seconds = asyncio.run(year(interval))
        fewest = math.ceil(DAYS / MAX_DAYS[interval])
        rows.append({"metric": f"{interval}: requests for a year (fewest {fewest})", "value": sent,
                     "goal": f"= {fewest}", "ok": sent == fewest})
        rows.append({"metric": f"{interval}: candles stored, seconds", "value": f"{stored:,}, {seconds:.2f}s"})
    report("candle_fetch", rows)


if __name__ == "__main__":
    main()
