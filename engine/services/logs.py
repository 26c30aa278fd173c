"""Process logging: one line per event on stderr (and a rotating file if asked), secrets redacted,
the last lines kept in memory for /logs.

Secrets live in one process-wide registry: the environment's at setup, and every token the process
learns later (``add_secret`` the moment it is learned). Log lines and every outgoing chat message
pass ``redact``.
"""

import logging
import logging.handlers
import os
import sys
from collections import deque
from pathlib import Path

SECRET_VARS = ("TELEGRAM_BOT_TOKEN", "KITE_API_SECRET", "KITE_ACCESS_TOKEN")
# The API key is in the /login link the trader taps, so it may go to the chat but never to a log.
LOG_ONLY_VARS = ("KITE_API_KEY",)
MIN_SECRET = 6  # shorter values would blank ordinary words
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"

_secrets: tuple[str, ...] = ()  # longest first, so a secret holding another is replaced whole


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


class LogBuffer(logging.Handler):
    """The last log lines, for /logs."""

    def __init__(self, size: int = 500) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def setup(level: str = "INFO", file: Path | None = None) -> LogBuffer:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    for name in SECRET_VARS:
        add_secret(os.environ.get(name, ""))
    redact_filter = Redact([os.environ.get(name, "") for name in LOG_ONLY_VARS])
    buffer = LogBuffer()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), buffer]
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
