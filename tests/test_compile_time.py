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


def test_the_kernels_compiled_for_a_set_of_strategies_never_reach_the_hooks_for_any_strategy(tmp_path):
    env = process_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    trades, reached = json.loads(result.stdout.strip().splitlines()[-1])
    assert trades > 0  # the backtest traded: its strategies' code ran
    assert reached == []
