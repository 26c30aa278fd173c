"""``otrade run``: one asyncio loop with the engine, its broker and feed, the journal, the session
scheduler, the health endpoint and whatever transports are installed.

Transports (the chat layer) plug in through the ``otrade.transports`` entry point group, so the
engine never imports them: each gets the ``Runtime`` and adds its tasks and shutdown hooks.
"""

import argparse
import asyncio
import contextlib
import faulthandler
import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from config import Config, ConfigError, ConfigManager, Server, live_session_problems
from config import Session as SessionConfig
from engine.arrays import in_use
from engine.brokers.kite.live import KiteLive, credentials
from engine.brokers.kite.login import LoginCallback, LoginLinks, Renewal
from engine.brokers.kite.rest import KiteError, TokenException
from engine.brokers.paper import PaperBroker
from engine.charts import Charts, Picture
from engine.core import layout as L
from engine.core.layout import IST, NS_PER_S
from engine.data.feeds import ReplayFeed, SyntheticFeed
from engine.data.recorder import Recorder
from engine.data.tick_files import load
from engine.data.ticks import TickFileError, Ticks
from engine.engine import LIVE_ONLY_KERNELS, RECONCILE_KERNELS, STALE, STOPPING, TEND_S, TOKEN_PAUSE, Engine, State
from engine.live.orders import Caps
from engine.runtime.metrics import SAMPLE_MASK, Gauges, Metrics, TickMeter, handler_from_env
from engine.runtime.monitor import page_for
from engine.runtime.session import CLOSE, OPEN, PRE_OPEN, SQUARE_OFF, TOKEN_CHECK, SessionScheduler
from engine.runtime.session import REPORT as REPORT_JOB
from engine.runtime.web import make_app, serve
from engine.services import logs
from engine.services.calendar import SHIPPED_OVERRIDES, Session, TradingCalendar
from engine.services.clock import Clock, RehearsalClock, SystemClock
from engine.services.events import REPORT, SESSION, Event, EventBus, Subscription, log_events
from engine.services.journal import Journal
from engine.services.paths import data_dir_from_env
from engine.strategies import StrategyError, catalog_for
from engine.strategies.compiled import cache_key

log = logging.getLogger("otrade")
SHUTDOWN_BUDGET_S = 8.0  # SIGTERM to exit, inside the 10 s hosts allow
# The stop's start (SIGTERM, or the end of --for) to a forced exit: a step that hangs past the budget ends
# the process before a host's SIGKILL does, with every thread's stack on stderr to say where it hung
SHUTDOWN_DEADLINE_S = 9.5
# A paper start on an empty cache compiles the tick kernel, the largest, while a child compiles the
# others; the bar's close, which the tick kernel and the warm-up both call, first, for the child to load.
TICK_KERNEL, SHARED_KERNELS = "on_tick", ("end_bar",)


@dataclass
class Runtime:
    """What a transport plugin gets to work with."""

    args: argparse.Namespace
    config: ConfigManager
    engine: Engine
    bus: EventBus
    clock: Clock
    data_dir: Path
    logs: logs.LogBuffer
    scheduler: SessionScheduler | None = None
    started_ns: int = field(default_factory=time.time_ns)
    last_tick_ns: int = 0
    health: dict[str, Callable[[], str]] = field(default_factory=dict)
    login: Callable[[], str] | None = None  # the broker's login URL (live only)
    recorder: Recorder | None = None  # every tick to the day's Parquet file (not a replay's: it has a file)
    login_tap: bool = False  # Kite's login redirect lands on our own server: no /token step
    web_link: Callable[[], tuple[str, datetime]] | None = None  # a new link to the monitoring page, and its expiry
    token: Callable[[str], Awaitable[Renewal]] | None = None  # renew with a request token, alerting (live only)
    tasks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    events: Subscription | None = None  # --console: every event from the first, for the terminal to print
    opened: asyncio.Event = field(default_factory=asyncio.Event)  # a session has opened: the paper feed may flow
    meter: TickMeter = field(default_factory=TickMeter)  # the tick loops' counts, for /metrics
    gauges: Gauges = field(default_factory=Gauges)  # values /metrics reads when scraped (a transport's outbox)
    metrics: Metrics | None = None

    def next_event(self) -> str:
        event = self.scheduler.next_event() if self.scheduler else None
        if event is None:
            return "none scheduled"
        return f"{event.name} at {event.at:%a %d %b %H:%M} IST"

    def health_report(self) -> dict[str, Any]:
        now = self.clock.now_ns()
        age = (now - self.last_tick_ns) / 1e9 if self.last_tick_ns else None
        return {"ok": True, "state": str(self.engine.state), "next": self.next_event(),
                "last_tick_age_s": age, **{k: fn() for k, fn in self.health.items()}}

    def alert(self, text: str, critical: bool = True) -> None:
        self.engine.alert(text, critical)


def _feed(cfg, clock: Clock, replayed: Ticks | None, calendar: TradingCalendar) -> ReplayFeed | SyntheticFeed:
    """The paper feed: the replayed file, or the synthetic market on the calendar's sessions, made from
    ``WARM_DAYS`` before the clock's session so that those days can warm the strategies up."""
    symbols = [i.symbol for i in cfg.instruments]
    if replayed is not None:
        return ReplayFeed(replayed, cfg.paper.speed, clock)
    prices = [1500.0 if i.tick_size >= 0.1 else 800.0 for i in cfg.instruments]
    return SyntheticFeed(symbols, prices, [i.tick_size for i in cfg.instruments], cfg.paper.seed, clock,
                         cfg.paper.tick_interval_ms, calendar, WARM_DAYS)


