"""A live restart on an empty Numba cache (a fresh install, a Procfile host that wiped its disk) re-arms
a position's missing stop within 5 s of its start: the kernels a reconcile calls compile first, the
rest in a child process while the stop is on its way; the strategies are warmed on the days before
once it is reconciled, as they would have been before (issue 23)."""

import asyncio
import signal
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
from tests.kite_engine import wait
from tests.live_process import live_process

STOP_WITHIN_S = 5.0  # the product's claim: the process's first line to the stop's arrival at Kite


async def test_a_live_restart_on_an_empty_kernel_cache_rests_the_missing_stop_within_5_s(tmp_path, kite_day):
    server = kite_day
    server.seed_order(tradingsymbol="INFY", transaction_type="BUY", order_type="MARKET", quantity=10,
                      status="COMPLETE", filled_quantity=10, average_price=1070.0, tag="otabc123000001")
    server.net_positions = [{"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 10, "average_price": 1070.0}]
    lines: list[str] = []
    async with live_process(tmp_path, server, NUMBA_CACHE_DIR=str(tmp_path / "numba")) as proc:
        lines.append((await asyncio.wait_for(proc.stderr.readline(), 120)).decode())
        started = time.monotonic()  # the server's clock too (FakeKite's default)

        async def read() -> None:
            while line := await proc.stderr.readline():
                lines.append(line.decode())

        reader = asyncio.create_task(read())
        [stop] = await wait(lambda: [rows[0] for rows in server.orders.values() if rows[0]["order_type"] == "SL-M"],
                            120)
        took = stop["_at"] - started
        assert took <= STOP_WITHIN_S, f"the stop reached Kite {took:.1f} s after the start:\n{''.join(lines)}"
        assert (stop["transaction_type"], stop["quantity"]) == ("SELL", 10)
        await wait(lambda: server.sockets, 900)  # then the rest compiled, it subscribes to the ticker and trades
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(reader, 120)
        assert await asyncio.wait_for(proc.wait(), 120) == 0, "".join(lines)
    text = "".join(lines)
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
