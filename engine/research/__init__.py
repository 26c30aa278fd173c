"""Research: the backtest (the live kernels in a jitted loop), parameter sweeps with walk-forward,
and their HTML reports.

May import: every part below ``engine.data`` and ``engine.data`` itself; never the live engine or the
runtime, which sit beside and above it.
"""
