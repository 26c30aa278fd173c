"""The kernels are compiled once each and inlined by LLVM, or inlined by Numba on the tick's own path
(engine.core.kernels): either way, the loop and the live kernels written for a set of strategies
(engine.strategies.compiled) hold copies of every kernel between them and the strategy hooks, so they
run their strategies' own code and never the hooks for any strategy."""

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, process_env

# A fresh process on an empty cache (a loop loaded from a cache would not show what it calls) runs the
# shipped config's backtest and calls every live kernel once (as a paper or live start does), on the
# kernels compiled for its strategies; then names the hooks for any strategy it compiled meanwhile.
SCRIPT = textwrap.dedent("""
    import json, time
    from engine.arrays import build
    from engine.core import step
    from engine.data.synthetic import generate
    from engine.engine import warm_kernels
    from engine.research.backtest import run
    from tests.conftest import make_config

    cfg = make_config()
    result = run(cfg, generate(2, seed=5, symbols=[i.symbol for i in cfg.instruments]))
    warm_kernels(build(cfg), time.time_ns())
    generic = [*step.HOOKS, "_update_all"]
    print(json.dumps([len(result.tf), [h for h in generic if getattr(step, h).signatures]]))
""")


# A fresh process on an empty cache replays candles by the pessimistic rule, whose search steps the tick
# kernel: it must be the one compiled for the config's strategies, not the generic one.
PESSIMISTIC = textwrap.dedent("""
    import json
    from engine.core import step
    from tests.test_candle_replay import CANDLES_1, LONG_THEN_BOTH, trades

    rows = trades(LONG_THEN_BOTH, "pessimistic", CANDLES_1)
    generic = [*step.HOOKS, "_update_all", "on_tick"]
    print(json.dumps([[r["exit_reason"] for r in rows], [h for h in generic if getattr(step, h).signatures]]))
""")


def fresh_process(tmp_path, script: str) -> list:
    """What ``script`` prints last (JSON), run in a fresh process on an empty Numba cache."""
    env = process_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_kernels_compiled_for_a_set_of_strategies_never_reach_the_hooks_for_any_strategy(tmp_path):
    trades, reached = fresh_process(tmp_path, SCRIPT)
    assert trades > 0  # the backtest traded: its strategies' code ran
    assert reached == []


def test_a_pessimistic_candle_backtest_never_compiles_the_generic_tick_kernel(tmp_path):
    reasons, compiled = fresh_process(tmp_path, PESSIMISTIC)
    assert reasons[0] == "stop"  # the search ran: the held long met its stop first
    assert compiled == []
