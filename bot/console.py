"""Console transport: the same commands typed on stdin; replies and alerts on stdout, redacted."""

import asyncio
import contextlib
import inspect
import sys
import threading
from collections.abc import Awaitable
from typing import TextIO

from bot.commands import CONSOLE, Commands, Reply
from bot.notifier import Message
from engine.services.logs import redact


class ConsoleTransport:
    def __init__(self, commands: Commands, out: TextIO = sys.stdout) -> None:
        self.commands = commands
        self.out = out
        self._buttons: tuple[tuple[str, str], ...] = ()

    def put(self, message: Message) -> None:
        marker = "!!" if message.critical else "··" if message.silent else "--"
        print(f"{marker} {redact(message.text)}", file=self.out, flush=True)

    def show(self, reply: Reply | Awaitable[Reply] | None) -> Awaitable[None] | None:
        """Print the reply; one still to come (a command doing file I/O off the loop) is returned to await."""
        if inspect.isawaitable(reply):
            return self._show_awaited(reply)
        if reply is None:
            return None
        print(redact(reply.text), file=self.out, flush=True)
        self._buttons = reply.buttons
        for k, (label, _) in enumerate(reply.buttons, start=1):
            print(f"  [{k}] {label}", file=self.out, flush=True)
        return None

    async def _show_awaited(self, reply: Awaitable[Reply]) -> None:
        self.show(await reply)

    def handle_line(self, line: str) -> Awaitable[None] | None:
        line = line.strip()
        if not line:
            return None
        if line.isdigit() and 1 <= int(line) <= len(self._buttons):
            return self.show(self.commands.handle_button(CONSOLE, self._buttons[int(line) - 1][1]))
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
