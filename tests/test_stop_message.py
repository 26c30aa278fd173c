"""What the stop message says happens to open paper positions, per ``session.on_shutdown``."""

import asyncio
import logging

from engine.core import layout as L
from engine.runtime.app import _shutdown
from engine.services.events import ALERT
from tests.test_session import open_position, runtime


async def stop(rt, on_shutdown: str, ticks_while_stopping=()) -> str:
    """Stop the runtime as the process does, the given ticks arriving meanwhile; the stopping alert's text."""
    sub = rt.bus.subscribe()

    async def ticks():
        for ts, price in ticks_while_stopping:
            await asyncio.sleep(0.1)
            rt.engine.on_tick(0, ts, price)

    feed = asyncio.create_task(ticks())
    await _shutdown(rt, [], None, on_shutdown)
    await feed
    alerts = []
    while (event := sub.get_nowait()) is not None:
        if event.kind == ALERT:
            alerts.append(event.data["text"])
    [text] = [a for a in alerts if a.startswith("OTrade stopping")]
    return text


async def test_kept_paper_positions_are_said_to_be_restored_from_the_journal(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T11:00:00+05:30")
    rt.engine.start_session()
    open_position(rt, "11:00:00")
    text = await stop(rt, "keep")
    assert text == ("OTrade stopping (PAUSED); 1 open paper position(s) kept in today's journal and restored with "
                    "their target and stop at the next start today (session.on_shutdown: keep)")
    assert "broker" not in text


async def test_flattened_paper_positions_are_said_to_be_flattened(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T11:00:00+05:30")
    rt.engine.start_session()
    open_position(rt, "11:00:00")
    next_tick = int(rt.engine.arrays.clk[0, L.C_LAST]) + 10**9
    text = await stop(rt, "flatten", [(next_tick, 101.6)])
    assert text == "OTrade stopping (PAUSED); 1 open paper position(s) flattened"
    assert rt.engine.positions() == []


async def test_a_flatten_no_tick_filled_says_the_position_is_kept(tmp_path):
    rt = runtime(tmp_path, "2026-11-23T11:00:00+05:30")
    rt.engine.start_session()
    open_position(rt, "11:00:00")
    text = await stop(rt, "flatten")
    assert text.startswith("OTrade stopping (PAUSED); 1 of 1 open paper position(s) not flattened in time "
                           "(no tick came): kept in today's journal")


async def test_a_task_that_outlives_its_cancel_is_named_with_where_it_waits_and_the_stop_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="otrade")
    rt = runtime(tmp_path, "2026-11-23T11:00:00+05:30")

    async def deaf_to_one_cancel():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # as a cancel dropped by 3.11's wait_for left a task running

    task = asyncio.create_task(deaf_to_one_cancel(), name="deaf")
    await asyncio.sleep(0)
    await _shutdown(rt, [task], None, "keep")
    assert "task deaf still runs after its cancel: left behind" in caplog.text
    assert "in deaf_to_one_cancel" in caplog.text
    assert "stopped in" in caplog.text  # the journal flushed and closed after it
    task.cancel()
