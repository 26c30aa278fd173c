"""Every tick the engine sees, recorded to the day's Parquet file (layout: ``engine.data.store``).

The tick path only puts the tick's tuple, which the feed made already, in the next slot of a
preallocated list: O(1), no allocation, about the cost of the call (writing its numbers into numpy
buffers, even through memoryviews, cost ten times the extra). Once a second (``flush_s``), or when
a buffer fills, the loop hands the buffer to a writer thread, which makes the columns, and takes a
free one from a fixed pool: memory is bounded, and when the writer falls behind and no buffer is
free, ticks are dropped and counted (a log line, and /status) rather than the tick path ever
waiting. The writer appends each buffer to the day as one closed Parquet part, so ``kill -9`` loses
at most the last second or two, merges parts as they pile up, and compacts a day into its day file
at the session's close (and, at start, any day a crash left in parts: today's too, on a restart).
"""

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from itertools import islice, repeat
from pathlib import Path

import numpy as np

from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY

log = logging.getLogger(__name__)
CAPACITY = 16_384  # ticks per buffer: a second of 200 instruments in a busy minute, many times over
POOL = 8  # buffers in all: what the writer may fall behind by before ticks are dropped
FLUSH_S = 1.0  # a buffer is handed to the writer at least this often: what a crash may lose
MERGE_AT = 64  # single-flush parts merged into one at this many
_EPOCH_DAY = date(1970, 1, 1)
_PAPER = np.dtype([("instr", "i4"), ("ts", "i8"), ("price", "f8"), ("volume", "f8")])
_LIVE = np.dtype([*_PAPER.descr, ("last_qty", "i8"), ("bid", "f8"), ("ask", "f8")])
_COMPACT = "compact"  # to the writer: compact the days written so far
# what the tick path records, the feed's tuple: (row, ts, price, volume); live, then last_qty (-1: none),
# bid and ask (NaN: none)
Tick = tuple


class _Buffer:
    def __init__(self, capacity: int) -> None:
        self.rows: list[Tick | None] = [None] * capacity
        self.n = 0
        self.symbols: tuple[str, ...] = ()  # what the rows' instrument numbers index


