"""The same ticks through the backtest and through the live engine trading at the local Kite server.

The live side runs the real client (REST worker, ticker) against ``FakeKite`` with ``auto_match``:
each pushed tick trades against the book (MARKET orders fill at it, LIMIT targets at their limit
when it trades through them, SL-M stops trigger and fill at it). The engine's clock is the time of
the tick being pushed, so the times it stamps on fills are tick times, as in the backtest. Between
two ticks the live side is left to settle: every order of ours confirmed, Kite's book without a
transient row, and our view of each order the same as Kite's.
"""

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from config import Config
from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker_codec import Tick
from engine.core import layout as L
from engine.engine import Engine
from engine.live.orders import Caps
from engine.research import backtest
from engine.services.events import EventBus
from engine.services.journal import Journal
from tests.conftest import make_ticks, ns, seconds
from tests.kite_engine import INFY, connect, disconnect
from tests.kite_server import API_KEY, FINAL, TRANSIENT, FakeKite

START = "10:00:00"  # the first tick; one a second after it, far from the 15:15 square-off
SETTLE_TIMEOUT_S = 5.0


def walk(n: int, seed: int, first: float = 1000.0, tick: float = 0.1, widest: int = 3) -> list[float]:
    """``n`` prices of a seeded random walk on the tick grid: each step moves 0 to ``widest`` ticks."""
    rng = random.Random(seed)
    steps, out = round(first / tick), []
    for _ in range(n):
        out.append(round(steps * tick, 2))
        steps += rng.randint(-widest, widest)
    return out


def ema_cross_signal_ticks(values: list[float], fast: int, slow: int) -> set[int]:
    """The ticks (indices) on which ``ema_cross`` signals, either way: the EMAs do not depend on
    positions, so this holds in the backtest and live alike (engine.strategies.ema_cross)."""
    a_fast, a_slow = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0)
    ema_fast = ema_slow = values[0]
    out = set()
    for k, price in enumerate(values[1:], start=1):
        prev_fast, prev_slow = ema_fast, ema_slow
        ema_fast, ema_slow = prev_fast + a_fast * (price - prev_fast), prev_slow + a_slow * (price - prev_slow)
        if k + 1 >= slow and ((prev_fast <= prev_slow and ema_fast > ema_slow)
                              or (prev_fast >= prev_slow and ema_fast < ema_slow)):
            out.add(k)
    return out


@dataclass(frozen=True)
class Trade:
    side: str
    qty: int
    entry_ns: int
    entry_price: float
    exit_ns: int
    exit_price: float
    reason: str
    pnl: float


@dataclass(frozen=True)
class Held:
    """A position still open after the last tick."""

    side: str
    qty: int
    entry_ns: int
    entry_price: float


