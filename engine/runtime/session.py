"""The wall-clock life of a trading day on APScheduler (Asia/Kolkata).

Each day's events come from the calendar (weekends, holidays and special sessions included) and
are scheduled as one-shot jobs; after the end-of-day report the next session is planned. The
clock may be a rehearsal clock: jobs are then placed at the real instant that corresponds to the
event on that clock. A process started mid-session joins at once; a job missed while the
machine slept runs once when it wakes (coalesced, never twice). The times come from the calendar;
``retime`` moves the jobs still to come when the config's session times change.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from engine.core.layout import IST
from engine.services.calendar import Session, TradingCalendar
from engine.services.clock import Clock

log = logging.getLogger(__name__)

TOKEN_CHECK = "token_check"
PRE_OPEN = "pre_open"
OPEN = "open"
SQUARE_OFF = "square_off"
CLOSE = "close"
REPORT = "report"


@dataclass(frozen=True)
class Event:
    name: str
    at: datetime  # on the engine's clock, IST


Hook = Callable[[Session], Awaitable[None] | None]


class SessionScheduler:
    def __init__(self, calendar: TradingCalendar, clock: Clock, hooks: dict[str, Hook],
                 pre_open: timedelta = timedelta(minutes=15),
                 report_after_close: timedelta = timedelta(minutes=5)) -> None:
        self.calendar = calendar
        self.token_check: time | None = None  # live: when to check the broker session each day
        self.clock = clock
        self.hooks = hooks
        self.pre_open = pre_open
        self.report_after_close = report_after_close
        self.session: Session | None = None
        self.pending: list[Event] = []
        self.on_plan: Callable[[Session], None] | None = None  # told each session planned (today's or the next)
        self._scheduler = AsyncIOScheduler(timezone=IST, job_defaults={"coalesce": True,
                                                                        "misfire_grace_time": None})

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now_ns() / 1e9, IST)

    def start(self) -> None:
        self._scheduler.start()
        self._plan()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def next_event(self) -> Event | None:
        """The next event still to come on the clock (one joined late runs now: it is not next)."""
        now = self.now()
        return min((e for e in self.pending if e.at > now), key=lambda e: e.at, default=None)

    def events_for(self, session: Session) -> list[Event]:
        check = ([Event(TOKEN_CHECK, min(datetime.combine(session.day, self.token_check, IST),
                                          session.open - self.pre_open))] if self.token_check else [])
        return [
            *check,
            Event(PRE_OPEN, session.open - self.pre_open),
            Event(OPEN, session.open),
            Event(SQUARE_OFF, session.square_off),
            Event(CLOSE, session.close),
            Event(REPORT, session.close + self.report_after_close),
        ]

    def _plan(self) -> None:
        now = self.now()
        session = self.calendar.current_or_next(now)
        self.session = session
        events = self.events_for(session)
        inside = session.open <= now < session.close
        self.pending = []
        for event in events:
            if event.at > now:
                self._add(event)
            elif event.name in (TOKEN_CHECK, PRE_OPEN) or (inside and event.name == OPEN):
                # joined late: check, warm up (and open when the session is running) at once, in order
                order = {TOKEN_CHECK: 0, PRE_OPEN: 1, OPEN: 2}[event.name]
                self._add(event, now + timedelta(milliseconds=order))
        if self.on_plan is not None:
            self.on_plan(session)
        log.info("%s", self.plan())

    def plan(self) -> str:
        """The session planned, in words: today's, or the next one, and why not today's."""
        session, now = self.session, self.now()
        if session is None:
            return "no session planned"
        hours = f"{session.name} session {session.open:%H:%M}–{session.close:%H:%M} IST"
        if session.open <= now:
            return f"session open: {hours}"
        closed = "" if self.calendar.session(now.date()) else f"{now:%a %d %b} is not a trading day: "
        return f"{closed}next: open at {session.open:%a %d %b %H:%M} IST ({hours})"

    def retime(self) -> None:
        """The calendar's times changed (a config change): move the jobs of the planned session still
        to come. One moved into the past runs at once; one already run stays run."""
        if self.session is None:
            return
        self.session = self.calendar.session(self.session.day)  # a trading day whatever its times
        moved = {e.name: e for e in self.events_for(self.session)}
        for event in list(self.pending):
            new = moved.get(event.name)
            if new is None or new.at == event.at:
                continue
            try:
                self._scheduler.remove_job(_job_id(event))
            except JobLookupError:
                continue  # due already: its run is on its way
            self.pending.remove(event)
            self._add(new)
        self.pending.sort(key=lambda e: e.at)
        if self.on_plan is not None:
            self.on_plan(self.session)

    def _add(self, event: Event, run_at: datetime | None = None) -> None:
        """Schedules ``event`` at its own time, or at ``run_at`` (one joined late: it keeps its own time)."""
        self.pending.append(event)
        offset = self.now() - datetime.now(IST)  # rehearsal clocks run ahead or behind the system's
        real = max((run_at or event.at) - offset, datetime.now(IST))
        self._scheduler.add_job(self._fire, DateTrigger(real), args=[event], id=_job_id(event), replace_existing=True)

    async def _fire(self, event: Event) -> None:
        if event in self.pending:
            self.pending.remove(event)
        log.info("session event %s (%s)", event.name, event.at.strftime("%Y-%m-%d %H:%M"))
        hook = self.hooks.get(event.name)
        try:
            if hook is not None:
                result = hook(self.session)
                if result is not None:
                    await result
        except Exception:
            log.exception("session hook %s failed", event.name)
        if event.name == REPORT:
            self._plan()


def _job_id(event: Event) -> str:
    return f"{event.name}-{event.at.isoformat()}"
