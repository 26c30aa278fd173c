"""Tick files (CSV and binary) and the synthetic session generator."""

import re
from datetime import date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.layout import IST, IST_OFFSET_NS, NS_PER_DAY, NS_PER_S
from engine.data import tick_files as T
from engine.data.synthetic import generate
from engine.data.tick_files import load, load_binary, load_csv, save, save_binary
from engine.data.ticks import TickFileError, Ticks

SYMBOLS = ["NSE:INFY", "NSE:SBIN"]
T0 = 1795405500000000000  # 2026-11-23T09:15:00+05:30, a Monday
COLUMNS = ("ts", "price", "volume", "instr")


def write(tmp_path, text, name="ticks.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def same(a: Ticks, b: Ticks) -> bool:
    return a.symbols == b.symbols and all(np.array_equal(getattr(a, c), getattr(b, c)) for c in COLUMNS)


def by_rows(monkeypatch):
    """Send every block through the row-by-row reader."""
    monkeypatch.setattr(T, "_bulk", lambda *_: None)


# --- CSV --------------------------------------------------------------------------------------
def test_csv_round_trip_of_generated_ticks_is_exact(tmp_path):
    ticks = generate(2, 3, SYMBOLS, tick_sizes=[0.1, 0.05])
    save(tmp_path / "t.csv", ticks)
    back, skipped = load(tmp_path / "t.csv", SYMBOLS)
    assert skipped == 0 and same(back, ticks)


def test_csv_is_written_with_ist_millisecond_timestamps(tmp_path):
    ticks = Ticks(np.array([T0 + 250_000_000]), np.array([1500.05]), np.array([3.0]), np.array([1]), tuple(SYMBOLS))
    save(tmp_path / "t.csv", ticks)
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "ts,symbol,price,volume", "2026-11-23T09:15:00.250+05:30,NSE:SBIN,1500.05,3"]


def test_csv_reads_epoch_nanoseconds(tmp_path):
    ticks, _ = load_csv(write(tmp_path, f"ts,price\n{T0},100.5\n{T0 + 1},100.6\n"), ["NSE:INFY"])
    assert ticks.ts.tolist() == [T0, T0 + 1]


@pytest.mark.parametrize("stamp", ["2026-11-23T09:15:00.25+05:30", "2026-11-23T03:45:00.250Z",
                                   "2026-11-23 09:15:00.250000+05:30", "2026-11-23T04:45:00.250+01:00"])
def test_csv_reads_iso_timestamps_with_any_offset(tmp_path, stamp):
    ticks, _ = load_csv(write(tmp_path, f"ts,price\n{stamp},10\n"), ["NSE:INFY"])
    assert ticks.ts.tolist() == [T0 + 250_000_000]


def test_csv_keeps_nanoseconds_of_iso_timestamps(tmp_path):
    ticks, _ = load_csv(write(tmp_path, "ts,price\n2026-11-23T09:15:00.123456789+05:30,10\n"), ["NSE:INFY"])
    assert ticks.ts.tolist() == [T0 + 123456789]


def test_csv_columns_may_come_in_any_order(tmp_path):
    path = write(tmp_path, f"volume,price,symbol,ts\n7,10.5,NSE:SBIN,{T0}\n")
    ticks, _ = load_csv(path, SYMBOLS)
    assert (ticks.ts.tolist(), ticks.price.tolist(), ticks.volume.tolist(), ticks.instr.tolist()) == (
        [T0], [10.5], [7.0], [1])


def test_csv_without_symbol_feeds_the_only_instrument(tmp_path):
    ticks, _ = load_csv(write(tmp_path, f"ts,price\n{T0},10\n{T0 + 1},11\n"), ["NSE:INFY"])
    assert ticks.instr.tolist() == [0, 0] and ticks.symbols == ("NSE:INFY",)


def test_csv_without_symbol_is_refused_with_several_instruments(tmp_path):
    with pytest.raises(TickFileError, match=r"ticks.csv line 1: no symbol column, but 2 instruments"):
        load_csv(write(tmp_path, f"ts,price\n{T0},10\n"), SYMBOLS)


def test_csv_without_volume_has_volume_one(tmp_path):
    ticks, _ = load_csv(write(tmp_path, f"ts,price\n{T0},10\n"), ["NSE:INFY"])
    assert ticks.volume.tolist() == [1.0]