class Recorder:
    """``add`` on the tick path; ``run`` as a task; ``end_day`` at the session's close; ``close`` on
    shutdown. ``quotes``: the ticks are live ones, with the last trade's quantity and level-1 bid/ask."""

    def __init__(self, data_dir: Path, symbols: Sequence[str], synthetic: bool, quotes: bool = False,
                 flush_s: float = FLUSH_S, capacity: int = CAPACITY, pool: int = POOL,
                 now_ns: Callable[[], int] = time.time_ns, rehearsal: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.synthetic = synthetic  # the paper simulator's ticks: a file of their own, never the market's
        self.rehearsal = rehearsal  # on a rehearsal clock: a file of their own again, never a real paper day's
        self.quotes = quotes
        self.flush_s = flush_s
        self.recorded = self.dropped = self.failed = 0  # ticks written, dropped (writer behind), lost to errors
        self.error = ""  # the writer's last failure, for /status
        self._now_ns = now_ns
        self._free: deque[_Buffer] = deque(_Buffer(capacity) for _ in range(pool))
        self._cur = self._free.popleft()
        self._cur.symbols = tuple(symbols)
        self._rows, self._n, self._cap = self._cur.rows, 0, capacity
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="tick-recorder", daemon=True)
        self._thread.start()
        self._reported_drops = 0

    # --- the tick path (event loop thread) --------------------------------------------------
    def add(self, tick: Tick) -> None:
        n = self._n
        if n == self._cap:
            if not self._hand_off():
                self.dropped += 1
                return
            n = 0
        self._rows[n] = tick
        self._n = n + 1

    # --- the loop's side of the hand-off ----------------------------------------------------
    def _hand_off(self) -> bool:
        """The current buffer to the writer, a free one in its place; False (nothing changed) when
        none is free: the writer is behind."""
        if not self._free:
            return False
        full = self._cur
        full.n = self._n
        self._cur = self._free.popleft()
        self._cur.symbols = full.symbols
        self._rows, self._n = self._cur.rows, 0
        self._work.put(full)
        return True

    def use_symbols(self, symbols: Sequence[str]) -> None:
        """The instruments changed (their row numbers with them): what was recorded under the old
        rows goes to the writer first, or is dropped when no buffer is free to switch to."""
        if self._n and not self._hand_off():
            self.dropped += self._n
            self._n = 0
        self._cur.symbols = tuple(symbols)

    def end_day(self) -> None:
        """The session closed: flush, then compact the day's parts into its day file (writer thread)."""
        if self._n:
            self._hand_off()
        self._work.put(_COMPACT)

    async def run(self) -> None:
        """Hands the buffer to the writer every ``flush_s``; says so when ticks are being dropped."""
        while True:
            await asyncio.sleep(self.flush_s)
            if self._n:
                self._hand_off()
            if self.dropped > self._reported_drops:
                log.warning("tick recorder: the writer is behind; %d tick(s) dropped so far, %d since the last report",
                            self.dropped, self.dropped - self._reported_drops)
                self._reported_drops = self.dropped

    async def close(self, timeout: float = 5.0) -> None:
        """The last buffer written; the writer stops (within ``timeout``, else it is left to the exit).
        A tick after this is not recorded."""
        self._cur.n = self._n
        self._work.put(self._cur)  # needs no free buffer in its place: none is taken
        self._free.clear()
        self._cur = _Buffer(0)
        self._rows, self._n, self._cap = self._cur.rows, 0, 0
        self._work.put(None)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("tick recorder: still writing after %.0f s; the rest is lost", timeout)

    def health(self) -> str:
        text = f"{self.recorded:,} ticks"
        if self.dropped:
            text += f", writer behind: {self.dropped:,} dropped"
        if self.error:
            text += f", {self.failed:,} lost to write errors (last: {self.error})"
        return text

    # --- the writer thread ------------------------------------------------------------------
    def _write_loop(self) -> None:
        from engine.data import store  # pyarrow loads here, off the loop and off the process's start-up

        self._store = store
        self._flushes: dict[Path, int] = {}
        self._days: set[Path] = set()  # days written by this run, compacted by end_day
        self._catch_up()
        while True:
            item = self._work.get()
            if item is None:
                return
            if item is _COMPACT:
                self._compact(sorted(self._days))
                self._days.clear()
                continue
            try:
                self._write(item)
            except Exception as exc:  # a full disk must not end recording for the rest of the day
                self.failed += item.n
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("tick recorder: %d tick(s) not written: %s", item.n, self.error)
            finally:
                item.rows[: item.n] = repeat(None, item.n)  # the ticks' objects go now, not when overwritten
                item.n = 0
                self._free.append(item)

    def _catch_up(self) -> None:
        """Days left in parts by a crash, today's included (a restart): compacted now, so each is one
        file again and today's recording goes on from it."""
        root = self.data_dir / "ticks"
        self._compact(sorted(d.with_name(d.name.removesuffix(".parts") + ".parquet") for d in root.glob("*.parts"))
                      if root.is_dir() else [])

    def _compact(self, days: Sequence[Path]) -> None:
        for day_file in days:
            started = time.monotonic()
            try:
                self._store.compact(day_file)
            except Exception as exc:  # the parts stay and stay readable; the next start tries again
                log.error("tick recorder: could not compact %s: %s: %s", day_file.name, type(exc).__name__, exc)
            else:
                log.info("tick recorder: %s compacted in %.1f s", day_file.name, time.monotonic() - started)
            self._flushes.pop(day_file, None)

    def _write(self, buf: _Buffer) -> None:
        import pyarrow as pa

        n = buf.n
        if not n:
            return
        # one C pass over the tuples (half the time the writer holds the GIL with zip and np.array)
        rec = np.fromiter(islice(buf.rows, n), _LIVE if self.quotes else _PAPER, n)
        instr, ts, price, volume = (np.ascontiguousarray(rec[c]) for c in ("instr", "ts", "price", "volume"))
        day = (ts + IST_OFFSET_NS) // NS_PER_DAY
        # nearly always one day; a buffer across midnight splits by day, each in arrival order
        groups = [slice(0, n)] if np.all(day == day[0]) else [np.flatnonzero(day == d) for d in np.unique(day)]
        symbols = pa.array(buf.symbols, pa.string())
        for rows in groups:
            columns = {"ts": pa.array(ts[rows]),
                       "symbol": pa.DictionaryArray.from_arrays(pa.array(instr[rows]), symbols),
                       "price": pa.array(price[rows]), "volume": pa.array(volume[rows])}
            if self.quotes:
                qty, bid, ask = (np.ascontiguousarray(rec[c][rows]) for c in ("last_qty", "bid", "ask"))
                columns |= {"last_qty": pa.array(qty, mask=qty < 0), "bid": pa.array(bid, mask=np.isnan(bid)),
                            "ask": pa.array(ask, mask=np.isnan(ask))}
            table = pa.table(columns, schema=self._store.LIVE_TICK_SCHEMA if self.quotes else self._store.TICK_SCHEMA)
            kind = (self._store.MARKET if not self.synthetic else
                    self._store.REHEARSAL if self.rehearsal else self._store.SYNTHETIC)
            day_file = self._store.tick_file(self.data_dir, ist_day(int(ts[rows][0])), kind)
            flush = self._flushes.get(day_file)
            if flush is None:
                flush = self._store.last_flush(day_file)
            flush += 1
            self._flushes[day_file] = flush
            self._store.append_part(day_file, table, flush)
            self._days.add(day_file)
            self.recorded += len(table)
            if flush % MERGE_AT == 0:
                self._store.merge_parts(day_file, MERGE_AT)


def ist_day(ns: int) -> date:
    return _EPOCH_DAY + timedelta(days=(ns + IST_OFFSET_NS) // NS_PER_DAY)

