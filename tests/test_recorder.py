"""The tick recorder: every tick to the day's Parquet file, off the loop, bounded, crash-tolerant."""

import asyncio
import copy
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from engine.brokers.kite.ticker_codec import Tick
from engine.core.layout import IST
from engine.data import store
from engine.data.recorder import Recorder
from tests.conftest import DAY, DEFAULT, ns, process_env
from tests.kite_engine import wait
from tests.live_process import INFY, buy, live_process, stopped

SYMBOLS = ("NSE:INFY", "NSE:SBIN")


def day_file(data_dir: Path, day: str = DAY, kind: str = store.SYNTHETIC) -> Path:  # otrade_run's: REHEARSAL
    return store.tick_file(data_dir, date.fromisoformat(day), kind)


async def recorded(tmp_path, ticks, **kw) -> Recorder:
    """A recorder fed ``ticks`` ((i, "HH:MM:SS", price, volume)) and closed."""
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, now_ns=lambda: ns("09:00:00"), **kw)
    for i, clock, price, volume in ticks:
        rec.add((i, ns(clock), price, volume))
    await rec.close()
    return rec


async def test_ticks_are_written_to_the_days_file_with_the_contracts_columns(tmp_path):
    await recorded(tmp_path, [(0, "10:00:00", 1500.0, 5.0), (1, "10:00:01", 800.05, 1.0)])
    t = store.read_day(day_file(tmp_path))
    assert t.schema == store.TICK_SCHEMA
    assert t.to_pydict() == {"ts": [ns("10:00:00"), ns("10:00:01")], "symbol": ["NSE:INFY", "NSE:SBIN"],
                             "price": [1500.0, 800.05], "volume": [5.0, 1.0]}


async def test_a_full_buffer_goes_to_the_writer_and_no_tick_is_lost(tmp_path):
    ticks = [(k % 2, f"10:00:{k:02d}", 1500.0 + k, 1.0) for k in range(50)]
    rec = await recorded(tmp_path, ticks, capacity=8)
    assert store.read_day(day_file(tmp_path)).column("price").to_pylist() == [1500.0 + k for k in range(50)]
    assert (rec.recorded, rec.dropped) == (50, 0)


async def test_buffers_are_handed_to_the_writer_every_flush_interval(tmp_path):
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, flush_s=0.1, now_ns=lambda: ns("09:00:00"))
    task = asyncio.create_task(rec.run())
    try:
        rec.add((0, ns("10:00:00"), 1500.0, 1.0))
        await wait(lambda: store.parts(day_file(tmp_path)), 5)  # on disk while the recorder still runs
    finally:
        task.cancel()
        await rec.close()


async def test_when_the_writer_falls_behind_ticks_are_dropped_counted_and_logged_never_waited_for(tmp_path,
                                                                                                 monkeypatch, caplog):
    gate = threading.Event()
    append = store.append_part

    def stuck(*args):
        gate.wait()
        return append(*args)

    monkeypatch.setattr(store, "append_part", stuck)
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, flush_s=0.05, capacity=4, pool=2,
                   now_ns=lambda: ns("09:00:00"))
    task = asyncio.create_task(rec.run())
    started = time.perf_counter()
    for k in range(20):
        rec.add((0, ns("10:00:00") + k, 1500.0, 1.0))
    assert time.perf_counter() - started < 0.1  # the tick path did not wait for the stuck writer
    assert rec.dropped == 12 and "writer behind: 12 dropped" in rec.health()
    with caplog.at_level(logging.WARNING, "engine.data.recorder"):
        await wait(lambda: "writer is behind; 12 tick(s) dropped" in caplog.text)
    gate.set()
    task.cancel()
    await rec.close()
    assert rec.recorded == 8


async def test_a_write_error_is_counted_and_shown_and_recording_goes_on(tmp_path, monkeypatch):
    append = store.append_part
    fail = [True]

    def flaky(*args):
        if fail.pop() if fail else False:
            raise OSError(28, "No space left on device")
        return append(*args)

    monkeypatch.setattr(store, "append_part", flaky)
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, capacity=2, now_ns=lambda: ns("09:00:00"))
    for k in range(4):
        rec.add((0, ns("10:00:00") + k, 1500.0 + k, 1.0))
    await rec.close()
    assert (rec.failed, rec.recorded) == (2, 2)
    assert "2 lost to write errors (last: OSError: [Errno 28] No space left on device)" in rec.health()
    assert store.read_day(day_file(tmp_path)).column("price").to_pylist() == [1502.0, 1503.0]


