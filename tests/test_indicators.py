"""The indicator library against textbook numpy references, recomputed over the whole series.

Series walk, gap and stand still (flat bars have high = low = close), on the 0.05 tick grid or off
it. References follow the definitions traders' charting tools use (TradingView's ta.*).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.indicators import (
    BB_UPPER,
    ST_FLIP,
    ST_LINE,
    ST_TREND,
    ST_UPPER,
    VALUE,
    IndicatorLayout,
    atr,
    atr_update,
    bars_needed,
    bollinger,
    bollinger_update,
    donchian,
    donchian_update,
    ema,
    ema_update,
    macd,
    macd_update,
    needed,
    opening_range,
    opening_range_update,
    ready,
    rsi,
    rsi_update,
    sma,
    sma_update,
    supertrend,
    supertrend_update,
    update_all,
    vwap,
    vwap_update,
)

NS_PER_MIN = 60_000_000_000
BAR_MINUTES = 5
BARS_PER_SESSION = 75  # 09:15-15:30 in 5-minute bars

periods = st.integers(min_value=1, max_value=40)
examples = settings(max_examples=40, deadline=None)


@st.composite
def bars(draw, max_segments: int = 8) -> dict[str, np.ndarray]:
    """OHLCV bars in segments: random walks, single-bar gaps of up to ±15 % and flat runs."""
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    kinds = st.sampled_from(("walk", "gap", "flat"))
    segments = draw(st.lists(st.tuples(kinds, st.integers(1, 60)), min_size=1, max_size=max_segments))
    price = rng.uniform(20.0, 5000.0)
    closes, wicks = [], []
    for kind, length in segments:
        for _ in range(1 if kind == "gap" else length):
            if kind == "gap":
                price *= rng.uniform(0.85, 1.15)
            elif kind == "walk":
                price = max(price * (1.0 + rng.normal(0.0, 0.004)), 1.0)
            closes.append(price)
            wicks.append((0.0, 0.0) if kind == "flat" else rng.exponential(0.002 * price, 2))
    close = np.array(closes)
    opens = np.concatenate([close[:1], close[:-1]])
    up, down = np.array(wicks).T
    high = np.maximum(opens, close) + up
    low = np.maximum(np.minimum(opens, close) - down, 0.05)
    if draw(st.booleans()):  # on the tick grid: ties between prices become common
        close, high, low = (np.maximum(np.round(np.round(a / 0.05) * 0.05, 2), 0.05) for a in (close, high, low))
    k = np.arange(len(close))
    volume = rng.integers(0, 5000, len(close)).astype(float) * (rng.random(len(close)) > 0.1)
    return {"high": high, "low": low, "close": close, "volume": volume,
            "session": (k // BARS_PER_SESSION).astype(float),
            "since_open": (k % BARS_PER_SESSION) * BAR_MINUTES * NS_PER_MIN * 1.0}


def run(ind, update, *inputs) -> dict[str, np.ndarray]:
    """Feed ``inputs`` one bar at a time to ``ind`` alone; each output after each bar, and "need"."""
    s = ind.new()
    out = {name: np.empty(len(inputs[0])) for name, _ in ind.outputs}
    out["need"] = np.empty(len(inputs[0]))
    for k, args in enumerate(zip(*inputs, strict=True)):
        update(s, 0, *args)
        for name, slot in ind.outputs:
            out[name][k] = s[slot]
        out["need"][k] = needed(s, 0)
    return out


def assert_close(actual, expected) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9, equal_nan=True)


# --- references ---------------------------------------------------------------------------------


def windows(x: np.ndarray, n: int):
    """Each bar's window of the last n values, None until there are n."""
    return [x[i + 1 - n : i + 1] if i + 1 >= n else None for i in range(len(x))]


def over_windows(x: np.ndarray, n: int, f) -> np.ndarray:
    return np.array([np.nan if w is None else f(w) for w in windows(x, n)])


