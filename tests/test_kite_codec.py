"""Kite's binary ticker frames: every packet size decoded to the paise; garbled frames refused."""

import numpy as np
import pytest

from engine.brokers.kite.ticker_codec import (
    FrameError,
    PriceDecoder,
    Tick,
    decode,
    encode_frame,
    last_prices,
    split_frame,
)

INFY, NIFTY, USDINR, BSE_USDINR = 408065, 256265, 412675, 1000198  # NSE eq, index, CDS (seg 3), BCD (seg 6)
DEPTH = tuple((100 * (k + 1), (107435 - 5 * k) / 100, k + 1) for k in range(5)) + tuple(
    (200 * (k + 1), (107440 + 5 * k) / 100, k + 2) for k in range(5))
FULL = Tick(INFY, 1074.35, "full", True, last_quantity=5, average_price=1073.9, volume=1_234_567, buy_quantity=9000,
            sell_quantity=8000, open=1070.0, high=1080.05, low=1065.5, close=1069.95, last_trade_time=1795405500,
            oi=0, oi_day_high=0, oi_day_low=0, exchange_timestamp=1795405501, depth=DEPTH)


@pytest.mark.parametrize("tick", [
    Tick(INFY, 1074.35, "ltp", True),
    Tick(INFY, 1074.35, "quote", True, last_quantity=5, average_price=1073.9, volume=1_234_567, buy_quantity=9000,
         sell_quantity=8000, open=1070.0, high=1080.05, low=1065.5, close=1069.95),
    FULL,
    Tick(NIFTY, 26012.65, "quote", False, high=26100.1, low=25900.0, open=25950.5, close=25980.25, change=32.4),
    Tick(NIFTY, 26012.65, "full", False, high=26100.1, low=25900.0, open=25950.5, close=25980.25, change=32.4,
         exchange_timestamp=1795405501),
], ids=["ltp-8", "quote-44", "full-184", "index-quote-28", "index-full-32"])
def test_every_packet_size_round_trips_to_the_paise(tick):
    [back] = decode(encode_frame([tick]))
    assert back == tick


def test_packet_lengths_are_the_documented_ones():
    sizes = [len(p) for p in split_frame(encode_frame([
        Tick(INFY, 1.0, "ltp", True), Tick(NIFTY, 1.0, "quote", False), Tick(NIFTY, 1.0, "full", False),
        Tick(INFY, 1.0, "quote", True), FULL]))]
    assert sizes == [8, 28, 32, 44, 184]


def test_currency_segments_use_their_own_divisors():
    cds, bcd = decode(encode_frame([Tick(USDINR, 83.1234567, "ltp", True), Tick(BSE_USDINR, 83.1234, "ltp", True)]))
    assert (cds.last_price, bcd.last_price) == (pytest.approx(83.1234567, abs=1e-9), pytest.approx(83.1234))


def test_index_packets_are_not_tradable():
    [index] = decode(encode_frame([Tick(NIFTY, 26012.65, "ltp", True)]))
    assert not index.tradable


def test_a_one_byte_frame_is_a_heartbeat():
    assert decode(b"\x00") == []


def test_last_prices_of_a_frame_come_as_arrays():
    tokens, prices, stamps = last_prices(encode_frame([FULL, Tick(NIFTY, 26012.65, "ltp", True)]))
    assert tokens.tolist() == [INFY, NIFTY] and prices.tolist() == [1074.35, 26012.65]
    assert stamps.tolist() == [1795405501, 0]


@pytest.mark.parametrize(("frame", "reason"), [
    (encode_frame([FULL])[:-10], "bad length 184"),
    (encode_frame([FULL]) + b"\x00\x01", "stray byte"),
    (b"\x00\x02" + encode_frame([FULL])[2:], "frame ends before packet 2 of 2"),
    (b"\x00\x01\x00\x07" + b"\x00" * 7, "bad length 7"),
])
def test_garbled_frames_are_refused_with_a_reason(frame, reason):
    with pytest.raises(FrameError, match=reason):
        decode(frame)


def test_a_frame_of_many_instruments_decodes_every_packet():
    ticks = [Tick(INFY + 256 * k, (10000 + k) / 100, "full", True, depth=DEPTH) for k in range(3000)]
    tokens, prices, _ = last_prices(encode_frame(ticks))
    assert np.array_equal(prices, [(10000 + k) / 100 for k in range(3000)]) and len(tokens) == 3000


def test_quote_and_full_packets_carry_the_days_volume_and_the_last_quantity():
    frame = encode_frame([Tick(408065, 1074.35, "full", True, volume=1_234_567, last_quantity=25),
                          Tick(779521, 801.1, "quote", True, volume=890, last_quantity=3),
                          Tick(408065, 1074.4, "ltp", True)])
    _, _, _, volumes, quantities = PriceDecoder()(frame)
    assert volumes.tolist() == [1_234_567, 890, -1] and quantities.tolist() == [25, 3, 0]
