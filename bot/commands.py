"""Transport-agnostic chat commands: parse → authorise → call the engine's control API → reply.

Transports (Telegram, console) hand in text or a button press with the caller's chat and user
ids and send back the ``Reply``. ``None`` means: say nothing (the caller is not allowed).
Transports pass every text they send through ``engine.services.logs.redact``.
"""

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson

from bot.auth import CONSOLE, Caller, admin_refusal, allowed
from config import Bot, Change, ConfigError, ConfigManager
from config.manager import KEEP_BACKUPS, as_json, changed_leaves, takes_restart
from engine.brokers.kite.login import NONCE_TTL_S
from engine.charts import Charts, Picture
from engine.core.layout import IST
from engine.engine import ControlError, Engine, State
from engine.services.logs import LogBuffer, add_secret, redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, callback data)
    toast: bool = False  # a button's refusal: told to the tapper alone, the message left as it is
    picture: Picture | None = None  # sent as a photo with its caption; ``text`` is for where no picture goes


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    control: bool
    run: Callable[["Commands", Caller, list[str]], "Reply | Awaitable[Reply]"]  # awaitable: file I/O off the loop
    confirm: Callable[["Commands", list[str]], str | None] | None = None  # question, when it needs a tap
    private: bool = False  # read-only but shows the process's insides: admins only, like control

    @property
    def admin(self) -> bool:
        return self.control or self.private


@dataclass
class Services:
    engine: Engine
    config: ConfigManager
    data_dir: Path
    now_ns: Callable[[], int]
    logs: LogBuffer = field(default_factory=LogBuffer)
    started_ns: int = field(default_factory=time.time_ns)
    next_event: Callable[[], str] = lambda: "no scheduler"
    health: Callable[[], dict[str, str]] = dict  # e.g. {"feed": "ok", "telegram": "ok"}
    login: Callable[[], str] | None = None  # the broker's login URL; None in paper mode
    token: Callable[[str], Awaitable[Any]] | None = None  # renews the session from a request token and alerts
    login_tap: bool = False  # Kite's redirect comes back to our own server: tapping the link is enough
    web: Callable[[], tuple[str, datetime]] | None = None  # a new monitoring page link and its expiry; None: no server
    charts: Charts | None = None  # /chart and /equity; None: this process draws no pictures


@dataclass
class _Pending:
    command: Command
    args: list[str]
    caller: Caller
    expires_ns: int


def _money(x: float) -> str:
    return f"₹{x:,.2f}"


def _version() -> str:
    try:
        return version("otrade")
    except PackageNotFoundError:
        return "unknown"



def _takes_effect(changes: list[Change]) -> str:
    """Whether the changes are live now or wait for a restart (``RESTART`` in config.models says which)."""
    leaves = changed_leaves(changes)
    later = [p for p in leaves if takes_restart(p)]
    if not later:
        return "(saved, live)"
    if len(later) == len(leaves):
        return "(saved; takes effect after a restart)"
    return f"(saved; live, but {', '.join(later)} after a restart)"


def _change_line(change: Change) -> str:
    return f"{change.path}: {as_json(change.old)} → {as_json(change.new)}"


def _warming(strategy: dict) -> str:
    """`` · ema_cross (5 min) warming up: 12 bars to go`` until the strategy trades; then ""."""
    if not strategy["bars_needed"]:
        return ""
    ticks, n = strategy["timeframe"] == "tick", strategy["bars_needed"]
    frame, unit = ("ticks", "tick") if ticks else (f"{strategy['timeframe']} min", "bar")
    return f" · {strategy['kind']} ({frame}) warming up: {n} {unit}{'' if n == 1 else 's'} to go"

