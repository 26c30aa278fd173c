"""``otrade data fetch`` against the local Kite server: the fewest requests Kite's range limits
allow, at most 3 a second, 429s and 5xx retried, a fetch that stops goes on without asking again for
what is stored, Kite's gaps and bad input named; ``otrade data import`` for CSV candles."""

import asyncio
import math
import os
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from engine.brokers.kite.rest import InputException, KiteREST
from engine.core.layout import IST
from engine.data import candles
from engine.data.fetch import FetchError, fetch, parse_time
from tests.kite_server import API_KEY, FakeKite

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
SESSION_MINUTES = 375  # 09:15 to 15:30


class TokenExpiresMidFetch(FakeKite):
    """Kite flushing the access token (06:00) just after the first candle request is let in."""

    flushed = False

    def authorised(self, request) -> bool:
        ok = super().authorised(request)
        if ok and request.path.startswith("/instruments/historical/") and not self.flushed:
            self.access_token, self.flushed = "flushed-at-6am", True
        return ok


class CountsLate(FakeKite):
    """Kite counting the first three candle requests half a second after they are sent (a queue at
    its gateway, a slow link, or our own loop busy after letting them go), the rest at once."""

    late = 3

    async def _historical(self, request):
        if self.late:
            self.late -= 1
            await asyncio.sleep(0.5)
        return await super()._historical(request)


@pytest.fixture
async def kite():
    server = FakeKite()
    await server.start()
    yield server
    await server.stop()


async def run(server, data_dir, first, last, symbols=("NSE:INFY",), interval="minute", now=NOW, warnings=None):
    # a generous timeout: a try given up on under load is sent again, and the requests are counted
    async with KiteREST(API_KEY, server.access_token, server.base, timeout=60.0) as rest:
        return await fetch(rest, list(symbols), interval, parse_time(first), parse_time(last, end=True), data_dir,
                           now=now, warn=(warnings if warnings is not None else []).append)


def spans(server) -> list[tuple[str, str]]:
    return [(start, end) for _, _, start, end in server.historical_calls]


async def test_a_year_of_minute_candles_takes_the_fewest_requests_kites_60_day_limit_allows(kite, tmp_path):
    [result] = await run(kite, tmp_path, "2025-12-01", "2026-11-30")
    assert len(kite.historical_calls) == math.ceil(365 / 60) == 7 == result.requests  # none refused, none retried
    assert spans(kite)[:2] == [("2025-12-01 00:00:00", "2026-01-29 23:59:59"),
                               ("2026-01-30 00:00:00", "2026-03-30 23:59:59")]
    assert spans(kite)[-1] == ("2026-11-26 00:00:00", "2026-11-30 23:59:59")
    stored = candles.read(candles.path(tmp_path, "minute", "NSE:INFY"))
    assert len(stored) == result.candles == result.stored and result.missing == 0
    assert stored.fetched == ((parse_time("2025-12-01"), parse_time("2026-11-30", end=True)),)


@pytest.mark.parametrize(("interval", "days", "requests"), [("5minute", 365, 4), ("60minute", 365, 1),
                                                             ("day", 2001, 2)])
async def test_each_interval_is_split_by_its_own_limit(kite, tmp_path, interval, days, requests):
    first = datetime.fromtimestamp(parse_time("2026-11-30") - (days - 1) * 86400, IST).date().isoformat()
    await run(kite, tmp_path, first, "2026-11-30", interval=interval)
    assert len(kite.historical_calls) == requests


async def test_requests_keep_to_three_a_second(kite, tmp_path):
    assert kite.historical_per_second == 3  # Kite's limit, which the local server holds the client to
    started = asyncio.get_running_loop().time()
    await run(kite, tmp_path, "2026-01-01", "2026-10-27")  # 300 days: 5 requests
    assert len(kite.historical_calls) == 5 and kite.fault_log == []  # no 429: none was over the rate
    assert asyncio.get_running_loop().time() - started >= 1.0  # the 4th waited for the first second to pass