def seeded_ref(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """ta.ema / ta.rma: the mean of the first n values, then alpha·x + (1 − alpha)·previous."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1] = x[:n].mean()
        for i in range(n, len(x)):
            out[i] = alpha * x[i] + (1.0 - alpha) * out[i - 1]
    return out


def ema_ref(x: np.ndarray, n: int) -> np.ndarray:
    return seeded_ref(x, n, 2.0 / (n + 1))


def rma_ref(x: np.ndarray, n: int) -> np.ndarray:
    return seeded_ref(x, n, 1.0 / n)


def rsi_ref(x: np.ndarray, n: int) -> np.ndarray:
    change = np.diff(x)
    up, down = rma_ref(np.maximum(change, 0.0), n), rma_ref(np.maximum(-change, 0.0), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(down == 0, 100.0, np.where(up == 0, 0.0, 100.0 - 100.0 / (1.0 + up / down)))
    value[np.isnan(down)] = np.nan
    return np.concatenate([[np.nan], value])


def atr_ref(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    prev = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))  # fmax: bar 0 has no prev
    return rma_ref(true_range, n)


def supertrend_ref(high, low, close, n, factor) -> tuple[np.ndarray, np.ndarray]:
    """The issue's definition, line by line; the line is the upper band exactly when the trend is down."""
    a = atr_ref(high, low, close, n)
    upper = (high + low) / 2 + factor * a
    lower = (high + low) / 2 - factor * a
    trend, line = np.full(len(close), np.nan), np.full(len(close), np.nan)
    for i in range(len(close)):
        if np.isnan(a[i]):
            continue
        if i == 0 or np.isnan(a[i - 1]):
            trend[i] = -1
        else:
            if not (lower[i] > lower[i - 1] or close[i - 1] < lower[i - 1]):
                lower[i] = lower[i - 1]
            if not (upper[i] < upper[i - 1] or close[i - 1] > upper[i - 1]):
                upper[i] = upper[i - 1]
            if trend[i - 1] < 0:
                trend[i] = 1 if close[i] > upper[i] else -1
            else:
                trend[i] = -1 if close[i] < lower[i] else 1
        line[i] = lower[i] if trend[i] > 0 else upper[i]
    return line, trend


def session_starts(session: np.ndarray) -> np.ndarray:
    """For each bar, the index of its session's first bar."""
    first = np.r_[True, session[1:] != session[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(session)), 0))


def vwap_ref(session, price, volume) -> np.ndarray:
    out = np.full(len(price), np.nan)
    for i, start in enumerate(session_starts(session)):
        if volume[start : i + 1].sum() > 0:
            out[i] = np.average(price[start : i + 1], weights=volume[start : i + 1])
    return out


