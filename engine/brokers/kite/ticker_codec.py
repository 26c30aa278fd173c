"""Kite's binary ticker frames, decoded with numpy (big-endian, int32 fields, prices in paise).

A frame is: int16 packet count, then per packet an int16 length and that many bytes. A 1-byte
frame is a heartbeat. Packet sizes: 8 (LTP), 28/32 (index quote/full), 44 (quote), 184 (full).
Prices divide by 100, except currency (segment 3: 10,000,000) and BSE currency (segment 6:
10,000). The segment is the instrument token's low byte; segment 9 is indices.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

SEGMENT_CDS, SEGMENT_BCD, SEGMENT_INDICES = 3, 6, 9
LTP, INDEX_QUOTE, INDEX_FULL, QUOTE, FULL = 8, 28, 32, 44, 184
SIZES = (LTP, INDEX_QUOTE, INDEX_FULL, QUOTE, FULL)

_BE = np.dtype(">i4")
_DEPTH = np.dtype([("quantity", ">i4"), ("price", ">i4"), ("orders", ">i2"), ("pad", ">i2")])


class FrameError(ValueError):
    """A frame that does not parse; the feed counts it, logs it and carries on."""


@dataclass(frozen=True)
class Tick:
    instrument_token: int
    last_price: float
    mode: str  # "ltp", "quote" or "full"
    tradable: bool
    last_quantity: int = 0
    average_price: float = 0.0
    volume: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    change: float = 0.0  # index packets only
    last_trade_time: int = 0  # epoch seconds (full)
    oi: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    exchange_timestamp: int = 0  # epoch seconds (full), 0 when the packet has none
    depth: tuple = ()  # ((quantity, price, orders) x 5 bids, then x 5 offers) in full mode


def divisor(token: int) -> float:
    segment = token & 0xFF
    if segment == SEGMENT_CDS:
        return 10_000_000.0
    if segment == SEGMENT_BCD:
        return 10_000.0
    return 100.0


def split_frame(frame: bytes) -> list[bytes]:
    """The packets of one binary frame; [] for a heartbeat. Raises FrameError when garbled."""
    if len(frame) == 1:
        return []
    if len(frame) < 2:
        raise FrameError(f"frame of {len(frame)} bytes is too short")
    count = int.from_bytes(frame[:2], "big")
    packets, at = [], 2
    for k in range(count):
        if at + 2 > len(frame):
            raise FrameError(f"frame ends before packet {k + 1} of {count}")
        size = int.from_bytes(frame[at : at + 2], "big")
        at += 2
        if size not in SIZES or at + size > len(frame):
            raise FrameError(f"packet {k + 1} of {count}: bad length {size} at byte {at - 2} of {len(frame)}")
        packets.append(frame[at : at + size])
        at += size
    if at != len(frame):
        raise FrameError(f"{len(frame) - at} stray byte(s) after {count} packet(s)")
    return packets


def decode_packet(packet: bytes) -> Tick:
    size = len(packet)
    f = np.frombuffer(packet, dtype=_BE, count=min(size, 64) // 4)
    token = int(f[0])
    d = divisor(token)
    if size == LTP:
        return Tick(token, f[1] / d, "ltp", token & 0xFF != SEGMENT_INDICES)
    if size in (INDEX_QUOTE, INDEX_FULL):
        return Tick(token, f[1] / d, "full" if size == INDEX_FULL else "quote", False, high=f[2] / d, low=f[3] / d,
                    open=f[4] / d, close=f[5] / d, change=f[6] / d,
                    exchange_timestamp=int(f[7]) if size == INDEX_FULL else 0)
    if size in (QUOTE, FULL):
        common = dict(last_quantity=int(f[2]), average_price=f[3] / d, volume=int(f[4]), buy_quantity=int(f[5]),
                      sell_quantity=int(f[6]), open=f[7] / d, high=f[8] / d, low=f[9] / d, close=f[10] / d)
        if size == QUOTE:
            return Tick(token, f[1] / d, "quote", True, **common)
        levels = np.frombuffer(packet, dtype=_DEPTH, count=10, offset=64)
        depth = tuple((int(q), p / d, int(o)) for q, p, o in zip(levels["quantity"], levels["price"],
                                                                    levels["orders"], strict=True))
        return Tick(token, f[1] / d, "full", True, last_trade_time=int(f[11]), oi=int(f[12]),
                    oi_day_high=int(f[13]), oi_day_low=int(f[14]), exchange_timestamp=int(f[15]), depth=depth,
                    **common)
    raise FrameError(f"unknown packet length {size}")


def decode(frame: bytes) -> list[Tick]:
    return [decode_packet(p) for p in split_frame(frame)]


# --- the hot path: last prices of a whole frame as arrays, no Python object per packet ----------
@njit(cache=True)
def _be32(b, at):
    v = (np.int64(b[at]) << 24) | (np.int64(b[at + 1]) << 16) | (np.int64(b[at + 2]) << 8) | np.int64(b[at + 3])
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


@njit(cache=True)
def _scan(b, tokens, prices, stamps, volumes, quantities, bids, asks):
    """Walk a frame; returns the packet count, or -1 - byte offset where it stops making sense.
    ``volumes`` is the day's traded volume (-1 where the packet has none), ``quantities`` the last
    trade's quantity, ``bids`` and ``asks`` depth level 1 of a full packet (NaN: none, or an empty
    side, which Kite sends as 0)."""
    n = len(b)
    count = (np.int64(b[0]) << 8) | np.int64(b[1])
    if count > len(tokens):
        return -1
    at = 2
    for k in range(count):
        if at + 2 > n:
            return -1 - at
        size = (np.int64(b[at]) << 8) | np.int64(b[at + 1])
        at += 2
        if (size != 8 and size != 28 and size != 32 and size != 44 and size != 184) or at + size > n:
            return -1 - at
        token = _be32(b, at)
        segment = token & 0xFF
        div = 10_000_000.0 if segment == 3 else 10_000.0 if segment == 6 else 100.0
        tokens[k] = token
        prices[k] = _be32(b, at + 4) / div
        stamps[k] = _be32(b, at + 60) if size == 184 else _be32(b, at + 28) if size == 32 else 0
        traded = size == 44 or size == 184
        volumes[k] = _be32(b, at + 16) if traded else -1
        quantities[k] = _be32(b, at + 8) if traded else 0
        bid = _be32(b, at + 68) / div if size == 184 else 0.0  # 5 bids of 12 bytes from 64, then 5 offers
        ask = _be32(b, at + 128) / div if size == 184 else 0.0
        bids[k] = bid if bid > 0 else np.nan
        asks[k] = ask if ask > 0 else np.nan
        at += size
    return count if at == n else -1 - at


class PriceDecoder:
    """Last prices (and volumes) of whole frames into reused arrays: one jitted walk per frame, no
    allocation in the steady state. The arrays returned are valid until the next call; so are the
    first packets' ``bids`` and ``asks`` (depth level 1, NaN where none)."""

    def __init__(self, capacity: int = 3000) -> None:
        self._grow(capacity)
        self(b"\x00\x00")  # an empty frame: the walk is compiled (or loaded) now, not on the market's first

    def _grow(self, capacity: int) -> None:
        self.tokens = np.empty(capacity, np.int64)
        self.prices = np.empty(capacity)
        self.stamps = np.empty(capacity, np.int64)
        self.volumes = np.empty(capacity, np.int64)
        self.quantities = np.empty(capacity, np.int64)
        self.bids = np.empty(capacity)
        self.asks = np.empty(capacity)

    def __call__(self, frame: bytes) -> tuple[np.ndarray, ...]:
        """(tokens, prices, exchange epoch seconds or 0, day volumes or -1, last trade quantities)."""
        if len(frame) < 2:
            if len(frame) == 1:  # heartbeat
                return self._first(0)
            raise FrameError(f"frame of {len(frame)} bytes is too short")
        if len(frame) // 10 + 1 > len(self.tokens):  # no packet is shorter than 2 + 8 bytes
            self._grow(len(frame) // 10 + 1)
        count = _scan(np.frombuffer(frame, np.uint8), self.tokens, self.prices, self.stamps, self.volumes,
                      self.quantities, self.bids, self.asks)
        if count < 0:
            split_frame(frame)  # names the fault
            raise FrameError(f"garbled frame near byte {-1 - count}")
        return self._first(count)

    def _first(self, n: int) -> tuple[np.ndarray, ...]:
        return self.tokens[:n], self.prices[:n], self.stamps[:n], self.volumes[:n], self.quantities[:n]


def last_prices(frame: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens int64, prices float64, exchange epoch seconds int64 or 0) of every packet in a frame."""
    tokens, prices, stamps, _, _ = PriceDecoder(len(frame) // 10 + 1)(frame)
    return tokens.copy(), prices.copy(), stamps.copy()


# --- encoding, for the local test server and benchmarks ------------------------------------------
def encode_packet(tick: Tick) -> bytes:
    d = divisor(tick.instrument_token)

    def px(x: float) -> int:
        return round(x * d)

    if tick.mode == "ltp":
        fields = [tick.instrument_token, px(tick.last_price)]
    elif not tick.tradable:
        fields = [tick.instrument_token, px(tick.last_price), px(tick.high), px(tick.low), px(tick.open),
                  px(tick.close), px(tick.change)]
        if tick.mode == "full":
            fields.append(tick.exchange_timestamp)
    else:
        fields = [tick.instrument_token, px(tick.last_price), tick.last_quantity, px(tick.average_price), tick.volume,
                  tick.buy_quantity, tick.sell_quantity, px(tick.open), px(tick.high), px(tick.low), px(tick.close)]
        if tick.mode == "full":
            fields += [tick.last_trade_time, tick.oi, tick.oi_day_high, tick.oi_day_low, tick.exchange_timestamp]
    body = np.array(fields, dtype=_BE).tobytes()
    if tick.tradable and tick.mode == "full":
        depth = np.zeros(10, dtype=_DEPTH)
        for k, (q, p, o) in enumerate(tick.depth[:10]):
            depth[k] = (q, px(p), o, 0)
        body += depth.tobytes()
    return body


def encode_frame(ticks: list[Tick]) -> bytes:
    out = [len(ticks).to_bytes(2, "big")]
    for tick in ticks:
        packet = encode_packet(tick)
        out += [len(packet).to_bytes(2, "big"), packet]
    return b"".join(out)
