"""Kite ticker decode: one LTP packet (goal <= 2 us) and a full-mode frame of 3,000 instruments
(goal <= 1 ms), through ``PriceDecoder`` (the feed's hot path) and the full ``decode`` for reference."""

import time

import numpy as np

from benchmarks.common import report
from engine.brokers.kite.ticker_codec import PriceDecoder, Tick, decode, encode_frame


def best_of(fn, frame: bytes, n: int) -> float:
    fn(frame)
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn(frame)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times))


def main() -> None:
    ltp = encode_frame([Tick(408065, 1074.35, "ltp", True)])
    depth = tuple((100, 1074.35, 1) for _ in range(10))
    full = encode_frame([Tick(408065 + 256 * k, 1000 + k / 100, "full", True, depth=depth) for k in range(3000)])
    decoder = PriceDecoder()
    one = best_of(decoder, ltp, 20_000)
    many = best_of(decoder, full, 200)
    objects = best_of(decode, full, 5)
    report("kite_decode", [
        {"metric": "1 LTP packet frame (median)", "value": f"{one / 1e3:.2f} us", "goal": "<= 2 us", "ok": one <= 2000},
        {"metric": "3,000 full packets, 552 kB (median)", "value": f"{many / 1e6:.3f} ms", "goal": "<= 1 ms",
         "ok": many <= 1e6},
        {"metric": "same frame into Tick objects with depth", "value": f"{objects / 1e6:.1f} ms"},
    ])


if __name__ == "__main__":
    main()