@dataclass(frozen=True)
class Book:
    trades: list[Trade]
    held: Held | None

    def fill_ticks(self) -> set[int]:
        """The ticks (indices from START) on which an order of a trade filled."""
        ticks = {t.entry_ns for t in self.trades} | {t.exit_ns for t in self.trades}
        if self.held:
            ticks.add(self.held.entry_ns)
        return {(t - ns(START)) // L.NS_PER_S for t in ticks}


class TradesDiffer(AssertionError):
    """The live engine's trades are not the backtest's."""


def assert_same(live: Book, backtested: Book) -> None:
    if live == backtested:
        return
    lines = ["live trades differ from the backtest's (tick = seconds after START):"]
    for k in range(max(len(live.trades), len(backtested.trades))):
        a = live.trades[k] if k < len(live.trades) else None
        b = backtested.trades[k] if k < len(backtested.trades) else None
        lines.append(f"{'  ' if a == b else '!!'} live {_show(a)}\n     test {_show(b)}")
    lines.append(f"{'  ' if live.held == backtested.held else '!!'} held live {live.held}, backtest {backtested.held}")
    raise TradesDiffer("\n".join(lines))


def _show(t: Trade | None) -> str:
    if t is None:
        return "-"
    tick = lambda t_ns: (t_ns - ns(START)) // L.NS_PER_S  # noqa: E731
    return (f"{t.side} {t.qty} @{t.entry_price} (tick {tick(t.entry_ns)}) -> @{t.exit_price} (tick {tick(t.exit_ns)}) "
            f"{t.reason} {t.pnl:+.2f}")


def _trade(side: str, qty: int, entry_ns: int, entry_price: float, exit_ns: int, exit_price: float, reason: str,
           pnl: float) -> Trade:
    return Trade(side, int(qty), int(entry_ns), round(float(entry_price), 2), int(exit_ns), round(float(exit_price), 2),
                 reason, round(float(pnl), 2))


def backtest_book(cfg: Config, values: list[float]) -> Book:
    """The backtest of one tick a second from START. A position still open at the last tick is
    "held": the backtest closes it there (``finish``), the live engine keeps it at Kite."""
    result = backtest.run(cfg, make_ticks(seconds(START, values)))
    trades = [_trade("long" if f[backtest.T_SIDE] > 0 else "short", f[backtest.T_QTY], t[backtest.TI_ENTRY],
                     f[backtest.T_ENTRY], t[backtest.TI_EXIT], f[backtest.T_EXIT],
                     L.REASONS[int(f[backtest.T_REASON])], f[backtest.T_PNL])
              for f, t in zip(result.tf, result.ti, strict=True)]
    last_ns = ns(START) + (len(values) - 1) * L.NS_PER_S
    held = None
    if trades and trades[-1].reason == "square_off" and trades[-1].exit_ns == last_ns:
        t = trades.pop()
        held = Held(t.side, t.qty, t.entry_ns, t.entry_price)
    return Book(trades, held)


def live_book(engine: Engine) -> Book:
    trades = [_trade(t["side"], t["qty"], t["entry_time_ns"], t["entry_price"], t["exit_time_ns"], t["exit_price"],
                     t["exit_reason"], t["pnl"]) for t in engine.trades()]
    held = None
    for p in engine.positions():
        held = Held("long" if p["qty"] > 0 else "short", abs(p["qty"]), int(engine.arrays.clk[0, L.C_ENTRY]),
                    round(p["entry_price"], 2))
    return Book(trades, held)


class LiveRun:
    """The live engine at the local Kite server, on a clock that reads the pushed tick's time."""

    def __init__(self, server: FakeKite, engine: Engine) -> None:
        self.server, self.engine = server, engine
        self.now_ns = ns(START)
        self.settle_s = 0.0  # the longest wait for the live side to settle after a tick

    def settled(self, ts_ns: int, price: float) -> bool:
        a, book = self.engine.arrays, self.server.orders
        if a.st[0, L.S_LTP] != price or a.clk[0, L.C_LTP] != ts_ns:
            return False  # the tick has not reached the engine yet
        if any(rows[-1]["status"] in TRANSIENT for rows in book.values()):
            return False
        for order in self.engine.broker.all_orders():
            if order.working and (order.unsure or order.pending or order.cancel_wanted):
                return False
            row = book.get(order.broker_id or "", [None])[-1]
            if row is None:
                return False  # placed, but Kite's answer is not in
            if (row["status"] in FINAL) == order.working or row["filled_quantity"] != order.filled_quantity:
                return False  # Kite's word on it is still on its way
        return True

    async def push(self, values: list[float]) -> None:
        """One tick a second from ``START``; after each, wait until the live side has settled."""
        for k, price in enumerate(values):
            self.now_ns = ns(START) + k * L.NS_PER_S
            await self.server.push([Tick(INFY, price, "full", True, exchange_timestamp=self.now_ns // L.NS_PER_S)])
            started = time.monotonic()
            while not self.settled(self.now_ns, price):
                if time.monotonic() - started > SETTLE_TIMEOUT_S:
                    raise AssertionError(f"the live side did not settle after tick {k} ({price})")
                await asyncio.sleep(0.002)
            self.settle_s = max(self.settle_s, time.monotonic() - started)


@asynccontextmanager
async def live_engine(tmp_path, cfg: Config):
    """Yields a LiveRun: ``cfg``'s engine trading through the real Kite client at a strict local
    server that matches every pushed tick against its book. Kite's and OTrade's order rate limits
    are lifted: they run on the wall clock, on which these ticks come much faster than a second apart."""
    server = FakeKite(auto_match=True, orders_per_second=None, orders_per_minute=None)
    await server.start()
    rest = KiteREST(API_KEY, server.access_token, server.base, timeout=2.0, orders_per_second=1000)
    tick = cfg.instruments[0].tick_size
    run: LiveRun | None = None

    def clock() -> int:
        return run.now_ns if run else ns(START)

    journal = Journal(tmp_path, clock)
    broker = KiteBroker(rest, journal, {"NSE:INFY": tick}, clock, caps=Caps(100_000, 100_000, 100_000))
    engine = Engine(cfg, broker, EventBus(), journal, clock)
    run = LiveRun(server, engine)
    tasks = await connect(server, rest, broker, engine)
    try:
        yield run
    finally:
        await disconnect(tasks)
        await rest.close()
        await server.stop()


async def live_run(tmp_path, cfg: Config, values: list[float]) -> tuple[Book, LiveRun]:
    """The ticks through the live engine; returns its trades and the run (server, engine, settle time)."""
    async with live_engine(tmp_path, cfg) as run:
        await run.push(values)
        return live_book(run.engine), run