async def _pump(rt: Runtime, feed, replay: bool) -> None:
    # The scheduler's open comes a moment after the session's first ticks are due (at each day's open,
    # and at once when a restart joins a session): ticks of that moment would be recorded yet not
    # traded, and a backtest of the recording would trade them. So the paper feed waits for the open
    # (from the close, and at the start) and then hands on what came meanwhile, in order.
    opened = rt.opened if rt.scheduler is not None else None
    on_tick = rt.engine.on_tick
    record = rt.recorder.add if rt.recorder else None
    meter, clock, mask = rt.meter, time.perf_counter_ns, SAMPLE_MASK
    n = meter.ticks
    async for tick in feed:
        if opened is not None and not opened.is_set():
            await opened.wait()
        instr, ts, price, volume = tick
        rt.last_tick_ns = ts
        started = clock()
        act = on_tick(instr, ts, price, volume)
        n += 1
        meter.ticks = n
        if act > 0 or not n & mask:  # every decision, one in SAMPLE_EVERY of the rest
            meter.took(clock() - started, act)
        if record is not None:
            record(tick)
    if replay:
        rt.engine.end_session()
        log.info("replay finished: %d trades, day P&L %.2f net", len(rt.engine.trades()), rt.engine.pnl()["net"])


async def _heartbeat(rt: Runtime, every_s: float = 30.0) -> None:
    """A line a while in the log: the process is alive and ticks flow."""
    while True:
        await asyncio.sleep(every_s)
        prices = ", ".join(f"{i['symbol']} {i['ltp']:.2f}" for i in rt.engine.status()["instruments"] if i["ltp"])
        log.info("%s; %s; P&L %.2f net; next %s", rt.engine.state, prices or "no ticks yet", rt.engine.pnl()["net"],
                 rt.next_event())



async def _watch_feed(rt: Runtime) -> None:
    """No tick for ``session.stale_feed_seconds`` while the session runs: alert and stop entries until
    ticks flow again."""
    engine = rt.engine
    while True:
        await asyncio.sleep(1.0)
        limit = engine.cfg.session.stale_feed_seconds
        session = rt.scheduler.session if rt.scheduler else None
        opened = int(session.open.timestamp()) * NS_PER_S if session else 0  # no tick is owed before the open
        quiet = (rt.clock.now_ns() - max(rt.last_tick_ns or rt.started_ns, opened)) / 1e9
        if engine.state == State.RUNNING and quiet > limit:
            engine.pause(STALE)
            engine.alert(f"No tick for {quiet:.0f} s: new entries paused until the feed is back")
        elif engine.state == State.PAUSED and engine.state_reason == STALE and quiet <= limit:
            engine.resume()
            engine.alert("Ticks are flowing again: entries resumed", critical=False)


def _hhmm(text: str) -> dt_time:
    return datetime.strptime(text, "%H:%M").time()


def _retime(rt: Runtime, calendar: TradingCalendar, session: SessionConfig) -> None:
    """The config's session times, changed: the calendar takes them, and the scheduler's jobs still to
    come and the kernel's window follow it, so a special session's own times stay the day's."""
    calendar.retime(session.open, session.close, session.square_off)
    if rt.scheduler.token_check is not None:
        rt.scheduler.token_check = _hhmm(session.token_check)
    rt.scheduler.retime()
    day = rt.scheduler.session
    if day is not None:
        rt.engine.set_session_window(day.open, day.close, day.square_off)


def _session_hooks(rt: Runtime) -> dict[str, Callable[[Session], Any]]:
    engine = rt.engine

    def pre_open(session: Session) -> None:
        engine.warm_up()
        text = f"Pre-open: kernels warm, {session.name} session {session.open:%H:%M}–{session.close:%H:%M}"
        rt.bus.publish(Event(SESSION, rt.clock.now_ns(), {"text": text}))

    def open_(session: Session) -> None:
        engine.trade_only(session.day)
        engine.set_session_window(session.open, session.close, session.square_off)
        engine.start_session()
        rt.opened.set()

    def square_off(session: Session) -> None:
        n = engine.square_off()
        log.info("square-off: %d exit order(s)", n)

    def close(session: Session) -> None:
        rt.opened.clear()
        engine.end_session()
        if rt.recorder:
            rt.recorder.end_day()

    async def report(session: Session) -> None:
        pnl, trades = engine.pnl(), engine.trades()
        wins = sum(1 for t in trades if t["net_pnl"] > 0)
        text = (f"End of day {session.day}: {len(trades)} trade(s), {wins} won, P&L ₹{pnl['net']:,.2f} net "
                f"(₹{pnl['gross']:,.2f} gross, ₹{pnl['charges']:,.2f} charges)"
                + "".join(f"\n{s}: ₹{v:,.2f} net" for s, v in pnl["by_symbol"].items()))
        text += "\n" + await _evening_audit(rt, session.day)
        engine.journal.record("report", text=text, net_pnl=pnl["net"], gross_pnl=pnl["gross"], charges=pnl["charges"],
                              trades=len(trades))
        picture = await _report_picture(rt, text.splitlines()[0])
        rt.bus.publish(Event(REPORT, rt.clock.now_ns(), {"text": text} | ({"picture": picture} if picture else {})))

    return {PRE_OPEN: pre_open, OPEN: open_, SQUARE_OFF: square_off, CLOSE: close, REPORT_JOB: report}


