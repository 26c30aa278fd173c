"""Build the kernels' numpy state from a validated configuration."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from config import Config
from config.models import Costs as CostsConfig
from engine.core import costs as C
from engine.core import layout as L
from engine.core.kernels import decision_address
from engine.core.step import start_session, warm
from engine.strategies import Strategy


@dataclass
class Arrays:
    """Everything the tick kernel reads and writes, one row per configured instrument."""

    symbols: tuple[str, ...]
    pr: np.ndarray
    st: np.ndarray
    clk: np.ndarray
    acct: np.ndarray
    rows: np.ndarray  # the strategy rows (engine.strategies.api) in their planes (L.ROW_*), as wide as the widest
    links: np.ndarray  # each row's decision addresses and indicator offsets (L.LINK_*)
    strategies: list[Strategy]  # each row's (holding its compiled decision: the addresses stay valid)

    @property
    def x(self) -> np.ndarray:
        """Each instrument's strategy row as it stands."""
        return self.rows[L.ROW_NOW]

    def kernel(self) -> tuple:
        """The arrays ``step.on_tick`` takes, in its order."""
        return self.st, self.pr, self.acct, self.clk, self.rows, self.links


def strategy_of(ins: Any) -> Strategy:
    return type(ins.strategy).__strategy__


def in_use(cfg: Config) -> list[Strategy]:
    """The strategies the config names, each once, in the order first named."""
    return list(dict.fromkeys(strategy_of(i) for i in cfg.instruments))


def params(cfg: Config) -> np.ndarray:
    pr = np.zeros((len(cfg.instruments), L.N_PARAMS))
    session = cfg.session
    for row, ins in zip(pr, cfg.instruments, strict=True):
        strategy, p = strategy_of(ins), ins.strategy
        row[L.P_TICK] = ins.tick_size
        row[L.P_QTY] = ins.quantity
        row[L.P_SLIP] = cfg.paper.slippage_ticks * ins.tick_size
        row[L.P_TARGET_PCT] = ins.bracket.target_pct
        row[L.P_STOP_PCT] = ins.bracket.stop_pct
        row[L.P_TRAIL_PCT] = np.nan if ins.bracket.trail_pct is None else ins.bracket.trail_pct
        row[L.P_TRAIL_STEP] = ins.bracket.trail_step_ticks * ins.tick_size
        row[L.P_TRAIL_GAP_NS] = ins.bracket.trail_interval_s * L.NS_PER_S
        row[L.P_ALLOW_SHORT] = 1.0 if p.allow_short else 0.0
        row[L.P_OPEN_NS] = session.ns_after_midnight("open")
        row[L.P_CLOSE_NS] = session.ns_after_midnight("close")
        row[L.P_SQUARE_OFF_NS] = session.ns_after_midnight("square_off")
        row[L.P_TF_NS] = p.timeframe_ns
        row[L.P_WARMUP] = strategy.warmup(p)
        row[L.P_RESET] = 1.0 if p.timeframe_ns == 0 or strategy.reset_each_session else 0.0
        row[L.P_N_IND] = len(strategy.indicator_names())
    return pr


