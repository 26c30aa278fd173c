"""Ticks: one table of prices in time order (epoch ns, price, volume, instrument), whatever their source."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from engine.core.layout import IST, NS_PER_S

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TickFileError(ValueError):
    """A tick file that cannot be used as it is; the message names the file, the line and the reason."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare columns
class Ticks:
    ts: np.ndarray  # int64 epoch ns (UTC)
    price: np.ndarray  # float64
    volume: np.ndarray  # float64, 1.0 where the source has none
    instr: np.ndarray  # int32 index into symbols
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        for name, dtype in (("ts", np.int64), ("price", np.float64), ("volume", np.float64), ("instr", np.int32)):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        object.__setattr__(self, "symbols", tuple(self.symbols))
        if not len(self.ts) == len(self.price) == len(self.volume) == len(self.instr):
            raise ValueError("ts, price, volume and instr must have the same length")

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, stop: int, start: int = 0) -> "Ticks":
        """Rows ``start`` to ``stop`` (the first ``stop`` by default)."""
        part = slice(start, stop)
        return Ticks(self.ts[part], self.price[part], self.volume[part], self.instr[part], self.symbols)


def iso(ns: int) -> str:
    """IST ISO-8601 with as many fraction digits as the instant needs (milli or micro)."""
    spec = "seconds" if ns % NS_PER_S == 0 else "milliseconds" if ns % 1_000_000 == 0 else "microseconds"
    return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(IST).isoformat(timespec=spec)