async def _evening_audit(rt: Runtime, day: date) -> str:
    """The day's parity audit (``engine.research.audit``) for the end-of-day report, on a worker
    thread: it replays the whole day. It never fails the report: it says why it could not audit."""
    from engine.research.audit import AuditError, audit_day

    if rt.recorder is None:
        return "parity audit: not run (a replay is not recorded: its tick file is the day)"
    rt.engine.journal.flush()  # the audit reads the day's journal from its file
    overrides = Path(os.environ.get("OTRADE_CALENDAR") or SHIPPED_OVERRIDES)

    def warm_up(cfg: Config, until_ns: int, synthetic: bool) -> list[Ticks]:
        return warm_up_sessions(cfg, rt.data_dir, overrides, until_ns, synthetic)

    try:
        result = await asyncio.to_thread(audit_day, rt.data_dir, day, rt.config.config, rt.config.strategies,
                                         overrides, warm_up, bool(getattr(rt.args, "clock", None)))
    except AuditError as exc:
        return f"parity audit: not possible: {exc}"
    except Exception as exc:  # whatever went wrong in the audit, the day's report still goes out
        log.exception("parity audit of %s failed", day)
        return f"parity audit failed: {type(exc).__name__}: {exc}"
    return result.text()


def day_charts(rt: Runtime) -> Charts:
    """The pictures of the process's day (/chart, /equity, the report's): drawn from the recording this
    run writes (none for a replay) and the sessions its strategies warmed on (``warm_up_sessions``)."""
    from engine.data.store import MARKET, REHEARSAL, SYNTHETIC

    recorder, overrides = rt.recorder, Path(os.environ.get("OTRADE_CALENDAR") or SHIPPED_OVERRIDES)
    kind = None if recorder is None else (REHEARSAL if recorder.rehearsal else SYNTHETIC if recorder.synthetic
                                          else MARKET)
    return Charts(rt.engine, rt.data_dir, kind,
                  lambda cfg, until_ns, synthetic: warm_up_sessions(cfg, rt.data_dir, overrides, until_ns, synthetic))


async def _report_picture(rt: Runtime, caption: str) -> Picture | None:
    """The end-of-day report's picture, drawn on a worker thread; it never fails the report."""
    try:
        return await asyncio.to_thread(day_charts(rt).report(caption))
    except Exception:  # the report goes out without its picture
        log.exception("the end-of-day picture could not be drawn")
        return None


def warm_up_sessions(cfg: Config, data_dir: Path, overrides: Path, until_ns: int, synthetic: bool) -> list[Ticks]:
    """The sessions a start at ``until_ns`` warms the strategies on, as ``run`` finds them: the
    synthetic market's (``_feed``: the week before, and today's before that instant) or the market
    ticks recorded on the days before. The parity audit warms its replay on the same."""
    if synthetic:
        calendar = TradingCalendar(cfg.session.open, cfg.session.close, overrides, cfg.session.square_off)
        clock = RehearsalClock(datetime.fromtimestamp(until_ns / 1e9, IST), running=False)
        return list(_feed(cfg, clock, None, calendar).history(until_ns))
    from engine.data.store import StoreError, load_days

    today = datetime.fromtimestamp(until_ns / 1e9, IST).date()
    try:
        return [load_days(data_dir, today - timedelta(days=WARM_DAYS), today - timedelta(days=1),
                          [i.symbol for i in cfg.instruments])]
    except (StoreError, OSError):
        return []


def _schedule(rt: Runtime, calendar: TradingCalendar) -> None:
    """The calendar's sessions, and only they, open: no tick reaches the kernel before one opens (a
    weekend's, a holiday's, a special session's hours), at its open job or at its first tick, whichever
    comes first."""
    rt.engine.trade_only(None)
    rt.scheduler = SessionScheduler(calendar, rt.clock, {})
    hooks = _session_hooks(rt)
    rt.scheduler.hooks.update(hooks)
    rt.scheduler.on_plan = lambda session: rt.engine.expect_session(session.open, session.close,
                                                                    lambda: hooks[OPEN](session))


async def _connect_kite(cfg, data_dir: Path, journal: Journal, clock: Clock, tick_sizes: dict) -> KiteLive | None:
    creds, missing = credentials(data_dir)
    if creds is None:
        log.error("refusing to start live: missing %s. Paper trading needs none of them.", ", ".join(missing))
        return None
    log.info("live mode: Kite's WebSocket ticker needs the paid market-data plan on this API key")
    live = KiteLive(creds, data_dir, journal, clock.now_ns, [i.symbol for i in cfg.instruments], tick_sizes,
                    cfg.risk.max_orders_per_second, Caps(cfg.risk.max_orders_per_position_minute),
                    cfg.risk.order_lookup_seconds)
    try:
        for warning in await live.prepare():
            log.warning(warning)
    except (KiteError, LookupError) as exc:
        log.error("refusing to start live: %s", exc)
        await live.rest.close()
        return None
    return live


