"""Tick data: CSV and binary files, and synthetic NSE sessions.

CSV: a header with ``ts`` and ``price``, optionally ``symbol`` and ``volume``; ``ts`` is ISO-8601
with an offset or integer epoch nanoseconds. The binary form (``.otk``) is a small JSON header
followed by the raw columns, so loading 10M ticks is a few memory copies.
"""

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from engine.layout import IST, IST_OFFSET_NS, NS_PER_DAY, NS_PER_S

MAGIC = b"OTRADETK"
SESSION_OPEN_S = 9 * 3600 + 15 * 60
SESSION_CLOSE_S = 15 * 3600 + 30 * 60


class TickFileError(ValueError):
    """A tick file that cannot be used as it is; the message names the file, line and reason."""


@dataclass(frozen=True)
class Ticks:
    ts: np.ndarray  # int64 epoch ns (UTC)
    price: np.ndarray  # float64
    volume: np.ndarray  # float64, 1.0 where the source has none
    instr: np.ndarray  # int32 index into symbols
    symbols: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, stop: int) -> "Ticks":
        return Ticks(self.ts[:stop], self.price[:stop], self.volume[:stop], self.instr[:stop], self.symbols)


def _iso_ns(text: str) -> int:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (e.g. +05:30)")
    whole = stamp.replace(microsecond=0)
    return int(whole.timestamp()) * NS_PER_S + stamp.microsecond * 1000


