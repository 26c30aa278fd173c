"""Live path: a ticker frame received on the WebSocket -> the entry order written to the REST connection.

The local Kite server (tests/kite_server.py) runs in its own process on loopback and pushes a
full-mode frame every ``--gap`` seconds (1 ms: a busy feed). The price sits still, except that every
``--every`` frames it dips and comes back up, and that up frame makes the EMA cross buy: 10 orders/s
by default, Kite's limit. This process runs the real client: ``KiteTicker`` -> ``Engine.on_tick`` ->
``KiteBroker`` lane -> ``KiteREST``'s order wire. Between samples the engine forgets the resting
entry (outside the timed path) so the next up frame orders again. The client's own throttle is
raised out of the way (at Kite's 10 a second a fifth is kept for stops, so entries every 100 ms
would queue): this times the code, not Kite's rate. The client and the local Kite each run on a CPU
of their own where there are two (``cpus``).

Stamps (perf_counter_ns), per order: frame handed to the ticker; ticks decoded (callback entered);
the engine hands the order to the order state machine (``submit``: the intent journalled, in memory);
the journal flush starts and ends (the intent handed to the OS); the request's last byte handed to
the socket (the write returned). With a connection idle and a rate slot free the request is written
inside ``submit``; otherwise its lane writes it later, and the HTTP stage holds that hop too.
Goal: frame -> request written, p50 <= 100 us, p99 <= 300 us with the feed at 1 frame/ms. The
client runs on the app's event loop (``engine.cli.loop_factory``: uvloop where it installs);
``--loop asyncio`` for asyncio's own.
"""

import argparse
import asyncio
import copy
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from benchmarks.common import percentiles, report
from config import validate
from engine.brokers.kite.broker import KiteBroker
from engine.brokers.kite.rest import KiteREST
from engine.brokers.kite.ticker import KiteTicker
from engine.cli import loop_factory
from engine.core import layout as L
from engine.engine import Engine
from engine.live.orders import Caps
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog

DEFAULT = orjson.loads((Path(__file__).resolve().parent.parent / "config" / "default.json").read_bytes())
INFY = 408065
T0 = int(datetime.fromisoformat("2026-11-23T09:16:00+05:30").timestamp())
STAMPS = ("frame", "decoded", "submit", "flush", "flushed", "written")
STAGES = {"decode (frame -> ticks)": ("frame", "decoded"),
          "engine (ticks -> order submitted, intent journalled)": ("decoded", "submit"),
          "order state machine (new order, caps)": ("submit", "flush"),
          "journal flush (intent written out)": ("flush", "flushed"),
          "HTTP client (request made and written)": ("flushed", "written")}
P50_GOAL_US, P99_GOAL_US = 100, 300


def cpus() -> tuple[int | None, int | None]:
    """A CPU for the client and another for the local Kite (None, None on a single CPU): a write to the
    local Kite wakes its process, which on the client's CPU would take it from under the write.
    Across the network that write returns as soon as the kernel has the bytes."""
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[1]) if len(usable) >= 2 else (None, None)


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def serve(pipe, frames: int, gap: float, every: int, cpu: int | None) -> None:
    """The Kite side, in its own process: wait for the ticker, then push the frames."""
    from engine.brokers.kite.ticker_codec import Tick
    from tests.kite_server import FakeKite

    pin(cpu)

    async def main() -> None:
        server = FakeKite(orders_per_second=None, orders_per_minute=None)  # the warm phase outpaces Kite's caps
        pipe.send(await server.start())
        while not server.modes:
            await asyncio.sleep(0.01)
        for k in range(frames):
            price = {every - 2: 99.0, every - 1: 101.0}.get(k % every, 100.0)
            await server.push([Tick(INFY, price, "full", True, exchange_timestamp=T0 + k)])
            await asyncio.sleep(gap)
        await asyncio.to_thread(pipe.recv)  # serve on until the client is done
        await server.stop()

    asyncio.run(main())


def config():
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [{**data["instruments"][0], "tick_size": 0.05,
                            "strategy": {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False}}]
    return validate(data, default_catalog())


