"""Process logging: one line per event on stderr (and a rotating file if asked), secrets redacted,
the last lines kept in memory for /logs."""

import logging
import logging.handlers
import os
import sys
from collections import deque
from pathlib import Path

SECRET_VARS = ("TELEGRAM_BOT_TOKEN", "KITE_API_KEY", "KITE_API_SECRET", "KITE_ACCESS_TOKEN")
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"


class Redact(logging.Filter):
    """Replace every secret from the environment in the final message, whatever logged it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        for secret in self.secrets:
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
    redact = Redact([os.environ[v] for v in SECRET_VARS if os.environ.get(v)])
    buffer = LogBuffer()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), buffer]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(file, maxBytes=5_000_000, backupCount=5))
    for handler in handlers:
        handler.addFilter(redact)
        if handler is not buffer:
            handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    # httpx logs every request URL, and Telegram's carry the bot token: keep them out entirely.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return buffer