def _ts_ns(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return _iso_ns(text)
    except ValueError as exc:
        if "UTC offset" in str(exc):
            raise
        raise ValueError(f"timestamp {text!r} is neither ISO-8601 nor epoch nanoseconds") from None


def load_csv(path: str | Path, symbols: Sequence[str], skip_bad: bool = False) -> tuple[Ticks, int]:
    path = Path(path)
    index = {s: k for k, s in enumerate(symbols)}
    ts: list[int] = []
    price: list[float] = []
    volume: list[float] = []
    instr: list[int] = []
    skipped = 0
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TickFileError(f"{path.name}: the file is empty")
        columns = {name.strip().lower(): k for k, name in enumerate(header)}
        missing = [c for c in ("ts", "price") if c not in columns]
        if missing:
            raise TickFileError(f"{path.name} line 1: missing column(s) {', '.join(missing)} "
                                f"(header is {','.join(header)})")
        c_ts, c_price = columns["ts"], columns["price"]
        c_sym, c_vol = columns.get("symbol"), columns.get("volume")
        if c_sym is None and len(symbols) != 1:
            raise TickFileError(f"{path.name}: no symbol column, but {len(symbols)} instruments are "
                                f"configured ({', '.join(symbols)})")
        width = len(header)
        last = -(2**63)
        for line, row in enumerate(reader, start=2):
            try:
                if len(row) != width:
                    raise ValueError(f"expected {width} fields, found {len(row)}")
                t = _ts_ns(row[c_ts].strip())
                try:
                    p = float(row[c_price])
                except ValueError:
                    raise ValueError(f"price {row[c_price]!r} is not a number") from None
                if not (p > 0 and math.isfinite(p)):
                    raise ValueError(f"price {row[c_price]} must be positive")
                if c_sym is None:
                    k = 0
                else:
                    sym = row[c_sym].strip()
                    if sym not in index:
                        raise ValueError(f"unknown symbol {sym} (configured: {', '.join(symbols)})")
                    k = index[sym]
                v = 1.0
                if c_vol is not None:
                    try:
                        v = float(row[c_vol])
                    except ValueError:
                        raise ValueError(f"volume {row[c_vol]!r} is not a number") from None
                    if not v > 0:
                        raise ValueError(f"volume {row[c_vol]} must be positive")
                if t < last:
                    raise ValueError(f"timestamp goes backwards ({row[c_ts].strip()} after an earlier row "
                                     f"at {_show(last)})")
            except ValueError as exc:
                if skip_bad:
                    skipped += 1
                    continue
                raise TickFileError(f"{path.name} line {line}: {exc}") from None
            last = t
            ts.append(t)
            price.append(p)
            volume.append(v)
            instr.append(k)
    ticks = Ticks(np.array(ts, dtype=np.int64), np.array(price, dtype=np.float64),
                  np.array(volume, dtype=np.float64), np.array(instr, dtype=np.int32), tuple(symbols))
    return ticks, skipped


def _show(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, IST).isoformat(timespec="milliseconds")


def save_csv(path: str | Path, ticks: Ticks) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ts", "symbol", "price", "volume"])
        base = datetime.fromtimestamp(0, IST)
        for t, k, p, v in zip(ticks.ts.tolist(), ticks.instr.tolist(), ticks.price.tolist(),
                              ticks.volume.tolist(), strict=True):
            stamp = base + timedelta(microseconds=t // 1000)
            writer.writerow([stamp.isoformat(timespec="milliseconds"), ticks.symbols[k], repr(round(p, 6)),
                             repr(v)])


_COLUMNS = (("ts", np.int64), ("price", np.float64), ("volume", np.float64), ("instr", np.int32))


def save_binary(path: str | Path, ticks: Ticks) -> None:
    header = orjson.dumps({"n": len(ticks), "symbols": list(ticks.symbols)})
    with open(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(len(header).to_bytes(4, "little"))
        fh.write(header)
        for name, dtype in _COLUMNS:
            fh.write(np.ascontiguousarray(getattr(ticks, name), dtype=dtype).tobytes())


def load_binary(path: str | Path, symbols: Sequence[str] | None = None) -> Ticks:
    path = Path(path)
    raw = path.read_bytes()
    if raw[:8] != MAGIC:
        raise TickFileError(f"{path.name}: not an OTrade binary tick file")
    try:
        size = int.from_bytes(raw[8:12], "little")
        header = orjson.loads(raw[12 : 12 + size])
        n, file_symbols = int(header["n"]), tuple(header["symbols"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise TickFileError(f"{path.name}: corrupt header") from None
    offset = 12 + size
    expected = offset + n * sum(np.dtype(d).itemsize for _, d in _COLUMNS)
    if len(raw) != expected:
        raise TickFileError(f"{path.name}: truncated or padded ({len(raw)} bytes, expected {expected})")
    cols = {}
    for name, dtype in _COLUMNS:
        cols[name] = np.frombuffer(raw, dtype=dtype, count=n, offset=offset).copy()
        offset += n * np.dtype(dtype).itemsize
    if n and (np.any(np.diff(cols["ts"]) < 0)):
        raise TickFileError(f"{path.name}: timestamps go backwards")
    if n and not (np.all(np.isfinite(cols["price"])) and np.all(cols["price"] > 0)):
        raise TickFileError(f"{path.name}: prices must be finite and positive")
    if n and (cols["instr"].min() < 0 or cols["instr"].max() >= len(file_symbols)):
        raise TickFileError(f"{path.name}: symbol index out of range")
    if symbols is not None and tuple(symbols) != file_symbols:
        index = {s: k for k, s in enumerate(symbols)}
        unknown = [s for s in file_symbols if s not in index]
        if unknown:
            raise TickFileError(f"{path.name}: unknown symbol(s) {', '.join(unknown)} "
                                f"(configured: {', '.join(symbols)})")
        remap = np.array([index[s] for s in file_symbols], dtype=np.int32)
        cols["instr"] = remap[cols["instr"]]
        file_symbols = tuple(symbols)
    return Ticks(cols["ts"], cols["price"], cols["volume"], cols["instr"], file_symbols)


def load(path: str | Path, symbols: Sequence[str], skip_bad: bool = False) -> tuple[Ticks, int]:
    if Path(path).suffix.lower() == ".csv":
        return load_csv(path, symbols, skip_bad)
    return load_binary(path, symbols), 0


def save(path: str | Path, ticks: Ticks) -> None:
    if Path(path).suffix.lower() == ".csv":
        save_csv(path, ticks)
    else:
        save_binary(path, ticks)


# --- synthetic sessions ------------------------------------------------------------------------
REGIME_VOL = np.array([0.00004, 0.0001, 0.00035])  # per-tick log-return volatility: calm, normal, wild
REGIME_STAY = 0.999  # chance a regime survives a tick


def regimes(rng: np.random.Generator, n: int, start: int = 1) -> np.ndarray:
    """A Markov chain over the volatility regimes, vectorised: switch points, then random states."""
    switches = np.flatnonzero(rng.random(n) > REGIME_STAY)
    states = rng.integers(0, len(REGIME_VOL), len(switches) + 1)
    states[0] = start
    return states[np.searchsorted(switches, np.arange(n), side="right")]


def intraday_vol(tod_s: np.ndarray) -> np.ndarray:
    """A U-shape: busier after the open and before the close."""
    x = (tod_s - SESSION_OPEN_S) / (SESSION_CLOSE_S - SESSION_OPEN_S)
    return 0.7 + 1.2 * (2.0 * x - 1.0) ** 2


def _weekdays(start: date, days: int) -> list[date]:
    out, d = [], start
    while len(out) < days:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def generate(days: int, seed: int, symbols: Sequence[str], start: date | None = None,
             tick_interval_ms: float = 1000.0, start_prices: Sequence[float] | None = None,
             tick_sizes: Sequence[float] | None = None) -> Ticks:
    """Synthetic NSE sessions (weekdays, 09:15 to before 15:30 IST), one random walk per symbol in
    log space with volatility regimes and an intraday U-shape, prices on the tick grid."""
    rng = np.random.default_rng(seed)
    start = start or date(2026, 11, 2)
    tick_sizes = list(tick_sizes or [0.05] * len(symbols))
    prices = list(start_prices or [1500.0 if t >= 0.1 else 800.0 for t in tick_sizes])
    span_ns = (SESSION_CLOSE_S - SESSION_OPEN_S) * NS_PER_S
    parts_ts, parts_px, parts_in = [], [], []
    for k, tick in enumerate(tick_sizes):
        level = math.log(prices[k])
        for day in _weekdays(start, days):
            midnight = (day - date(1970, 1, 1)).days * NS_PER_DAY - IST_OFFSET_NS
            expect = int(span_ns / (tick_interval_ms * 1e6) * 1.2) + 16
            gaps = rng.exponential(tick_interval_ms * 1e6, expect).cumsum().astype(np.int64)
            gaps = gaps[gaps < span_ns]
            n = len(gaps)
            tod_s = SESSION_OPEN_S + gaps / NS_PER_S
            vol = REGIME_VOL[regimes(rng, n, start=1)] * intraday_vol(tod_s)
            path = level + np.cumsum(rng.standard_normal(n) * vol)
            level = path[-1] if n else level
            px = np.maximum(np.round(np.exp(path) / tick) * tick, tick)
            parts_ts.append(midnight + SESSION_OPEN_S * NS_PER_S + gaps)
            parts_px.append(np.round(px, 6))
            parts_in.append(np.full(n, k, dtype=np.int32))
    ts = np.concatenate(parts_ts) if parts_ts else np.zeros(0, np.int64)
    order = np.argsort(ts, kind="stable")
    return Ticks(ts[order], np.concatenate(parts_px)[order], np.ones(len(ts)),
                 np.concatenate(parts_in)[order], tuple(symbols))
