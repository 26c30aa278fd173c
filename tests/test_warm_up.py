"""Nothing compiles while OTrade trades: every kernel of the live path is compiled (or loaded from
the cache) when the engine and the ticker's decoder are built. A compile on a fresh install takes
seconds and holds the event loop, and with it every stop still to be sent."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own, so that no other test has compiled anything first: build what a live
# process builds before trading, note every kernel's compiled signatures, then run whole chaos
# sessions (fills, partial fills, refusals, restarts that adopt positions, reconciles) and name
# any kernel that compiled a signature it did not have.
SCRIPT = """
import json, tempfile, time
from pathlib import Path
from numba.core.registry import CPUDispatcher
import engine.core.step, engine.brokers.kite.ticker_codec as codec
from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker_codec import PriceDecoder
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal
from tests.chaos.harness import chaos_config, in_loop, run_seed

def compiled():
    return {f"{m.__name__}.{n}": {str(s) for s in f.signatures} for m in (engine.core.step, codec)
            for n, f in vars(m).items() if isinstance(f, CPUDispatcher)}

async def build():
    journal = Journal(Path(tempfile.mkdtemp()), time.time_ns)
    broker = KiteBroker(KiteREST("key", "token", "http://127.0.0.1:9"), journal, {}, time.time_ns)
    Engine(chaos_config(), broker, EventBus(), journal, time.time_ns).start_session()
    PriceDecoder(8)
    await broker.rest.close()

in_loop(build())
before = compiled()
results = [in_loop(run_seed(seed)) for seed in SEEDS]
after = compiled()
print(json.dumps({"new": {k: sorted(v - before.get(k, set())) for k, v in after.items() if v - before.get(k, set())},
                  "restarts": sum(r.restarts for r in results), "ok": [r.ok for r in results]}))
"""


def test_a_live_session_with_restarts_compiles_no_kernel_after_the_engine_is_built():
    seeds = [2, 5]  # seed 2 restarts with a position open at Kite, which the new run adopts
    result = subprocess.run([sys.executable, "-c", f"SEEDS = {seeds}\n{SCRIPT}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["restarts"] >= 1
    assert outcome["new"] == {}, f"compiled while trading: {outcome['new']}"