async def test_ticks_either_side_of_ist_midnight_go_to_their_own_days(tmp_path):
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, now_ns=lambda: ns("09:00:00"))
    rec.add((0, ns("23:59:59"), 1500.0, 1.0))
    rec.add((0, ns("00:00:00", "2026-11-24"), 1501.0, 1.0))
    await rec.close()
    assert store.read_day(day_file(tmp_path)).column("price").to_pylist() == [1500.0]
    assert store.read_day(day_file(tmp_path, "2026-11-24")).column("price").to_pylist() == [1501.0]


async def test_ticks_recorded_before_the_instruments_change_keep_their_symbols(tmp_path):
    rec = Recorder(tmp_path, SYMBOLS, synthetic=False, now_ns=lambda: ns("09:00:00"))
    rec.add((0, ns("10:00:00"), 1500.0, 1.0))
    rec.use_symbols(["NSE:TCS"])
    rec.add((0, ns("10:00:01"), 4000.0, 1.0))
    await rec.close()
    t = store.read_day(day_file(tmp_path, kind=store.MARKET))
    assert t.column("symbol").to_pylist() == ["NSE:INFY", "NSE:TCS"]


async def test_live_quotes_record_last_quantity_bid_and_ask_with_nulls_where_the_tick_has_none(tmp_path):
    rec = Recorder(tmp_path, SYMBOLS, synthetic=False, quotes=True, now_ns=lambda: ns("09:00:00"))
    rec.add((0, ns("10:00:00"), 1500.0, 25.0, 25, 1499.9, 1500.1))
    rec.add((1, ns("10:00:01"), 800.0, 1.0, -1, math.nan, math.nan))
    await rec.close()
    t = store.read_day(day_file(tmp_path, kind=store.MARKET))
    assert t.schema == store.LIVE_TICK_SCHEMA
    assert t.select(["last_qty", "bid", "ask"]).to_pydict() == {"last_qty": [25, None], "bid": [1499.9, None],
                                                                "ask": [1500.1, None]}


async def test_the_session_close_compacts_the_day_into_its_day_file(tmp_path):
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, capacity=2, now_ns=lambda: ns("09:00:00"))
    for k in range(5):
        rec.add((0, ns("10:00:00") + k, 1500.0 + k, 1.0))
    rec.end_day()
    await rec.close()
    f = day_file(tmp_path)
    assert not store.parts_dir(f).exists()
    assert pq.read_table(f).column("price").to_pylist() == [1500.0 + k for k in range(5)]


async def test_a_start_compacts_every_day_a_crash_left_in_parts_today_included(tmp_path):
    for day in ("2026-11-20", DAY):
        store.append_part(day_file(tmp_path, day), pa.table({"ts": [ns("10:00:00", day)], "symbol": ["NSE:INFY"],
                                                             "price": [1500.0], "volume": [1.0]}), 1)
    rec = Recorder(tmp_path, SYMBOLS, synthetic=True, now_ns=lambda: ns("11:00:00"))
    await rec.close()
    for day in ("2026-11-20", DAY):
        assert day_file(tmp_path, day).exists() and not store.parts_dir(day_file(tmp_path, day)).exists()


async def test_a_restarted_recording_goes_on_after_the_days_earlier_parts(tmp_path):
    await recorded(tmp_path, [(0, "10:00:00", 1500.0, 1.0)])
    await recorded(tmp_path, [(0, "10:05:00", 1501.0, 1.0)])
    assert [p.name for p in store.parts(day_file(tmp_path))] == ["000002-000002.parquet"]  # the first compacted
    assert store.read_day(day_file(tmp_path)).column("price").to_pylist() == [1500.0, 1501.0]


# --- `otrade run` -------------------------------------------------------------------------------
CLOCK = "2026-11-23T10:00:00+05:30"


def paper_config(tmp_path: Path) -> Path:
    """Fast ticks and quick signals, so a short rehearsal trades several times."""
    data = copy.deepcopy(DEFAULT)
    for instrument in data["instruments"]:
        instrument["strategy"] = {"kind": "ema_cross", "fast": 3, "slow": 8, "allow_short": True}
        instrument["bracket"] = {"target_pct": 0.05, "stop_pct": 0.05, "trail_pct": None}
    data["paper"]["tick_interval_ms"] = 40
    data["risk"]["max_trades_per_day"] = 1000
    config = tmp_path / "o.json"
    config.write_bytes(orjson.dumps(data))
    return config