class Commands:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.registry: dict[str, Command] = {c.name: c for c in COMMANDS}
        self._pending: dict[str, _Pending] = {}
        self._running: set[asyncio.Task] = set()  # held so a running exchange is not garbage-collected

    def _bot(self) -> Bot:
        return self.s.config.config.bot

    # --- entry points for transports ---------------------------------------------------------
    def _stranger(self, caller: Caller, what: str) -> bool:
        if allowed(self._bot, caller):
            return False
        log.warning("ignored %s from chat %s user %s (not in bot.allowed_chats)", what, caller.chat_id,
                    caller.user_id)
        return True

    def handle_text(self, caller: Caller, text: str) -> "Reply | Awaitable[Reply] | None":
        if self._stranger(caller, "a message"):
            return None
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return Reply("Commands start with /. Send /help for the list.")
        name = words[0][1:].lower()
        command = self.registry.get(name)
        if command is None:
            return Reply(f"Unknown command /{name}. Send /help for the list.")
        if command.admin and (refusal := admin_refusal(self._bot, caller, name)):
            return Reply(refusal)
        args = words[1:]
        try:
            question = command.confirm(self, args) if command.confirm else None
        except ValueError as exc:
            return Reply(f"/{name}: {exc}")
        if question:
            token = secrets.token_urlsafe(8)
            ttl = self.s.config.config.bot.confirm_seconds
            self._pending[token] = _Pending(command, args, caller, self.s.now_ns() + ttl * 1_000_000_000)
            return Reply(f"{question}\nTap to confirm within {ttl} s.",
                         ((f"Yes, /{name}", f"ok:{token}"), ("Cancel", f"no:{token}")))
        return self._run(command, caller, args)

    def handle_edit(self, caller: Caller, text: str) -> Reply | None:
        """An edited message never runs a command (an old /pause edited into /resume would trade):
        a command edited in says so, anything else is left alone."""
        if self._stranger(caller, "an edited message") or not text.lstrip().startswith("/"):
            return None
        log.info("did not run an edited command from user %s in chat %s", caller.user_id, caller.chat_id)
        return Reply("Edited messages never run commands: send it as a new message.")

    def handle_button(self, caller: Caller, data: str) -> "Reply | Awaitable[Reply] | None":
        if self._stranger(caller, "a button"):
            return None
        kind, _, token = data.partition(":")
        if kind == "refresh" and token in ("status", "pnl"):
            return self._run(self.registry[token], caller, [])
        pending = self._pending.get(token)
        if kind not in ("ok", "no") or pending is None:
            return Reply("This button is no longer valid.")
        name = pending.command.name
        if caller != pending.caller:
            log.warning("refused a /%s button from user %s in chat %s (asked by user %s in chat %s)", name,
                        caller.user_id, caller.chat_id, pending.caller.user_id, pending.caller.chat_id)
            return Reply("This button is not yours.", toast=True)
        if admin_refusal(self._bot, caller, name):  # bot.admins changed since the question
            return Reply("Only an admin may confirm this.", toast=True)
        del self._pending[token]
        if kind == "no":
            return Reply(f"/{name} cancelled.")
        if self.s.now_ns() > pending.expires_ns:
            return Reply(f"That confirmation expired; send /{name} again.")
        return self._run(pending.command, caller, pending.args)

    def _run(self, command: Command, caller: Caller, args: list[str]) -> "Reply | Awaitable[Reply]":
        try:
            reply = command.run(self, caller, args)
        except (ControlError, ConfigError, ValueError) as exc:
            return Reply(f"/{command.name}: {exc}")
        if inspect.isawaitable(reply):
            return self._finish(command, caller, args, reply)
        self._journal_command(command, caller, args)
        return reply

    async def _finish(self, command: Command, caller: Caller, args: list[str], pending: Awaitable[Reply]) -> Reply:
        """A command doing file I/O off the loop: its answer, or its error, once done."""
        try:
            reply = await pending
        except (ControlError, ConfigError, ValueError, OSError) as exc:
            return Reply(f"/{command.name}: {exc}")
        self._journal_command(command, caller, args)
        return reply

    def _journal_command(self, command: Command, caller: Caller, args: list[str]) -> None:
        if command.control:
            self.s.engine.journal.record("command", command=command.name, args=[redact(a) for a in args],
                                         chat=caller.chat_id, user=caller.user_id)

    def menu(self) -> list[tuple[str, str]]:
        return [(c.name, c.help) for c in COMMANDS]

    # --- commands ------------------------------------------------------------------------------
    def help(self, caller: Caller, args: list[str]) -> Reply:
        lines = ["OTrade commands:"]
        for c in COMMANDS:
            usage = f" {c.usage}" if c.usage else ""
            lines.append(f"/{c.name}{usage} — {c.help}{' (admin)' if c.admin else ''}")
        return Reply("\n".join(lines))

    def start(self, caller: Caller, args: list[str]) -> Reply:
        return Reply(f"OTrade is up ({self.s.engine.state}). Send /status, or /help for every command.")

    def status(self, caller: Caller, args: list[str]) -> Reply:
        st = self.s.engine.status()
        uptime = (self.s.now_ns() - self.s.started_ns) / 1e9
        lines = [f"Engine: {st['state']}" + (f" — {st['reason']}" if st["reason"] else ""),
                 f"Next: {self.s.next_event()}",
                 f"Broker: {st['broker']} · P&L today {_money(st['pnl']['net'])} net"]
        for ins in st["instruments"]:
            ltp = "no tick yet" if ins["ltp"] is None else f"{ins['ltp']:.2f} ({ins['ltp_age_s']:.0f}s ago)"
            lines.append(f"{ins['symbol']}: {ltp} · pos {ins['position']} · orders {ins['open_orders']} · "
                         f"P&L {_money(ins['day_net'])} net" + _warming(ins["strategy"]))
        if st["foreign"]:
            lines.append("Not OTrade's (left alone): " + "; ".join(st["foreign"]))
        health = self.s.health()
        if health:
            lines.append(" · ".join(f"{k} {v}" for k, v in health.items()))
        lines.append(f"Data: {self.s.data_dir.resolve()} · up {uptime / 3600:.1f} h")
        return Reply("\n".join(lines), (("Refresh", "refresh:status"),))

    def pause(self, caller: Caller, args: list[str]) -> Reply:
        self.s.engine.pause(" ".join(args) or "paused from chat")
        return Reply("PAUSED: no new entries; open positions stay protected.")

    def resume(self, caller: Caller, args: list[str]) -> Reply:
        self.s.engine.resume()
        return Reply("RUNNING: entries allowed again.")

    def _resume_question(self, args: list[str]) -> str | None:
        return "Resume trading from HALTED?" if self.s.engine.state == State.HALTED else None

    def halt(self, caller: Caller, args: list[str]) -> Reply:
        self.s.engine.halt(" ".join(args) or "kill switch from chat")
        return Reply("HALTED: working entries cancelled, every new order refused but a flatten. /resume to undo.")

    def _flatten_question(self, args: list[str]) -> str:
        if not _keep_trading(args):
            return "Flatten every open position at market and pause?"
        return {State.PAUSED: "Flatten every open position at market and resume trading (now PAUSED)?",
                State.HALTED: "Flatten every open position at market, then lift the HALT and trade again?",
                }.get(self.s.engine.state, "Flatten every open position at market and keep trading?")

    def flatten(self, caller: Caller, args: list[str]) -> Reply:
        engine, keep = self.s.engine, _keep_trading(args)
        was = engine.state
        if not keep and engine.state == State.RUNNING:
            engine.pause("flattened from chat")  # first: the very next signal must not enter again
        sent = engine.flatten()
        if keep and engine.state in (State.PAUSED, State.HALTED):  # the question said: and trade on
            engine.resume()
        working = [o for o in engine.orders() if o["purpose"] == "exit"]
        running = "still RUNNING" if was == State.RUNNING else "RUNNING again"
        after = {State.PAUSED: "flat and paused; /resume to trade again.",
                 State.HALTED: "still HALTED; /resume to trade again.",
                 State.RUNNING: f"{running}: entries on the next signal."}.get(engine.state, f"engine {engine.state}.")
        if sent:
            return Reply(f"Flattening: {sent} exit order(s) sent; {after}")
        if working:  # sent before and not filled yet: say what is in flight rather than "nothing"
            return Reply(f"Exits already working, nothing new sent; {after}\n" + "\n".join(map(_order_line, working)))
        return Reply(f"Nothing to flatten; {after}")

    def positions(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.positions()
        if not rows:
            return Reply("No open positions.")
        return Reply("\n".join(f"{p['symbol']} {p['qty']:+d} @ {p['entry_price']:.2f} · LTP {p['ltp']:.2f} · "
                               f"unrealised {_money(p['unrealised'])} · target {p['target']:.2f} · "
                               + (f"stop {p['stop']:.2f}{' (trailing)' if p['trailing'] else ''}"
                                if p["stop"] is not None else "NO WORKING STOP") for p in rows))

    def orders(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.orders()
        if not rows:
            return Reply("No working orders.")
        return Reply("\n".join(map(_order_line, rows)))

    def trades(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.trades()[-20:]
        if not rows:
            return Reply("No trades today.")
        return Reply("\n".join(
            f"{datetime.fromtimestamp(t['exit_time_ns'] / 1e9, IST):%H:%M:%S} {t['symbol']} {t['side']} {t['qty']} "
            f"{t['entry_price']:.2f} → {t['exit_price']:.2f} ({t['exit_reason']}) {_money(t['net_pnl'])} net"
            for t in rows))

    def pnl(self, caller: Caller, args: list[str]) -> Reply:
        p = self.s.engine.pnl()
        lines = [f"Day {_money(p['net'])} net = {_money(p['gross'])} gross − {_money(p['charges'])} charges",
                 f"Gross: realised {_money(p['realised'])}, unrealised {_money(p['unrealised'])}"]
        lines += [f"{sym}: {_money(v)} net" for sym, v in p["by_symbol"].items()]
        return Reply("\n".join(lines), (("Refresh", "refresh:pnl"),))

    async def _daily(self, n: int) -> Reply:
        days = await asyncio.to_thread(self.s.engine.daily, n)  # reads journal files: off the loop
        return Reply("\n".join(f"{d['date']}: {_money(d['net'])} net ({_money(d['gross'])} gross, "
                               f"{_money(d['charges'])} charges) over {d['trades']} trade(s)" for d in days))

    def config(self, caller: Caller, args: list[str]) -> Reply:
        data = self.s.config.get(args[0] if args else "")
        return Reply(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())

    def daily(self, caller: Caller, args: list[str]) -> Awaitable[Reply]:
        return self._daily(_count(args, 5, "days"))

    def set(self, caller: Caller, args: list[str]) -> Awaitable[Reply]:
        if len(args) < 2:
            raise ValueError("usage: /set <path> <value>, e.g. /set instruments.0.strategy.fast 12")
        return self._set(args[0], " ".join(args[1:]))

    def _journal_changes(self, changes: list[Change]) -> None:
        for change in changes:
            self.s.engine.journal.record("config", path=change.path, old=change.old, new=change.new)

    async def _set(self, path: str, value: str) -> Reply:
        change = await self.s.config.set_async(path, value)  # the file is synced off the loop
        if change.old == change.new:
            return Reply(f"{change.path} is already {as_json(change.new)}: nothing changed.")
        self._journal_changes([change])
        note = f"; {change.note}" if change.note else ""
        return Reply(f"{_change_line(change)}{note} {_takes_effect([change])}")

    async def undo(self, caller: Caller, args: list[str]) -> Reply:
        if not self.s.config.undoable:
            return Reply(f"Nothing to undo: /undo takes back the changes /set made since OTrade started, newest "
                         f"first (up to {KEEP_BACKUPS}), and none is left.")
        changes = await self.s.config.undo_async()
        self._journal_changes(changes)
        left = self.s.config.undoable
        return Reply("\n".join([f"Undone {_takes_effect(changes)}:", *map(_change_line, changes),
                                f"{left} earlier change(s) left to undo." if left
                                else "That was the oldest change /undo can take back: nothing more to undo."]))

    def reload(self, caller: Caller, args: list[str]) -> Reply:
        changes = self.s.config.reload()
        if not changes:
            return Reply("Config file unchanged.")
        self._journal_changes(changes)
        return Reply("\n".join([f"Reloaded {_takes_effect(changes)}:", *map(_change_line, changes)]))

    def risk(self, caller: Caller, args: list[str]) -> Reply:
        r = self.s.engine.risk()
        return Reply(f"Daily loss: {_money(r['day_net'])} net of −{_money(r['max_daily_loss'])}\n"
                     f"Trades: {r['trades_today']} of {r['max_trades_per_day']}\n"
                     f"Orders/s limit: {r['max_orders_per_second']} · max quantity {r['max_quantity']}")

    def logs(self, caller: Caller, args: list[str]) -> Reply:
        return Reply("\n".join(self.s.logs.tail(_count(args, 20, "lines"))) or "No log lines yet.")

    def login(self, caller: Caller, args: list[str]) -> Reply:
        if self.s.login is None:
            return Reply("Paper trading: there is no broker to log in to.")
        if self.s.login_tap:
            return Reply(f"Log in to Kite: {self.s.login()}\nTapping through is enough: Kite sends you back to "
                         f"OTrade, which renews the session and reports here. The link works once, within "
                         f"{NONCE_TTL_S / 60:.0f} minutes.")
        return Reply(f"Log in to Kite: {self.s.login()}\nThen send /token with the page address you land on "
                     "(or just its request_token).")

    def token(self, caller: Caller, args: list[str]) -> Reply:
        if self.s.token is None:
            return Reply("Paper trading: there is no broker token to set.")
        if len(args) != 1:
            raise ValueError("usage: /token <redirect URL or request_token>")
        add_secret(args[0])  # the request token, or the URL carrying it
        task = asyncio.get_running_loop().create_task(self.s.token(args[0]))  # it alerts how it went
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return Reply("Exchanging the token with Kite…")

    def web(self, caller: Caller, args: list[str]) -> Reply:
        if args:
            raise ValueError("takes no arguments: send /web alone")
        if self.s.web is None:
            return Reply("The monitoring page is off: the web server is not listening (see /logs).")
        link, expiry = self.s.web()
        log.info("/web: a page link for user %s in chat %s, until %s", caller.user_id, caller.chat_id,
                 f"{expiry:%Y-%m-%d %H:%M} IST")
        text = (f"Monitoring page (read-only) until {expiry:%a %d %b %H:%M} IST:\n{link}\n"
                "Anyone with this link can watch until then: do not forward it.")
        if link.startswith(("http://127.0.0.1:", "http://localhost:")):
            text += ("\nThe address is the OTrade machine's own: from a phone, reach it through an SSH tunnel, "
                     "Tailscale or a TLS proxy and set server.web_url (README: The monitoring page).")
        return Reply(text)

    def version(self, caller: Caller, args: list[str]) -> Reply:
        return Reply(f"OTrade {_version()}")

    def _charts(self) -> Charts:
        if self.s.charts is None:
            raise ValueError("this process draws no pictures")
        return self.s.charts

    def chart(self, caller: Caller, args: list[str]) -> Awaitable[Reply]:
        if len(args) > 1:
            raise ValueError("usage: /chart [SYMBOL], e.g. /chart INFY")
        return _picture(self._charts().price(args[0] if args else None))  # the engine read here, on the loop

    def equity(self, caller: Caller, args: list[str]) -> Awaitable[Reply]:
        if args:
            raise ValueError("takes no arguments: send /equity alone")
        return _picture(self._charts().equity())


async def _picture(draw: Callable[[], Picture]) -> Reply:
    picture = await asyncio.to_thread(draw)  # the disk and matplotlib, off the event loop
    return Reply(picture.caption, picture=picture)


def _count(args: list[str], default: int, what: str) -> int:
    if not args:
        return default
    if not args[0].isdigit() or not 1 <= int(args[0]) <= 500:
        raise ValueError(f"{args[0]!r} is not a number of {what} (1–500)")
    return int(args[0])


def _order_line(o: dict[str, Any]) -> str:
    return (f"{o['order_id']} {o['side']} {o['quantity']} {o['symbol']} {o['order_type']}"
            + (f" @ {o['price']:.2f}" if o["price"] else "")
            + (f" trigger {o['trigger_price']:.2f}" if o["trigger_price"] else "")
            + f" · {o['status']}"
            + (f", {o['filled_quantity']} filled @ {o['average_price']:.2f}" if o["filled_quantity"] else "")
            + f" ({o['purpose']})")


def _keep_trading(args: list[str]) -> bool:
    """``/flatten`` pauses after; ``/flatten resume`` keeps trading."""
    if [a.lower() for a in args] not in ([], ["resume"]):
        raise ValueError("usage: /flatten, or /flatten resume to keep trading after")
    return bool(args)


def _always(question: str) -> Callable[[Commands, list[str]], str]:
    return lambda self, args: question


COMMANDS: tuple[Command, ...] = (
    Command("start", "", "say hello", False, Commands.start),
    Command("help", "", "this list", False, Commands.help),
    Command("status", "", "state, session, prices, positions, P&L", False, Commands.status),
    Command("pause", "[reason]", "stop new entries, keep protecting positions", True, Commands.pause),
    Command("resume", "", "allow entries again", True, Commands.resume, Commands._resume_question),
    Command("halt", "[reason]", "kill switch: cancel entries, refuse all but a flatten", True, Commands.halt,
            _always("HALT trading? Working entries are cancelled and every new order refused.")),
    Command("flatten", "[resume]", "square off everything now and pause (resume: keep trading)", True,
            Commands.flatten, Commands._flatten_question),
    Command("positions", "", "open positions", False, Commands.positions),
    Command("orders", "", "working orders", False, Commands.orders),
    Command("trades", "", "today's closed trades", False, Commands.trades),
    Command("pnl", "", "today's P&L", False, Commands.pnl),
    Command("daily", "[n]", "P&L per day from the journal", False, Commands.daily),
    Command("chart", "[SYMBOL]", "today's price, indicators, trades, stop and target, as a picture", False,
            Commands.chart),
    Command("equity", "", "today's net P&L through the day and the last 20 days', as a picture", False,
            Commands.equity),
    Command("config", "[path]", "show the configuration", False, Commands.config),
    Command("set", "<path> <value>", "change a setting (validated, saved; live, or says it needs a restart)", True,
            Commands.set),
    Command("undo", "", f"take back the last /set; again for the one before (this run's, up to {KEEP_BACKUPS})", True,
            Commands.undo),
    Command("reload", "", "re-read the config file", True, Commands.reload),
    Command("risk", "", "limits and today's usage", False, Commands.risk),
    Command("logs", "[n]", "the last log lines", False, Commands.logs, private=True),
    Command("login", "", "the broker's login link (live)", True, Commands.login),
    Command("token", "<url or request_token>", "finish the daily broker login (live)", True, Commands.token),
    Command("web", "", "a link to the live monitoring page (read-only, expires)", False, Commands.web, private=True),
    Command("version", "", "the running version", False, Commands.version),
)

__all__ = ["COMMANDS", "CONSOLE", "Caller", "Command", "Commands", "Reply", "Services"]


async def resolve(reply: "Reply | Awaitable[Reply] | None") -> Reply | None:
    """For transports: the answer of a command, awaited when it does file I/O off the loop."""
    return await reply if inspect.isawaitable(reply) else reply