def stamp_writes(written: Callable[[str, str, int], None]) -> None:
    """Call ``written(method, path, perf_counter_ns)`` as each order request's write to its socket returns."""
    from engine.brokers.kite import wire

    class Stamped:
        def __init__(self, transport) -> None:
            self._transport = transport

        def write(self, data: bytes) -> None:
            self._transport.write(data)
            at = time.perf_counter_ns()
            method, path, _ = data.split(b" ", 2)
            written(method.decode(), path.decode(), at)

        def __getattr__(self, name: str):
            return getattr(self._transport, name)

    class Connection(wire._Connection):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.transport = Stamped(transport)

    wire._Connection = Connection


async def client(base: str, frames: int, warm: int) -> dict[str, dict[str, np.ndarray]]:
    pc = time.perf_counter_ns
    samples: dict[str, list[list[int]]] = {"socket": [], "warm": []}
    phase = "socket"
    frame_at = decoded_at = 0
    current: dict[str, int] | None = None  # the stamps of the order on its way, from its frame on
    overlapped = 0  # orders decided while the last one was still on its way (not sampled)
    direct = 0  # orders written by submit itself (not by their lane, later)
    quiet: dict[str, list[int]] = {"socket": [], "warm": []}
    written, settled = asyncio.Event(), asyncio.Event()
    from engine.brokers.kite.ticker_codec import Tick, encode_frame
    from tests.kite_server import API_KEY

    def on_written(method: str, path: str, at: int) -> None:
        nonlocal current, direct
        if method == "POST" and path == "/orders/regular" and current is not None and "flushed" in current:
            direct += "engine" not in current  # written before the engine was done with the tick
            current["written"] = at
            samples[phase].append([current[k] for k in STAMPS])
            current = None
            written.set()

    stamp_writes(on_written)
    with tempfile.TemporaryDirectory() as tmp:
        rest = KiteREST(API_KEY, "tok-day-1", base, timeout=5.0)
        rest.orders_per_second = 1_000_000  # this times the code, not Kite's rate (see the docstring)
        journal = Journal(Path(tmp), time.time_ns)
        # no cap on orders per position: the benchmark orders 10 a second for minutes
        broker = KiteBroker(rest, journal, {"NSE:INFY": 0.05}, time.time_ns, Caps(10**6, 10**6, 10**9))
        engine = Engine(config(), broker, EventBus(), journal, time.time_ns)
        engine.start_session()
        a = engine.arrays
        place, submit, flush = broker._place, broker.submit, journal.flush

        async def timed_place(order, sent=None):
            try:
                return await place(order, sent)
            finally:
                settled.set()  # its answer and the look at the new order are in: the lane is idle again

        def timed_submit(request, purpose=None):
            nonlocal current, overlapped
            overlapped += current is not None
            current = {"frame": frame_at, "decoded": decoded_at, "submit": pc()}
            return submit(request, purpose)

        def timed_flush():
            if current is not None and "submit" in current and "flush" not in current:
                current["flush"] = pc()
                flush()
                current["flushed"] = pc()
            else:
                flush()

        broker._place, broker.submit, journal.flush = timed_place, timed_submit, timed_flush

        def on_ticks(tokens, prices, ts, traded, received) -> None:
            nonlocal decoded_at
            decoded_at = pc()
            act = 0
            for price, stamp in zip(prices.tolist(), ts.tolist(), strict=True):
                act |= engine.on_tick(0, stamp, price)
            t2 = pc()
            if act & L.ACT_ENTRY_ORDER:
                if current is not None:
                    current["engine"] = t2
            else:
                quiet[phase].append(t2 - frame_at)
                # forget the resting entry (untimed) so the next up frame can buy again
                a.st[0, L.S_PEND_SIDE] = a.st[0, L.S_PEND_KIND] = 0.0
                a.acct[L.A_TRADES] = 0.0
                engine.brackets[0].entry = None

        ticker = KiteTicker(API_KEY, lambda: rest.access_token, [INFY], on_ticks, broker.update,
                            url=f"{base.replace('http', 'ws')}/ws")
        on_frame = ticker._on_frame

        def timed_frame(frame: bytes) -> None:
            nonlocal frame_at
            frame_at = pc()
            on_frame(frame)

        ticker._on_frame = timed_frame
        tasks = [asyncio.create_task(broker.run()), asyncio.create_task(ticker.run())]
        while ticker.frames < frames:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)

        # The same path back to back: each order's frame follows the last answer without idling.
        phase = "warm"
        for k in range(warm):
            stamp = T0 + frames + 3 * k
            written.clear()
            settled.clear()
            for j, price in enumerate((100.0, 99.0, 101.0)):
                timed_frame(encode_frame([Tick(INFY, price, "full", True, exchange_timestamp=stamp + j)]))
            await written.wait()
            await settled.wait()
        for task in tasks:
            task.cancel()
        await rest.close()
    if overlapped:
        print(f"({overlapped} orders decided while the one before was on its way: not sampled)")
    print(f"({direct} of {sum(len(rows) for rows in samples.values())} sampled orders written by submit itself)")
    out = {}
    for name, rows in samples.items():
        stamped = np.array(rows, dtype=np.int64).reshape(-1, len(STAMPS))
        out[name] = {k: stamped[:, c] for c, k in enumerate(STAMPS)} | {"quiet": np.array(quiet[name], np.int64)}
    return out