def test_csv_with_crlf_lines_and_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_bytes(f"\ufeffts,price\r\n{T0},10\r\n".encode())
    assert load_csv(path, ["NSE:INFY"])[0].price.tolist() == [10.0]


@pytest.mark.parametrize(("row", "reason"), [
    ("2026-11-23T09:15:00+05:30,abc", "price 'abc' is not a number"),
    ("2026-11-23T09:15:00+05:30,-5", "price -5 must be positive"),
    ("2026-11-23T09:15:00+05:30,0", "price 0 must be positive"),
    ("2026-11-23T09:15:00+05:30,nan", "price 'nan' is not a finite number"),
    ("2026-11-23T09:15:00,10", "timestamp '2026-11-23T09:15:00' has no UTC offset"),
    ("yesterday,10", "timestamp 'yesterday' is neither ISO-8601 nor epoch nanoseconds"),
    ("1795405500,10", "timestamp 1795405500 is not epoch nanoseconds"),
    ("2026-11-23T09:15:02+05:30,10",
     r"timestamp goes backwards \(2026-11-23T09:15:02\+05:30 after 2026-11-23T09:15:03\+05:30\)"),
    ("2026-11-23T09:15:04+05:30", "expected 2 fields, found 1"),
])
def test_a_bad_row_is_reported_with_its_line_and_reason(tmp_path, row, reason):
    path = write(tmp_path, f"ts,price\n2026-11-23T09:15:03+05:30,10\n{row}\n")
    with pytest.raises(TickFileError, match=f"^ticks.csv line 3: {reason}"):
        load_csv(path, ["NSE:INFY"])


def test_unknown_symbol_names_the_configured_ones(tmp_path):
    path = write(tmp_path, f"ts,symbol,price\n{T0},NSE:INFY,10\n{T0},NSE:XYZ,10\n")
    with pytest.raises(TickFileError, match=r"line 3: unknown symbol NSE:XYZ \(configured: NSE:INFY, NSE:SBIN\)$"):
        load_csv(path, SYMBOLS)


def test_negative_volume_is_a_bad_row(tmp_path):
    with pytest.raises(TickFileError, match="line 2: volume -3 must not be negative"):
        load_csv(write(tmp_path, f"ts,price,volume\n{T0},10,-3\n"), ["NSE:INFY"])


def test_empty_file_is_reported(tmp_path):
    with pytest.raises(TickFileError, match=r"ticks\.csv line 1: the file is empty"):
        load_csv(write(tmp_path, ""), ["NSE:INFY"])


def test_header_without_rows_is_reported(tmp_path):
    with pytest.raises(TickFileError, match=r"ticks\.csv line 2: no ticks after the header"):
        load_csv(write(tmp_path, "ts,price\n"), ["NSE:INFY"])


def test_missing_price_column_is_reported(tmp_path):
    with pytest.raises(TickFileError, match=r"ticks.csv line 1: missing column price \(header: ts,last\)"):
        load_csv(write(tmp_path, f"ts,last\n{T0},10\n"), ["NSE:INFY"])


def test_skip_bad_skips_and_counts_bad_rows(tmp_path):
    path = write(tmp_path, f"ts,price\n{T0 + 5},10\n{T0 + 6},x\n{T0 + 7},-1\n{T0 + 1},12\n,\n{T0 + 8},11\n")
    ticks, skipped = load_csv(path, ["NSE:INFY"], skip_bad=True)
    assert (ticks.price.tolist(), skipped) == ([10.0, 11.0], 4)


def test_blank_lines_are_ignored(tmp_path):
    ticks, skipped = load_csv(write(tmp_path, f"ts,price\n{T0},10\n\n{T0 + 1},11\n\n\n"), ["NSE:INFY"])
    assert (ticks.price.tolist(), skipped) == ([10.0, 11.0], 0)


