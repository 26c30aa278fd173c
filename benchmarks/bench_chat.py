"""Chat-ops against the local Bot API server (tests/botapi.py) on loopback.

1. Command round trip (update served to the bot → reply received by the server), with the engine
   trading synthetic ticks in the same loop; bare python-telegram-bot (a handler that answers
   "ok") measured in the same run for comparison. Goal: p50 <= 5 ms, p99 <= 20 ms.
2. Tick-path latency while 50 commands/s and alert bursts flow, against the same loop idle.
   Goal: loaded p99 within 1.5x of idle p99.
"""

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from telegram.ext import Application, MessageHandler, filters

from benchmarks.common import percentiles, report
from bot.commands import Commands, Services
from bot.notifier import Notifier
from bot.telegram import TelegramTransport
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.data.synthetic import generate
from engine.engine import Engine
from engine.services.events import ALERT, Event, EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog
from tests.botapi import FakeBotAPI

TOKEN = "123456:BENCH-token"
CHAT = 1001
COMMANDS = 300


async def round_trips(api: FakeBotAPI, n: int, text: str = "/status") -> np.ndarray:
    """Commands 50 ms apart: a phone's pace, well under Telegram's 30 messages/s that PTB's limiter keeps."""
    out = np.empty(n)
    for k in range(n):
        await asyncio.sleep(0.05)
        before = len(api.sent)
        t0 = time.perf_counter_ns()
        api.user_says(CHAT, 1, text)
        await api.wait_for(lambda b=before: len(api.sent) > b, timeout=5)
        out[k] = time.perf_counter_ns() - t0
    return out


async def bare_ptb(api: FakeBotAPI) -> np.ndarray:
    app = (Application.builder().token(TOKEN).base_url(f"{api.base}/bot").get_updates_read_timeout(20).build())

    async def ok(update, context):
        await context.bot.send_message(update.effective_chat.id, "ok")

    app.add_handler(MessageHandler(filters.TEXT, ok))
    await app.initialize()
    await app.start()
    await app.updater.start_polling(timeout=10)
    try:
        await round_trips(api, 20)
        return await round_trips(api, COMMANDS)
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


class Rig:
    """An engine trading generated ticks in the loop, with commands and notifications wired up."""

    def __init__(self, tmp: Path, base: str) -> None:
        self.manager = ConfigManager(tmp / "otrade.json", tmp / "data", default_catalog())
        self.manager.load()
        self.manager.set("bot.allowed_chats", f"[{CHAT}]")
        cfg = self.manager.config
        clock = time.time_ns
        self.bus = EventBus()
        self.engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), self.bus,
                             Journal(tmp / "data", clock), clock)
        self.engine.start_session()
        commands = Commands(Services(self.engine, self.manager, tmp / "data", clock))
        self.telegram = TelegramTransport(TOKEN, base, commands, lambda: [CHAT], timeout=5, poll_timeout=10)
        self.notifier = Notifier(self.bus.subscribe(), lambda: self.manager.config.bot, [self.telegram])
        ticks = generate(5, 3, [i.symbol for i in cfg.instruments], tick_sizes=[i.tick_size for i in cfg.instruments])
        self.ts, self.price, self.instr = ticks.ts.tolist(), ticks.price.tolist(), ticks.instr.tolist()
        self.k = 0

    async def trade(self, latencies: list[int] | None, per_slice: int = 200, pause: float = 0.001) -> None:
        """Feed ticks in slices, yielding to the loop between slices (as a socket feed would)."""
        on_tick, pc = self.engine.on_tick, time.perf_counter_ns
        while True:
            for _ in range(per_slice):
                k = self.k % len(self.ts)
                self.k += 1
                t0 = pc()
                on_tick(self.instr[k], self.ts[k], self.price[k])
                if latencies is not None:
                    latencies.append(pc() - t0)
            await asyncio.sleep(pause)


async def main_async() -> None:
    api = FakeBotAPI(TOKEN)
    await api.start()
    rows = []
    try:
        bare = percentiles(await bare_ptb(api))
        with tempfile.TemporaryDirectory() as tmp:
            rig = Rig(Path(tmp), api.base)
            await rig.telegram.start()
            notifier = asyncio.create_task(rig.notifier.run())
            trading = asyncio.create_task(rig.trade(None))
            await round_trips(api, 20)
            loaded_rt = percentiles(await round_trips(api, COMMANDS))
            trading.cancel()

            idle: list[int] = []
            task = asyncio.create_task(rig.trade(idle))
            await asyncio.sleep(3)
            task.cancel()
            idle_p = percentiles(np.array(idle))

            busy: list[int] = []
            task = asyncio.create_task(rig.trade(busy))

            async def commands_and_bursts():
                for k in range(150):  # 50 commands/s for 3 s, an alert burst every second
                    api.user_says(CHAT, 1, "/status" if k % 2 else "/pnl")
                    if k % 50 == 0:
                        for j in range(20):
                            rig.bus.publish(Event(ALERT, time.time_ns(), {"text": f"burst {j}"}))
                    await asyncio.sleep(0.02)

            await commands_and_bursts()
            task.cancel()
            busy_p = percentiles(np.array(busy))
            notifier.cancel()
            await rig.telegram.stop()
    finally:
        await api.stop()
    ratio = busy_p["p99_us"] / idle_p["p99_us"]
    rows += [
        {"metric": "bare PTB round trip p50 / p99",
         "value": f"{bare['p50_us'] / 1e3:.2f} / {bare['p99_us'] / 1e3:.2f} ms"},
        {"metric": "command round trip p50 (engine trading)", "value": f"{loaded_rt['p50_us'] / 1e3:.2f} ms",
         "goal": "<= 5 ms", "ok": loaded_rt["p50_us"] <= 5000},
        {"metric": "command round trip p99 (engine trading)", "value": f"{loaded_rt['p99_us'] / 1e3:.2f} ms",
         "goal": "<= 20 ms", "ok": loaded_rt["p99_us"] <= 20000},
        {"metric": "tick path p50 / p99 idle", "value": f"{idle_p['p50_us']:.2f} / {idle_p['p99_us']:.2f} us"},
        {"metric": "tick path p50 / p99 with 50 cmd/s + bursts",
         "value": f"{busy_p['p50_us']:.2f} / {busy_p['p99_us']:.2f} us"},
        {"metric": "loaded p99 / idle p99", "value": f"{ratio:.2f}x", "goal": "<= 1.5x", "ok": ratio <= 1.5},
    ]
    report("chat", rows)


if __name__ == "__main__":
    asyncio.run(main_async())
