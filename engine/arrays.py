"""Build the kernels' numpy state from a validated configuration."""

from dataclasses import dataclass

import numpy as np

from config import Config
from engine import layout as L
from engine.costs import N_RATES, rates
from engine.strategies import REGISTRY


@dataclass
class Arrays:
    """Everything the tick kernel reads and writes, one row per configured instrument."""

    symbols: tuple[str, ...]
    pr: np.ndarray
    st: np.ndarray
    ring: np.ndarray
    clk: np.ndarray
    acct: np.ndarray


def params(cfg: Config) -> np.ndarray:
    pr = np.zeros((len(cfg.instruments), L.N_PARAMS))
    session = cfg.session
    for row, ins in zip(pr, cfg.instruments, strict=True):
        strategy = REGISTRY[ins.strategy.kind]
        row[L.P_TICK] = ins.tick_size
        row[L.P_QTY] = ins.quantity
        row[L.P_SLIP] = cfg.paper.slippage_ticks * ins.tick_size
        row[L.P_TARGET_PCT] = ins.bracket.target_pct
        row[L.P_STOP_PCT] = ins.bracket.stop_pct
        row[L.P_TRAIL_PCT] = np.nan if ins.bracket.trail_pct is None else ins.bracket.trail_pct
        row[L.P_TRAIL_STEP] = ins.bracket.trail_step_ticks * ins.tick_size
        row[L.P_TRAIL_GAP_NS] = ins.bracket.trail_interval_s * L.NS_PER_S
        row[L.P_ALLOW_SHORT] = 1.0 if ins.strategy.allow_short else 0.0
        row[L.P_KIND] = strategy.kind
        row[L.P_OPEN_NS] = session.ns_after_midnight("open")
        row[L.P_CLOSE_NS] = session.ns_after_midnight("close")
        row[L.P_SQUARE_OFF_NS] = session.ns_after_midnight("square_off")
        values = strategy.params(ins.strategy)
        row[L.P_S0 : L.P_S0 + len(values)] = values
    return pr


def apply_risk(acct: np.ndarray, cfg: Config) -> None:
    """The limits and the charge rates (the loss limit counts charges) the kernel reads."""
    acct[L.A_MAX_LOSS] = cfg.risk.max_daily_loss
    acct[L.A_MAX_TRADES] = cfg.risk.max_trades_per_day
    acct[L.A_MAX_RATE] = cfg.risk.max_orders_per_second
    acct[L.A_MAX_QTY] = cfg.risk.max_quantity
    acct[L.A_COSTS : L.A_COSTS + N_RATES] = rates(cfg.costs)


def ring_size(cfg: Config) -> int:
    return max(REGISTRY[i.strategy.kind].ring(i.strategy) for i in cfg.instruments)


def build(cfg: Config) -> Arrays:
    n = len(cfg.instruments)
    acct = L.new_account()
    apply_risk(acct, cfg)
    return Arrays(
        symbols=tuple(i.symbol for i in cfg.instruments),
        pr=params(cfg),
        st=L.new_state(n),
        ring=np.zeros((n, ring_size(cfg))),
        clk=L.new_clock(n),
        acct=acct,
    )