@pytest.mark.parametrize(("k", "bad", "error"), [
    (33, f"{T0 + 33},oops", "line 35: price 'oops' is not a number"),
    (20, f"{T0},10", "line 22: timestamp goes backwards"),
], ids=["bad-price", "out-of-order"])
def test_a_bad_row_in_a_later_block_is_reported_with_its_own_line(tmp_path, monkeypatch, k, bad, error):
    monkeypatch.setattr(T, "_CHUNK", 64)  # 40 rows make several blocks
    rows = [f"{T0 + j},{10 + j}" for j in range(40)]
    rows[k] = bad
    with pytest.raises(TickFileError, match=error):
        load_csv(write(tmp_path, "ts,price\n" + "\n".join(rows) + "\n"), ["NSE:INFY"])


def test_bulk_and_row_readers_agree(tmp_path, monkeypatch):
    ticks = generate(1, 8, SYMBOLS, tick_sizes=[0.1, 0.05], tick_interval_ms=200)
    save(tmp_path / "t.csv", ticks)
    bulk, _ = load(tmp_path / "t.csv", SYMBOLS)
    by_rows(monkeypatch)
    assert same(load(tmp_path / "t.csv", SYMBOLS)[0], bulk)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-6, 1e9), st.sampled_from(["{!r}", "{:.2f}", "{:.0f}", "{:.6f}", "{:g}"]),
                          st.sampled_from(["+05:30", "Z", "-04:00", ".5+05:30", ".123456789Z"]),
                          st.integers(0, 10**6)), min_size=1, max_size=30))
def test_bulk_reader_parses_like_the_row_reader(tmp_path_factory, rows):
    lines, t = ["ts,price,volume"], T0
    for price, fmt, suffix, step in rows:
        t += step * NS_PER_S
        stamp = datetime.fromtimestamp(t // NS_PER_S, IST).strftime("%Y-%m-%dT%H:%M:%S")
        lines.append(f"{stamp}{suffix},{fmt.format(price)},{step}")
    path = write(tmp_path_factory.mktemp("csv"), "\n".join(lines))
    try:
        expected = T._read_rows(lines[1:], 2, T._Layout(3, 0, 1, None, 2), {"A": 0}, ["A"], -(2**63), False, "x")
    except TickFileError as exc:
        with pytest.raises(TickFileError, match=re.escape(str(exc).split(": ", 1)[1])):
            load_csv(path, ["A"])
        return
    got, _ = load_csv(path, ["A"])
    assert (got.ts.tolist(), got.price.tolist(), got.volume.tolist()) == tuple(expected[:3])


# --- binary -----------------------------------------------------------------------------------
def test_binary_round_trip_is_exact(tmp_path):
    ticks = generate(2, 4, SYMBOLS)
    save(tmp_path / "t.otk", ticks)
    assert same(load(tmp_path / "t.otk", SYMBOLS)[0], ticks)


def test_binary_arrays_are_contiguous_and_typed(tmp_path):
    save_binary(tmp_path / "t.otk", generate(1, 4, SYMBOLS))
    back = load_binary(tmp_path / "t.otk")
    assert [(getattr(back, c).dtype.name, getattr(back, c).flags.c_contiguous) for c in COLUMNS] == [
        ("int64", True), ("float64", True), ("float64", True), ("int32", True)]


def test_binary_remaps_symbols_onto_the_configured_order(tmp_path):
    ticks = generate(1, 4, SYMBOLS)
    save_binary(tmp_path / "t.otk", ticks)
    back = load_binary(tmp_path / "t.otk", ["NSE:TCS", *reversed(SYMBOLS)])
    assert np.array_equal(back.instr, 2 - ticks.instr) and back.symbols == ("NSE:TCS", *reversed(SYMBOLS))


def test_binary_with_an_unconfigured_symbol_is_refused(tmp_path):
    save_binary(tmp_path / "t.otk", generate(1, 4, SYMBOLS))
    with pytest.raises(TickFileError, match=r"t.otk: unknown symbol NSE:SBIN \(configured: NSE:INFY\)"):
        load_binary(tmp_path / "t.otk", ["NSE:INFY"])


def test_truncated_binary_file_is_refused(tmp_path):
    save_binary(tmp_path / "t.otk", generate(1, 4, SYMBOLS))
    raw = (tmp_path / "t.otk").read_bytes()
    (tmp_path / "t.otk").write_bytes(raw[:-7])
    with pytest.raises(TickFileError, match=r"t\.otk: truncated"):
        load_binary(tmp_path / "t.otk", SYMBOLS)


def test_file_that_is_not_a_tick_file_is_refused(tmp_path):
    (tmp_path / "t.otk").write_bytes(b"hello world, definitely not ticks")
    with pytest.raises(TickFileError, match=r"t\.otk: not an OTrade binary tick file"):
        load_binary(tmp_path / "t.otk")


def test_binary_with_a_corrupt_header_is_refused(tmp_path):
    (tmp_path / "t.otk").write_bytes(T.MAGIC + (5).to_bytes(4, "little") + b"{oops")
    with pytest.raises(TickFileError, match=r"t\.otk: corrupt header"):
        load_binary(tmp_path / "t.otk")


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("ts", T0 - 1, r"tick 2: timestamp goes backwards \(2026-11-23T09:14:59.999999"),
    ("price", np.nan, "tick 2: price nan is not finite and positive"),
    ("price", -1.0, "tick 2: price -1.0 is not finite and positive"),
    ("instr", 5, "tick 2: symbol index 5 out of range"),
])
def test_binary_with_corrupt_columns_is_refused(tmp_path, column, value, reason):
    cols = {"ts": [T0, T0, T0], "price": [1.0, 1.0, 1.0], "volume": [1.0, 1.0, 1.0], "instr": [0, 0, 0]}
    cols[column][1] = value
    ticks = Ticks(*(np.array(cols[c]) for c in COLUMNS), ("NSE:INFY",))
    object.__setattr__(ticks, column, np.array(cols[column], dtype=getattr(ticks, column).dtype))
    save_binary(tmp_path / "t.otk", ticks)
    with pytest.raises(TickFileError, match=f"t.otk: {reason}"):
        load_binary(tmp_path / "t.otk")


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(TickFileError, match=r"t.txt: unknown tick file type .txt \(use .csv, .otk or .parquet\)"):
        load(tmp_path / "t.txt", SYMBOLS)


