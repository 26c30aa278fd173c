"""Market data: the tick recorder, the Parquet store (ticks and candles) and what reads it."""
