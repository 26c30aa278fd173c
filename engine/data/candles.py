"""Candles: the Parquet store, CSV import, and the rule that replays each candle as ticks.

Store (contract): ``<data_dir>/candles/<interval>/<EXCHANGE>_<SYMBOL>.parquet``, one row per candle,
sorted and unique by ``ts`` (int64 epoch ns UTC of the candle's start), then ``open``, ``high``,
``low``, ``close``, ``volume`` (float64). The file's metadata (``otrade.fetched``) lists the IST
time ranges already asked of Kite or imported, so a fetch never asks twice for what is stored,
Kite's gaps included.

Replay. Where only candles exist, each candle becomes four ticks of its instrument, a quarter of
the candle's in-session span apart (a minute candle: :00, :15, :30, :45) and a quarter of its
volume each, and they go through the same kernels as recorded ticks. The order of the prices:

- ``ohlc``: open, then the extreme nearer the open, then the other extreme, then close. When the
  open is as near one extreme as the other, a candle that closed at or above its open dips first
  (open, low, high, close), one that closed below rallies first (open, high, low, close).
- ``pessimistic``: each trade meets its candles' extremes in the orders that make it worst, a
  search over both orders of every candle it is pending or open in, through the same kernels
  (``engine.core.candle_order``, given the offsets in ``Replay.partner``); flat with nothing
  pending, the ``ohlc`` order. The backtest refuses it for a strategy that decides inside a candle.

A candle (a ``day`` one stamped at midnight, or the last ``60minute`` one) is trimmed to the
session window first; candles wholly outside the window are not replayed.
"""

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from engine.core.layout import IST, IST_OFFSET_NS, NS_PER_DAY, NS_PER_S
from engine.data.ticks import Ticks

INTERVAL_SECONDS = {"minute": 60, "3minute": 180, "5minute": 300, "10minute": 600, "15minute": 900,
                    "30minute": 1800, "60minute": 3600, "day": 86400}
RULES = ("ohlc", "pessimistic")
COLUMNS = ("ts", "open", "high", "low", "close", "volume")
FETCHED_KEY = b"otrade.fetched"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Kite's from/to, IST
TIME_COLUMNS = ("ts", "timestamp", "date", "datetime", "time")


class CandleError(ValueError):
    """Candles that cannot be used as they are; the message names the file or symbol and why."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value
class Candles:
    ts: np.ndarray  # int64 epoch ns UTC of each candle's start
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    fetched: tuple[tuple[int, int], ...] = ()  # epoch-second ranges, both ends included, asked for already

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", np.ascontiguousarray(self.ts, dtype=np.int64))
        for name in COLUMNS[1:]:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        if len({len(getattr(self, c)) for c in COLUMNS}) != 1:
            raise ValueError("candle columns must have the same length")

    def __len__(self) -> int:
        return len(self.ts)

    def merged(self, other: "Candles") -> "Candles":
        """Both sets of candles, ``other``'s winning where both have a start; both coverages."""
        ts = np.concatenate((other.ts, self.ts))
        _, first = np.unique(ts, return_index=True)  # the first of equal starts: other's
        cols = [np.concatenate((getattr(other, c), getattr(self, c)))[first] for c in COLUMNS]
        return Candles(*cols, fetched=merge_ranges([*self.fetched, *other.fetched]))


def merge_ranges(ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive integer ranges, overlapping or touching ones joined, in order."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def kite_time(epoch_s: int) -> str:
    """``yyyy-mm-dd hh:mm:ss`` in IST, as Kite's from/to take it."""
    return datetime.fromtimestamp(epoch_s, IST).strftime(TIME_FORMAT)


def parse_kite_time(text: str) -> int:
    return int(datetime.strptime(text, TIME_FORMAT).replace(tzinfo=IST).timestamp())


# --- the store ---------------------------------------------------------------------------------
def path(data_dir: Path, interval: str, symbol: str) -> Path:
    exchange, _, tradingsymbol = symbol.partition(":")
    return Path(data_dir) / "candles" / interval / f"{exchange}_{tradingsymbol}.parquet"


def symbol_of(file: Path) -> str | None:
    """``NSE:INFY`` for ``NSE_INFY.parquet`` (or ``.csv``); None for a name not in that form."""
    exchange, sep, tradingsymbol = Path(file).stem.partition("_")
    return f"{exchange}:{tradingsymbol}" if sep and exchange.isalpha() and exchange.isupper() else None


def read(file: Path) -> Candles:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file, columns=list(COLUMNS))
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these; a missing file stays FileNotFoundError
        if isinstance(exc, FileNotFoundError):
            raise
        raise CandleError(f"{file}: not a candle file ({exc})") from None
    meta = table.schema.metadata or {}
    fetched = tuple((parse_kite_time(a), parse_kite_time(b)) for a, b in orjson.loads(meta.get(FETCHED_KEY, b"[]")))
    return Candles(*(table.column(c).to_numpy() for c in COLUMNS), fetched=fetched)