# --- generate ---------------------------------------------------------------------------------
def test_generate_is_deterministic_per_seed():
    a, b, c = generate(2, 9, SYMBOLS), generate(2, 9, SYMBOLS), generate(2, 10, SYMBOLS)
    assert same(a, b) and not np.array_equal(a.price[:100], c.price[:100])


def test_adding_a_symbol_leaves_the_others_paths_unchanged():
    alone, both = generate(2, 9, ["NSE:SBIN"]), generate(2, 9, ["NSE:INFY", "NSE:SBIN"])
    assert np.array_equal(both.price[both.instr == 1], alone.price)


def test_generated_sessions_are_consecutive_weekdays():
    ticks = generate(6, 2, SYMBOLS, start=date(2026, 11, 5))  # a Thursday
    days = sorted({datetime.fromtimestamp(t / 1e9, IST).date() for t in ticks.ts[::100].tolist()})
    assert [d.isoformat() for d in days] == ["2026-11-05", "2026-11-06", "2026-11-09", "2026-11-10",
                                             "2026-11-11", "2026-11-12"]


def test_generated_ticks_lie_inside_the_session():
    ticks = generate(3, 2, SYMBOLS)
    tod = (ticks.ts + IST_OFFSET_NS) % NS_PER_DAY // NS_PER_S
    assert tod.min() >= 9 * 3600 + 15 * 60 and tod.max() < 15 * 3600 + 30 * 60


def test_generated_prices_are_positive_on_the_tick_grid():
    ticks = generate(3, 2, SYMBOLS, tick_sizes=[0.1, 0.05], start_prices=[3.0, 2500.0])
    tick = np.where(ticks.instr == 0, 0.1, 0.05)
    assert np.all(ticks.price > 0) and np.allclose(np.round(ticks.price / tick) * tick, ticks.price, rtol=0, atol=1e-9)


def test_generated_ticks_are_in_time_order():
    assert np.all(np.diff(generate(3, 2, SYMBOLS, tick_interval_ms=300).ts) >= 0)


def test_generated_tick_rate_follows_the_interval():
    ticks = generate(2, 5, SYMBOLS, tick_interval_ms=500)
    expected = 2 * 2 * 22_500 * 2  # days x symbols x session seconds x ticks a second
    assert abs(len(ticks) - expected) < 0.02 * expected
