"""Many seeds: concurrently in one event loop (each with its own server on its own port) and across
processes; a summary of what was injected and broken, and a reproducer for every broken seed."""

import asyncio
import contextlib
import faulthandler
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

from tests.chaos.harness import MONITOR_S, SeedResult, captured_logs, in_loop, run_seed, warm_kernels
from tests.chaos.invariants import INVARIANTS, Violation
from tests.chaos.plan import make_plan

EVENTS_BEFORE = 80  # event lines shown before a violation in a non-verbose reproducer
STALL_S = 30.0  # a worker whose event loop has not run this long is stuck (its seeds are reported)
STALLED_EXIT = 70


def _watchdog(beat: list[float], stall_s: float, dump: str) -> None:
    """A thread: when the event loop has not run for ``stall_s`` (something spins without ever
    yielding), write every thread's stack to ``dump`` and end the process, so the parent can
    report the seeds it was running instead of waiting forever. An orphan (the parent was
    killed) ends too."""
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(STALLED_EXIT)
        if time.monotonic() - beat[0] > stall_s:
            with open(dump, "w") as fh:
                fh.write(f"event loop stalled for more than {stall_s:g} s\n")
                faulthandler.dump_traceback(file=fh, all_threads=True)
            os._exit(STALLED_EXIT)


async def _beating(beat: list[float], coro: Any) -> Any:
    async def beat_forever() -> None:
        while True:
            beat[0] = time.monotonic()
            await asyncio.sleep(0.1)

    task = asyncio.create_task(beat_forever())
    try:
        return await coro
    finally:
        task.cancel()


def _worker(seeds: list[int], concurrency: int, steps: int, verbose: bool, queue: Any, dump: str) -> None:
    """A worker process: its seeds in one event loop, each result sent as soon as it is in. The kernels
    are loaded (the parent compiled them) before the watchdog starts: a compile is not a stall."""
    warm_kernels()
    beat = [time.monotonic()]
    threading.Thread(target=_watchdog, args=(beat, STALL_S, dump), daemon=True).start()

    async def one(seed: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            result = await run_seed(seed, steps, verbose)
        queue.put(("result", result))

    async def all_of_them() -> None:
        gate = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(s, gate) for s in seeds))

    with captured_logs():
        in_loop(_beating(beat, all_of_them()))
    queue.put(("done", seeds))


def _stalled(seed: int, dump: str, steps: int) -> SeedResult:
    try:
        text = Path(dump).read_text()
    except OSError:
        text = "the worker process died without a word"
    frames = [line.strip() for line in text.splitlines() if line.strip().startswith("File")][:3]
    detail = f"worker process stalled or died while this seed ran; innermost frames: {' <- '.join(frames)}"
    return SeedResult(seed, [Violation("exception", 0.0, detail)], Counter(), (0.0, ""), (0.0, ""), 0.0, 0, 0, 0,
                      make_plan(seed, steps).describe(), text.splitlines())


