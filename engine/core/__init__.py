"""The pure, jitted core: the state layouts, the kernels, the per-tick step (fill model, candles),
costs, candle order and the indicators. Kernels are functions over plain numpy arrays, the same in
backtest, paper and live.

May import: nothing of the project outside ``engine.core``.
"""
