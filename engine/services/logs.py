"""Process logging: one line per event on stderr (and a rotating file if asked), secrets redacted,
the last lines kept in memory for /logs.

Secrets live in one process-wide registry: the environment's at setup, and every token the process
learns later (``add_secret`` the moment it is learned). Log lines and every outgoing chat message
pass ``redact``.

With the console (``otrade run --console``) the terminal prints each event itself, so ``console``
keeps the event log's lines off stderr (the file and /logs still get them) and stamps the other
lines as the events are: in IST, on the clock the engine runs on (as /logs does once the chat
attaches: ``LogBuffer.stamp_with``). The file keeps the wall clock's full date and time.
"""

import logging
import logging.handlers
import os
import sys
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from engine.core.layout import IST
from engine.services import events

EVENT_LOGGER = "otrade.events"  # the logger engine.services.events.log_events writes to in ``otrade run``

SECRET_VARS = ("TELEGRAM_BOT_TOKEN", "KITE_API_SECRET", "KITE_ACCESS_TOKEN")
# The API key is in the /login link the trader taps, so it may go to the chat but never to a log.
LOG_ONLY_VARS = ("KITE_API_KEY",)
MIN_SECRET = 6  # shorter values would blank ordinary words
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"

_secrets: tuple[str, ...] = ()  # longest first, so a secret holding another is replaced whole
_stderr: logging.Handler | None = None  # setup's stderr handler: what the console changes
_KINDS = frozenset((events.ORDER_PLACED, events.ORDER_UPDATED, events.FILL, events.TRADE_CLOSED, events.ALERT,
                    events.STATE_CHANGED, events.CONFIG_CHANGED, events.SESSION, events.REPORT))


def add_secret(value: str) -> None:
    """From now on ``value`` reads ``***`` in every log line and every outgoing message."""
    global _secrets
    if len(value) >= MIN_SECRET and value not in _secrets:
        _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:  # add_secret replaces the tuple, never changes it: safe against other threads
        text = text.replace(secret, "***")
    return text


class Redact(logging.Filter):
    """Redact the final message, whatever logged it: the registry's secrets plus log-only ones."""

    def __init__(self, log_only: list[str]) -> None:
        super().__init__()
        self.log_only = [s for s in log_only if len(s) >= MIN_SECRET]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        message = redact(message)
        for secret in self.log_only:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class _EngineClock(logging.Formatter):
    """``HH:MM:SS`` in IST on the engine's clock (a rehearsal's, not the wall's), like the event lines."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.now_ns = now_ns

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(self.now_ns() / 1e9, IST).strftime("%H:%M:%S")


class LogBuffer(logging.Handler):
    """The last log records, for /logs."""

    def __init__(self, size: int = 500) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def stamp_with(self, now_ns: Callable[[], int]) -> None:
        """Lines from now on stamped like the chat's messages: in IST, on the engine's clock."""
        self.setFormatter(_EngineClock(now_ns))

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines, fewer only when fewer were logged; a record of several lines (a
        traceback) counts each of them."""
        with self.lock:  # emit runs under it, from worker threads too: no deque mutated mid-copy
            records = list(self.lines)
        lines: list[str] = []
        for record in reversed(records):
            lines[:0] = record.splitlines()
            if len(lines) >= n:
                break
        return lines[-n:]


def _event_line(record: logging.LogRecord) -> bool:
    """A line of the event log that says what an event line says (not its own warnings)."""
    return record.name == EVENT_LOGGER and record.getMessage().split(":", 1)[0] in _KINDS


def _not_an_event_line(record: logging.LogRecord) -> bool:
    return not _event_line(record)


def console(now_ns: Callable[[], int]) -> None:
    """The terminal is the console's from now on: the events it prints leave stderr (the file and
    /logs keep them), the other lines take the events' clock. Once is enough; again changes nothing."""
    if _stderr is not None:
        _stderr.addFilter(_not_an_event_line)  # a filter already there is not added twice
        _stderr.setFormatter(_EngineClock(now_ns))


def setup(level: str = "INFO", file: Path | None = None) -> LogBuffer:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    for name in SECRET_VARS:
        add_secret(os.environ.get(name, ""))
    redact_filter = Redact([os.environ.get(name, "") for name in LOG_ONLY_VARS])
    global _stderr
    buffer = LogBuffer()
    _stderr = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [_stderr, buffer]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(file, maxBytes=5_000_000, backupCount=5))
    for handler in handlers:
        handler.addFilter(redact_filter)
        if handler is not buffer:
            handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    # httpx logs every request URL, and Telegram's carry the bot token: keep them out entirely.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return buffer
