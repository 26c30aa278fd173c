"""A live restart on an empty Numba cache (a fresh install, a Procfile host that wiped its disk) re-arms
a position's missing stop within 5 s of its start: the kernels a reconcile calls compile first, the
rest in a child process while the stop is on its way; the strategies are warmed on the days before
once it is reconciled, as they would have been before (issue 23)."""

import time
from datetime import date

import numpy as np

from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.core.step import adopt_position
from engine.data.synthetic import generate
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import catalog_for
from tests.conftest import make_config
from tests.live_process import STOP_WITHIN_S, restart_holding_without_a_stop


async def test_a_live_restart_on_an_empty_kernel_cache_rests_the_missing_stop_within_5_s(tmp_path, kite_day):
    took, stop, text = await restart_holding_without_a_stop(tmp_path, kite_day, str(tmp_path / "numba"))
    assert took <= STOP_WITHIN_S, f"the stop reached Kite {took:.1f} s after the start:\n{text}"
    assert (stop["transaction_type"], stop["quantity"]) == ("SELL", 10)
    assert "the other kernels compiled in a child process" in text, text
    print(f"stop at Kite {took:.2f} s after the process's first line")


# Counts the bars it decided on while holding a position: what it learns depends on the position.
HOLDING = """
from engine.strategies.api import NONE, Strategy

strategy = Strategy("holding", about="counts the bars decided while holding", memory={"held": 0.0}, timeframe=5)
HELD = strategy.mem("held")


@strategy.decision
def decide(x, pos):
    if pos != 0.0:
        x[HELD] += 1.0
    return NONE
"""


def test_strategies_warmed_after_the_reconcile_adopted_a_position_learn_what_they_learn_flat(tmp_path, monkeypatch):
    """Earlier sessions ended flat: a position the reconcile adopted first reaches no decision replayed
    over them."""
    monkeypatch.delenv("OTRADE_STRATEGIES", raising=False)
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "holding.py").write_text(HOLDING)
    catalog_for(tmp_path / "otrade.json")  # remembered: the config validated below finds it there
    cfg = make_config(strategy={"kind": "holding"})
    days = generate(2, seed=7, symbols=["NSE:INFY"], start=date(2026, 11, 16))

    def engine(name: str) -> Engine:
        return Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, time.time_ns), EventBus(),
                      Journal(tmp_path / name, time.time_ns))

    flat, held = engine("flat"), engine("held")
    a = held.arrays
    adopt_position(a.st, a.pr, a.clk, 0, time.time_ns(), -10.0, 800.0)  # as the reconcile adopts it
    assert flat.warm_strategies(days) == held.warm_strategies(days) > 0
    assert a.x[0, a.strategies[0].mem("held")] == 0.0
    assert np.array_equal(a.rows[L.ROW_NOW], flat.arrays.rows[L.ROW_NOW], equal_nan=True)
    assert a.st[0, L.S_POS] == -10.0  # and the position is still the one adopted