async def test_requests_keep_to_three_a_second_however_late_kite_counts_them(tmp_path):
    server = CountsLate()
    await server.start()
    try:
        await run(server, tmp_path, "2026-01-01", "2026-10-27")  # 300 days: 5 requests
        assert len(server.historical_calls) == 5  # none refused with a 429 and sent again
    finally:
        await server.stop()


@pytest.mark.parametrize("fault", ["429", "500-before", "503"])
async def test_a_429_or_5xx_is_retried_and_the_candles_are_stored(kite, tmp_path, fault):
    kite.fault("historical", fault)
    [result] = await run(kite, tmp_path, "2026-11-23", "2026-11-23")
    assert len(kite.historical_calls) == 2 and result.candles == SESSION_MINUTES


async def test_a_stopped_fetch_goes_on_without_asking_again_for_what_is_stored(tmp_path):
    server = TokenExpiresMidFetch()
    await server.start()
    try:
        with pytest.raises(FetchError, match=r"Incorrect `api_key` or `access_token`.*1 of 3 requests answered"):
            await run(server, tmp_path, "2026-01-01", "2026-06-29")  # 180 days: 3 requests
        file = candles.path(tmp_path, "minute", "NSE:INFY")
        [answered] = [(candles.kite_time(a), candles.kite_time(b)) for a, b in candles.read(file).fetched]
        server.access_token, server.historical_calls = "tok-day-2", []
        [result] = await run(server, tmp_path, "2026-01-01", "2026-06-29")
        assert answered not in spans(server) and sorted([*spans(server), answered]) == [
            ("2026-01-01 00:00:00", "2026-03-01 23:59:59"), ("2026-03-02 00:00:00", "2026-04-30 23:59:59"),
            ("2026-05-01 00:00:00", "2026-06-29 23:59:59")]
        assert result.requests == 2
        stored = candles.read(file)
        whole = await run(server, tmp_path / "whole", "2026-01-01", "2026-06-29")
        assert np.array_equal(stored.ts, candles.read(whole[0].file).ts)
        assert np.array_equal(stored.close, candles.read(whole[0].file).close)
        server.historical_calls = []
        await run(server, tmp_path, "2026-01-01", "2026-06-29")
        assert server.historical_calls == []  # all of it stored: nothing asked
    finally:
        await server.stop()


async def test_a_wider_range_asks_only_for_what_is_not_stored(kite, tmp_path):
    await run(kite, tmp_path, "2026-03-02", "2026-03-06")
    kite.historical_calls = []
    await run(kite, tmp_path, "2026-02-23", "2026-03-13")
    assert spans(kite) == [("2026-02-23 00:00:00", "2026-03-01 23:59:59"),
                           ("2026-03-07 00:00:00", "2026-03-13 23:59:59")]


async def test_a_gap_in_kites_answer_is_named_in_one_warning(kite, tmp_path):
    kite.candle_gaps = [(datetime(2026, 3, 10), datetime(2026, 3, 10, 23, 59, 59)),
                        (datetime(2026, 3, 12, 10, 5), datetime(2026, 3, 12, 10, 14))]
    warnings = []
    [result] = await run(kite, tmp_path, "2026-03-09", "2026-03-13", warnings=warnings)
    assert warnings == [f"NSE:INFY minute: Kite's answer has gaps ({SESSION_MINUTES + 10} candles): no candles on "
                        "2026-03-10; 2026-03-12 10:05 to 10:14 IST missing (10 candles)"]
    assert result.stored == 4 * SESSION_MINUTES - 10  # stored as Kite gave it


async def test_holidays_and_weekends_are_not_gaps(kite, tmp_path):
    warnings = []
    await run(kite, tmp_path, "2026-11-21", "2026-11-25", warnings=warnings)  # a weekend, then 24th a holiday
    assert warnings == []


async def test_a_range_in_the_future_is_refused_naming_it(kite, tmp_path):
    with pytest.raises(FetchError, match="the range 2026-12-02 00:00:00 to 2026-12-31 23:59:59 is in the future"):
        await run(kite, tmp_path, "2026-12-02", "2026-12-31")
    assert kite.historical_calls == []