def cold_cost() -> dict:
    """This machine's price of an idle gap: the same one-packet decode back to back and after 20 ms
    asleep (what a feed's quiet spells do to every cache the tick path uses)."""
    from engine.brokers.kite.ticker_codec import PriceDecoder, Tick, encode_frame

    decode, frame, pc = PriceDecoder(8), encode_frame([Tick(INFY, 100.0, "full", True)]), time.perf_counter_ns
    hot, cold = [], []
    for _ in range(2_000):
        t = pc()
        decode(frame)
        hot.append(pc() - t)
    for _ in range(100):
        time.sleep(0.02)
        t = pc()
        decode(frame)
        cold.append(pc() - t)
    h, c = np.median(hot) / 1e3, np.median(cold) / 1e3
    return {"metric": "machine: one decode back to back / after 20 ms idle (median)",
            "value": f"{h:.1f} us / {c:.1f} us ({c / h:.0f}x)"}


def rows_for(title: str, s: dict[str, np.ndarray], goals: bool) -> list[dict]:
    skip = 5  # the first orders open the keep-alive connection and warm the caches
    total = percentiles((s["written"] - s["frame"])[skip:])
    rows = [
        {"metric": f"{title}: frame -> order request written, p50 ({len(s['written']) - skip} orders)",
         "value": f"{total['p50_us']:.1f} us", "goal": f"<= {P50_GOAL_US} us" if goals else None,
         "ok": total["p50_us"] <= P50_GOAL_US if goals else None},
        {"metric": f"{title}: frame -> order request written, p99", "value": f"{total['p99_us']:.1f} us",
         "goal": f"<= {P99_GOAL_US} us" if goals else None, "ok": total["p99_us"] <= P99_GOAL_US if goals else None},
    ]
    for name, (start, end) in STAGES.items():
        p = percentiles((s[end] - s[start])[skip:])
        rows.append({"metric": f"  {name}", "value": f"p50 {p['p50_us']:.1f} us, p99 {p['p99_us']:.1f} us"})
    quiet = percentiles(s["quiet"][skip:])
    rows.append({"metric": "  a frame with no order: frame -> engine done",
                 "value": f"p50 {quiet['p50_us']:.1f} us, p99 {quiet['p99_us']:.1f} us"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames pushed (at most 22,000: one session)")
    parser.add_argument("--gap", type=float, default=0.001, help="seconds between frames")
    parser.add_argument("--every", type=int, default=100, help="one order every this many frames")
    parser.add_argument("--warm", type=int, default=500, help="orders sent back to back afterwards")
    parser.add_argument("--loop", choices=("app", "asyncio"), default="app",
                        help="the client's event loop: the app's (uvloop where it installs) or asyncio's own")
    args = parser.parse_args()
    mine, kites = cpus()
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=serve, args=(there, args.frames, args.gap, args.every, kites), daemon=True)
    server.start()
    pin(mine)
    with asyncio.Runner(loop_factory=loop_factory() if args.loop == "app" else None) as runner:
        loop = type(runner.get_loop()).__module__.split(".")[0]
        phases = runner.run(client(here.recv(), args.frames, args.warm))
    here.send("done")
    server.join(10)
    report("frame_to_order", [{"metric": "client event loop", "value": loop},
                              *rows_for(f"feed at 1 frame / {args.gap * 1e3:g} ms", phases["socket"], True),
                              *rows_for("back to back", phases["warm"], False), cold_cost()])


if __name__ == "__main__":
    main()
