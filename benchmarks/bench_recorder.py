"""Tick recorder: what recording costs the tick path, and what a day of it costs in memory.

Goals: tick path (Engine.on_tick, plus Recorder.add when on) p99 with recording on <= 1.2x off, for
1 instrument and for 200; a day of 200 instruments at 4 ticks/s (18M ticks) recorded, merged and
compacted with RSS growth <= 50 MB. The writer thread runs as in ``otrade run``; the off and on
runs alternate in blocks over two identical engines, so load on the machine weighs on both alike.
"""

import asyncio
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_tick_path import config
from benchmarks.common import percentiles, report
from engine.brokers.paper import PaperBroker
from engine.data import store
from engine.data.recorder import CAPACITY, Recorder, ist_day
from engine.data.synthetic import SESSION_CLOSE_S, SESSION_OPEN_S, generate
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal

BLOCK = 20_000  # ticks per alternation


def engine(cfg, tmp: Path) -> Engine:
    clock = time.time_ns
    e = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), EventBus(),
               Journal(tmp, clock), clock)
    e.start_session()
    return e


def tick_path(n_instruments: int, n_ticks: int) -> tuple[np.ndarray, np.ndarray]:
    """Latencies (ns) of the tick path without and with recording, over the same ticks."""
    cfg = config(n_instruments)
    symbols = [i.symbol for i in cfg.instruments]
    ticks = generate(n_ticks // 22_000 + 1, 3, symbols, tick_interval_ms=1000.0 * n_instruments,
                     tick_sizes=[i.tick_size for i in cfg.instruments]).slice(n_ticks)
    ts, price, instr, volume = ticks.ts.tolist(), ticks.price.tolist(), ticks.instr.tolist(), ticks.volume.tolist()
    fed = list(zip(instr, ts, price, volume, strict=True))  # the tuples a feed yields
    off, on = np.empty(n_ticks, np.int64), np.empty(n_ticks, np.int64)
    pc = time.perf_counter_ns
    with tempfile.TemporaryDirectory() as tmp:
        plain, recording = engine(cfg, Path(tmp) / "off"), engine(cfg, Path(tmp) / "on")
        rec = Recorder(Path(tmp) / "on", symbols, synthetic=True)
        tick_off, tick_on, record = plain.on_tick, recording.on_tick, rec.add
        tick_off(instr[0], ts[0], price[0], volume[0])  # compiled and warm before timing
        tick_on(instr[0], ts[0], price[0], volume[0])
        for lo in range(0, n_ticks, BLOCK):
            for k in range(lo, min(lo + BLOCK, n_ticks)):
                t0 = pc()
                tick_off(instr[k], ts[k], price[k], volume[k])
                off[k] = pc() - t0
            for k in range(lo, min(lo + BLOCK, n_ticks)):
                tick = fed[k]
                t0 = pc()
                tick_on(instr[k], ts[k], price[k], volume[k])
                record(tick)
                on[k] = pc() - t0
            while len(rec._free) < 2:  # a real feed is a thousand times slower: let the writer keep up
                time.sleep(0.001)
        _close(rec)
        assert rec.dropped == 0 and rec.recorded == n_ticks, (rec.dropped, rec.recorded)
    return off, on


def _close(rec: Recorder) -> None:
    asyncio.run(rec.close(timeout=600))


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def one_day(n_instruments: int = 200, per_second: float = 4.0) -> dict:
    """A whole session of ticks through Recorder.add as fast as the writer takes them, then the
    close's compaction; the peak RSS (sampled every 50 ms) over the RSS once the writer has written
    its first part: before that the process pays once for pyarrow (its code paged in, its pools,
    some 50 MB), whatever is recorded after."""
    seconds = SESSION_CLOSE_S - SESSION_OPEN_S
    n = int(n_instruments * per_second * seconds)
    symbols = [f"NSE:SYM{k:03d}" for k in range(n_instruments)]
    open_ns = 1_795_405_500_000_000_000  # 2026-11-23 09:15 IST
    gap = int(seconds * 1e9 / n)
    rng = np.random.default_rng(1)
    walk = (1000.0 + np.cumsum(rng.integers(-2, 3, 1 << 16)) * 0.05).tolist()  # reused: memory stays the recorder's
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(Path(tmp), symbols, synthetic=False, now_ns=lambda: open_ns)
        for k in range(CAPACITY + 1):  # a full buffer, handed off by the tick after it: the writer warm
            rec.add((k % n_instruments, open_ns, walk[k], 1.0))
        while rec.recorded < CAPACITY:
            time.sleep(0.01)
        base, peak, done = rss(), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        add, free = rec.add, rec._free  # the free buffers: the writer's pace, read to keep up with it
        for k in range(CAPACITY + 1, n):
            if k % CAPACITY == 0:
                while not free:  # the writer's pace: a real day arrives over 6 hours, not seconds
                    time.sleep(0.001)
            add((k % n_instruments, open_ns + k * gap, walk[k & 0xFFFF], 1.0))
        fed = time.perf_counter() - started
        rec.end_day()
        _close(rec)
        done.set()
        sampler.join()
        day = store.tick_file(Path(tmp), ist_day(open_ns), store.MARKET)
        size = day.stat().st_size
        assert rec.dropped == 0 and rec.recorded == n and store.list_ticks(Path(tmp))[0].ticks == n
    return {"ticks": n, "seconds": time.perf_counter() - started, "fed_seconds": fed,
            "rss_growth_mb": (peak[0] - base) / 2**20,
            "file_mb": size / 2**20}


def main() -> None:
    rows = []
    for n_instruments, n_ticks in ((1, 400_000), (200, 200_000)):
        off, on = (percentiles(x) for x in tick_path(n_instruments, n_ticks))
        ratio = on["p99_us"] / off["p99_us"]
        name = f"{n_instruments} instrument{'s' if n_instruments > 1 else ''}, {n_ticks // 1000}k ticks"
        rows += [
            {"metric": f"{name}: p50 off / on", "value": f"{off['p50_us']:.2f} / {on['p50_us']:.2f} us"},
            {"metric": f"{name}: p99 off / on", "value": f"{off['p99_us']:.2f} / {on['p99_us']:.2f} us"},
            {"metric": f"{name}: p99 on / off", "value": f"{ratio:.2f}x", "goal": "<= 1.2x", "ok": ratio <= 1.2},
        ]
    day = one_day()
    rows += [
        {"metric": "a day, 200 instruments at 4 ticks/s: ticks", "value": f"{day['ticks']:,}"},
        {"metric": "  recorded, merged and compacted in", "value": f"{day['seconds']:.1f} s "
                                                                  f"(fed in {day['fed_seconds']:.1f} s)"},
        {"metric": "  day file", "value": f"{day['file_mb']:.1f} MB"},
        {"metric": "  RSS growth over the day (peak)", "value": f"{day['rss_growth_mb']:.1f} MB",
         "goal": "<= 50 MB", "ok": day["rss_growth_mb"] <= 50},
    ]
    report("recorder", rows)


if __name__ == "__main__":
    main()
