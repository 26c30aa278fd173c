"""Tick files: CSV, binary and recorded Parquet days read as ``Ticks``; CSV and binary written.

CSV: a header with ``ts`` and ``price``, optionally ``symbol`` and ``volume``, in any order; ``ts`` is
ISO-8601 with an offset or integer epoch nanoseconds. Well-formed blocks of rows are parsed by numpy
in bulk; a block that the bulk parser does not accept is re-read row by row, which is what reports
(or skips) bad rows, so both paths agree on every file.

Binary (``.otk``): ``OTRADETK``, a little-endian u32 header length, a JSON header (n, symbols, column
dtypes) padded so the columns start 64-byte aligned, then the raw columns ts, price, volume, instr.
"""

import csv
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import orjson

from engine.core.layout import IST_OFFSET_NS, NS_PER_S
from engine.data.ticks import TickFileError, Ticks, iso

BINARY_SUFFIX = ".otk"
MAGIC = b"OTRADETK"
FORMAT_VERSION = 1
_COLUMNS = (("ts", "<i8"), ("price", "<f8"), ("volume", "<f8"), ("instr", "<i4"))
# epoch ns with exactly 19 digits and below 9e18: 2001-09-09 to 2255; this also catches epoch seconds or ms
_EPOCH_MIN, _EPOCH_MAX = 10**18, 9 * 10**18
_PAD = 64  # the widest field the bulk parser takes
_CHUNK = 1 << 23  # bytes of CSV per bulk pass: bounds the temporaries, and a bad row re-reads only its block
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- CSV: row by row (the reference, and the source of every error message) -----------------
class _Layout(NamedTuple):
    width: int
    ts: int
    price: int
    symbol: int | None
    volume: int | None


class _Bad(ValueError):
    pass


_ISO = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?(Z|[+-]\d\d:\d\d)?")
_minute_ns: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM+05:30" -> its epoch ns: rows share minutes


def _parse_ts(text: str) -> int:
    t = _parse_ts_unchecked(text)
    if not -(2**63) < t < 2**63:
        raise _Bad(f"timestamp {text!r} is out of range (years 1678 to 2261)")
    return t


def _parse_ts_unchecked(text: str) -> int:
    if text.isascii() and text.isdigit():
        t = int(text)
        if not _EPOCH_MIN <= t < _EPOCH_MAX:
            raise _Bad(f"timestamp {text} is not epoch nanoseconds (expected 19 digits, e.g. 1795405500000000000)")
        return t
    m = _ISO.fullmatch(text)
    if m is None or m[4] is None:
        try:
            stamp = datetime.fromisoformat(text)  # other ISO spellings Python accepts (e.g. basic format)
        except ValueError:
            raise _Bad(f"timestamp {text!r} is neither ISO-8601 nor epoch nanoseconds") from None
        if stamp.tzinfo is None:
            raise _Bad(f"timestamp {text!r} has no UTC offset (e.g. +05:30)")
        return (stamp - _EPOCH) // timedelta(microseconds=1) * 1000
    key = m[1] + m[4]
    base = _minute_ns.get(key)
    if base is None:
        try:
            stamp = datetime.fromisoformat(m[1] + ":00" + ("+00:00" if m[4] == "Z" else m[4]))
        except ValueError as exc:
            raise _Bad(f"timestamp {text!r}: {exc}") from None
        base = int(stamp.timestamp()) * NS_PER_S
        if len(_minute_ns) > 100_000:
            _minute_ns.clear()
        _minute_ns[key] = base
    sec = int(m[2] or 0)
    if sec > 59:
        raise _Bad(f"timestamp {text!r}: second must be in 0..59")
    return base + sec * NS_PER_S + int((m[3] or "").ljust(9, "0"))