def _wire_kite(rt: Runtime, live: KiteLive) -> None:
    engine = rt.engine
    live.broker.on_token_error = engine.token_expired
    live.broker.on_error = engine.alert
    resyncs: set[asyncio.Task] = set()

    def on_reconnect() -> None:
        task = asyncio.get_running_loop().create_task(_resync(rt, live, "ticker reconnected"))
        resyncs.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(resyncs.discard)

    ticker = live.ticker_for(_live_tick(rt, live), on_reconnect,
                             lambda exc: engine.fault(None, exc, "ticker"))
    if rt.metrics is not None:
        rt.metrics.watch_kite(live.rest, ticker)

    async def feed() -> None:
        while True:
            try:
                await ticker.run()
            except TokenException as exc:
                engine.token_expired(exc.message)
                live.renewed.clear()
                await live.renewed.wait()  # reconnect the moment a new token arrives, not at a backoff's end

    async def renew(text: str) -> Renewal:
        """/token and the login callback alike: exchange, resume what the expiry paused, tell the trader."""
        try:
            user = await live.exchange(text)
        except Exception as exc:  # reported to the trader, whatever Kite said
            outcome = Renewal(False, f"Kite login failed: {exc}")
            log.warning("%s", outcome.text)
            engine.alert(outcome.text)
            return outcome
        paused = engine.state == State.PAUSED and engine.state_reason == TOKEN_PAUSE
        await _resync(rt, live, "new token")
        engine.token_renewed()
        resumed = paused and engine.state == State.RUNNING
        outcome = Renewal(True, f"Kite session renewed for {user}"
                                + ("; OTrade resumed entries paused by the expiry" if resumed else ""))
        log.info("%s", outcome.text)
        engine.alert(outcome.text, critical=False)
        return outcome

    async def nag() -> None:
        """Repeat the expired-token alert until the trader fixes it."""
        while True:
            await asyncio.sleep(engine.cfg.session.token_alert_minutes * 60)
            if not engine.token_ok:
                engine.alert("Broker session still expired: entries paused. /login, then "
                             + ("tap the link." if rt.login_tap else "/token."))

    async def tend() -> None:
        while True:
            await asyncio.sleep(TEND_S)
            engine.tend()

    def instruments_known(cfg) -> None:
        missing = live.unknown([i.symbol for i in cfg.instruments])
        if missing:
            raise ConfigError([f"instruments: {', '.join(missing)} not in Kite's instruments list today"])

    def follow_instruments(old, new, changes) -> None:
        live.use_symbols([i.symbol for i in new.instruments])
        engine.set_tick_sizes(live.tick_sizes)

    def live_hours(cfg) -> None:
        if hours := live_session_problems(cfg.session):
            raise ConfigError(hours)

    rt.config.add_check(instruments_known)
    rt.config.add_check(live_hours)  # /set and /reload: as the start refuses them
    rt.config.subscribe(follow_instruments)
    rt.tasks["kite-orders"] = live.broker.run
    rt.tasks["order-tending"] = tend
    rt.tasks["token-nag"] = nag
    rt.tasks["feed"] = feed
    rt.health["feed"] = lambda: "kite connected" if ticker.connected else "kite disconnected"
    rt.login, rt.token = live.login_url, renew
    rt.on_stop.append(live.rest.close)


async def _resync(rt: Runtime, live: KiteLive, why: str) -> None:
    """Catch up with Kite (start, reconnect, new token): fills missed meanwhile, positions, orders."""
    try:
        for note in await live.broker.resync(rt.engine.reconcile, why):
            log.info("reconcile (%s): %s", why, note)
    except KiteError as exc:  # the token: the token routine takes it from here
        log.error("reconcile (%s) failed: %s", why, exc.message)
        rt.alert(f"Could not reconcile with Kite after {why}: {exc.message}")


async def _check_token(rt: Runtime, live: KiteLive) -> None:
    try:
        profile = await live.rest.profile()
    except TokenException as exc:
        rt.engine.token_expired(exc.message)
    else:
        log.info("broker session valid for %s", profile.get("user_id"))
        live.renewed.set()
        rt.engine.token_renewed()


def _live_tick(rt: Runtime, live: KiteLive) -> Callable[..., None]:
    """The ticker's callback for each tick ``(row, ts, price, volume, last_qty, bid, ask)``: the tuple
    is recorded as it is. Tick -> decision runs from the frame's arrival (``live.received_ns``)."""
    on_tick, meter, mask = rt.engine.on_tick, rt.meter, SAMPLE_MASK

    def deliver(*tick: Any) -> None:
        i, ts, price, volume, _, _, _ = tick
        rt.last_tick_ns = ts
        act = on_tick(i, ts, price, volume)
        meter.ticks = n = meter.ticks + 1
        if act > 0 or not n & mask:
            meter.took(time.time_ns() - live.received_ns, act)
        rt.recorder.add(tick)

    return deliver


async def _supervise(rt: Runtime, name: str, factory: Callable[[], Awaitable[None]]) -> None:
    """Run a task for the life of the process: a crash is logged, alerted and the task restarted."""

    def crashed(state) -> None:
        exc = state.outcome.exception()
        log.error("task %s crashed: %s: %s; restarting", name, type(exc).__name__, exc)
        rt.alert(f"{name} crashed ({type(exc).__name__}: {exc}); restarting it")

    async for attempt in AsyncRetrying(retry=retry_if_exception_type(Exception), wait=wait_exponential(0.5, max=30),
                                       stop=stop_never, before_sleep=crashed):
        with attempt:
            await factory()


WARM_DAYS = 7  # calendar days of ticks (recorded, or the synthetic market's) fed to the strategies before the first


