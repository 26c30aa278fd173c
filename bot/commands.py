"""Transport-agnostic chat commands: parse → authorise → call the engine's control API → reply.

Transports (Telegram, console) hand in text or a button press with the caller's chat and user
ids and send back the ``Reply``. ``None`` means: say nothing (the caller is not allowed).
"""

import asyncio
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

from config import ConfigError, ConfigManager
from engine.brokers.kite.login import NONCE_TTL_S
from engine.engine import ControlError, Engine, State
from engine.layout import IST
from engine.logs import LogBuffer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    chat_id: int
    user_id: int


CONSOLE = Caller(0, 0)  # the local terminal: whoever has it owns the process


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, callback data)


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    control: bool
    run: Callable[["Commands", Caller, list[str]], Reply]
    confirm: Callable[["Commands", list[str]], str | None] | None = None  # question, when it needs a tap


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


class Commands:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.registry: dict[str, Command] = {c.name: c for c in COMMANDS}
        self._pending: dict[str, _Pending] = {}
        self._running: set[asyncio.Task] = set()  # held so a running exchange is not garbage-collected

    # --- entry points for transports ---------------------------------------------------------
    def allowed(self, caller: Caller, command: Command | None = None) -> bool:
        if caller == CONSOLE:
            return True
        bot = self.s.config.config.bot
        if caller.chat_id not in bot.allowed_chats:
            return False
        return not (command and command.control and bot.admins and caller.user_id not in bot.admins)

    def handle_text(self, caller: Caller, text: str) -> Reply | None:
        if not self.allowed(caller):
            log.warning("ignored message from chat %s user %s (not in bot.allowed_chats)",
                        caller.chat_id, caller.user_id)
            return None
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return Reply("Commands start with /. Send /help for the list.")
        name = words[0][1:].split("@", 1)[0].lower()
        command = self.registry.get(name)
        if command is None:
            return Reply(f"Unknown command /{name}. Send /help for the list.")
        if not self.allowed(caller, command):
            log.warning("refused /%s from user %s in chat %s (not in bot.admins)", name, caller.user_id,
                        caller.chat_id)
            return Reply(f"/{name} is for admins only.")
        args = words[1:]
        question = command.confirm(self, args) if command.confirm else None
        if question:
            token = secrets.token_urlsafe(8)
            ttl = self.s.config.config.bot.confirm_seconds
            self._pending[token] = _Pending(command, args, caller, self.s.now_ns() + ttl * 1_000_000_000)
            return Reply(f"{question}\nTap to confirm within {ttl} s.",
                         ((f"Yes, /{name}", f"ok:{token}"), ("Cancel", f"no:{token}")))
        return self._run(command, caller, args)

    def handle_button(self, caller: Caller, data: str) -> Reply | None:
        if not self.allowed(caller):
            log.warning("ignored button from chat %s user %s (not in bot.allowed_chats)",
                        caller.chat_id, caller.user_id)
            return None
        kind, _, token = data.partition(":")
        if kind == "refresh" and token in ("status", "pnl"):
            return self._run(self.registry[token], caller, [])
        pending = self._pending.get(token)
        if kind not in ("ok", "no") or pending is None:
            return Reply("This button is no longer valid.")
        if not self.allowed(caller, pending.command) or caller.chat_id != pending.caller.chat_id:
            return Reply(f"/{pending.command.name} is for admins only.")
        del self._pending[token]
        if kind == "no":
            return Reply(f"/{pending.command.name} cancelled.")
        if self.s.now_ns() > pending.expires_ns:
            return Reply(f"That confirmation expired; send /{pending.command.name} again.")
        return self._run(pending.command, caller, pending.args)

    def _run(self, command: Command, caller: Caller, args: list[str]) -> Reply:
        try:
            reply = command.run(self, caller, args)
        except (ControlError, ConfigError, ValueError) as exc:
            return Reply(f"/{command.name}: {exc}")
        if command.control:
            self.s.engine.journal.record("command", command=command.name, args=args, chat=caller.chat_id,
                                         user=caller.user_id)
        return reply

    def menu(self) -> list[tuple[str, str]]:
        return [(c.name, c.help) for c in COMMANDS]

    # --- commands ------------------------------------------------------------------------------
    def help(self, caller: Caller, args: list[str]) -> Reply:
        lines = ["OTrade commands:"]
        for c in COMMANDS:
            usage = f" {c.usage}" if c.usage else ""
            lines.append(f"/{c.name}{usage} — {c.help}{' (admin)' if c.control else ''}")
        return Reply("\n".join(lines))

    def start(self, caller: Caller, args: list[str]) -> Reply:
        return Reply(f"OTrade is up ({self.s.engine.state}). Send /status, or /help for every command.")

    def status(self, caller: Caller, args: list[str]) -> Reply:
        st = self.s.engine.status()
        uptime = (self.s.now_ns() - self.s.started_ns) / 1e9
        lines = [f"Engine: {st['state']}" + (f" — {st['reason']}" if st["reason"] else ""),
                 f"Next: {self.s.next_event()}",
                 f"Broker: {st['broker']} · P&L today {_money(st['pnl']['day'])}"]
        for ins in st["instruments"]:
            ltp = "no tick yet" if ins["ltp"] is None else f"{ins['ltp']:.2f} ({ins['ltp_age_s']:.0f}s ago)"
            lines.append(f"{ins['symbol']}: {ltp} · pos {ins['position']} · orders {ins['open_orders']} · "
                         f"P&L {_money(ins['day_pnl'])}")
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

    def flatten(self, caller: Caller, args: list[str]) -> Reply:
        n = self.s.engine.flatten()
        return Reply(f"Flattening: {n} exit order(s) sent." if n else "Nothing to flatten.")

    def positions(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.positions()
        if not rows:
            return Reply("No open positions.")
        return Reply("\n".join(f"{p['symbol']} {p['qty']:+d} @ {p['entry_price']:.2f} · LTP {p['ltp']:.2f} · "
                               f"unrealised {_money(p['unrealised'])} · target {p['target']:.2f} · "
                               (f"stop {p['stop']:.2f}{' (trailing)' if p['trailing'] else ''}"
                                if p["stop"] is not None else "NO WORKING STOP") for p in rows))

    def orders(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.orders()
        if not rows:
            return Reply("No working orders.")
        return Reply("\n".join(
            f"{o['order_id']} {o['side']} {o['quantity']} {o['symbol']} {o['order_type']}"
            + (f" @ {o['price']:.2f}" if o["price"] else "")
            + (f" trigger {o['trigger_price']:.2f}" if o["trigger_price"] else "")
            + f" · {o['status']}"
            + (f", {o['filled_quantity']} filled @ {o['average_price']:.2f}" if o["filled_quantity"] else "")
            + f" ({o['purpose']})" for o in rows))

    def trades(self, caller: Caller, args: list[str]) -> Reply:
        rows = self.s.engine.trades()[-20:]
        if not rows:
            return Reply("No trades today.")
        return Reply("\n".join(
            f"{datetime.fromtimestamp(t['exit_time_ns'] / 1e9, IST):%H:%M:%S} {t['symbol']} {t['side']} {t['qty']} "
            f"{t['entry_price']:.2f} → {t['exit_price']:.2f} ({t['exit_reason']}) {_money(t['pnl'])}"
            for t in rows))

    def pnl(self, caller: Caller, args: list[str]) -> Reply:
        p = self.s.engine.pnl()
        lines = [f"Day {_money(p['day'])} (realised {_money(p['realised'])}, unrealised {_money(p['unrealised'])})"]
        lines += [f"{sym}: {_money(v)}" for sym, v in p["by_symbol"].items()]
        return Reply("\n".join(lines), (("Refresh", "refresh:pnl"),))

    def daily(self, caller: Caller, args: list[str]) -> Reply:
        n = _count(args, 5, "days")
        files = sorted((self.s.data_dir / "journal").glob("*.jsonl"))[-n:]
        lines = []
        for f in files:
            total = trades = 0
            for line in f.read_bytes().splitlines():
                record = orjson.loads(line)
                if record.get("kind") == "trade_closed":
                    total += record["pnl"]
                    trades += 1
            lines.append(f"{f.stem}: {_money(total)} over {trades} trade(s)")
        return Reply("\n".join(lines) or "No journal yet.")

    def config(self, caller: Caller, args: list[str]) -> Reply:
        data: Any = self.s.config.config.model_dump(mode="json")
        path = args[0] if args else ""
        for part in filter(None, path.split(".")):
            if isinstance(data, list) and part.isdigit() and int(part) < len(data):
                data = data[int(part)]
            elif isinstance(data, dict) and part in data:
                data = data[part]
            else:
                raise ValueError(f"no setting {path}")
        return Reply(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())

    def set(self, caller: Caller, args: list[str]) -> Reply:
        if len(args) < 2:
            raise ValueError("usage: /set <path> <value>, e.g. /set instruments.0.strategy.fast 12")
        change = self.s.config.set(args[0], " ".join(args[1:]))
        self.s.engine.journal.record("config", path=change.path, old=change.old, new=change.new)
        return Reply(f"{change.path}: {change.old!r} → {change.new!r} (saved, live)")

    def undo(self, caller: Caller, args: list[str]) -> Reply:
        self.s.config.undo()
        return Reply("Restored the previous config version.")

    def reload(self, caller: Caller, args: list[str]) -> Reply:
        changes = self.s.config.reload()
        if not changes:
            return Reply("Config file unchanged.")
        return Reply("Reloaded:\n" + "\n".join(f"{c.path}: {c.old!r} → {c.new!r}" for c in changes))

    def risk(self, caller: Caller, args: list[str]) -> Reply:
        r = self.s.engine.risk()
        return Reply(f"Daily loss: {_money(r['day_pnl'])} of −{_money(r['max_daily_loss'])}\n"
                     f"Trades: {r['trades_today']} of {r['max_trades_per_day']}\n"
                     f"Orders/s limit: {r['max_orders_per_second']} · max quantity {r['max_quantity']}")

    def logs(self, caller: Caller, args: list[str]) -> Reply:
        n = _count(args, 20, "lines")
        return Reply("\n".join(list(self.s.logs.lines)[-n:]) or "No log lines yet.")

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
        task = asyncio.get_running_loop().create_task(self.s.token(args[0]))  # it alerts how it went
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return Reply("Exchanging the token with Kite…")

    def version(self, caller: Caller, args: list[str]) -> Reply:
        return Reply(f"OTrade {_version()}")


def _count(args: list[str], default: int, what: str) -> int:
    if not args:
        return default
    if not args[0].isdigit() or not 1 <= int(args[0]) <= 500:
        raise ValueError(f"{args[0]!r} is not a number of {what} (1–500)")
    return int(args[0])


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
    Command("flatten", "", "square off everything now", True, Commands.flatten,
            _always("Flatten every open position at market?")),
    Command("positions", "", "open positions", False, Commands.positions),
    Command("orders", "", "working orders", False, Commands.orders),
    Command("trades", "", "today's closed trades", False, Commands.trades),
    Command("pnl", "", "today's P&L", False, Commands.pnl),
    Command("daily", "[n]", "P&L per day from the journal", False, Commands.daily),
    Command("config", "[path]", "show the configuration", False, Commands.config),
    Command("set", "<path> <value>", "change a setting (validated, saved, live)", True, Commands.set),
    Command("undo", "", "restore the previous config version", True, Commands.undo),
    Command("reload", "", "re-read the config file", True, Commands.reload),
    Command("risk", "", "limits and today's usage", False, Commands.risk),
    Command("logs", "[n]", "the last log lines", False, Commands.logs),
    Command("login", "", "the broker's login link (live)", True, Commands.login),
    Command("token", "<url or request_token>", "finish the daily broker login (live)", True, Commands.token),
    Command("version", "", "the running version", False, Commands.version),
)