def write(file: Path, candles: Candles) -> None:
    """Written beside the file and renamed over it: a crash leaves the old file or the new, whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fetched = orjson.dumps([[kite_time(a), kite_time(b)] for a, b in candles.fetched])
    table = pa.table({c: getattr(candles, c) for c in COLUMNS}).replace_schema_metadata({FETCHED_KEY: fetched})
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)


# --- CSV ---------------------------------------------------------------------------------------
def _epoch_ns(text: str) -> int:
    """ISO-8601 (an offset-less time is IST, as Indian data vendors print it) or epoch s / ns."""
    if text.isdigit():
        if len(text) == 10:
            return int(text) * NS_PER_S
        if len(text) == 19:
            return int(text)
        raise ValueError(f"timestamp {text} is neither epoch seconds (10 digits) nor nanoseconds (19)")
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO-8601 (e.g. 2026-11-23T09:15:00+05:30)") from None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=IST)
    return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _price(what: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not (x > 0 and np.isfinite(x)):
        raise ValueError(f"{what} {text} must be a positive number")
    return x


def read_csv(file: Path, interval: str) -> Candles:
    """Candles from a CSV with a header: a time column (ts, timestamp, date, datetime or time),
    open, high, low, close and optionally volume (0 without); one row per candle in time order."""
    file = Path(file)
    name = file.name
    if interval not in INTERVAL_SECONDS:
        raise CandleError(f"unknown interval {interval!r}: one of {', '.join(INTERVAL_SECONDS)}")
    with open(file, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header = [h.strip().lower() for h in next(rows, [])]
        time_col = next((c for c in TIME_COLUMNS if c in header), None)
        missing = [c for c in ("open", "high", "low", "close") if c not in header]
        if time_col is None or missing:
            need = ([f"a time column ({', '.join(TIME_COLUMNS)})"] if time_col is None else []) + missing
            raise CandleError(f"{name} line 1: missing {', '.join(need)} (header: {','.join(header)})")
        at = {c: header.index(c) for c in (time_col, "open", "high", "low", "close", "volume") if c in header}
        cols: list[list] = [[] for _ in COLUMNS]
        last = last_line = None
        for line, row in enumerate(rows, start=2):
            if not row or not any(f.strip() for f in row):
                continue
            try:
                if len(row) != len(header):
                    raise ValueError(f"expected {len(header)} fields, found {len(row)}")
                t = _epoch_ns(row[at[time_col]].strip())
                o, h, lo, c = (_price(k, row[at[k]].strip()) for k in ("open", "high", "low", "close"))
                v = float(row[at["volume"]]) if "volume" in at and row[at["volume"]].strip() else 0.0
                if not (v >= 0 and np.isfinite(v)):
                    raise ValueError(f"volume {row[at['volume']].strip()} must not be negative")
                if h < max(o, c) or lo > min(o, c):
                    raise ValueError(f"high {h:g} and low {lo:g} do not contain open {o:g} and close {c:g}")
                if last is not None and t <= last:  # refused, not sorted: a file out of order may be two files spliced
                    when = f"{kite_time(t // NS_PER_S)} IST"
                    where = f"is line {last_line}'s start again" if t == last else \
                        f"comes before line {last_line}'s {kite_time(last // NS_PER_S)}"
                    raise ValueError(f"{when} {where}: candles must be in time order, one per start")
            except ValueError as exc:
                raise CandleError(f"{name} line {line}: {exc}") from None
            last, last_line = t, line
            for k, x in enumerate((t, o, h, lo, c, v)):
                cols[k].append(x)
    if not cols[0]:
        raise CandleError(f"{name}: no candles after the header")
    step = INTERVAL_SECONDS[interval]
    covered = ((cols[0][0] // NS_PER_S, cols[0][-1] // NS_PER_S + step - 1),)
    return Candles(*cols, fetched=covered)


def import_csv(file: Path, symbol: str, interval: str, data_dir: Path) -> tuple[Candles, Path]:
    """Merge a CSV's candles into the store (they replace stored ones with the same start); a
    fetch then leaves the span they cover alone. Returns the imported candles and the store file."""
    candles = read_csv(file, interval)
    target = path(data_dir, interval, symbol)
    stored = read(target) if target.exists() else None
    write(target, stored.merged(candles) if stored is not None else candles)
    return candles, target


# --- replay ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Replay:
    ticks: Ticks
    partner: np.ndarray | None  # pessimistic: at a candle's first extreme, the offset to its second; else 0
    data: str  # what the backtest ran on, for its output


def load(source: Path, symbols: Sequence[str], interval: str | None) -> tuple[dict[str, Candles], str]:
    """The candles of ``symbols``, and their interval, from a data directory (the store) or from
    one candle file (.parquet or .csv) of the one instrument configured."""
    source = Path(source)
    if source.is_dir():
        interval = interval or "minute"
        files = {s: path(source, interval, s) for s in symbols}
        if absent := [s for s, f in files.items() if not f.exists()]:
            raise CandleError(f"no {interval} candles for {', '.join(absent)} under {source / 'candles' / interval} "
                              f"(otrade data fetch or otrade data import stores them)")
        return {s: read(f) for s, f in files.items()}, interval
    interval = interval or (source.parent.name if source.parent.name in INTERVAL_SECONDS else None)
    if interval is None:
        raise CandleError(f"{source.name}: say which --interval its candles are")
    if len(symbols) != 1:
        raise CandleError(f"{source.name} holds one instrument, the config trades {len(symbols)} "
                          f"({', '.join(symbols)}): give the data directory instead")
    named = symbol_of(source)
    if named is not None and named != symbols[0]:
        raise CandleError(f"{source.name} holds {named}, the config trades {symbols[0]}")
    if not source.exists():
        raise FileNotFoundError(2, "No such file or directory", str(source))
    return {symbols[0]: read_csv(source, interval) if source.suffix.lower() == ".csv" else read(source)}, interval


def replay(candles: Mapping[str, Candles], symbols: Sequence[str], interval: str, rule: str,
           open_ns: int, close_ns: int) -> Replay:
    """The ticks of ``candles`` by ``rule`` (see the module's doc), merged in time order across
    ``symbols``; ``open_ns``/``close_ns``: the session window, ns after IST midnight."""
    if rule not in RULES:
        raise CandleError(f"unknown candle rule {rule!r}: one of {', '.join(RULES)}")
    step = INTERVAL_SECONDS[interval] * NS_PER_S
    parts, firsts, seconds, base, total, days = [], [], [], 0, 0, set()
    for k, symbol in enumerate(symbols):
        c = candles[symbol]
        midnight = (c.ts + IST_OFFSET_NS) // NS_PER_DAY * NS_PER_DAY - IST_OFFSET_NS
        start = np.maximum(c.ts, midnight + open_ns)
        span = np.minimum(c.ts + step, midnight + close_ns) - start
        keep = span >= 4  # four distinct nanoseconds at least: the candle lies in the window
        start, span = start[keep], span[keep]
        o, h, lo, cl, v = (getattr(c, f)[keep] for f in COLUMNS[1:])
        high_first = (h - o < o - lo) | ((h - o == o - lo) & (cl < o))
        n = len(start)
        ts = (start[:, None] + span[:, None] * np.arange(4) // 4).ravel()
        price = np.column_stack((o, np.where(high_first, h, lo), np.where(high_first, lo, h), cl)).ravel()
        parts.append((ts, price, np.repeat(v / 4.0, 4), np.full(4 * n, k, np.int32)))
        firsts.append(base + 4 * np.arange(n) + 1)
        seconds.append(base + 4 * np.arange(n) + 2)
        base += 4 * n
        total += n
        if n:
            days.update(((c.ts[keep][[0, -1]] + IST_OFFSET_NS) // NS_PER_DAY).tolist())
    if not total:
        raise CandleError(f"no {interval} candles of {', '.join(symbols)} fall in the session window")
    ts, price, volume, instr = (np.concatenate([p[f] for p in parts]) for f in range(4))
    order = np.argsort(ts, kind="stable")
    ticks = Ticks(ts[order], price[order], volume[order], instr[order], tuple(symbols))
    partner = None
    if rule == "pessimistic":
        where = np.empty_like(order)
        where[order] = np.arange(len(order))  # a tick's place in the merged stream
        first, second = where[np.concatenate(firsts)], where[np.concatenate(seconds)]
        partner = np.zeros(len(order), np.int64)
        partner[first] = second - first
    first_day, last_day = (datetime(1970, 1, 1) + timedelta(days=d) for d in (min(days), max(days)))
    data = (f"{interval} candles of {', '.join(symbols)} from {first_day:%Y-%m-%d} to {last_day:%Y-%m-%d} "
            f"({total:,} candles), replayed as 4 ticks each by the {rule} rule")
    return Replay(ticks, partner, data)

