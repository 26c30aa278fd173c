"""The Parquet store: where recorded ticks and fetched candles live, and how they are read.

Layout **(contract)**, under the data directory (``OTRADE_DATA_DIR``)::

    ticks/YYYY-MM-DD.parquet                    the market's ticks of one IST trading day (live: Kite)
    ticks/YYYY-MM-DD.synthetic.parquet          the paper simulator's made-up ticks, never mixed in
    ticks/YYYY-MM-DD[.synthetic].parts/F-L.parquet   a day still being recorded (see below)
    candles/<interval>/<EXCHANGE>_<SYMBOL>.parquet   e.g. candles/minute/NSE_INFY.parquet (engine.data.candles)

Tick columns, rows in the order the engine saw them:

    ts        int64    epoch ns (UTC)
    symbol    string   dictionary-encoded, e.g. "NSE:INFY"
    price     float64
    volume    float64  as the engine's feed gives it (live: quantity traded since the previous tick)
    last_qty  int64    live only, nullable: the last trade's quantity
    bid, ask  float64  live only, nullable: depth level 1 of Kite's full-mode ticks

Candle columns: ts (int64 epoch ns of the candle start), open, high, low, close, volume.

A Parquet file is readable only once closed, so a day being recorded is a folder of small closed
files (each written beside its name and renamed, so never torn), named by the range ``F-L`` of
flush numbers they hold: ``000007-000007`` is one flush, ``000001-000064`` the merge of 64. At the
end of the day they are compacted into the day file, whose metadata records the last flush number
it holds (``otrade.through``). A reader takes the day file, then each part beyond it not inside a
wider part already taken, so a crash at any step leaves the day readable and never doubled.
pandas, polars and DuckDB read the day file (or ``ticks/<day>.parts/*.parquet``) directly.
"""

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.data.ticks import TickFileError, Ticks

# tick file kinds: a real feed's, the paper simulator's, and a rehearsal's (the paper simulator on a
# rehearsal clock: a day of its own, never mixed with a paper session held on that day)
MARKET, SYNTHETIC, REHEARSAL = "market", "synthetic", "rehearsal"
THROUGH = b"otrade.through"  # day file metadata: the last flush number compacted into it
_SYMBOL = pa.dictionary(pa.int32(), pa.string())
_BASE = [("ts", pa.int64()), ("symbol", _SYMBOL), ("price", pa.float64()), ("volume", pa.float64())]
_QUOTES = [("last_qty", pa.int64()), ("bid", pa.float64()), ("ask", pa.float64())]
TICK_SCHEMA = pa.schema(_BASE)
LIVE_TICK_SCHEMA = pa.schema(_BASE + _QUOTES)
# zstd; only the symbol dictionary-encoded: a dictionary per numeric column costs the writer tens of MB
_WRITE = {"compression": "zstd", "use_dictionary": ["symbol"]}
_PART = re.compile(r"(\d{6,})-(\d{6,})\.parquet")
_DAY = re.compile(r"(\d{4}-\d\d-\d\d)(?:\.(synthetic|rehearsal))?\.parquet")
_ROW_GROUP = 1 << 16  # rows per row group of merged parts and day files: bounds what rewriting them holds


class StoreError(TickFileError):
    """A store file that cannot be used; the message names the file."""


def tick_file(data_dir: Path, day: date, kind: str = MARKET) -> Path:
    return Path(data_dir) / "ticks" / f"{day.isoformat()}{'' if kind == MARKET else '.' + kind}.parquet"


def parts_dir(day_file: Path) -> Path:
    return day_file.with_name(day_file.name.removesuffix(".parquet") + ".parts")


def _one_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file; a missing or corrupt one is a one-line StoreError naming it."""
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


def _metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


def write_table(path: Path, table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> None:
    """Writes beside ``path``, syncs, renames over it: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    try:
        pq.write_table(table, tmp, **_WRITE)
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself
    finally:
        os.close(fd)


# --- a day being recorded: parts ------------------------------------------------------------
def _through(day_file: Path) -> int:
    if not day_file.exists():
        return 0
    meta = _metadata(day_file).metadata or {}
    return int(meta.get(THROUGH, b"0"))


def _ranges(day_file: Path) -> list[tuple[int, int, Path]]:
    folder = parts_dir(day_file)
    if not folder.is_dir():
        return []
    found = [(int(m[1]), int(m[2]), p) for p in folder.iterdir() if (m := _PART.fullmatch(p.name))]
    return sorted(found, key=lambda r: (r[0], -r[1]))


def parts(day_file: Path) -> list[Path]:
    """The parts of a day that its day file does not hold yet, in order, none inside another."""
    covered, out = _through(day_file), []
    for first, last, path in _ranges(day_file):
        if first > covered:
            out.append(path)
            covered = last
    return out


