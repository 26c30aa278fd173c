"""The Parquet store: a day read back whatever state a crash left it in, and what it holds, listed."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data import store
from engine.data.store import StoreError
from engine.data.tick_files import load
from engine.data.ticks import TickFileError
from tests.conftest import DAY, ns

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("NSE:INFY", "NSE:SBIN")


def table(rows, symbols=SYMBOLS) -> pa.Table:
    """rows: (HH:MM:SS, symbol, price[, volume])."""
    return pa.table({"ts": pa.array([ns(r[0]) for r in rows], pa.int64()),
                     "symbol": pa.DictionaryArray.from_arrays(pa.array([symbols.index(r[1]) for r in rows], pa.int32()),
                                                              pa.array(symbols)),
                     "price": pa.array([float(r[2]) for r in rows]),
                     "volume": pa.array([float(r[3]) if len(r) > 3 else 1.0 for r in rows])}, schema=store.TICK_SCHEMA)


def day_file(tmp_path, kind=store.MARKET) -> Path:
    return store.tick_file(tmp_path, date.fromisoformat(DAY), kind)


def recorded(tmp_path, *flushes) -> Path:
    """A day being recorded: one part per flush, numbered from 1."""
    f = day_file(tmp_path)
    for k, rows in enumerate(flushes, 1):
        store.append_part(f, table(rows), k)
    return f


FLUSHES = ([("10:00:00", "NSE:INFY", 1500.0, 5)], [("10:00:01", "NSE:SBIN", 800.05), ("10:00:02", "NSE:INFY", 1500.1)],
           [("10:00:03", "NSE:INFY", 1500.2)])


def prices(t: pa.Table) -> list[float]:
    return t.column("price").to_pylist()


def test_the_layout_names_a_day_by_its_date_and_keeps_synthetic_ticks_apart(tmp_path):
    assert day_file(tmp_path) == tmp_path / "ticks" / "2026-11-23.parquet"
    assert day_file(tmp_path, store.SYNTHETIC) == tmp_path / "ticks" / "2026-11-23.synthetic.parquet"
    assert store.parts_dir(day_file(tmp_path)) == tmp_path / "ticks" / "2026-11-23.parts"


def test_a_day_still_in_parts_reads_as_one_table_in_flush_order(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    assert not f.exists()
    t = store.read_day(f)
    assert prices(t) == [1500.0, 800.05, 1500.1, 1500.2]
    assert t.column("symbol").to_pylist() == ["NSE:INFY", "NSE:SBIN", "NSE:INFY", "NSE:INFY"]


def test_compaction_makes_one_day_file_with_the_same_ticks_and_removes_the_parts(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    before = store.read_day(f)
    store.compact(f)
    assert f.exists() and not store.parts_dir(f).exists()
    assert pq.read_table(f).equals(before)  # what pandas, polars or DuckDB read: the day file alone
    assert pq.read_schema(f).field("symbol").type == pa.dictionary(pa.int32(), pa.string())


def test_ticks_recorded_after_a_compaction_extend_the_day_and_the_next_compaction_keeps_both(tmp_path):
    f = recorded(tmp_path, *FLUSHES[:2])
    store.compact(f)
    store.append_part(f, table(FLUSHES[2]), store.last_flush(f) + 1)
    assert prices(store.read_day(f)) == [1500.0, 800.05, 1500.1, 1500.2]
    store.compact(f)
    assert prices(pq.read_table(f)) == [1500.0, 800.05, 1500.1, 1500.2]


def test_a_crash_after_compaction_renamed_the_day_file_does_not_count_its_parts_twice(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    store.compact(f)
    for k, rows in enumerate(FLUSHES, 1):  # the parts as they were before the compaction removed them
        store.append_part(f, table(rows), k)
    assert prices(store.read_day(f)) == [1500.0, 800.05, 1500.1, 1500.2]
    store.compact(f)
    assert not store.parts_dir(f).exists() and prices(pq.read_table(f)) == [1500.0, 800.05, 1500.1, 1500.2]


def test_a_crash_after_a_merge_was_written_does_not_count_the_merged_parts_twice(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    merged = pa.concat_tables([store.read_table(p) for p in store.parts(f)]).unify_dictionaries()
    store.write_table(store.parts_dir(f) / "000001-000003.parquet", merged)  # the singles not yet removed
    assert prices(store.read_day(f)) == [1500.0, 800.05, 1500.1, 1500.2]


def test_single_flush_parts_merge_into_one_once_there_are_enough(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    store.merge_parts(f, at_least=4)
    assert len(store.parts(f)) == 3
    store.merge_parts(f, at_least=3)
    assert [p.name for p in store.parts(f)] == ["000001-000003.parquet"]
    assert prices(store.read_day(f)) == [1500.0, 800.05, 1500.1, 1500.2]


def test_a_file_left_half_written_by_a_crash_is_not_read(tmp_path):
    f = recorded(tmp_path, *FLUSHES[:1])
    (store.parts_dir(f) / "000002-000002.parquet.tmp").write_bytes(b"PAR1 torn")
    assert prices(store.read_day(f)) == [1500.0]


def test_a_recorded_day_is_backtest_input_with_the_configured_instruments_in_their_order(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    ticks, skipped = load(f, ["NSE:SBIN", "NSE:INFY"])
    assert (skipped, ticks.symbols) == (0, ("NSE:SBIN", "NSE:INFY"))
    assert ticks.instr.tolist() == [1, 0, 1, 1] and ticks.volume.tolist() == [5.0, 1.0, 1.0, 1.0]
    assert ticks.ts.tolist() == [ns("10:00:00"), ns("10:00:01"), ns("10:00:02"), ns("10:00:03")]


def test_instruments_not_configured_are_left_out(tmp_path):
    ticks, _ = load(recorded(tmp_path, *FLUSHES), ["NSE:INFY"])
    assert ticks.price.tolist() == [1500.0, 1500.1, 1500.2]


def test_a_day_without_any_configured_instrument_is_a_one_line_error_naming_it(tmp_path):
    f = recorded(tmp_path, *FLUSHES)
    with pytest.raises(TickFileError, match=r"^2026-11-23.parquet: none of the configured symbols \(NSE:TCS\) is in "
                                            r"it \(it has NSE:INFY, NSE:SBIN\)$"):
        load(f, ["NSE:TCS"])


def test_ticks_stamped_out_of_order_are_ordered_by_time_each_instrument_in_its_own_order(tmp_path):
    # Kite stamps to the second: a later packet of one instrument may carry an earlier stamp
    f = recorded(tmp_path, [("10:00:01", "NSE:INFY", 1500.0), ("10:00:01", "NSE:INFY", 1500.1),
                            ("10:00:00", "NSE:SBIN", 800.0)])
    ticks, _ = load(f, SYMBOLS)
    assert ticks.price.tolist() == [800.0, 1500.0, 1500.1]


def test_a_corrupt_parquet_file_is_a_one_line_error_naming_it(tmp_path):
    bad = tmp_path / "day.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(StoreError) as err:
        load(bad, SYMBOLS)
    assert str(err.value).startswith(f"{bad}: not a readable Parquet file (") and "\n" not in str(err.value)


def test_a_parquet_file_without_the_tick_columns_is_refused_naming_what_is_missing(tmp_path):
    other = tmp_path / "ticks" / "2026-11-23.parquet"
    store.write_table(other, pa.table({"ts": [1], "close": [2.0]}))
    with pytest.raises(StoreError, match=r"2026-11-23.parquet: not a tick file \(no symbol, price, volume column\)"):
        load(other, SYMBOLS)


def test_a_bad_price_is_refused_naming_the_file_and_the_tick(tmp_path):
    f = recorded(tmp_path, [("10:00:00", "NSE:INFY", 1500.0), ("10:00:01", "NSE:INFY", float("nan"))])
    with pytest.raises(StoreError, match=r"^2026-11-23.parquet: tick 2: price nan is not finite and positive$"):
        load(f, SYMBOLS)


def test_days_of_a_range_load_one_after_the_other_skipping_days_not_recorded(tmp_path):
    for day, price in (("2026-11-23", 1500.0), ("2026-11-25", 1510.0)):
        store.write_table(store.tick_file(tmp_path, date.fromisoformat(day)),
                          pa.table({"ts": [ns("10:00:00", day)], "symbol": ["NSE:INFY"], "price": [price],
                                    "volume": [1.0]}))
    ticks = store.load_days(tmp_path, date(2026, 11, 23), date(2026, 11, 27), ["NSE:INFY"])
    assert ticks.price.tolist() == [1500.0, 1510.0]


def test_a_range_without_market_ticks_says_so_and_names_a_synthetic_day_there_is(tmp_path):
    store.append_part(day_file(tmp_path, store.SYNTHETIC), table(FLUSHES[0]), 1)
    with pytest.raises(StoreError, match=r"no recorded market ticks for 2026-11-23 \(there is "
                                         r"2026-11-23.synthetic.parquet: pass it to --ticks\)"):
        store.load_days(tmp_path, date(2026, 11, 23), date(2026, 11, 23), SYMBOLS)


def test_the_listing_counts_days_instruments_ticks_size_and_parts_not_compacted(tmp_path):
    store.compact(recorded(tmp_path, *FLUSHES))
    store.append_part(day_file(tmp_path, store.SYNTHETIC), table(FLUSHES[0]), 1)
    finished, synthetic = store.list_ticks(tmp_path)
    assert (finished.day, finished.kind, finished.instruments, finished.ticks, finished.parts) == \
        (date(2026, 11, 23), store.MARKET, 2, 4, 0)
    assert finished.size == day_file(tmp_path).stat().st_size
    assert (synthetic.kind, synthetic.instruments, synthetic.ticks, synthetic.parts) == (store.SYNTHETIC, 1, 1, 1)


def test_the_listing_shows_candle_sets_with_their_span(tmp_path):
    file = tmp_path / "candles" / "minute" / "NSE_INFY.parquet"
    store.write_table(file, pa.table({"ts": np.array([ns("09:15:00"), ns("15:29:00")]), "open": [1.0, 2.0],
                                      "high": [1.0, 2.0], "low": [1.0, 2.0], "close": [1.0, 2.0],
                                      "volume": [1.0, 2.0]}))
    [c] = store.list_candles(tmp_path)
    assert (c.interval, c.symbol, c.candles, c.first_ns, c.last_ns, c.size) == \
        ("minute", "NSE:INFY", 2, ns("09:15:00"), ns("15:29:00"), file.stat().st_size)


def otrade(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OTRADE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # a cold Numba cache compiles the kernels first


def test_otrade_data_list_prints_each_day_and_candle_set(tmp_path):
    store.compact(recorded(tmp_path, *FLUSHES))
    store.write_table(tmp_path / "candles" / "day" / "NSE_SBIN.parquet",
                      pa.table({"ts": np.array([ns("00:00:00")]), "close": [800.0]}))
    result = otrade("data", "list", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ticks ({tmp_path / 'ticks'}): 1 day(s), 4 ticks, ")
    assert lines[1].split() == ["day", "kind", "instruments", "ticks", "size"]
    assert lines[2].split()[:4] == ["2026-11-23", "market", "2", "4"]
    assert lines[3].startswith(f"candles ({tmp_path / 'candles'}): 1 set(s), 1 candles, ")
    assert lines[5].split()[:5] == ["day", "NSE:SBIN", "1", "2026-11-23", "2026-11-23"]


def test_otrade_data_list_names_a_corrupt_file_in_one_line(tmp_path):
    bad = day_file(tmp_path)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"garbage")
    result = otrade("data", "list", data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()] and f"error: {bad}: not a readable" in result.stderr


def test_otrade_backtest_takes_the_data_directory_and_a_date(tmp_path):
    store.compact(recorded(tmp_path, *FLUSHES))
    result = otrade("backtest", "--ticks", str(tmp_path), "--date", DAY, "--json", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"ticks":4' in result.stdout
