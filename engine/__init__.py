"""OTrade's trading core. Knows nothing of chat transports."""

import hashlib
import os
from pathlib import Path

# Numba checks only a cached function's own file for changes, so a jitted loop would keep a stale
# copy of kernels it inlined from another module. Key the cache on the source of every module that
# holds kernels, before numba is first imported.
_KERNEL_MODULES = ("layout.py", "kernels.py", "strategies.py", "step.py", "backtest.py")
if "NUMBA_CACHE_DIR" not in os.environ:
    _here = Path(__file__).resolve().parent
    _digest = hashlib.sha256(b"".join((_here / m).read_bytes() for m in _KERNEL_MODULES)).hexdigest()[:12]
    os.environ["NUMBA_CACHE_DIR"] = str(_here / "__pycache__" / f"numba-{_digest}")
