"""Console transport: the same commands typed on stdin; replies and alerts on stdout."""

import asyncio
import sys
from typing import TextIO

from bot.commands import CONSOLE, Commands, Reply
from bot.notifier import Message


class ConsoleTransport:
    def __init__(self, commands: Commands, out: TextIO = sys.stdout) -> None:
        self.commands = commands
        self.out = out
        self._buttons: tuple[tuple[str, str], ...] = ()

    def put(self, message: Message) -> None:
        marker = "!!" if message.critical else "··" if message.silent else "--"
        print(f"{marker} {message.text}", file=self.out, flush=True)

    def show(self, reply: Reply | None) -> None:
        if reply is None:
            return
        print(reply.text, file=self.out, flush=True)
        self._buttons = reply.buttons
        for k, (label, _) in enumerate(reply.buttons, start=1):
            print(f"  [{k}] {label}", file=self.out, flush=True)

    def handle_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if line.isdigit() and 1 <= int(line) <= len(self._buttons):
            self.show(self.commands.handle_button(CONSOLE, self._buttons[int(line) - 1][1]))
        else:
            self.show(self.commands.handle_text(CONSOLE, line if line.startswith("/") else f"/{line}"))

    async def run(self) -> None:
        """Read commands from stdin until it closes (a closed stdin leaves the process running)."""
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            self.handle_line(line)
