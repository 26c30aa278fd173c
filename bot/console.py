"""Console transport: the same commands typed on stdin; replies, alerts and every engine event on
stdout, redacted.

A number typed alone picks an option of the bot's most recent question (the console's buttons).
Events are printed as they happen and in that order, each once, stamped in IST on the engine's
clock; ``engine.services.logs.console`` keeps their log lines off the terminal (``otrade run``
subscribes the console when it subscribes the event log, so the two see the same events). A picture
(/chart, /equity, the end-of-day report's) is saved as a PNG under ``<data>/charts/`` and its path
printed.
"""

import asyncio
import contextlib
import inspect
import itertools
import sys
import threading
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bot.commands import CONSOLE, Commands, Reply
from bot.notifier import Message, format_event, notify_key
from engine.charts import Picture
from engine.core.layout import IST
from engine.services.events import CONFIG_CHANGED, Event, Subscription
from engine.services.logs import redact

NO_QUESTION = ("No question is waiting for an answer; a number picks an option of the bot's last question. "
               "Send /help for the commands.")


class ConsoleTransport:
    def __init__(self, commands: Commands, out: TextIO = sys.stdout) -> None:
        self.commands = commands
        self.out = out
        self._buttons: tuple[tuple[str, str], ...] = ()  # the options of the bot's most recent question

    def _print(self, text: str) -> None:
        print(redact(text), file=self.out, flush=True)

    def put(self, message: Message) -> None:
        marker = "!!" if message.critical else "··" if message.silent else "--"
        self._print(f"{marker} {message.text}")

    def print_event(self, event: Event) -> None:
        """One engine event as one line: ``!!`` critical, ``--`` notified aloud in chat, ``··`` otherwise."""
        if event.kind == CONFIG_CHANGED:  # it names no change: the config's own log line says what changed
            return
        key = notify_key(event)
        loud = bool(key) and getattr(self.commands.s.config.config.bot.notify, key) == "on"
        self._print(f"{'!!' if event.critical else '--' if loud else '··'} {format_event(event)}")

    async def follow(self, events: Subscription) -> None:
        """Print every event as it comes, none held back or put first (a terminal has no rate limit to
        coalesce for); stopped, what is still queued (the stopping alert) is printed before it ends."""
        try:
            while True:
                event = await events.get()
                self.print_event(event)
                if (picture := event.data.get("picture")) is not None:
                    self._print(f"   picture: {await asyncio.to_thread(self.save, picture)}")
        finally:
            while (event := events.get_nowait()) is not None:
                self.print_event(event)
                if (picture := event.data.get("picture")) is not None:
                    self._print(f"   picture: {self.save(picture)}")

    def save(self, picture: Picture) -> Path:
        """The PNG under ``<data>/charts/``, named by the engine's clock and what it shows."""
        folder = self.commands.s.data_dir / "charts"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{datetime.fromtimestamp(self.commands.s.now_ns() / 1e9, IST):%Y-%m-%d_%H%M%S}_{picture.name}"
        for n in itertools.count():
            path = folder / (f"{stamp}.png" if not n else f"{stamp}-{n}.png")
            with contextlib.suppress(FileExistsError), open(path, "xb") as out:  # never over an earlier one
                out.write(picture.png)
                return path.resolve()
        raise AssertionError  # unreachable: the count never ends

    def show(self, reply: Reply | Awaitable[Reply] | None) -> Awaitable[None] | None:
        """Print the reply; one still to come (a command doing file I/O off the loop) is returned to await."""
        if inspect.isawaitable(reply):
            return self._show_awaited(reply)
        if reply is None:
            return None
        if reply.picture is not None:
            return self._show_picture(reply)
        self._print(reply.text)
        if reply.buttons:  # a new question; a reply without options leaves the last one answerable
            self._buttons = reply.buttons
        for k, (label, _) in enumerate(reply.buttons, start=1):
            self._print(f"  [{k}] {label}")
        return None

    async def _show_awaited(self, reply: Awaitable[Reply]) -> None:
        if (saving := self.show(await reply)) is not None:
            await saving

    async def _show_picture(self, reply: Reply) -> None:
        path = await asyncio.to_thread(self.save, reply.picture)  # the disk, off the event loop
        self._print(f"{reply.text}\n  picture: {path}")

    def _answer(self, number: int) -> Reply | Awaitable[Reply] | None:
        if not self._buttons:
            return Reply(NO_QUESTION)
        if not 1 <= number <= len(self._buttons):
            return Reply(f"No option {number}: the last question's options are numbered 1 to {len(self._buttons)}.")
        buttons, self._buttons = self._buttons, ()  # a question is answered once
        return self.commands.handle_button(CONSOLE, buttons[number - 1][1])

    def handle_line(self, line: str) -> Awaitable[None] | None:
        line = line.strip()
        if not line:
            return None
        if line.isdigit():
            return self.show(self._answer(int(line)))
        return self.show(self.commands.handle_text(CONSOLE, line if line.startswith("/") else f"/{line}"))

    async def run(self) -> None:
        """Read commands from stdin until it closes (a closed stdin leaves the process running)."""
        while True:
            line = await _readline()
            if not line:
                return
            if (shown := self.handle_line(line)) is not None:
                await shown


def _readline() -> asyncio.Future[str]:
    """The next stdin line, read on a daemon thread: a readline blocked in the loop's executor is
    joined at exit, which kept a stopped process (SIGTERM, Ctrl-C) waiting for Enter."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            line = sys.stdin.readline()
        except (OSError, ValueError):  # stdin closed or unreadable: as at its end
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop closed while this thread waited
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(line))

    threading.Thread(target=read, name="console-stdin", daemon=True).start()
    return future
