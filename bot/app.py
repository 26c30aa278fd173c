"""Plugs chat-ops into ``otrade run``: commands, the notifier, and the Telegram and console transports."""

import asyncio
import logging
import os

from bot.commands import Commands, Services
from bot.console import ConsoleTransport
from bot.notifier import Notifier
from bot.telegram import TelegramTransport
from engine.runtime.app import day_charts
from engine.services import logs

log = logging.getLogger(__name__)
DEFAULT_API = "https://api.telegram.org"


def attach(rt) -> None:
    """Entry point (``otrade.transports``): called with the engine's Runtime before it starts."""
    config = rt.config
    commands = Commands(Services(rt.engine, config, rt.data_dir, rt.clock.now_ns, rt.logs, rt.started_ns,
                                 rt.next_event, lambda: {k: fn() for k, fn in rt.health.items()},
                                 rt.login, rt.token, rt.login_tap, web=rt.web_link, charts=day_charts(rt)))
    rt.logs.stamp_with(rt.clock.now_ns)  # /logs on the clock the chat's messages are on
    sinks = []
    if rt.args.console:  # every event on the terminal, once and in order, apart from the chat's notifier
        console = ConsoleTransport(commands)
        logs.console(rt.clock.now_ns)  # before the event log's first line, so none is echoed
        rt.tasks["console"] = console.run
        rt.tasks["console-events"] = lambda: console.follow(rt.events)
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "")
    if token:
        telegram = TelegramTransport(token, os.environ.get("TELEGRAM_API_BASE", DEFAULT_API), commands,
                                     lambda: config.config.bot.allowed_chats)
        sinks.append(telegram)
        rt.tasks["telegram"] = lambda: _run_telegram(telegram)
        rt.health["telegram"] = lambda: "connected" if telegram.connected else "disconnected"
        if not config.config.bot.allowed_chats:
            log.warning("telegram: bot.allowed_chats is empty, so the bot answers nobody; add your chat id")
    else:
        log.info("telegram: TELEGRAM_BOT_TOKEN is not set; running without Telegram")
        rt.health["telegram"] = lambda: "off"
    notifier = Notifier(rt.bus.subscribe(), lambda: config.config.bot, sinks)
    rt.gauges.add("outbox_depth", "Chat messages waiting in the transports' outboxes", notifier.pending)
    rt.tasks["notifier"] = notifier.run
    rt.on_stop.append(lambda: _drain(notifier, sinks))


async def _run_telegram(telegram: TelegramTransport) -> None:
    await telegram.start()
    try:
        await asyncio.Event().wait()  # polling runs in PTB's own task until we stop it
    finally:
        await telegram.stop()


async def _drain(notifier: Notifier, sinks: list) -> None:
    """Shutdown: publish what the notifier holds and give the outboxes a moment to empty."""
    await asyncio.sleep(0)  # let the "stopping" alert reach the notifier's subscription
    notifier.flush()
    for _ in range(50):
        if not any(getattr(sink, "pending", lambda: 0)() for sink in sinks):
            return
        await asyncio.sleep(0.1)
