"""Tick files (CSV and binary) and the synthetic session generator."""

from datetime import datetime

import numpy as np
import pytest

from engine.layout import IST
from engine.ticks import TickFileError, generate, load, load_binary, load_csv, save, save_binary

SYMBOLS = ["NSE:INFY", "NSE:SBIN"]


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_round_trip_keeps_time_price_symbol_and_volume(tmp_path):
    ticks = generate(1, 3, SYMBOLS)
    save(tmp_path / "t.csv", ticks)
    back, skipped = load(tmp_path / "t.csv", SYMBOLS)
    assert skipped == 0
    assert np.array_equal(back.ts // 1_000_000, ticks.ts // 1_000_000)  # the CSV keeps milliseconds
    assert np.allclose(back.price, ticks.price) and np.array_equal(back.instr, ticks.instr)


def test_csv_accepts_epoch_nanoseconds_and_iso_with_offset(tmp_path):
    path = write(tmp_path, "ts,price\n1795405500000000000,100.5\n2026-11-23T09:15:01.250+05:30,100.6\n")
    ticks, _ = load_csv(path, ["NSE:INFY"])
    assert ticks.ts.tolist() == [1795405500000000000, 1795405501250000000]


def test_csv_without_symbol_feeds_the_only_instrument(tmp_path):
    ticks, _ = load_csv(write(tmp_path, "ts,price\n1,10\n2,11\n"), ["NSE:INFY"])
    assert ticks.instr.tolist() == [0, 0] and ticks.symbols == ("NSE:INFY",)


def test_csv_without_symbol_is_refused_with_several_instruments(tmp_path):
    with pytest.raises(TickFileError, match="no symbol column, but 2 instruments"):
        load_csv(write(tmp_path, "ts,price\n1,10\n"), SYMBOLS)


@pytest.mark.parametrize(("row", "reason"), [
    ("2026-11-23T09:15:00+05:30,abc", "line 3: price 'abc' is not a number"),
    ("2026-11-23T09:15:00+05:30,-5", "line 3: price -5 must be positive"),
    ("2026-11-23T09:15:00,10", "line 3: timestamp '2026-11-23T09:15:00' has no UTC offset"),
    ("yesterday,10", "line 3: timestamp 'yesterday' is neither ISO-8601 nor epoch nanoseconds"),
    ("2026-11-23T09:14:00+05:30,10", "line 3: timestamp goes backwards"),
    ("2026-11-23T09:15:00+05:30", "line 3: expected 2 fields, found 1"),
])
def test_a_bad_row_is_reported_with_its_line_and_reason(tmp_path, row, reason):
    path = write(tmp_path, f"ts,price\n2026-11-23T09:15:00+05:30,10\n{row}\n")
    with pytest.raises(TickFileError, match=f"t.csv {reason}"):
        load_csv(path, ["NSE:INFY"])


def test_unknown_symbol_names_the_configured_ones(tmp_path):
    path = write(tmp_path, "ts,symbol,price\n1,NSE:XYZ,10\n")
    with pytest.raises(TickFileError, match=r"line 2: unknown symbol NSE:XYZ \(configured: NSE:INFY, NSE:SBIN\)"):
        load_csv(path, SYMBOLS)


def test_missing_price_column_is_reported(tmp_path):
    with pytest.raises(TickFileError, match="line 1: missing column"):
        load_csv(write(tmp_path, "ts,last\n1,10\n"), ["NSE:INFY"])


def test_skip_bad_skips_and_counts_bad_rows(tmp_path):
    path = write(tmp_path, "ts,price\n1,10\n2,x\n3,-1\n4,11\n")
    ticks, skipped = load_csv(path, ["NSE:INFY"], skip_bad=True)
    assert (ticks.price.tolist(), skipped) == ([10.0, 11.0], 2)


def test_binary_round_trip_is_exact(tmp_path):
    ticks = generate(2, 4, SYMBOLS)
    save_binary(tmp_path / "t.otk", ticks)
    back = load_binary(tmp_path / "t.otk", SYMBOLS)
    for name in ("ts", "price", "volume", "instr"):
        assert np.array_equal(getattr(back, name), getattr(ticks, name))


def test_binary_remaps_symbols_onto_the_configured_order(tmp_path):
    ticks = generate(1, 4, SYMBOLS)
    save_binary(tmp_path / "t.otk", ticks)
    back = load_binary(tmp_path / "t.otk", list(reversed(SYMBOLS)))
    assert np.array_equal(back.instr, 1 - ticks.instr) and back.symbols == tuple(reversed(SYMBOLS))


def test_truncated_binary_file_is_refused(tmp_path):
    save_binary(tmp_path / "t.otk", generate(1, 4, SYMBOLS))
    raw = (tmp_path / "t.otk").read_bytes()
    (tmp_path / "t.otk").write_bytes(raw[:-7])
    with pytest.raises(TickFileError, match="truncated"):
        load_binary(tmp_path / "t.otk", SYMBOLS)


def test_file_that_is_not_a_tick_file_is_refused(tmp_path):
    (tmp_path / "t.otk").write_bytes(b"hello world, definitely not ticks")
    with pytest.raises(TickFileError, match="not an OTrade binary tick file"):
        load_binary(tmp_path / "t.otk")


def test_generate_is_deterministic_per_seed():
    a, b, c = generate(2, 9, SYMBOLS), generate(2, 9, SYMBOLS), generate(2, 10, SYMBOLS)
    assert np.array_equal(a.price, b.price) and np.array_equal(a.ts, b.ts)
    assert not np.array_equal(a.price[:100], c.price[:100])


def test_generated_ticks_are_weekday_sessions_in_time_order_on_the_tick_grid():
    ticks = generate(6, 2, SYMBOLS, tick_sizes=[0.1, 0.05])
    stamps = [datetime.fromtimestamp(t / 1e9, IST) for t in ticks.ts[::500].tolist()]
    assert all(s.weekday() < 5 for s in stamps)
    assert all("09:15" <= s.strftime("%H:%M") < "15:30" for s in stamps)
    assert np.all(np.diff(ticks.ts) >= 0) and np.all(ticks.price > 0)
    tick = np.where(ticks.instr == 0, 0.1, 0.05)
    assert np.allclose(np.round(ticks.price / tick), ticks.price / tick)
    assert len({s.date() for s in stamps}) == 6