def _number(what: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise _Bad(f"{what} {text.strip()!r} is not a number") from None
    if not math.isfinite(x):
        raise _Bad(f"{what} {text.strip()!r} is not a finite number")
    return x


def _read_rows(lines: list[str], first_line: int, lay: _Layout, index: dict[str, int], symbols: Sequence[str],
               last: int, skip_bad: bool, name: str) -> tuple[list[int], list[float], list[float], list[int], int]:
    ts: list[int] = []
    price: list[float] = []
    volume: list[float] = []
    instr: list[int] = []
    skipped = 0
    for line, row in enumerate(csv.reader(lines), start=first_line):
        if not row:
            continue
        try:
            if len(row) != lay.width:
                raise _Bad(f"expected {lay.width} fields, found {len(row)}")
            t = _parse_ts(row[lay.ts].strip())
            p = _number("price", row[lay.price])
            if p <= 0:
                raise _Bad(f"price {row[lay.price].strip()} must be positive")
            k = 0
            if lay.symbol is not None:
                sym = row[lay.symbol].strip()
                if sym not in index:
                    raise _Bad(f"unknown symbol {sym or '(empty)'} (configured: {', '.join(symbols)})")
                k = index[sym]
            v = 1.0
            if lay.volume is not None and row[lay.volume].strip():
                v = _number("volume", row[lay.volume])
                if v < 0:
                    raise _Bad(f"volume {row[lay.volume].strip()} must not be negative")
            if t < last:
                raise _Bad(f"timestamp goes backwards ({iso(t)} after {iso(last)})")
        except _Bad as exc:
            if skip_bad:
                skipped += 1
                continue
            raise TickFileError(f"{name} line {line}: {exc}") from None
        last = t
        ts.append(t)
        price.append(p)
        volume.append(v)
        instr.append(k)
    return ts, price, volume, instr, skipped


# --- CSV: in bulk ---------------------------------------------------------------------------
def _field(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Each row's field as a NUL-padded (rows, widest) uint8 matrix (``buf`` ends in _PAD spare bytes)."""
    width = int(length.max(initial=0))
    out = np.lib.stride_tricks.sliding_window_view(buf, width)[start]  # one row copy per field, not per byte
    out[np.arange(width) >= length[:, None]] = 0
    return out


def _digits(m: np.ndarray, dots: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Plain decimals (digits, at most one '.') as (integer of all digits, digits after the dot, digit count)."""
    n = len(m)
    acc, frac, count = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    seen, bad = np.zeros(n, bool), np.zeros(n, bool)
    for c in np.ascontiguousarray(m.T):  # one byte position of every row at a time
        d = c - np.uint8(48)  # wraps below '0', so d < 10 is exactly a digit
        digit = d < 10
        dot = c == 46
        bad |= ~(digit | dot | (c == 0)) | (dot & seen)
        acc = np.where(digit, acc * 10 + d, acc)
        frac += digit & seen
        count += digit
        seen |= dot
    if bad.any() or (not dots and seen.any()) or not count.all():
        return None
    return acc, frac, count


def _decimal(m: np.ndarray) -> np.ndarray | None:
    parsed = _digits(m, dots=True)
    if parsed is None or parsed[2].max(initial=0) > 15:
        return None  # beyond 15 digits the integer is inexact: the row path's float() decides
    # an exact integer over an exact power of ten is correctly rounded, i.e. what float(text) gives
    return parsed[0] / 10.0 ** parsed[1]


def _timestamps(m: np.ndarray, length: np.ndarray) -> np.ndarray | None:
    n, width = m.shape
    if n == 0:
        return np.zeros(0, np.int64)
    if width == 19 and np.all(length == 19):  # epoch ns, first digit 1..8 (see _EPOCH_MIN)
        parsed = _digits(m, dots=False)
        return parsed[0] if parsed is not None and np.all((m[:, 0] >= 49) & (m[:, 0] <= 56)) else None
    rows = np.arange(n)
    zulu = m[rows, length - 1] == ord("Z")
    cut = np.where(zulu, length - 1, length - 6)  # where the offset starts
    century = (m[:, 0].astype(np.int64) - 48) * 10 + m[:, 1] - 48
    if np.any(cut < 16) or not np.all((m[:, 10] == ord("T")) | (m[:, 10] == ord(" "))) \
            or not np.all((century >= 19) & (century <= 21)):  # numpy wraps ns stamps beyond 1677..2262
        return None
    if np.all(cut == cut[0]) and np.all(zulu == zulu[0]):  # one layout for all rows: slices, no gathers
        local = np.ascontiguousarray(m[:, : cut[0]])
        off = m[:, cut[0] : cut[0] + 6].copy() if not zulu[0] else np.zeros((n, 6), np.uint8)
    else:
        local = m.copy()
        local[np.arange(width) >= cut[:, None]] = 0
        off = np.take_along_axis(m, np.minimum(cut[:, None] + np.arange(6), width - 1), 1)
    off[zulu] = np.frombuffer(b"+00:00", np.uint8)
    hh_mm = off[:, [1, 2, 4, 5]].astype(np.int64) - 48
    if not np.all(((off[:, 0] == 43) | (off[:, 0] == 45)) & (off[:, 3] == 58)) or np.any((hh_mm < 0) | (hh_mm > 9)):
        return None
    offset_ns = ((hh_mm[:, 0] * 10 + hh_mm[:, 1]) * 3600 + (hh_mm[:, 2] * 10 + hh_mm[:, 3]) * 60) * NS_PER_S
    try:
        stamps = local.view(f"S{local.shape[1]}").ravel().astype("datetime64[ns]").view(np.int64)
    except ValueError:
        return None
    if np.any(stamps == np.iinfo(np.int64).min):  # NaT
        return None
    return stamps - np.where(off[:, 0] == 45, -offset_ns, offset_ns)


def _bulk(chunk: bytes, lay: _Layout, index: dict[bytes, int], last: int) -> tuple[np.ndarray, ...] | None:
    """The block's columns, or None when any row is not plainly well formed and valid."""
    if b'"' in chunk or b"\x00" in chunk:
        return None
    buf = np.frombuffer(chunk + bytes(_PAD), np.uint8)
    newlines = np.flatnonzero(buf == 10)
    size = len(chunk)
    n = len(newlines) + 1
    commas = np.flatnonzero(buf == 44)
    if len(commas) != n * (lay.width - 1):
        return None
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [size]))
    commas = commas.reshape(n, lay.width - 1)
    # commas are sorted and their count is right: each row's own commas inside it means exactly width - 1 each
    if not (np.all(commas[:, 0] >= starts) and np.all(commas[:, -1] < ends)):
        return None
    lo = np.column_stack((starts, commas + 1))
    hi = np.column_stack((commas, ends))
    if np.any(hi - lo > _PAD):
        return None

    def column(c: int) -> tuple[np.ndarray, np.ndarray]:
        return _field(buf, lo[:, c], hi[:, c] - lo[:, c]), hi[:, c] - lo[:, c]

    ts = _timestamps(*column(lay.ts))
    price = _decimal(column(lay.price)[0])
    if ts is None or price is None or not np.all(price > 0) or (n and (ts[0] < last or np.any(ts[1:] < ts[:-1]))):
        return None
    volume = np.ones(n)
    if lay.volume is not None:
        volume = _decimal(column(lay.volume)[0])
        if volume is None:
            return None
    instr = np.zeros(n, np.int32)
    if lay.symbol is not None:
        m = column(lay.symbol)[0]
        if m.shape[1] == 0:
            return None
        words = np.pad(m, ((0, 0), (0, -m.shape[1] % 8))).view(np.uint64)
        key = words[:, 0].copy()
        for w in words.T[1:]:
            key = key * np.uint64(0x9E3779B97F4A7C15) + w  # wraps: a hash, checked exactly below
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        if not np.array_equal(m[first][inverse.ravel()], m):
            return None
        codes = np.array([index.get(m[k].tobytes().rstrip(b"\x00"), -1) for k in first], np.int32)
        if np.any(codes < 0):
            return None
        instr = codes[inverse.ravel()]
    return ts, price, volume, instr


def _layout(header: list[str], symbols: Sequence[str], name: str) -> _Layout:
    names = [h.strip().lower() for h in header]
    if dups := sorted({h for h in names if h and names.count(h) > 1}):
        raise TickFileError(f"{name} line 1: duplicate column {', '.join(dups)}")
    if missing := [c for c in ("ts", "price") if c not in names]:
        raise TickFileError(f"{name} line 1: missing column {' and '.join(missing)} (header: {','.join(header)})")
    col = {h: k for k, h in enumerate(names)}
    if "symbol" not in col and len(symbols) != 1:
        raise TickFileError(f"{name} line 1: no symbol column, but {len(symbols)} instruments are configured "
                            f"({', '.join(symbols)})")
    return _Layout(len(header), col["ts"], col["price"], col.get("symbol"), col.get("volume"))


def load_csv(path: str | Path, symbols: Sequence[str], skip_bad: bool = False) -> tuple[Ticks, int]:
    """The ticks of a CSV file and the number of bad rows skipped (bad rows raise unless ``skip_bad``)."""
    path, symbols = Path(path), tuple(symbols)
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not raw or raw.isspace():
        raise TickFileError(f"{path.name} line 1: the file is empty (expected a header with ts and price)")
    head_end = raw.find(b"\n")
    head_end = len(raw) if head_end < 0 else head_end
    lay = _layout(next(csv.reader([raw[:head_end].decode("utf-8", "replace")])), symbols, path.name)
    index = {s: k for k, s in enumerate(symbols)}
    raw_index = {s.encode(): k for s, k in index.items()}
    parts: list[tuple[np.ndarray, ...]] = []
    skipped, last, line, pos = 0, -(2**63), 2, head_end + 1
    while pos < len(raw):
        stop = raw.find(b"\n", pos + _CHUNK)
        stop = len(raw) if stop < 0 else stop
        chunk = raw[pos:stop]
        cols = _bulk(chunk.rstrip(b"\n"), lay, raw_index, last)
        if cols is None:
            ts, price, volume, instr, bad = _read_rows(chunk.decode("utf-8", "replace").split("\n"), line, lay, index,
                                                       symbols, last, skip_bad, path.name)
            cols, skipped = (np.array(ts, np.int64), np.array(price), np.array(volume), np.array(instr)), skipped + bad
        if len(cols[0]):
            parts.append(cols)
            last = int(cols[0][-1])
        line += chunk.count(b"\n") + 1
        pos = stop + 1
    if not parts and not skipped:
        raise TickFileError(f"{path.name} line 2: no ticks after the header")
    ts, price, volume, instr = ([p[c] for p in parts] for c in range(4))
    return Ticks(*(np.concatenate(c) if c else np.zeros(0) for c in (ts, price, volume, instr)), symbols), skipped


@contextmanager
def _replacing(path: str | Path) -> Iterator[BinaryIO]:
    """Writes beside the target and renames over it, so a crash never leaves half a tick file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_csv(path: str | Path, ticks: Ticks) -> None:
    """``ts,symbol,price,volume`` with IST timestamps to the millisecond."""
    stamps = np.datetime_as_string(((ticks.ts + IST_OFFSET_NS) // 1_000_000).astype("datetime64[ms]"), unit="ms")
    with _replacing(path) as fh:
        fh.write(b"ts,symbol,price,volume\n")
        for lo in range(0, len(ticks), 1 << 16):
            hi = lo + (1 << 16)
            rows = zip(stamps[lo:hi].tolist(), ticks.instr[lo:hi].tolist(), ticks.price[lo:hi].tolist(),
                       ticks.volume[lo:hi].tolist(), strict=True)
            fh.write("".join(f"{t}+05:30,{ticks.symbols[k]},{p!r},{int(v) if v.is_integer() else v!r}\n"
                             for t, k, p, v in rows).encode())


# --- binary -----------------------------------------------------------------------------------
def save_binary(path: str | Path, ticks: Ticks) -> None:
    header = orjson.dumps({"version": FORMAT_VERSION, "n": len(ticks), "symbols": list(ticks.symbols),
                           "columns": [list(c) for c in _COLUMNS]})
    header += b" " * (-(len(MAGIC) + 4 + len(header)) % 64)
    with _replacing(path) as fh:
        fh.write(MAGIC + len(header).to_bytes(4, "little") + header)
        for name, dtype in _COLUMNS:
            fh.write(np.ascontiguousarray(getattr(ticks, name), dtype=dtype).data)


def load_binary(path: str | Path, symbols: Sequence[str] | None = None) -> Ticks:
    """The ticks of an ``.otk`` file; with ``symbols``, their indices remapped onto that order."""
    path = Path(path)
    name = path.name
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise TickFileError(f"{name}: not an OTrade binary tick file")
        size = int.from_bytes(head[len(MAGIC):], "little")
        try:
            meta = orjson.loads(fh.read(size))
            version, n = int(meta.get("version", 1)), int(meta["n"])
            file_symbols = tuple(meta["symbols"])
            columns = tuple(tuple(c) for c in meta.get("columns", _COLUMNS))
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            raise TickFileError(f"{name}: corrupt header") from None
        if version > FORMAT_VERSION:
            raise TickFileError(f"{name}: format version {version} is newer than this OTrade reads ({FORMAT_VERSION})")
        if columns != _COLUMNS or n < 0 or not all(isinstance(s, str) for s in file_symbols) \
                or len(set(file_symbols)) != len(file_symbols):
            raise TickFileError(f"{name}: corrupt header")
        expected = len(head) + size + n * sum(np.dtype(d).itemsize for _, d in _COLUMNS)
        actual = os.fstat(fh.fileno()).st_size
        if actual != expected:
            raise TickFileError(f"{name}: {'truncated' if actual < expected else 'trailing bytes'} "
                                f"({actual:,} bytes, {n:,} ticks need {expected:,})")
        cols = {c: np.fromfile(fh, dtype, count=n) for c, dtype in _COLUMNS}
    ts, price, volume, instr = cols["ts"], cols["price"], cols["volume"], cols["instr"]

    def first(bad: np.ndarray, why: Callable[[int], str]) -> None:
        if len(k := np.flatnonzero(bad)):
            raise TickFileError(f"{name}: tick {k[0] + 1:,}: {why(int(k[0]))}")

    first(np.concatenate(([False], ts[1:] < ts[:-1])),
          lambda k: f"timestamp goes backwards ({iso(int(ts[k]))} after {iso(int(ts[k - 1]))})")
    first(~((price > 0) & (price < np.inf)), lambda k: f"price {price[k]} is not finite and positive")
    first(~((volume >= 0) & (volume < np.inf)), lambda k: f"volume {volume[k]} is not finite and non-negative")
    first((instr < 0) | (instr >= len(file_symbols)),
          lambda k: f"symbol index {instr[k]} out of range (the file lists {len(file_symbols)} symbols)")
    if symbols is not None and tuple(symbols) != file_symbols:
        symbols = tuple(symbols)
        index = {s: k for k, s in enumerate(symbols)}
        used = np.bincount(instr, minlength=len(file_symbols)) > 0
        if unknown := [s for s, u in zip(file_symbols, used, strict=True) if u and s not in index]:
            raise TickFileError(f"{name}: unknown symbol {', '.join(unknown)} (configured: {', '.join(symbols)})")
        instr = np.array([index.get(s, -1) for s in file_symbols], np.int32)[instr]
        file_symbols = symbols
    return Ticks(ts, price, volume, instr, file_symbols)


def _kind(path: str | Path, kinds: Sequence[str] = (".csv", BINARY_SUFFIX)) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in kinds:
        raise TickFileError(f"{Path(path).name}: unknown tick file type {suffix or '(no extension)'} "
                            f"(use {', '.join(kinds[:-1])} or {kinds[-1]})")
    return suffix


def load(path: str | Path, symbols: Sequence[str], skip_bad: bool = False) -> tuple[Ticks, int]:
    """A .csv, .otk or recorded Parquet day (``engine.data.store``) as ticks, and the bad rows skipped."""
    kind = _kind(path, (".csv", BINARY_SUFFIX, ".parquet"))
    if kind == ".csv":
        return load_csv(path, symbols, skip_bad)
    if kind == ".parquet":
        from engine.data.store import load_ticks  # pyarrow only for those who read Parquet

        return load_ticks(Path(path), symbols), 0
    return load_binary(path, symbols), 0


def save(path: str | Path, ticks: Ticks) -> None:
    if _kind(path) == ".csv":
        save_csv(path, ticks)
    else:
        save_binary(path, ticks)
