"""Market data: ticks (the table, its files, synthetic sessions), feeds, the recorder, the Parquet
store (ticks and candles), candles from ticks or from Kite, and the ``otrade data`` commands.

May import: ``engine.core``, ``config``, ``engine.strategies``, ``engine.services``, ``engine.orders``,
``engine.brokers`` (Kite's historical candles).
"""