async def test_a_range_ending_in_the_future_stops_before_the_candle_still_forming(kite, tmp_path):
    warnings = []
    await run(kite, tmp_path, "2026-11-30", "2026-12-31", warnings=warnings, now=datetime(2026, 12, 1, 10, 0, 30,
                                                                                          tzinfo=IST))
    assert warnings == ["--to 2026-12-31 23:59:59 is in the future: fetching to 2026-12-01 09:59:59, "
                        "the minute candles from then on are not complete yet"]
    assert spans(kite) == [("2026-11-30 00:00:00", "2026-12-01 09:59:59")]


async def test_an_unknown_symbol_is_refused_before_any_request(kite, tmp_path):
    with pytest.raises(FetchError, match=r"^unknown symbol NSE:NOPE: not in Kite's instruments list$"):
        await run(kite, tmp_path, "2026-11-23", "2026-11-23", symbols=("NSE:INFY", "NSE:NOPE"))
    assert kite.historical_calls == []


async def test_the_local_kite_refuses_a_range_over_the_limit_in_kites_words(kite):
    async with KiteREST(API_KEY, kite.access_token, kite.base) as rest:
        with pytest.raises(InputException, match=r"^interval exceeds max limit: 60 days$"):
            await rest.historical(408065, "minute", "2026-01-01 00:00:00", "2026-03-02 09:15:00")  # 61 days
        assert await rest.historical(408065, "minute", "2026-01-01 00:00:00", "2026-03-01 23:59:59")  # 60


async def test_the_command_fetches_with_credentials_from_the_environment_and_never_shows_them(kite, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
    env.update(KITE_API_KEY=API_KEY, KITE_ACCESS_TOKEN=kite.access_token, KITE_API_BASE=kite.base,
               OTRADE_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "data", "fetch", "--symbols", "NSE:INFY,NSE:SBIN", "--from", "2026-11-23",
        "--to", "2026-11-23", "--interval", "5minute", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 60))
    assert proc.returncode == 0, err
    assert f"NSE:SBIN 5minute: 75 candles in 1 request(s); 75 stored in {tmp_path}/candles/5minute/NSE_SBIN.parquet" \
        in out
    assert "2 request(s) to Kite" in err and kite.access_token not in out + err


async def test_the_command_without_a_token_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}
    env.update(KITE_API_KEY=API_KEY, OTRADE_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "data", "fetch", "--symbols", "NSE:INFY", "--from", "2026-11-23", "--to",
        "2026-11-23", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode() == ("error: data fetch needs KITE_ACCESS_TOKEN (or a token saved by /token) "
                            "in the environment\n")


# --- import ---------------------------------------------------------------------------------------
CSV = ("date,open,high,low,close,volume\n"
       "2026-11-23 09:15:00,100,101,99.5,100.5,1200\n"
       "2026-11-23 09:16:00,100.5,100.8,100.1,100.2,800\n")


async def test_imported_candles_are_stored_and_not_fetched_again(kite, tmp_path):
    (tmp_path / "NSE_INFY.csv").write_text(CSV)
    _, file = candles.import_csv(tmp_path / "NSE_INFY.csv", "NSE:INFY", "minute", tmp_path)
    assert file == candles.path(tmp_path, "minute", "NSE:INFY")
    stored = candles.read(file)
    assert stored.ts[0] == int(datetime(2026, 11, 23, 9, 15, tzinfo=IST).timestamp()) * 10**9  # no offset: IST
    assert stored.close.tolist() == [100.5, 100.2] and stored.volume.tolist() == [1200, 800]
    await run(kite, tmp_path, "2026-11-23 09:15:00", "2026-11-23 09:16:59")
    assert kite.historical_calls == []


def test_a_bad_csv_row_is_refused_naming_the_line(tmp_path):
    (tmp_path / "c.csv").write_text(CSV + "2026-11-23 09:17:00,100.2,100.1,100.0,100.3,10\n")
    with pytest.raises(candles.CandleError, match=r"^c.csv line 4: high 100.1 and low 100 do not contain open "
                                                  r"100.2 and close 100.3$"):
        candles.import_csv(tmp_path / "c.csv", "NSE:INFY", "minute", tmp_path)
    assert not candles.path(tmp_path, "minute", "NSE:INFY").exists()
