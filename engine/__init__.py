"""OTrade's trading core. Knows nothing of chat transports."""

import hashlib
import os
from pathlib import Path

# Numba checks only a cached function's own file for changes, so a jitted loop would keep a stale
# copy of kernels it inlined from another module. Key the cache on the source of every module that
# holds kernels, before numba is first imported.
_KERNEL_MODULES = ("layout.py", "kernels.py", "step.py", "backtest.py")
_KERNEL_PACKAGES = ("core", "strategies")
if "NUMBA_CACHE_DIR" not in os.environ:
    _here = Path(__file__).resolve().parent
    _sources = [_here / m for m in _KERNEL_MODULES]
    _sources += sorted(p for package in _KERNEL_PACKAGES for p in (_here / package).rglob("*.py"))
    _digest = hashlib.sha256(b"".join(p.read_bytes() for p in _sources)).hexdigest()[:12]
    os.environ["NUMBA_CACHE_DIR"] = str(_here / "__pycache__" / f"numba-{_digest}")
