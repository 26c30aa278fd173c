"""The journal: records reach the file in order, a day per file, without the tick path waiting on the disk."""

import asyncio
from datetime import datetime

from engine.core.layout import IST
from engine.services.journal import Journal
from tests.waiting import until


def clock_at(iso: str) -> list[int]:
    return [int(datetime.fromisoformat(iso).replace(tzinfo=IST).timestamp() * 1e9)]


def test_records_stay_in_memory_until_a_flush_writes_them_in_order(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    journal = Journal(tmp_path, lambda: now[0])
    journal.record("intent", tag="a")
    journal.record("order", tag="a")
    assert journal.read_day("2026-11-23") == []
    journal.flush()
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["intent", "order"]


def test_records_after_ist_midnight_go_to_the_next_days_file(tmp_path):
    now = clock_at("2026-11-23T23:59:59")
    journal = Journal(tmp_path, lambda: now[0])
    journal.record("late")
    now[0] += 2 * 10**9
    journal.record("early")
    journal.flush()
    journal.close()
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["late"]
    assert [r["kind"] for r in journal.read_day("2026-11-24")] == ["early"]


def test_a_flush_after_close_reopens_the_file_and_appends(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    journal = Journal(tmp_path, lambda: now[0])
    journal.record("one")
    journal.flush()
    journal.close()
    journal.record("two")
    journal.flush()
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["one", "two"]


async def test_the_background_task_writes_on_its_own_and_flushes_the_rest_when_cancelled(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    journal = Journal(tmp_path, lambda: now[0])
    task = asyncio.create_task(journal.run(interval=0.01))
    journal.record("tick-path")
    await until(lambda: journal.read_day("2026-11-23"))
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["tick-path"]
    journal.record("last")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [r["kind"] for r in journal.read_day("2026-11-23")] == ["tick-path", "last"]


def test_a_torn_line_is_skipped_and_its_number_reported(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    journal = Journal(tmp_path, lambda: now[0])
    journal.record("one")
    journal.record("two")
    journal.flush()
    with journal.path("2026-11-23").open("ab") as fh:
        fh.write(b'{"ts":"2026-11-23T10:00:00+05:30","ki')
    torn: list[int] = []
    assert [r["kind"] for r in Journal(tmp_path, lambda: now[0]).read_day("2026-11-23", torn)] == ["one", "two"]
    assert torn == [3]


def test_the_record_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "2026-11-23.jsonl").write_bytes(b'{"ts":"2026-11-23T09:59:00+05:30","kind":"one"}\n{"ts')
    journal = Journal(tmp_path, lambda: now[0])  # the next run, after the crash
    journal.record("after")
    journal.flush()
    torn: list[int] = []
    assert [r["kind"] for r in journal.read_day("2026-11-23", torn)] == ["one", "after"] and torn == [2]


def test_a_rehearsal_keeps_its_own_journal_apart_from_the_real_days(tmp_path):
    now = clock_at("2026-11-23T10:00:00")
    real, rehearsal = Journal(tmp_path, lambda: now[0]), Journal(tmp_path, lambda: now[0], rehearsal=True)
    real.record("real")
    rehearsal.record("rehearsed")
    real.flush()
    rehearsal.flush()
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == ["2026-11-23.jsonl",
                                                                       "2026-11-23.rehearsal.jsonl"]
    assert [r["kind"] for r in rehearsal.read_day("2026-11-23")] == ["rehearsed"]
    assert [r["kind"] for r in real.read_day("2026-11-23")] == ["real"]


def test_dates_lists_only_the_days_of_its_own_kind(tmp_path):
    now = clock_at("2026-11-20T10:00:00")
    real, rehearsal = Journal(tmp_path, lambda: now[0]), Journal(tmp_path, lambda: now[0], rehearsal=True)
    real.record("friday")
    real.flush()
    now[0] += 3 * 86_400 * 10**9
    rehearsal.record("monday")
    rehearsal.flush()
    assert (real.dates(), rehearsal.dates()) == (["2026-11-20"], ["2026-11-23"])
