"""Which days NSE trades and when: exchange_calendars' XBOM plus our own overrides.

XBOM (BSE) follows the same exchange holidays as NSE; its 2026 list matches NSE's circular. The
overrides file adds holidays declared late and special sessions such as Muhurat trading.

The calendar is the one source of each day's session times, square-off included: the scheduler's
jobs and the kernel's session window both read them from here, and a config change retimes both.

XBOM's closed weekdays are kept in a small file in the process's cache folder (``NUMBA_CACHE_DIR``, which
``engine/__init__`` sets: beside the code or under the data directory), named by a hash of the library's
version and XBOM's own file: exchange_calendars and pandas cost 0.3 s to import, most of a warm start.
"""

import functools
import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import orjson

from engine.core.layout import IST

SHIPPED_OVERRIDES = Path(__file__).resolve().parents[2] / "config" / "calendar.json"
LIBRARY_FILES = ("_version.py", "exchange_calendar_xbom.py")  # XBOM's days change with these: they name its file


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


@dataclass(frozen=True)
class ExchangeDays:
    """XBOM's weekdays without a session, within the days the library knows (outside them, as the
    library says, every weekday is open)."""

    closed: frozenset[date]
    made: date
    bounded: bool  # the range is the library's own (its precomputed holidays); else its default, which moves daily


def library_folder() -> Path:
    """The installed exchange_calendars, found without importing it."""
    spec = importlib.util.find_spec("exchange_calendars")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("exchange_calendars is not installed: the trading calendar needs it")
    return Path(spec.origin).parent


def library_key(folder: Path) -> str:
    """A hash of the library's version and XBOM's file in ``folder``: it names the file of XBOM's days."""
    return hashlib.sha256(b"".join((folder / f).read_bytes() for f in LIBRARY_FILES)).hexdigest()[:16]


def days_file(key: str) -> Path | None:
    """Where XBOM's days for the library ``key`` names are kept: the process's cache folder."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    return Path(folder) / "calendar" / f"xbom-{key}.json" if folder else None


def _from_library(today: date) -> ExchangeDays:
    import exchange_calendars as xcals
    import pandas as pd

    with warnings.catch_warnings():  # exchange_calendars' own pandas deprecations are not ours
        warnings.simplefilter("ignore")
        default = xcals.get_calendar("XBOM")
        first, last = type(default).bound_min(), type(default).bound_max()
        bounded = first is not None and last is not None
        xbom = xcals.get_calendar("XBOM", start=first, end=last) if bounded else default
    closed = pd.bdate_range(xbom.first_session, xbom.last_session).difference(xbom.sessions)
    return ExchangeDays(frozenset(t.date() for t in closed), today, bounded)


def _read(file: Path) -> ExchangeDays:
    data = orjson.loads(file.read_bytes())
    return ExchangeDays(frozenset(map(date.fromisoformat, data["closed"])), date.fromisoformat(data["made"]),
                        data["bounded"] is True)


def _write(file: Path, days: ExchangeDays) -> None:
    data = {"made": days.made.isoformat(), "bounded": days.bounded,
            "closed": sorted(d.isoformat() for d in days.closed)}
    tmp = file.with_name(f".{file.name}.{os.getpid()}")
    try:  # whole or not at all: a concurrent process (a sweep's workers) reads the old file or this one
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, file)
    except OSError:  # a read-only cache folder: every process asks the library, as it did before the file
        tmp.unlink(missing_ok=True)


@functools.cache
def exchange_days() -> ExchangeDays:
    """XBOM's days: from the cache folder's file when it is this library's (and, for a range that moves,
    today's), else from the library, and written there for the next process."""
    today = date.today()
    file = days_file(library_key(library_folder()))
    if file is not None:
        try:
            days = _read(file)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not made yet, or damaged: made again
        else:
            if days.bounded or days.made == today:
                return days
    days = _from_library(today)
    if file is not None:
        _write(file, days)
    return days


class TradingCalendar:
    def __init__(self, open_: str = "09:15", close: str = "15:30", overrides: Path = SHIPPED_OVERRIDES,
                 square_off: str = "15:15") -> None:
        self.retime(open_, close, square_off)
        data = orjson.loads(Path(overrides).read_bytes())
        self.holidays = {date.fromisoformat(d) for d in data.get("holidays", [])}
        self.special = {date.fromisoformat(s["date"]): s for s in data.get("special_sessions", [])}

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
        if day in exchange_days().closed:
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
