"""A paper engine compiles at its construction what paper trading calls, and only that: the kernels of
a real broker's fills are left out of its warm-up (issue 23: less to compile on a fresh install), and
a whole paper session then compiles nothing."""

import json
import subprocess
import sys
from pathlib import Path

from engine.engine import LIVE_ONLY_KERNELS

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own, so that no other test has compiled anything first.
SCRIPT = """
import json, sys, tempfile
from datetime import date
from pathlib import Path
from numba.core.registry import CPUDispatcher
import engine.core.step as step
from engine.data.synthetic import generate
from tests.conftest import make_config
from tests.test_engine import feed, make_engine

def compiled():
    return {n: {str(s) for s in f.signatures} for n, f in vars(step).items() if isinstance(f, CPUDispatcher)}

cfg = make_config(strategy={"kind": "ema_cross", "fast": 2, "slow": 5, "allow_short": True})
engine, clock, _ = make_engine(cfg, Path(tempfile.mkdtemp()))
before = compiled()
ticks = generate(2, seed=3, symbols=["NSE:INFY"], start=date(2026, 11, 16))
half = len(ticks) // 2
feed(engine, clock, ticks.slice(half))
engine.flatten()
engine.pause()
engine.resume()
feed(engine, clock, ticks.slice(len(ticks), half))
engine.end_session()
after = compiled()
print(json.dumps({"new": {k: sorted(v - before.get(k, set())) for k, v in after.items() if v - before.get(k, set())},
                  "live_only": {k: sorted(after[k]) for k in sys.argv[1:]}, "trades": len(engine.trades())}))
"""


def test_a_paper_session_compiles_nothing_after_its_engine_and_never_the_live_fill_kernels():
    result = subprocess.run([sys.executable, "-c", SCRIPT, *LIVE_ONLY_KERNELS], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["trades"] > 10  # it traded: entries, bracket exits, a flatten, the session's end
    assert outcome["new"] == {}, f"compiled while trading: {outcome['new']}"
    assert outcome["live_only"] == {k: [] for k in LIVE_ONLY_KERNELS}
