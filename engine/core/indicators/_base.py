"""What every indicator shares: the jit flags, the header slots, the kind ids and the declaration."""

from dataclasses import dataclass

import numpy as np
from numba import njit

# Indicators allocate nothing, so they compile without Numba's reference counting (with it, every
# array handed between kernels costs an incref/decref pair per call). inline="always": a strategy or
# engine loop calling them gets their code with its offsets folded to constants (each is copied once
# per loop: compiled apart and inlined by LLVM instead, the loops compiled no faster); cache=True: a
# direct call from Python (tests, tools) compiles once across runs. error_model="numpy": no
# zero-division exception paths on the hot path.
jit = njit(cache=True, error_model="numpy", inline="always", _nrt=False)

# --- header: the first slots of every indicator's block ---------------------------------------
KIND = 0  # which indicator the block holds (KIND_* below): update_all dispatches on it
NEED = 1  # updates still needed before every output is defined; 0 = ready
VALUE = 2  # the first output, the one each update returns

KIND_SMA = 1.0
KIND_EMA = 2.0
KIND_RSI = 3.0
KIND_ATR = 4.0
KIND_SUPERTREND = 5.0
KIND_BOLLINGER = 6.0
KIND_MACD = 7.0
KIND_VWAP = 8.0
KIND_DONCHIAN = 9.0
KIND_OPENING_RANGE = 10.0

NAN = float("nan")


@dataclass(frozen=True)
class Indicator:
    """One declared indicator: its initial header, its ring buffer and where its outputs sit.

    ``head`` is the block's initial contents (kind, need, outputs, parameters, working state); its
    length depends only on the kind. ``ring`` (a function of the parameters) is the number of slots
    of rolling window the indicator needs, placed after the headers of the row; the header slot
    ``ring_at`` holds where that ring starts in the row.
    """

    label: str  # as a trader writes it: "EMA(9)"
    head: tuple[float, ...]
    outputs: tuple[tuple[str, int], ...]  # (name, slot in the block)
    ring: int = 0
    ring_at: int = -1

    @property
    def size(self) -> int:
        return len(self.head) + self.ring

    @property
    def warmup(self) -> int:
        """Updates from a fresh state before it is ready (session indicators: at least this many)."""
        return int(self.head[NEED])

    def place(self, row: np.ndarray, at: int, ring_index: int) -> None:
        """Write the initial block at ``row[at]``, its ring starting at ``row[ring_index]``."""
        row[at : at + len(self.head)] = self.head
        if self.ring:
            row[at + self.ring_at] = ring_index

    def new(self) -> np.ndarray:
        """A state holding this indicator alone, at offset 0."""
        row = np.zeros(self.size)
        self.place(row, 0, len(self.head))
        return row


def whole(label: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{label}: {name} must be a whole number >= 1, got {value!r}")
    return int(value)


def positive(label: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not value > 0:
        raise ValueError(f"{label}: {name} must be a number > 0, got {value!r}")
    return float(value)


@jit
def ready(s: np.ndarray, o: int) -> bool:
    """Every output of the indicator at ``s[o]`` is defined."""
    return s[o + NEED] == 0.0


@jit
def needed(s: np.ndarray, o: int) -> int:
    """Updates the indicator at ``s[o]`` still needs before it is ready."""
    return int(s[o + NEED])