def run_seeds(seeds: Iterable[int], jobs: int = 2, concurrency: int = 6, steps: int = 200, verbose: bool = False,
              progress: Callable[[list[SeedResult]], None] | None = None) -> list[SeedResult]:
    """Run ``seeds`` over ``jobs`` worker processes, ``concurrency`` at a time in each one's loop."""
    seeds = list(seeds)
    warm_kernels()  # compiled once, here, into Numba's cache: on an empty one, workers would each compile
    size = max(1, concurrency * 2)
    todo = deque(seeds[i:i + size] for i in range(0, len(seeds), size))
    # spawn, not fork: a forked child would inherit the parent's threads and loop state
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    running: dict[Any, tuple[list[int], str]] = {}
    results: dict[int, SeedResult] = {}
    finished: set[tuple[int, ...]] = set()
    tmp = tempfile.mkdtemp(prefix="otrade-chaos-dumps-")
    try:
        while todo or running:
            while todo and len(running) < max(1, jobs):
                chunk = todo.popleft()
                dump = os.path.join(tmp, f"stall-{chunk[0]}.txt")
                proc = ctx.Process(target=_worker, args=(chunk, concurrency, steps, verbose, queue, dump))
                proc.start()
                running[proc] = (chunk, dump)
            try:
                kind, payload = queue.get(timeout=0.5)
                if kind == "result":
                    results[payload.seed] = payload
                    if progress:
                        progress([payload])
                else:
                    finished.add(tuple(payload))
            except Empty:
                pass
            for proc in [p for p in running if not p.is_alive()]:
                chunk, dump = running[proc]
                if tuple(chunk) not in finished:  # its last words may still be in the queue
                    with contextlib.suppress(Empty):
                        while tuple(chunk) not in finished:
                            kind, payload = queue.get(timeout=1.0)
                            if kind == "result":
                                results[payload.seed] = payload
                                if progress:
                                    progress([payload])
                            else:
                                finished.add(tuple(payload))
                if tuple(chunk) not in finished:
                    lost = [_stalled(s, dump, steps) for s in chunk if s not in results]
                    results.update({r.seed: r for r in lost})
                    if progress and lost:
                        progress(lost)
                proc.join()
                del running[proc]
    finally:
        for proc in running:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return [results[s] for s in sorted(results)]


def signature(invariant: str, detail: str) -> str:
    """A violation with its numbers, ids and tags taken out: violations alike group together."""
    text = re.sub(r"ot[0-9a-f]{12}", "<tag>", detail)
    text = re.sub(r"[+-]?\d+(\.\d+)?", "#", text)
    return f"{invariant}: {text}"[:160]


def reproducer(result: SeedResult, verbose: bool = False) -> str:
    lines = [f"seed {result.seed}: {len(result.violations)} violation(s)"]
    lines += [f"  {v}" for v in result.violations]
    lines.append(f"reproduce: python -m tests.chaos --seed {result.seed} --verbose")
    lines.append("fault schedule:")
    lines += [f"  {line}" for line in result.plan]
    events = result.events
    if not verbose and result.violations:
        first = next((k for k, e in enumerate(events) if " VIOLATE " in e), len(events))
        events = events[max(0, first - EVENTS_BEFORE):first + 1]
        lines.append(f"events up to the first violation (last {EVENTS_BEFORE}; --verbose for all):")
    elif events:
        lines.append("events:")
    lines += [f"  {e}" for e in events]
    return "\n".join(lines)


