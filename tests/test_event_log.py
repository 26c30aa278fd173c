"""Engine events as log lines: one line each, the last ones of a stopping process included."""

import asyncio
import logging

from engine.services.events import ALERT, REPORT, Event, EventBus, log_events

LOG = logging.getLogger("test.events")


async def test_a_multi_line_event_is_one_log_line(caplog):
    bus = EventBus()
    sub = bus.subscribe()
    task = asyncio.create_task(log_events(sub, LOG))
    with caplog.at_level(logging.INFO, "test.events"):
        bus.publish(Event(REPORT, 0, {"text": "End of day: 3 trades\nNSE:INFY: ₹12.00 net"}))
        await asyncio.sleep(0.01)
    task.cancel()
    assert [r.getMessage() for r in caplog.records] == ["report: End of day: 3 trades / NSE:INFY: ₹12.00 net"]


async def test_an_alert_logs_at_its_level(caplog):
    bus = EventBus()
    task = asyncio.create_task(log_events(bus.subscribe(), LOG))
    with caplog.at_level(logging.INFO, "test.events"):
        bus.publish(Event(ALERT, 0, {"text": "Daily loss limit reached", "level": "critical"}, critical=True))
        bus.publish(Event(ALERT, 0, {"text": "Ticks are flowing again", "level": "info"}))
        await asyncio.sleep(0.01)
    task.cancel()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.CRITICAL, "alert: Daily loss limit reached"), (logging.INFO, "alert: Ticks are flowing again")]


async def test_events_still_queued_when_the_log_stops_are_logged(caplog):
    bus = EventBus()
    task = asyncio.create_task(log_events(bus.subscribe(), LOG))
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, "test.events"):
        bus.publish(Event(ALERT, 0, {"text": "OTrade stopping (PAUSED); no open position", "level": "critical"}))
        task.cancel()  # before the task ran again: the stopping process's last alert
        await asyncio.gather(task, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records] == ["alert: OTrade stopping (PAUSED); no open position"]