def strategy_rows(cfg: Config, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The strategy rows, every plane fresh and at least ``width`` wide, and each row's links."""
    made = [strategy_of(i).row(i.strategy) for i in cfg.instruments]
    rows = np.zeros((L.N_ROW_PLANES, len(made), max(width, *(len(r) for r, _ in made))))
    links = np.zeros((len(made), L.LINK_IND + max(len(o) for _, o in made)), dtype=np.int64)
    for j, ((row, offsets), ins) in enumerate(zip(made, cfg.instruments, strict=True)):
        rows[:, j, : len(row)] = row
        links[j, L.LINK_JIT : L.LINK_C + 1] = decision_address(strategy_of(ins).compile())
        links[j, L.LINK_IND : L.LINK_IND + len(offsets)] = offsets
    return rows, links


def rates(c: CostsConfig) -> np.ndarray:
    """The kernel's charge rates (``costs``' slots) from the config's percentages."""
    out = np.zeros(C.N_RATES)
    out[C.BROKERAGE] = c.brokerage_pct / 100.0
    out[C.BROKERAGE_CAP] = c.brokerage_cap
    out[C.STT] = c.stt_sell_pct / 100.0
    out[C.EXCHANGE] = c.exchange_pct / 100.0
    out[C.SEBI] = c.sebi_per_crore / 1e7
    out[C.GST] = c.gst_pct / 100.0
    out[C.STAMP] = c.stamp_buy_pct / 100.0
    return out


def apply_risk(acct: np.ndarray, cfg: Config) -> None:
    """The limits and the charge rates (the loss limit counts charges) the kernel reads."""
    acct[L.A_MAX_LOSS] = cfg.risk.max_daily_loss
    acct[L.A_MAX_TRADES] = cfg.risk.max_trades_per_day
    acct[L.A_MAX_RATE] = cfg.risk.max_orders_per_second
    acct[L.A_MAX_QTY] = cfg.risk.max_quantity
    acct[L.A_COSTS : L.A_COSTS + C.N_RATES] = rates(cfg.costs)


def build(cfg: Config) -> Arrays:
    """The arrays for ``cfg``, its strategies compiled (or loaded from Numba's cache): StrategyError."""
    n = len(cfg.instruments)
    acct = L.new_account()
    apply_risk(acct, cfg)
    rows, links = strategy_rows(cfg)
    return Arrays(
        symbols=tuple(i.symbol for i in cfg.instruments),
        pr=params(cfg),
        st=L.new_state(n),
        clk=L.new_clock(n),
        acct=acct,
        rows=rows,
        links=links,
        strategies=[strategy_of(i) for i in cfg.instruments],
    )


def same_shape(old: Config, new: Config) -> bool:
    """The same instruments with the same strategy kinds: the arrays can take ``new`` in place."""
    return [(i.symbol, i.strategy.kind) for i in old.instruments] == [(i.symbol, i.strategy.kind)
                                                                    for i in new.instruments]


def reconfigured(a: Arrays, old: Config, new: Config) -> Arrays:
    """The arrays trading ``new`` from the next tick, as a running engine takes a config change (and a
    replay of its day takes it again). Same shape: these arrays, an instrument whose strategy settings
    changed starting its strategy row again (its periods, its timeframe may have changed), the others
    keeping theirs. Otherwise new arrays, the day's money and its session carried over."""
    if same_shape(old, new):
        rows, a.links = strategy_rows(new, a.rows.shape[2])
        for j, (was, now) in enumerate(zip(old.instruments, new.instruments, strict=True)):
            if was.strategy == now.strategy:
                rows[[L.ROW_NOW, L.ROW_SAVED], j, : a.rows.shape[2]] = a.rows[[L.ROW_NOW, L.ROW_SAVED], j]
            else:
                a.st[j, L.S_BARS] = 0.0
                a.st[j, L.S_BAR_END] = -1.0
        a.rows = rows
        a.pr[:] = params(new)
        apply_risk(a.acct, new)
        return a
    b = build(new)
    b.acct[: L.A_MAX_LOSS] = a.acct[: L.A_MAX_LOSS]
    b.acct[L.A_LIVE] = a.acct[L.A_LIVE]
    b.acct[L.A_CHARGES] = a.acct[L.A_CHARGES]
    for j in range(len(b.symbols)):
        start_session(b.st, b.pr, b.rows, j, a.acct[L.A_DAY])
    return b


def under_way(a: Arrays, day: int) -> None:
    """Day ``day``'s session as already started (a restart, or a start after the open): its first tick
    is not a new day. A row already in that session (caught up on its ticks) keeps it."""
    for j in range(len(a.symbols)):
        if a.st[j, L.S_DAY] != day:
            start_session(a.st, a.pr, a.rows, j, float(day))
    a.acct[L.A_DAY] = day


def catch_up(a: Arrays, day: int, ts: np.ndarray, price: np.ndarray, volume: np.ndarray, instr: np.ndarray,
             feed: Callable[..., int] = warm) -> int:
    """Day ``day``'s ticks before a start (ticks of other days left out) into the strategies, the session
    left under way with its forming bar open, so the indicators are the ones of a process that had run
    since the open. Nothing changes when no tick lies in the session, or the arrays are on another day.
    Returns the bars fed. ``feed``: ``step.warm``, or as compiled for the strategies (the engine's)."""
    if a.acct[L.A_DAY] not in (-1.0, float(day)):
        return 0
    keep = np.flatnonzero((ts + L.IST_OFFSET_NS) // L.NS_PER_DAY == day)
    tod = (ts[keep] + L.IST_OFFSET_NS) % L.NS_PER_DAY
    if not ((tod >= a.pr[:, L.P_OPEN_NS].min()) & (tod < a.pr[:, L.P_CLOSE_NS].max())).any():
        return 0
    under_way(a, day)
    return int(feed(ts[keep], price[keep], volume[keep], instr[keep], a.st, a.pr, a.clk, a.rows, a.links, True))