@dataclass
class Summary:
    results: list[SeedResult]
    seconds: float

    @property
    def broken(self) -> list[SeedResult]:
        return [r for r in self.results if r.violations]

    def text(self) -> str:
        rs = self.results
        if not rs:
            return "no seeds run"
        by_invariant: Counter = Counter()
        seeds_by: dict[str, list[int]] = {}
        distinct: dict[str, list[int]] = {}
        for r in rs:
            for v in r.violations:
                by_invariant[v.invariant] += 1
                seeds_by.setdefault(v.invariant, []).append(r.seed)
                distinct.setdefault(signature(v.invariant, v.detail), []).append(r.seed)
        faults: Counter = sum((r.faults for r in rs), Counter())
        longest = max(rs, key=lambda r: r.longest_unprotected[0])
        unalerted = max(rs, key=lambda r: r.longest_unalerted[0])
        per_seed = [r.seconds for r in rs]
        lines = [f"seeds run: {len(rs)} ({rs[0].seed}..{rs[-1].seed}); {len(self.broken)} broke an invariant; "
                 f"total {self.seconds:.1f} s, per seed mean {sum(per_seed) / len(rs):.1f} s, "
                 f"max {max(per_seed):.1f} s",
                 f"trades {sum(r.trades for r in rs)}, orders at Kite {sum(r.orders for r in rs)}, "
                 f"restarts {sum(r.restarts for r in rs)}",
                 "violations by invariant:"]
        for name in (*INVARIANTS, "harness"):
            seeds = sorted(set(seeds_by.get(name, [])))
            if by_invariant[name] or name != "harness":
                shown = ", ".join(map(str, seeds[:12])) + (" ..." if len(seeds) > 12 else "")
                lines.append(f"  {name:<10} {by_invariant[name]:5d}" + (f"  seeds {shown}" if seeds else ""))
        if distinct:
            lines.append("distinct violations:")
            for sig, seeds in sorted(distinct.items(), key=lambda kv: -len(kv[1])):
                s = sorted(set(seeds))
                lines.append(f"  {len(seeds):4d}x in {len(s):3d} seed(s) (e.g. {', '.join(map(str, s[:6]))}): {sig}")
        lines.append("fault mix (injected):")
        lines += [f"  {kind:<46} {n:6d}" for kind, n in sorted(faults.items(), key=lambda kv: (-kv[1], kv[0]))]
        lines.append(f"longest time a position at Kite had no stop Kite confirmed: "
                     f"{longest.longest_unprotected[0]:.2f} s "
                     f"(seed {longest.seed}, {longest.longest_unprotected[1] or '-'}); "
                     f"without a critical alert: {unalerted.longest_unalerted[0]:.2f} s (seed {unalerted.seed})")
        gap = max(rs, key=lambda r: r.largest_gap[0])
        apart = max(rs, key=lambda r: r.longest_gap[0])
        lines.append(f"largest gap between the engine's stop and Kite's working trigger: ₹{gap.largest_gap[0]:.2f} "
                     f"for {gap.largest_gap[1]:.2f} s (seed {gap.seed}, {gap.largest_gap[2] or '-'}); longest apart: "
                     f"{apart.longest_gap[0]:.2f} s, up to ₹{apart.longest_gap[1]:.2f} (seed {apart.seed}, "
                     f"{apart.longest_gap[2] or '-'})")
        slow = max(rs, key=lambda r: r.slowest_exit[0])
        lines.append(f"exits the engine wanted: {sum(r.exits for r in rs)}; the slowest to reach Kite: "
                     f"{slow.slowest_exit[0]:.2f} s (seed {slow.seed}, {slow.slowest_exit[1] or '-'})")
        late = max(rs, key=lambda r: r.late)
        lines.append(f"the most the event loop ran late (the checks' {MONITOR_S * 1e3:g} ms timer): {late.late:.2f} s "
                     f"(seed {late.seed})")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds (from --start)")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed (with --verbose: its whole event log)")
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    parser.add_argument("--concurrency", type=int, default=6, help="seeds at a time in each process's event loop")
    parser.add_argument("--steps", type=int, default=200, help="price steps per seed")
    parser.add_argument("--verbose", action="store_true", help="print every seed's event log")
    parser.add_argument("--reproducers", type=int, default=5, help="reproducers printed in full (the first N)")
    parser.add_argument("--log-dir", type=Path, help="write each broken seed's whole event log here (seed-N.log)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --seed: run it up to this many times until it breaks (asyncio's timing varies)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    started = time.monotonic()
    done = 0

    def progress(batch: list[SeedResult]) -> None:
        nonlocal done
        done += len(batch)
        broken = sum(1 for r in batch if r.violations)
        print(f"  {done}/{len(seeds)} seeds ({time.monotonic() - started:.0f} s)"
              + (f", {broken} broken in this batch" if broken else ""), file=sys.stderr, flush=True)

    for _ in range(max(1, args.repeat) if args.seed is not None else 1):
        results = run_seeds(seeds, 1 if len(seeds) == 1 else args.jobs, args.concurrency, args.steps, args.verbose,
                            progress)
        if any(r.violations for r in results):
            break
    summary = Summary(results, time.monotonic() - started)
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        for r in summary.broken:
            (args.log_dir / f"seed-{r.seed}.log").write_text(reproducer(r, verbose=True) + "\n")
    shown = results if args.verbose else summary.broken[:args.reproducers]
    for r in shown:
        print(reproducer(r, args.verbose))
        print()
    if len(summary.broken) > len(shown):
        rest = ", ".join(str(r.seed) for r in summary.broken[len(shown):])
        print(f"more broken seeds (python -m tests.chaos --seed N --verbose): {rest}\n")
    print(summary.text())
    return 1 if summary.broken else 0
