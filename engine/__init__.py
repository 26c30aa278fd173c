"""OTrade's trading core. Knows nothing of chat transports. Its folders are its layers, bottom up
(``tests/test_layout.py`` keeps every import running down them, with no circle):

    core/        pure jitted kernels over numpy state: layouts, step, costs, candle order, indicators
    strategies/  the public strategy API and the built-ins       (config sits between core and these)
    services/    journal, events, logs, clocks, calendar, the data directory;  orders.py: the order vocabulary
    arrays.py    the kernels' arrays from a config
    live/        venue contract, order state machine, fill ledger, protection, reconciliation, live restore
    brokers/     paper, kite/
    data/        ticks, tick files, synthetic sessions, feeds, recorder, store, candles, fetch
    research/    backtest, sweep, report;   engine.py: the live engine (state machine, control API)
    runtime/     the process: app, session scheduler, web, lock
    cli.py, __main__.py
"""

import hashlib
import os
from pathlib import Path

# Numba checks only a cached function's own file for changes, so a jitted loop would keep a stale
# copy of kernels it inlined from another module. Key the cache on the source of every module that
# holds kernels, before numba is first imported.
_KERNEL_PACKAGES = ("core", "strategies")
# Where the cache lives (OTRADE_NUMBA_CACHE): beside the code ("package", the default), or under the data
# directory ("data": OTRADE_DATA_DIR/numba/, as engine.services.paths finds it), where a Procfile host
# that wipes its disk but keeps a volume finds it again. NUMBA_CACHE_DIR, when set, is used as it is.
CACHE_PLACES = ("package", "data")
if "NUMBA_CACHE_DIR" not in os.environ:
    _place = os.environ.get("OTRADE_NUMBA_CACHE") or "package"
    if _place not in CACHE_PLACES:
        raise SystemExit(f"error: OTRADE_NUMBA_CACHE={_place!r}: it is package (beside the code, the default) "
                         "or data (under OTRADE_DATA_DIR)")
    _here = Path(__file__).resolve().parent
    _sources = sorted(p for package in _KERNEL_PACKAGES for p in (_here / package).rglob("*.py"))
    _digest = hashlib.sha256(b"".join(p.read_bytes() for p in _sources)).hexdigest()[:12]
    _root = Path(os.environ.get("OTRADE_DATA_DIR", "data")).resolve() / "numba" if _place == "data" else (
        _here / "__pycache__")
    os.environ["NUMBA_CACHE_DIR"] = str(_root / f"numba-{_digest}")