def _warm_strategies(engine: Engine, data_dir: Path, now_ns: int) -> None:
    """The market ticks recorded on the days before today into the strategies' bars and indicators,
    when there are any: candle strategies then trade from the open as the backtest over those days
    would. Today's are ``_catch_up``'s."""
    from engine.data.store import StoreError, load_days

    today = datetime.fromtimestamp(now_ns / 1e9, IST).date()
    try:
        ticks = load_days(data_dir, today - timedelta(days=WARM_DAYS), today - timedelta(days=1), engine.arrays.symbols)
    except (StoreError, OSError):
        pass
    else:
        log.info("strategies warmed on %d bars of the ticks recorded before today", engine.warm_strategies(ticks))


def _warm_on_synthetic(engine: Engine, feed: SyntheticFeed, now_ns: int) -> Ticks | None:
    """The synthetic market's sessions before today's into the strategies: the path the feed then
    continues, so candle strategies trade from the first bar. Returns today's up to now (``_catch_up``'s)."""
    bars = days = 0
    today = datetime.fromtimestamp(now_ns / 1e9, IST).date()
    todays = None
    for ticks in feed.history(now_ns):
        if datetime.fromtimestamp(int(ticks.ts[0]) / 1e9, IST).date() == today:
            todays = ticks
            continue
        bars += engine.warm_strategies(ticks)
        days += 1
    log.info("strategies warmed on %d bars of %d synthetic session(s) before the clock's start", bars, days)
    return todays