def opening_range_ref(session, since_open, high, low, minutes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hi, lo, is_ready = np.full(len(high), np.nan), np.full(len(high), np.nan), np.zeros(len(high), bool)
    for i, start in enumerate(session_starts(session)):
        inside = since_open[start : i + 1] < minutes * NS_PER_MIN
        if inside.any():
            hi[i], lo[i] = high[start : i + 1][inside].max(), low[start : i + 1][inside].min()
            is_ready[i] = not inside.all()
    return hi, lo, is_ready


# --- each indicator against its reference -----------------------------------------------------


@examples
@given(bars(), periods)
def test_sma_is_the_mean_of_the_last_n_values(b, n):
    assert_close(run(sma(n), sma_update, b["close"])["value"], over_windows(b["close"], n, np.mean))


@examples
@given(bars(), periods)
def test_ema_is_seeded_with_the_mean_of_the_first_n_then_smooths_by_two_over_n_plus_one(b, n):
    assert_close(run(ema(n), ema_update, b["close"])["value"], ema_ref(b["close"], n))


@examples
@given(bars(), periods)
def test_an_ema_seeded_with_its_first_value_is_ready_at_once_and_smooths_from_it(b, n):
    x = b["close"]
    ref = np.empty(len(x))
    ref[0] = x[0]
    for i in range(1, len(x)):
        ref[i] = ref[i - 1] + 2.0 / (n + 1.0) * (x[i] - ref[i - 1])
    out = run(ema(n, seed=1), ema_update, x)
    assert_close(out["value"], ref)
    assert (out["need"] == 0).all()


@examples
@given(bars(), periods)
def test_rsi_is_wilders_smoothed_gains_over_losses(b, n):
    assert_close(run(rsi(n), rsi_update, b["close"])["value"], rsi_ref(b["close"], n))


@examples
@given(bars(), periods)
def test_atr_is_wilders_average_of_the_true_range_seeded_with_the_mean_of_the_first_n(b, n):
    out = run(atr(n), atr_update, b["high"], b["low"], b["close"])
    assert_close(out["value"], atr_ref(b["high"], b["low"], b["close"], n))


@examples
@given(bars(), periods, st.sampled_from([0.5, 1.0, 2.0, 3.0, 3.5]))
def test_supertrend_follows_the_charting_definition(b, n, factor):
    out = run(supertrend(n, factor), supertrend_update, b["high"], b["low"], b["close"])
    line, trend = supertrend_ref(b["high"], b["low"], b["close"], n, factor)
    assert_close(out["trend"], trend)
    assert_close(out["line"], line)
    prev = np.concatenate([[np.nan], trend[:-1]])
    flip = np.where(np.isnan(prev), 0.0, (trend - prev) / 2)
    flip[np.isnan(trend)] = np.nan
    assert_close(out["flip"], flip)
    assert_close(out["atr"], atr_ref(b["high"], b["low"], b["close"], n))


@examples
@given(bars(), periods, st.sampled_from([1.0, 2.0, 2.5]))
def test_bollinger_bands_are_the_mean_plus_minus_k_population_deviations(b, n, k):
    out = run(bollinger(n, k), bollinger_update, b["close"])
    mid, std = over_windows(b["close"], n, np.mean), over_windows(b["close"], n, np.std)
    assert_close(out["mid"], mid)
    assert_close(out["std"], std)
    assert_close(out["upper"], mid + k * std)
    assert_close(out["lower"], mid - k * std)


@examples
@given(bars(), periods, periods, periods)
def test_macd_is_fast_minus_slow_ema_with_an_ema_signal(b, fast, slow, signal):
    out = run(macd(fast, slow, signal), macd_update, b["close"])
    line = ema_ref(b["close"], fast) - ema_ref(b["close"], slow)
    first = max(fast, slow) - 1
    sig = np.full(len(line), np.nan)
    sig[first:] = ema_ref(line[first:], signal)
    assert_close(out["macd"], line)
    assert_close(out["signal"], sig)
    assert_close(out["hist"], line - sig)


@examples
@given(bars())
def test_session_vwap_is_the_volume_weighted_mean_of_the_session_so_far(b):
    price = (b["high"] + b["low"] + b["close"]) / 3
    out = run(vwap(), vwap_update, b["session"], price, b["volume"])
    assert_close(out["value"], vwap_ref(b["session"], price, b["volume"]))


@examples
@given(bars(), periods)
def test_donchian_is_the_highest_high_and_lowest_low_of_n_bars(b, n):
    out = run(donchian(n), donchian_update, b["high"], b["low"])
    upper, lower = over_windows(b["high"], n, np.max), over_windows(b["low"], n, np.min)
    assert_close(out["upper"], upper)
    assert_close(out["lower"], lower)
    assert_close(out["mid"], (upper + lower) / 2)


@examples
@given(bars(), st.sampled_from([5, 15, 30, 60, 400]))
def test_opening_range_is_the_high_and_low_of_the_first_minutes_of_each_session(b, minutes):
    out = run(opening_range(minutes), opening_range_update, b["session"], b["since_open"], b["high"], b["low"])
    hi, lo, is_ready = opening_range_ref(b["session"], b["since_open"], b["high"], b["low"], minutes)
    assert_close(out["high"], hi)
    assert_close(out["low"], lo)
    np.testing.assert_array_equal(out["need"] == 0, is_ready)


# --- warm-up and the first values ------------------------------------------------------------

WARMUPS = [
    (sma(5), 5), (ema(5), 5), (rsi(5), 6), (atr(5), 5), (supertrend(5, 3.0), 5), (bollinger(5, 2.0), 5),
    (macd(3, 6, 4), 9), (donchian(5), 5),
]


@pytest.mark.parametrize(("ind", "warmup"), WARMUPS, ids=[ind.label for ind, _ in WARMUPS])
def test_an_indicator_is_ready_after_its_warmup_with_every_output_defined_and_not_before(ind, warmup):
    layout = IndicatorLayout(x=ind)
    row = layout.new(1)[0]
    closes = 100.0 + np.sin(np.arange(3 * warmup))
    assert ind.warmup == warmup
    for k, c in enumerate(closes, start=1):
        update_all(row, layout.offsets_array, 0.0, 0.0, c + 0.5, c - 0.5, c, 10.0)
        outputs = np.array([row[slot] for _, slot in ind.outputs])
        assert needed(row, 0) == max(warmup - k, 0)
        assert ready(row, 0) == (k >= warmup)
        assert np.isfinite(outputs).all() if k >= warmup else np.isnan(outputs).any()


def test_sma_and_ema_start_with_the_mean_of_the_first_n():
    s_sma, s_ema = sma(3).new(), ema(3).new()
    assert [sma_update(s_sma, 0, x) for x in (1.0, 2.0, 6.0, 7.0)][2:] == [3.0, 5.0]
    out = [ema_update(s_ema, 0, x) for x in (1.0, 2.0, 6.0, 7.0)]
    assert np.isnan(out[:2]).all()
    assert out[2:] == [3.0, 3.0 + 0.5 * (7.0 - 3.0)]


def test_rsi_needs_n_changes_and_reads_100_without_losses_and_0_without_gains():
    def rsi2(xs):
        s = rsi(2).new()
        return [rsi_update(s, 0, x) for x in xs]

    assert np.isnan(rsi2((1.0, 2.0))).all()
    assert rsi2((1.0, 2.0, 3.0))[-1] == 100.0
    assert rsi2((3.0, 2.0, 1.0))[-1] == 0.0
    assert rsi2((5.0, 5.0, 5.0))[-1] == 100.0  # as TradingView: no losses reads 100
    assert rsi2((1.0, 2.0, 3.0, 2.0))[-1] == 50.0  # gains 1 -> 0.5, losses 0 -> 0.5


def test_atr_starts_with_the_mean_true_range_of_the_first_n_bars_the_first_being_high_minus_low():
    s = atr(2).new()
    atr_update(s, 0, 11.0, 9.0, 10.0)  # true range 2
    assert atr_update(s, 0, 15.0, 12.0, 14.0) == (2.0 + 5.0) / 2  # gap up: |15 - 10| beats 15 - 12
    assert atr_update(s, 0, 14.0, 13.0, 13.5) == 3.5 + (1.0 - 3.5) / 2


# --- SuperTrend ------------------------------------------------------------------------------


def feed_supertrend(bars_hlc, n=2, factor=1.0):
    s = supertrend(n, factor).new()
    rows = []
    for h, lo, c in bars_hlc:
        supertrend_update(s, 0, h, lo, c)
        rows.append((s[ST_TREND], s[ST_FLIP], s[ST_LINE], s[ST_UPPER]))
    return rows


def test_supertrend_starts_down_on_the_first_bar_with_an_atr_even_in_a_rally():
    rows = feed_supertrend([(101.0, 99.0, 100.0), (106.0, 100.0, 105.0), (111.0, 105.0, 110.0)])
    assert np.isnan(rows[0][0])
    trend, flip, line, upper = rows[1]
    assert (trend, flip, line) == (-1.0, 0.0, upper)


def test_supertrend_turns_up_on_a_close_above_the_upper_band_and_down_on_one_below_the_lower():
    base = [(101.0, 99.0, 100.0), (101.0, 99.0, 100.0)]  # ATR 2: down, upper band 102
    rally = [(104.0, 100.0, 103.0)]  # closes above the kept upper band 102
    drift = [(104.0, 102.0, 103.0), (105.0, 103.0, 104.0)]
    collapse = [(104.0, 95.0, 96.0)]  # closes below the lower band
    rows = feed_supertrend(base + rally + drift + collapse)
    assert [trend for trend, *_ in rows[1:]] == [-1.0, 1.0, 1.0, 1.0, -1.0]
    assert [flip for _, flip, *_ in rows[1:]] == [0.0, 1.0, 0.0, 0.0, -1.0]


def test_supertrend_keeps_a_band_that_would_loosen():
    rows = feed_supertrend([(101.0, 99.0, 100.0), (101.0, 99.0, 100.0), (103.0, 99.0, 101.0)])
    assert rows[2][3] == rows[1][3] == 102.0  # wider range, higher upper band: the old one holds


# --- session indicators ----------------------------------------------------------------------


def test_vwap_restarts_at_a_new_session():
    s = vwap().new()
    vwap_update(s, 0, 1.0, 100.0, 10.0)
    assert vwap_update(s, 0, 1.0, 110.0, 30.0) == 107.5
    assert vwap_update(s, 0, 2.0, 90.0, 5.0) == 90.0


def test_vwap_is_not_ready_before_the_sessions_first_volume():
    s = vwap().new()
    assert np.isnan(vwap_update(s, 0, 1.0, 100.0, 0.0))
    assert not ready(s, 0)
    assert vwap_update(s, 0, 1.0, 101.0, 5.0) == 101.0
    assert ready(s, 0)


def test_opening_range_is_fixed_from_the_first_value_after_its_window():
    s = opening_range(15).new()
    for minute, price in [(0, 100.0), (5, 104.0), (10, 98.0)]:
        opening_range_update(s, 0, 1.0, minute * NS_PER_MIN, price + 1.0, price - 1.0)
        assert not ready(s, 0)
    opening_range_update(s, 0, 1.0, 15 * NS_PER_MIN, 120.0, 90.0)  # a breakout bar is not in the range
    opening_range_update(s, 0, 1.0, 20 * NS_PER_MIN, 130.0, 80.0)
    assert ready(s, 0)
    assert (s[VALUE], s[VALUE + 1]) == (105.0, 97.0)


def test_opening_range_restarts_each_session():
    s = opening_range(5).new()
    opening_range_update(s, 0, 1.0, 0.0, 105.0, 95.0)
    opening_range_update(s, 0, 1.0, 5 * NS_PER_MIN, 105.0, 95.0)
    opening_range_update(s, 0, 2.0, 0.0, 201.0, 199.0)
    assert not ready(s, 0)
    assert (s[VALUE], s[VALUE + 1]) == (201.0, 199.0)


def test_opening_range_without_a_value_inside_its_window_never_gets_ready_that_session():
    s = opening_range(5).new()
    for minute in (5, 10, 15):
        opening_range_update(s, 0, 1.0, minute * NS_PER_MIN, 105.0, 95.0)
    assert not ready(s, 0)
    assert np.isnan(s[VALUE])


# --- exactness over long runs -------------------------------------------------------------------


def test_rolling_windows_do_not_drift_over_half_a_million_updates_and_a_flat_window_is_flat():
    rng = np.random.default_rng(7)
    xs = 1500.0 + np.cumsum(rng.normal(0.0, 0.7, 500_000))
    n = 50
    s_sma, s_bb = sma(n).new(), bollinger(n, 2.0).new()
    for x in xs:
        sma_update(s_sma, 0, x)
        bollinger_update(s_bb, 0, x)
    assert abs(s_sma[VALUE] - xs[-n:].mean()) < 1e-9
    assert abs(s_bb[BB_UPPER] - (xs[-n:].mean() + 2 * xs[-n:].std())) < 1e-9
    for _ in range(n):
        bollinger_update(s_bb, 0, 1234.55)
    assert s_bb[VALUE] == 1234.55
    assert s_bb[BB_UPPER] == 1234.55


# --- indicators side by side in one row ---------------------------------------------------------

ALL = {"sma": sma(7), "ema": ema(9), "rsi": rsi(14), "atr": atr(10), "st": supertrend(10, 3.0),
       "bb": bollinger(20, 2.0), "macd": macd(), "vwap": vwap(), "dc": donchian(12), "or": opening_range(15)}


def feed_alone(name, ind, b):
    """What each indicator reads from a bar, fed to it alone."""
    h, lo, c = b["high"], b["low"], b["close"]
    by_kind = {
        "sma": (sma_update, c), "ema": (ema_update, c), "rsi": (rsi_update, c), "bb": (bollinger_update, c),
        "macd": (macd_update, c), "atr": (atr_update, h, lo, c), "st": (supertrend_update, h, lo, c),
        "dc": (donchian_update, h, lo), "vwap": (vwap_update, b["session"], (h + lo + c) / 3, b["volume"]),
        "or": (opening_range_update, b["session"], b["since_open"], h, lo),
    }
    update, *inputs = by_kind[name]
    return run(ind, update, *inputs)


@settings(max_examples=15, deadline=None)
@given(bars())
def test_indicators_side_by_side_in_one_row_update_exactly_as_each_alone(b):
    layout = IndicatorLayout(**ALL)
    state = layout.new(2)
    seen = {(name, out): [] for name, ind in ALL.items() for out, _ in ind.outputs}
    for k in range(len(b["close"])):
        update_all(state[1], layout.offsets_array, b["session"][k], b["since_open"][k], b["high"][k],
                   b["low"][k], b["close"][k], b["volume"][k])
        for name, out in seen:
            seen[name, out].append(state[1, layout.slot(name, out)])
    np.testing.assert_array_equal(state[0], layout.fresh)
    for name, ind in ALL.items():
        alone = feed_alone(name, ind, b)
        for out, _ in ind.outputs:
            np.testing.assert_array_equal(seen[name, out], alone[out], err_msg=f"{name}.{out}")


def test_header_offsets_do_not_depend_on_parameters():
    short = IndicatorLayout(fast=ema(5), band=bollinger(10, 2.0), rsi=rsi(7))
    long = IndicatorLayout(fast=ema(50), band=bollinger(100, 3.0), rsi=rsi(21))
    assert short.offsets == long.offsets
    assert long.size - short.size == 90  # the longer ring


def test_copying_the_fresh_row_over_a_row_resets_it():
    layout = IndicatorLayout(**ALL)
    row = layout.new(1)[0]

    def feed_a_session():
        for k in range(40):
            update_all(row, layout.offsets_array, 1.0, k * 60e9, 101.0 + k, 99.0, 100.0 + np.sin(k), 10.0)
        return layout.values(row)

    first = feed_a_session()
    row[:] = layout.fresh
    assert bars_needed(row, layout.offsets_array) == max(ind.warmup for ind in ALL.values())
    assert feed_a_session() == first


def test_bars_needed_is_what_the_slowest_indicator_still_needs():
    layout = IndicatorLayout(fast=ema(3), slow=ema(8))
    row = layout.new(1)[0]
    for _ in range(5):
        update_all(row, layout.offsets_array, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0)
    assert layout.needed(row) == {"fast": 0, "slow": 3}
    assert bars_needed(row, layout.offsets_array) == 3


def test_a_layout_names_each_output_slot():
    layout = IndicatorLayout(fast=ema(3), bb=bollinger(5, 2.0))
    assert layout.slot("fast") == layout.offsets["fast"] + VALUE
    assert layout.slot("bb", "upper") == layout.offsets["bb"] + BB_UPPER
    with pytest.raises(ValueError, match=r"Bollinger\(5,2\) has no output 'uper'"):
        layout.slot("bb", "uper")
    assert layout.needed(layout.fresh) == {"fast": 3, "bb": 5}


@pytest.mark.parametrize(("declare", "message"), [
    (lambda: ema(0), "EMA: n must be a whole number >= 1, got 0"),
    (lambda: rsi(14.5), "RSI: n must be a whole number >= 1, got 14.5"),
    (lambda: macd(12, True), "MACD: slow must be"),
    (lambda: supertrend(10, 0), "SuperTrend: factor must be a number > 0, got 0"),
    (lambda: bollinger(20, -1.0), "Bollinger: k must be a number > 0"),
    (lambda: opening_range(0), "OpeningRange: minutes must be"),
])
def test_parameters_are_validated_with_the_field_named(declare, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        declare()
