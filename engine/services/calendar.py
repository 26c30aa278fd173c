"""Which days NSE trades and when: exchange_calendars' XBOM plus our own overrides.

XBOM (BSE) follows the same exchange holidays as NSE; its 2026 list matches NSE's circular. The
overrides file adds holidays declared late and special sessions such as Muhurat trading.

The calendar is the one source of each day's session times, square-off included: the scheduler's
jobs and the kernel's session window both read them from here, and a config change retimes both.
"""

import functools
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import exchange_calendars as xcals
import orjson

from engine.core.layout import IST

SHIPPED_OVERRIDES = Path(__file__).resolve().parents[2] / "config" / "calendar.json"


@dataclass(frozen=True)
class Session:
    day: date
    open: datetime  # IST-aware
    close: datetime
    square_off: datetime  # our last exit, before the exchange's close
    name: str = "regular"


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class TradingCalendar:
    def __init__(self, open_: str = "09:15", close: str = "15:30", overrides: Path = SHIPPED_OVERRIDES,
                 square_off: str = "15:15") -> None:
        self.retime(open_, close, square_off)
        data = orjson.loads(Path(overrides).read_bytes())
        self.holidays = {date.fromisoformat(d) for d in data.get("holidays", [])}
        self.special = {date.fromisoformat(s["date"]): s for s in data.get("special_sessions", [])}

    @functools.cached_property
    def _xbom(self):
        with warnings.catch_warnings():  # exchange_calendars' own pandas deprecations are not ours
            warnings.simplefilter("ignore")
            return xcals.get_calendar("XBOM")

    def retime(self, open_: str, close: str, square_off: str) -> None:
        """The regular session's times (``session.open``, ``close``, ``square_off`` of the config)."""
        self.open, self.close, self.square_off = _hhmm(open_), _hhmm(close), _hhmm(square_off)
        self.session.cache_clear()

    @functools.lru_cache(maxsize=512)  # noqa: B019 - one calendar per process, bounded
    def session(self, day: date) -> Session | None:
        """The session on ``day``, or None when the exchange is closed."""
        if day in self.special:
            s = self.special[day]
            close = datetime.combine(day, _hhmm(s["close"]), IST)
            # a special session (Muhurat) keeps the regular session's margin between square-off and close
            margin = datetime.combine(day, self.close) - datetime.combine(day, self.square_off)
            return Session(day, datetime.combine(day, _hhmm(s["open"]), IST), close, close - margin,
                           s.get("name", "special"))
        if day.weekday() >= 5 or day in self.holidays:
            return None
        xbom = self._xbom
        if xbom.first_session.date() <= day <= xbom.last_session.date() and not xbom.is_session(day.isoformat()):
            return None
        return Session(day, datetime.combine(day, self.open, IST), datetime.combine(day, self.close, IST),
                       datetime.combine(day, self.square_off, IST))

    def current_or_next(self, now: datetime) -> Session:
        """The session in progress at ``now``, else the next one to open."""
        day = now.astimezone(IST).date()
        for k in range(400):
            s = self.session(day + timedelta(days=k))
            if s is not None and s.close > now:
                return s
        raise LookupError(f"no trading session within 400 days of {now.isoformat()}")