async def _catch_up(engine: Engine, data_dir: Path, now_ns: int, kind: str, market: Ticks | None,
                    live: KiteLive | None = None) -> None:
    """After the restore, before the first tick: today's ticks before now into the strategies, the
    session under way. Today's recording (an earlier run's, up to its crash), else ``market`` (the
    synthetic market's, on a first start after the open). The whole minutes the recording misses
    before now (the process was down) come, live, from Kite's minute candles (its historical data
    add-on) as the candle rule's ticks; what is left (the seconds a crash lost, or all of it without
    the add-on) is named: those ticks are in no bar, here as in a backtest of the recording."""
    from engine.data.store import StoreError, load_ticks, recorded, tick_file

    today = datetime.fromtimestamp(now_ns / 1e9, IST).date()
    ticks = market
    if recorded(data_dir, today, kind):
        try:
            ticks = load_ticks(tick_file(data_dir, today, kind), engine.arrays.symbols)
        except (StoreError, OSError) as exc:
            log.error("today's recording cannot be read (%s): the strategies start today's session afresh", exc)
            return
        before = ticks.ts < now_ns
        ticks = Ticks(ticks.ts[before], ticks.price[before], ticks.volume[before], ticks.instr[before], ticks.symbols)
        if len(ticks):
            end = int(ticks.ts.max())
            filled = await _kite_minutes(engine, live, end, now_ns) if live is not None else None
            if filled is not None and len(filled):
                ticks = _joined(ticks, filled)
                log.info("today's recording ends at %s IST: %d minute candle(s) from Kite fill the minutes to this "
                         "start", f"{datetime.fromtimestamp(end / 1e9, IST):%H:%M:%S}", len(filled) // 4)
                end = (int(filled.ts.max()) // (60 * NS_PER_S) + 1) * 60 * NS_PER_S  # its last minute's end
            log.warning("the ticks of the %.0f s from %s IST to this start are in no bar (nor in a backtest of the "
                        "recording)", (now_ns - end) / 1e9, f"{datetime.fromtimestamp(end / 1e9, IST):%H:%M:%S}")
    if ticks is None or not len(ticks):
        return
    bars = engine.catch_up(ticks)
    if bars:
        log.info("strategies caught up on %d bar(s) of today's session before this start", bars)


async def _kite_minutes(engine: Engine, live: KiteLive, after_ns: int, now_ns: int) -> Ticks | None:
    """Kite's minute candles of the whole minutes after ``after_ns`` and before ``now_ns`` as the
    candle rule's ticks (``engine.data.candles.replay``, "ohlc"); None when there is no whole minute
    or Kite does not give them (no historical data add-on), which is logged."""
    from engine.data.candles import CandleError, kite_time, replay
    from engine.data.fetch import from_kite

    minute = 60 * NS_PER_S
    start, end = -(-(after_ns + 1) // minute) * minute, now_ns // minute * minute
    if end <= start:
        return None
    symbols, candles = engine.arrays.symbols, {}
    try:
        for symbol in symbols:
            rows = await live.rest.historical(live.known[symbol].token, "minute", kite_time(start // NS_PER_S),
                                              kite_time(end // NS_PER_S - 1))
            candles[symbol] = from_kite([r for r in rows if r], start // NS_PER_S, end // NS_PER_S)
        if not any(len(c.ts) for c in candles.values()):
            return None
        pr = engine.arrays.pr
        return replay(candles, symbols, "minute", "ohlc", int(pr[:, L.P_OPEN_NS].min()),
                      int(pr[:, L.P_CLOSE_NS].max())).ticks
    except (KiteError, CandleError, KeyError, OSError) as exc:
        log.warning("Kite's minute candles for the minutes the recording misses are not to be had (%s)", exc)
        return None


def _joined(first: Ticks, then: Ticks) -> Ticks:
    return Ticks(*(np.concatenate([getattr(first, c), getattr(then, c)]) for c in ("ts", "price", "volume", "instr")),
                 first.symbols)


async def _compile_rest(engine: Engine, config: str, here: tuple[str, ...] = ()) -> None:
    """A live start's kernels beyond ``RECONCILE_KERNELS``, the event loop running on meanwhile (the
    orders of the reconcile just made, their answers). On an empty cache a child process (``otrade
    warm --only run``) compiles them into it and this one loads them in milliseconds: compiled on a
    thread here, they would stall the loop for up to 1.6 s at a time (the garbage collector walking
    the compiler's objects; measured for issue 23). Should the child fail, they compile here.

    A paper start names the kernels it compiles itself meanwhile (``here``, blocking: it trades on
    none yet), which the child leaves out with those paper never calls: Numba compiles on one core."""
    if not kernels_cached(engine.kernels.key):
        began = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_"))}  # it needs none
        skip = ["--skip", ",".join([*here, *LIVE_ONLY_KERNELS, "ticker decoder"])] if here else []  # warm's names
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "warm", "--only", "run", "--config", config, *skip, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            if here:
                engine.warm_up(here)
            _, err = await child.communicate()
        finally:
            if child.returncode is None:  # this start was stopped meanwhile
                child.kill()
        if child.returncode:
            log.warning("compiling the kernels in a child process failed (exit %d): compiling them here\n%s",
                        child.returncode, err.decode(errors="replace")[-2000:])
        else:
            log.info("the other kernels compiled in a child process in %.1f s", time.monotonic() - began)
    engine.warm_up()


def kernels_cached(key: str) -> bool:
    """Numba's cache holds the tick kernel compiled for the strategies ``key`` names (``Kernels.key``,
    ``engine.strategies.compiled.cache_key``): the engine loads its kernels instead of compiling them.
    Another set of strategies' kernels do not count: this one's would compile on the event loop."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    return bool(cache and key) and any(Path(cache).glob(f"*/loop_{key}.on_tick-*.nbi"))


def _rehearsal_start(data_dir: Path, asked: datetime) -> tuple[datetime, str]:
    """Where a rehearsal's clock starts: as asked, unless the day's rehearsal journal or recording goes
    further. Then just after the later of the two, and a note why: a clock run back over its own day
    would restore trades "in the future" and record a second price path into the day's recording."""
    from engine.data.store import REHEARSAL, StoreError, last_ts, tick_file

    journal = Journal(data_dir, lambda: 0, rehearsal=True)
    day = asked.astimezone(IST).date()
    records = journal.read_day(day.isoformat())
    stamps = [datetime.fromisoformat(r["ts"]) for r in records if isinstance(r.get("ts"), str)]
    recording = tick_file(data_dir, day, REHEARSAL)
    try:
        newest = last_ts(recording)
    except StoreError as exc:
        log.warning("%s", exc)
        newest = None
    if newest is not None:
        stamps.append(datetime.fromtimestamp(newest / 1e9, IST))
    if not stamps or max(stamps) < asked:
        return asked, ""
    start = max(stamps) + timedelta(milliseconds=1)
    return start, (f"The rehearsal of {start:%a %d %b} continues at {start:%H:%M:%S} IST, where its journal "
                   f"and recording end, not at {asked.astimezone(IST):%H:%M:%S} as asked: a clock never runs "
                   f"back over its own day. To rehearse the day from the start again, remove "
                   f"{journal.path(day.isoformat())} and {recording.name} (and its .parts) in {recording.parent}")


async def run(args: argparse.Namespace) -> int:
    buffer = logs.setup(file=Path(os.environ["OTRADE_LOG_FILE"]) if os.environ.get("OTRADE_LOG_FILE") else None)
    data_dir = data_dir_from_env()
    manager = ConfigManager(Path(args.config), data_dir, catalog_for(args.config))
    try:
        cfg = manager.load()
    except ConfigError as exc:
        log.error("config %s is not valid:\n%s", args.config, exc)
        return 1
    if args.live and args.clock:
        log.error("the rehearsal clock is for paper trading only; drop --clock or --live")
        return 1
    if args.live and (hours := live_session_problems(cfg.session)):  # before anything reaches Kite
        log.error("refusing to start live: config %s:\n%s", args.config, "\n".join(hours))
        return 1
    began = time.monotonic()
    if not kernels_cached(cache_key(in_use(cfg))):  # else a first start says nothing for as long as it compiles
        log.info("compiling the kernels (first run only, about 10 s)")
    resumed = ""
    if args.clock:  # stands still until the process is ready to trade: the compile costs no rehearsed time
        start, resumed = _rehearsal_start(data_dir, datetime.fromisoformat(args.clock))
        clock: Clock = RehearsalClock(start, running=False)
    else:
        clock = SystemClock()
    overrides = Path(os.environ.get("OTRADE_CALENDAR") or SHIPPED_OVERRIDES)
    try:
        calendar = TradingCalendar(cfg.session.open, cfg.session.close, overrides, cfg.session.square_off)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("calendar %s is not valid: %s: %s", overrides, type(exc).__name__, exc)
        return 1
    replayed = None
    if cfg.paper.feed == "replay" and not args.live:
        try:  # at start: a missing or broken file refuses to start instead of crashing the feed in a loop
            replayed, _ = load(cfg.paper.replay_file, [i.symbol for i in cfg.instruments])
        except (OSError, TickFileError) as exc:
            log.error("paper.replay_file cannot be replayed: %s", exc)
            return 1
    bus = EventBus()
    event_log = bus.subscribe()  # from the start: every event, the first alert included, is a log line
    terminal = bus.subscribe() if args.console else None  # and with --console, a line on the terminal
    journal = Journal(data_dir, clock.now_ns, rehearsal=bool(args.clock))  # a rehearsal's day is not today's
    tick_sizes = {i.symbol: i.tick_size for i in cfg.instruments}
    live = None
    if args.live:
        live = await _connect_kite(cfg, data_dir, journal, clock, tick_sizes)
        if live is None:
            return 1
    broker = live.broker if live else PaperBroker(tick_sizes, clock.now_ns)
    try:  # compiles the strategies, and the kernels: live, a reconcile's first, the rest once it armed the stops
        engine = Engine(cfg, broker, bus, journal, clock.now_ns, compile_kernels=False)
        if live:
            engine.warm_up(RECONCILE_KERNELS)
        elif (os.cpu_count() or 1) > 1:  # on an empty cache: the tick kernel here, the others in a child at once
            engine.warm_up(SHARED_KERNELS)
            await _compile_rest(engine, args.config, here=(*SHARED_KERNELS, TICK_KERNEL))
        else:
            engine.warm_up()
    except StrategyError as exc:
        log.error("%s", exc)
        return 1
    replay = cfg.paper.feed == "replay" and not live
    feed = None if live else _feed(cfg, clock, replayed, calendar)
    from engine.data.store import MARKET, REHEARSAL, SYNTHETIC

    kind = MARKET if live else REHEARSAL if args.clock else SYNTHETIC  # what this run records
    todays = None  # the synthetic market's ticks of today before now
    if isinstance(feed, SyntheticFeed):
        todays = _warm_on_synthetic(engine, feed, clock.now_ns())
    elif not live:  # live: once reconciled (below)
        _warm_strategies(engine, data_dir, clock.now_ns())
    if not live:
        log.info("kernels compiled and strategies warm in %.1f s", time.monotonic() - began)
    if live:
        engine.set_tick_sizes(live.tick_sizes)
    manager.add_check(engine.check_config)
    manager.subscribe(lambda old, new, changes: engine.apply_config(new))
    rt = Runtime(args, manager, engine, bus, clock, data_dir, buffer, started_ns=clock.now_ns(), events=terminal)
    _measure(rt, "kite" if live else "replay" if replay else "synthetic")
    log.info("%s trading %s; config %s; data in %s", "LIVE (Kite)" if live else "paper",
             ", ".join(i.symbol for i in cfg.instruments), Path(args.config).resolve(), data_dir.resolve())
    if live:
        def throttle(old, new, changes) -> None:
            live.rest.orders_per_second = new.risk.max_orders_per_second

        manager.subscribe(throttle)
        await _resync(rt, live, "start")  # protection re-armed: its orders go out while the rest compiles
        await _compile_rest(engine, args.config)
        _warm_strategies(engine, data_dir, clock.now_ns())
        log.info("kernels compiled and strategies warm in %.1f s", time.monotonic() - began)
        _wire_kite(rt, live)  # the ticker's decoder is compiled with the rest

    if not replay:  # a replay's sessions follow its ticks' own dates
        _schedule(rt, calendar)
        if live:
            rt.scheduler.token_check = _hhmm(cfg.session.token_check)
            rt.scheduler.hooks[TOKEN_CHECK] = lambda session: _check_token(rt, live)
        manager.subscribe(lambda old, new, changes: _retime(rt, calendar, new.session))
    if not replay:
        rt.recorder = Recorder(data_dir, [i.symbol for i in cfg.instruments], synthetic=not live, quotes=bool(live),
                               now_ns=clock.now_ns, rehearsal=bool(args.clock))
        rt.tasks["recorder"] = rt.recorder.run
        rt.health["recording"] = rt.recorder.health
        if live:  # the ticker's rows follow the config's instruments; the paper feed's stay its own
            manager.subscribe(lambda old, new, changes: rt.recorder.use_symbols([i.symbol for i in new.instruments]))
    rt.tasks["journal"] = journal.run
    rt.tasks["event-log"] = lambda: log_events(event_log, logging.getLogger(logs.EVENT_LOGGER))
    rt.tasks["heartbeat"] = lambda: _heartbeat(rt)
    if not replay:  # a replay's ticks carry their own (past) times
        rt.tasks["feed-watch"] = lambda: _watch_feed(rt)
    if not live:
        rt.tasks["feed"] = lambda: _pump(rt, feed, replay)
        rt.health["feed"] = lambda: "replay" if replay else "synthetic"

    web_runner = await _serve(rt, cfg.server, live)  # before the transports: /login's reply depends on it
    for plugin in entry_points(group="otrade.transports"):
        plugin.load()(rt)
    if resumed:
        log.warning("%s", resumed)
        engine.alert(resumed, critical=False)
    if replayed is None:  # before the first tick, live once reconciled; a replay's days are its ticks'
        engine.restore()
        await _catch_up(engine, data_dir, clock.now_ns(), kind, todays, live)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if isinstance(clock, RehearsalClock):
        clock.run()  # ready to trade
    if rt.scheduler:
        rt.scheduler.start()
        log.info("next: %s", rt.next_event())
        if rt.scheduler.session.open > rt.scheduler.now():  # waiting: say for what, on every transport
            bus.publish(Event(SESSION, clock.now_ns(), {"text": rt.scheduler.plan()}))
    tasks = [asyncio.create_task(_supervise(rt, name, factory), name=name) for name, factory in rt.tasks.items()]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    exit_by(SHUTDOWN_DEADLINE_S)  # a signal's stop or the end of --for: neither may hang the exit
    await _shutdown(rt, tasks, web_runner, cfg.session.on_shutdown)
    return 0


def _measure(rt: Runtime, source: str) -> None:
    """The process's metrics (/metrics): the tick loops count into ``rt.meter``, events are counted
    from the bus from here on."""
    rt.meter.source = source
    rt.metrics = Metrics(rt.engine, rt.bus, rt.meter, rt.gauges, lambda: rt.recorder)
    rt.tasks["metrics"] = rt.metrics.run
    rt.gauges.add("last_tick_age_seconds", "Seconds since the last tick (since the start, before the first)",
                  lambda: (rt.clock.now_ns() - (rt.last_tick_ns or rt.started_ns)) / 1e9)


async def _serve(rt: Runtime, server: Server, live: KiteLive | None,
                 now: Callable[[], float] = time.monotonic) -> web.AppRunner | None:
    """/healthz, plus Kite's login redirect when live with ``server.login_callback``. A port we cannot
    listen on is logged and trading goes on; /login then hands out links for the /token step."""
    callback = None
    if live is not None and server.login_callback:
        callback = LoginCallback(server.login_callback, LoginLinks(live.login_url, now=now), rt.token)
    port = int(os.environ.get("PORT", server.port))
    page = page_for(rt, server)  # /web: the monitoring page
    try:
        runner = await serve(make_app(rt.health_report, callback, page=page.app, metrics=handler_from_env(rt.metrics)),
                             server.host, port)
    except OSError as exc:  # trading matters more than the health endpoint
        log.error("no /healthz: cannot listen on %s:%d (%s); set PORT or server.port", server.host, port,
                  exc.strerror)
        page.monitor.close()
        return None
    bound = runner.addresses[0][1]  # PORT=0 takes any free one: the log names the one taken
    log.info("health on http://%s:%d/healthz", server.host, bound)
    page.listening(bound)
    rt.web_link, rt.tasks["monitor"] = page.link, page.monitor.run
    if callback is not None:
        rt.login, rt.login_tap = callback.links.issue, True
        log.info("Kite login callback on %s: register https://<this host>%s as the app's redirect URL",
                 callback.path, callback.path)
    return runner


def _stopping(engine: Engine, before: int, held: int, on_shutdown: str) -> str:
    """The stop message: what really happens to the open positions, with this broker and this config."""
    head = f"OTrade stopping ({engine.state})"
    if engine.live:
        return f"{head}; {held} open position(s)" + (" left protected at the broker" if held else "")
    if not held:
        return f"{head}; {before} open paper position(s) flattened" if before else f"{head}; no open position"
    kept = "kept in today's journal and restored with their target and stop at the next start today"
    if on_shutdown == "flatten":
        return f"{head}; {held} of {before} open paper position(s) not flattened in time (no tick came): {kept}"
    return f"{head}; {held} open paper position(s) {kept} (session.on_shutdown: keep)"


def exit_by(seconds: float) -> threading.Timer:
    """Should the process still run ``seconds`` from now, every thread's stack goes to stderr (what
    hung) and it exits with status 1: on a daemon timer thread, which a hung event loop cannot hold."""
    def overdue() -> None:
        log.critical("stopping took over %.1f s: exiting now; every thread's stack follows", seconds)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)

    timer = threading.Timer(seconds, overdue)
    timer.daemon = True
    timer.start()
    return timer


async def _shutdown(rt: Runtime, tasks: list[asyncio.Task], web_runner, on_shutdown: str) -> None:
    started = time.monotonic()
    engine = rt.engine
    if engine.state == State.RUNNING:
        engine.pause(STOPPING)
    before = len(engine.positions())
    if on_shutdown == "flatten" and before:
        engine.flatten()
        await asyncio.sleep(min(2.0, SHUTDOWN_BUDGET_S / 4))  # let the next ticks fill the exits
    rt.alert(_stopping(engine, before, len(engine.positions()), on_shutdown), critical=True)
    if rt.scheduler:
        rt.scheduler.shutdown()
    budget = SHUTDOWN_BUDGET_S - (time.monotonic() - started)
    hooks = [hook() for hook in rt.on_stop]
    if hooks:
        _, pending = await asyncio.wait([asyncio.ensure_future(h) for h in hooks], timeout=max(0.5, budget - 1))
        for p in pending:
            p.cancel()
    for task in tasks:
        task.cancel()
    if tasks:  # one that outlives its cancel is named with where it waits, and left: the journal still closes
        _, stuck = await asyncio.wait(tasks, timeout=max(0.5, SHUTDOWN_BUDGET_S - 2 - (time.monotonic() - started)))
        for task in stuck:
            where = io.StringIO()
            task.print_stack(file=where)
            log.error("task %s still runs after its cancel: left behind\n%s", task.get_name(), where.getvalue())
    if rt.recorder:  # after the feed's last tick
        await rt.recorder.close(max(0.5, SHUTDOWN_BUDGET_S - 1 - (time.monotonic() - started)))
    if web_runner is not None:
        await web_runner.cleanup()
    engine.journal.flush()
    engine.journal.close()
    log.info("stopped in %.1f s", time.monotonic() - started)