def last_flush(day_file: Path) -> int:
    """The highest flush number the day holds (0 for none): a new recording goes on from it."""
    return max([_through(day_file), *(last for _, last, _ in _ranges(day_file))])


def append_part(day_file: Path, table: pa.Table, flush: int) -> Path:
    path = parts_dir(day_file) / f"{flush:06d}-{flush:06d}.parquet"
    write_table(path, table)
    return path


def merge_parts(day_file: Path, at_least: int) -> None:
    """Merges the single-flush parts into one once there are ``at_least``, so a day being recorded
    stays a few hundred files however long it runs."""
    through = _through(day_file)
    single = [(first, path) for first, last, path in _ranges(day_file) if first == last > through]
    if len(single) < at_least:
        return
    first, last = single[0][0], single[-1][0]
    _rewrite([p for _, p in single], parts_dir(day_file) / f"{first:06d}-{last:06d}.parquet")
    for _, path in single:
        path.unlink()


def compact(day_file: Path) -> None:
    """The day file plus its parts into the day file, streamed row group by row group; then the
    parts go. Nothing to do for a day without parts."""
    folder = parts_dir(day_file)
    live = parts(day_file)
    if not live:
        if folder.is_dir():  # parts the day file already holds, left by a crash after the rename
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
        return
    _rewrite(([day_file] if day_file.exists() else []) + live, day_file, {THROUGH: str(last_flush(day_file)).encode()})
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def _rewrite(sources: Sequence[Path], target: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """The sources' ticks into ``target`` (beside it, then renamed), streamed: a row group in memory
    at a time, however long the day."""
    schema = _union_schema(sources)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with pq.ParquetWriter(tmp, schema.with_metadata(metadata) if metadata else schema,
                              **_WRITE) as writer:
            pending: list[pa.Table] = []
            for table in _batches(sources, schema):
                pending.append(table)
                if sum(map(len, pending)) >= _ROW_GROUP:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
                    pending = []
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
        _commit(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _union_schema(paths: Sequence[Path]) -> pa.Schema:
    names = set()
    for p in paths:
        names.update(_metadata(p).schema.names)
    return LIVE_TICK_SCHEMA if {"last_qty", "bid", "ask"} <= names else TICK_SCHEMA


def _conform(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """The table in the store's tick schema: live columns a file lacks are null."""
    if missing := [n for n in TICK_SCHEMA.names if n not in table.column_names]:
        raise StoreError(f"{path}: not a tick file (no {', '.join(missing)} column)")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            try:
                columns.append(table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise StoreError(f"{path}: column {field.name} is {table.schema.field(field.name).type}, "
                                 f"not {field.type}") from None
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _batches(paths: Sequence[Path], schema: pa.Schema) -> Iterator[pa.Table]:
    for path in paths:
        try:
            reader = pq.ParquetFile(path)
            for k in range(reader.num_row_groups):
                yield _conform(reader.read_row_group(k), schema, path)
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


# --- reading ticks --------------------------------------------------------------------------
def read_day(day_file: Path) -> pa.Table:
    """A day's ticks as one table: the day file and the parts it does not hold yet."""
    sources = ([day_file] if day_file.exists() else []) + parts(day_file)
    if not sources:
        raise StoreError(f"{day_file}: no such recorded day (neither the file nor {parts_dir(day_file).name}/)")
    schema = _union_schema(sources)
    return pa.Table.from_batches([b for t in _batches(sources, schema) for b in t.to_batches()], schema=schema)


def to_ticks(table: pa.Table, symbols: Sequence[str], name: str) -> Ticks:
    """The configured instruments' ticks of a tick table, in ``symbols``' order; ordered by time,
    stably (Kite stamps ticks to the second, so instruments interleave out of order)."""
    symbols = tuple(symbols)
    index = {s: k for k, s in enumerate(symbols)}
    col = table.column("symbol").cast(_SYMBOL).combine_chunks() if len(table) else pa.array([], _SYMBOL)
    if col.null_count:
        raise StoreError(f"{name}: {col.null_count} tick(s) without a symbol")
    found = col.dictionary.to_pylist()
    codes = np.array([index.get(s, -1) for s in found], np.int32)[col.indices.to_numpy(zero_copy_only=False)] \
        if found else np.zeros(len(col), np.int32)
    keep = codes >= 0
    if len(table) and not keep.any():
        raise StoreError(f"{name}: none of the configured symbols ({', '.join(symbols)}) is in it "
                         f"(it has {', '.join(sorted(set(found))[:5])}{', …' if len(set(found)) > 5 else ''})")
    cols = {}
    for c in ("ts", "price", "volume"):
        column = table.column(c)
        if column.null_count:
            raise StoreError(f"{name}: {column.null_count} tick(s) without {c}")
        cols[c] = column.to_numpy()[keep]
    ts, price, volume = cols["ts"], cols["price"], cols["volume"]
    for values, bad, why in ((price, ~((price > 0) & (price < np.inf)), "is not finite and positive"),
                             (volume, ~((volume >= 0) & (volume < np.inf)), "is not finite and non-negative")):
        if len(k := np.flatnonzero(bad)):
            raise StoreError(f"{name}: tick {k[0] + 1:,}: {'price' if values is price else 'volume'} "
                             f"{values[k[0]]} {why}")
    instr = codes[keep]
    if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, price, volume, instr = ts[order], price[order], volume[order], instr[order]
    return Ticks(ts, price, volume, instr, symbols)


def load_ticks(path: Path, symbols: Sequence[str]) -> Ticks:
    """A recorded day (its day file, or the parts of one not compacted yet) as backtest input."""
    path = Path(path)
    table = read_day(path) if _DAY.fullmatch(path.name) or parts_dir(path).is_dir() else read_table(path)
    return to_ticks(table, symbols, path.name)


def recorded(data_dir: Path, day: date, kind: str = MARKET) -> bool:
    """The day has a recording of this kind (a day file, or the parts a running or crashed recorder left)."""
    f = tick_file(data_dir, day, kind)
    return f.exists() or parts_dir(f).is_dir()


def last_ts(day_file: Path) -> int | None:
    """The newest tick's time in a recorded day (its day file and parts), from the files' column
    statistics alone; None for a day with no tick."""
    newest = None
    for path in ([day_file] if day_file.exists() else []) + parts(day_file):
        meta = _metadata(path)
        column = meta.schema.names.index("ts")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:  # not written by us: read the column
                return int(pc.max(read_day(day_file).column("ts")).as_py() or 0) or None
            newest = stats.max if newest is None else max(newest, stats.max)
    return None if newest is None else int(newest)


def load_days(data_dir: Path, first: date, last: date, symbols: Sequence[str]) -> Ticks:
    """The recorded market days from ``first`` to ``last`` (inclusive) one after the other."""
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    files = [f for d in days if (f := tick_file(data_dir, d)).exists() or parts_dir(f).is_dir()]
    if not files:
        span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        other = [f.name for d in days if (f := tick_file(data_dir, d, SYNTHETIC)).exists() or parts_dir(f).is_dir()]
        hint = f" (there is {', '.join(other)}: pass it to --ticks)" if other else ""
        raise StoreError(f"{Path(data_dir) / 'ticks'}: no recorded market ticks for {span}{hint}")
    loaded = [load_ticks(f, symbols) for f in files]
    return Ticks(*(np.concatenate([getattr(t, c) for t in loaded]) for c in ("ts", "price", "volume", "instr")),
                 tuple(symbols))


# --- what is stored -------------------------------------------------------------------------
@dataclass(frozen=True)
class TickDay:
    day: date
    kind: str
    instruments: int
    ticks: int
    size: int  # bytes on disk, parts included
    parts: int  # files not compacted yet (0: a finished day)


@dataclass(frozen=True)
class CandleSet:
    interval: str
    symbol: str
    candles: int
    first_ns: int | None
    last_ns: int | None
    size: int


def list_ticks(data_dir: Path) -> list[TickDay]:
    root = Path(data_dir) / "ticks"
    names = set()
    if root.is_dir():
        for p in root.iterdir():
            name = p.name.removesuffix(".parts") + ".parquet" if p.is_dir() else p.name
            if _DAY.fullmatch(name):
                names.add(name)
    out = []
    for name in sorted(names):
        m = _DAY.fullmatch(name)
        day_file = root / name
        sources = ([day_file] if day_file.exists() else []) + parts(day_file)
        symbols: set[str] = set()
        ticks = 0
        for p in sources:
            ticks += _metadata(p).num_rows
            symbols.update(pc.unique(read_table(p, ["symbol"]).column("symbol").cast(pa.string())).to_pylist())
        size = sum(p.stat().st_size for p in sources)
        out.append(TickDay(date.fromisoformat(m[1]), m[2] or MARKET, len(symbols), ticks, size,
                           len(sources) - day_file.exists()))
    return out


def list_candles(data_dir: Path) -> list[CandleSet]:
    root = Path(data_dir) / "candles"
    out = []
    for path in sorted(root.glob("*/*.parquet")) if root.is_dir() else []:
        meta = _metadata(path)
        first = last = None
        if meta.num_rows and "ts" in meta.schema.names:
            ts = read_table(path, ["ts"]).column("ts")
            first, last = pc.min(ts).as_py(), pc.max(ts).as_py()
        out.append(CandleSet(path.parent.name, path.stem.replace("_", ":", 1), meta.num_rows, first, last,
                             path.stat().st_size))
    return out
