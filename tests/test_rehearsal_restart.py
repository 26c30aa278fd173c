"""A rehearsal started again on a day its journal already has: the clock never runs back over the
journal, and the synthetic market goes on along the same price path."""

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from engine.data import store
from engine.data.feeds import SyntheticFeed
from engine.runtime.app import WARM_DAYS, _rehearsal_start
from engine.services.calendar import TradingCalendar
from engine.services.journal import Journal
from tests.conftest import config_file, journal_records, process_env
from tests.test_feeds import VirtualClock
from tests.test_rehearsal_warm_up import instant, play

ROOT = Path(__file__).resolve().parent.parent


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_feed_made_again_later_the_same_day_continues_the_same_price_path():
    def feed(clock):
        return SyntheticFeed(["NSE:INFY"], [1500.0], [0.1], 7, clock, 500, TradingCalendar(), WARM_DAYS)

    first = await play(feed(VirtualClock(instant("2026-11-23T10:00:00+05:30"))), instant("2026-11-23T10:10:00+05:30"))
    again = await play(feed(VirtualClock(instant("2026-11-23T10:05:00+05:30"))), instant("2026-11-23T10:10:00+05:30"))
    assert again and again == [t for t in first if t[1] >= instant("2026-11-23T10:05:00+05:30")]


def journal_until(data_dir: Path, last: str) -> Journal:
    stamps = iter([instant("2026-11-23T09:15:00+05:30"), round(at(last).timestamp() * 1e6) * 1000])
    journal = Journal(data_dir, lambda: next(stamps), rehearsal=True)
    journal.record("state", old="IDLE", new="RUNNING", reason="session open")
    journal.record("state", old="RUNNING", new="PAUSED", reason="process stopping")
    journal.flush()
    journal.close()
    return journal


def test_a_clock_asked_to_run_back_over_the_days_journal_starts_where_the_journal_ends(tmp_path):
    journal = journal_until(tmp_path, "2026-11-23T10:07:12.5+05:30")
    start, note = _rehearsal_start(tmp_path, at("2026-11-23T09:14:30+05:30"))
    assert start == at("2026-11-23T10:07:12.501+05:30")
    assert note == ("The rehearsal of Mon 23 Nov continues at 10:07:12 IST, where its journal and recording end, "
                    "not at 09:14:30 as asked: a clock never runs back over its own day. To rehearse the day from the "
                    f"start again, remove {journal.path('2026-11-23')} and 2026-11-23.rehearsal.parquet (and its "
                    f".parts) in {tmp_path / 'ticks'}")


def test_a_clock_asked_to_run_back_over_the_days_recording_starts_where_the_recording_ends(tmp_path):
    journal_until(tmp_path, "2026-11-23T10:07:12.5+05:30")
    day = store.tick_file(tmp_path, at("2026-11-23T10:00:00+05:30").date(), store.REHEARSAL)
    store.append_part(day, pa.table({"ts": [instant("2026-11-23T10:09:30+05:30")], "symbol": ["NSE:INFY"],
                                     "price": [1500.0], "volume": [1.0]}), 1)  # ticks after the journal's end
    start, note = _rehearsal_start(tmp_path, at("2026-11-23T09:14:30+05:30"))
    assert start == at("2026-11-23T10:09:30.001+05:30") and "continues at 10:09:30 IST" in note


def test_a_clock_after_the_journals_end_or_on_another_day_starts_as_asked(tmp_path):
    journal_until(tmp_path, "2026-11-23T10:07:12.5+05:30")
    for asked in ("2026-11-23T10:30:00+05:30", "2026-11-25T09:14:30+05:30"):
        assert _rehearsal_start(tmp_path, at(asked)) == (at(asked), "")


def test_otrade_run_started_again_with_the_same_clock_continues_the_day(tmp_path):
    config_file(tmp_path / "o.json", strategy={"kind": "ema_cross", "fast": 40, "slow": 200, "allow_short": False},
                bracket={"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}, tick_size=0.1,
                paper={"tick_interval_ms": 10})
    env = process_env(tmp_path)
    path = tmp_path / "data" / "journal" / "2026-11-23.rehearsal.jsonl"

    def start(name: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "engine", "run", "--console", "--config", str(tmp_path / "o.json"), "--clock",
                "2026-11-23T10:00:00+05:30"]
        out, err = (tmp_path / f"{name}.out").open("w"), (tmp_path / f"{name}.err").open("w")
        return subprocess.Popen(argv, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)

    def fills() -> list[dict]:
        return [r for r in journal_records(path) if r["kind"] == "order" and r["status"] == "COMPLETE"]

    def wait(ready, proc, limit=90.0) -> None:
        deadline = time.monotonic() + limit
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

    def stopped(proc: subprocess.Popen, name: str) -> int:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{name} run still running 15 s after SIGTERM:\n"
                                 f"{(tmp_path / f'{name}.err').read_text()[-4000:]}") from None

    first = start("first")
    try:
        wait(lambda: fills() and fills()[-1]["purpose"] == "entry" and len(journal_records(path)) > 2, first)
    finally:
        assert stopped(first, "first") == 0
    before = journal_records(path)
    last_price = [r for r in before if r["kind"] == "order" and r["status"] == "COMPLETE"][-1]["average_price"]

    second = start("second")
    try:
        wait(lambda: len(fills()) > len([r for r in before if r["kind"] == "order" and r["status"] == "COMPLETE"]),
             second)
    finally:
        assert stopped(second, "second") == 0
    after = journal_records(path)[len(before):]
    console = (tmp_path / "second.out").read_text()
    assert "The rehearsal of Mon 23 Nov continues at 10:0" in console and "Restored from the journal" in console
    assert all(a["ts"] >= before[-1]["ts"] for a in after)  # nothing of the second run before the first's end
    first_fill = next(r for r in after if r["kind"] == "order" and r["status"] == "COMPLETE")
    assert abs(first_fill["average_price"] / last_price - 1) < 0.005  # the market went on: no jump