def otrade_run(tmp_path: Path, *args: str) -> subprocess.Popen:
    err = (tmp_path / "otrade.err").open("w")
    return subprocess.Popen([sys.executable, "-m", "engine", "run", "--config", str(paper_config(tmp_path)),
                             "--clock", CLOCK, *args], cwd=tmp_path, env=process_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def test_a_paper_session_recorded_by_otrade_run_backtests_to_the_same_trades(tmp_path):
    proc = otrade_run(tmp_path, "--for", "12")
    assert proc.wait(timeout=300) == 0, (tmp_path / "otrade.err").read_text()  # a cold Numba cache compiles first
    journal = (tmp_path / "data" / "journal" / f"{DAY}.rehearsal.jsonl").read_bytes().splitlines()
    session = [r for r in map(orjson.loads, journal) if r["kind"] == "trade_closed"]
    recording = day_file(tmp_path / "data", kind=store.REHEARSAL)
    trades = tmp_path / "trades.csv"
    result = subprocess.run([sys.executable, "-m", "engine", "backtest", "--config", str(tmp_path / "o.json"),
                             "--ticks", str(recording), "--trades", str(trades)], cwd=tmp_path,
                            env=process_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = trades.read_text().splitlines()[1:]
    backtest = [dict(zip(["entry_time", "side", "qty", "entry_price", "exit_time", "exit_price", "exit_reason",
                          "gross_pnl", "charges", "net_pnl", "symbol"], r.split(","), strict=True)) for r in rows]
    assert len(session) >= 3, "the rehearsal should trade several times"

    def ours(s) -> tuple:
        return (s["symbol"], s["side"], s["qty"], s["entry_time_ns"] // 10**6, s["entry_price"],
                s["exit_time_ns"] // 10**6, s["exit_price"], s["exit_reason"])

    def theirs(b) -> tuple:
        ms = [int(datetime.fromisoformat(b[k]).timestamp() * 1000) for k in ("entry_time", "exit_time")]
        return (b["symbol"], b["side"], int(b["qty"]), ms[0], float(b["entry_price"]), ms[1], float(b["exit_price"]),
                b["exit_reason"])

    # the backtest closes at the end of the data what the session left open (session.on_shutdown: keep)
    assert [ours(s) for s in session] == [theirs(b) for b in backtest[: len(session)]]
    assert len(session) <= len(backtest) <= len(session) + len(SYMBOLS)


def test_kill_9_loses_at_most_the_last_seconds_and_the_day_stays_readable(tmp_path):
    proc = otrade_run(tmp_path, "--for", "60")
    parts = store.parts_dir(day_file(tmp_path / "data", kind=store.REHEARSAL))
    try:
        deadline = time.monotonic() + 60
        while len(list(parts.glob("*.parquet"))) < 4:  # a few seconds of ticks on disk
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "otrade.err").read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        killed = time.time()
        proc.wait()
    newest = max(p.stat().st_mtime for p in parts.glob("*.parquet"))
    assert killed - newest < 2.5  # the writer was on disk within the last flush or two
    day = store.read_day(day_file(tmp_path / "data", kind=store.REHEARSAL))
    assert len(day) > 100 and day.column("ts").to_pylist() == sorted(day.column("ts").to_pylist())
    result = subprocess.run([sys.executable, "-m", "engine", "data", "list"], cwd=tmp_path,
                            env=process_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert f"{DAY}  rehearsal" in result.stdout and "recording or cut short" in result.stdout, result.stderr


async def test_the_live_process_records_kites_ticks_with_last_quantity_and_depth(tmp_path, kite_day):
    server = kite_day
    async with live_process(tmp_path, server) as proc:
        await buy(server)
        now = int(time.time())
        await server.push([Tick(INFY, 102.0, "full", True, last_quantity=7, volume=10_000, exchange_timestamp=now + 500,
                                depth=((30, 101.9, 2),) + ((0, 0.0, 0),) * 4 + ((40, 102.1, 3),))])
        day = store.tick_file(tmp_path / "data", datetime.now(IST).date())  # the market's, not synthetic

        def recorded_it() -> bool:  # a loaded machine takes its time: waited for, not slept on
            return bool(store.parts(day)) and 102.0 in store.read_day(day).column("price").to_pylist()

        await wait(recorded_it, 30)
        await stopped(proc)
    t = store.read_day(day)
    last = {c: t.column(c)[-1].as_py() for c in ("symbol", "price", "last_qty", "bid", "ask")}
    assert last == {"symbol": "NSE:INFY", "price": 102.0, "last_qty": 7, "bid": 101.9, "ask": 102.1}

