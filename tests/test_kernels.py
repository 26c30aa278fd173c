"""Bracket kernels, and the rolling extremes against numpy references on random data."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import kernels as K

prices = st.lists(st.floats(min_value=1.0, max_value=5000.0, allow_nan=False), min_size=1, max_size=400)
windows = st.integers(min_value=1, max_value=50)


@settings(max_examples=60, deadline=None)
@given(prices, windows)
def test_rolling_high_and_low_match_numpy_over_the_window(xs, window):
    hi_val, hi_idx, hi_meta = np.zeros(window), np.zeros(window), np.zeros(3)
    lo_val, lo_idx, lo_meta = np.zeros(window), np.zeros(window), np.zeros(3)
    highs = [K.rolling_extreme_update(hi_val, hi_idx, hi_meta, x, window, 1.0) for x in xs]
    lows = [K.rolling_extreme_update(lo_val, lo_idx, lo_meta, x, window, -1.0) for x in xs]
    exp_hi = [max(xs[max(0, i + 1 - window): i + 1]) for i in range(len(xs))]
    exp_lo = [min(xs[max(0, i + 1 - window): i + 1]) for i in range(len(xs))]
    np.testing.assert_allclose(highs, exp_hi, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lows, exp_lo, rtol=0, atol=1e-9)


def test_round_to_tick_snaps_to_the_nearest_tick_without_float_noise():
    assert K.round_to_tick(1074.36, 0.05) == 1074.35
    assert K.round_to_tick(1074.38, 0.05) == 1074.4
    assert K.round_to_tick(2501.04, 0.1) == 2501.0


def test_bracket_levels_for_a_long_round_to_the_tick():
    assert K.bracket_levels(1.0, 1000.0, 0.5, 0.25, 0.05) == (1005.0, 997.5)


def test_bracket_levels_for_a_short_are_mirrored():
    assert K.bracket_levels(-1.0, 1000.0, 0.5, 0.25, 0.05) == (995.0, 1002.5)


def test_bracket_target_fills_at_the_target_price_when_traded_through():
    assert K.bracket_step(1.0, 1010.0, 1005.0, 997.5, np.nan, 0.05, 0.1) == (K.BRACKET_TARGET, 1005.0, 997.5)


def test_bracket_stop_fills_at_the_tick_price_moved_by_slippage():
    code, px, _ = K.bracket_step(1.0, 990.0, 1005.0, 997.5, np.nan, 0.05, 0.1)
    assert code == K.BRACKET_STOP and abs(px - 989.9) < 1e-9


def test_short_bracket_stop_triggers_on_a_rise():
    code, px, _ = K.bracket_step(-1.0, 1003.0, 995.0, 1002.5, np.nan, 0.05, 0.0)
    assert (code, px) == (K.BRACKET_STOP, 1003.0)


def test_trailing_stop_only_tightens():
    code, _, stop = K.bracket_step(1.0, 1004.0, 1010.0, 997.5, 0.2, 0.05, 0.0)
    assert code == K.BRACKET_TRAIL_MOVED and stop == 1002.0
    code, _, stop = K.bracket_step(1.0, 1003.0, 1010.0, stop, 0.2, 0.05, 0.0)
    assert code == K.BRACKET_HOLD and stop == 1002.0


def test_bracket_levels_stay_a_tick_away_from_the_fill_when_the_percentages_round_onto_it():
    assert K.bracket_levels(1.0, 20.0, 0.1, 0.1, 0.05) == (20.05, 19.95)
    assert K.bracket_levels(-1.0, 20.0, 0.1, 0.1, 0.05) == (19.95, 20.05)


def test_bracket_levels_of_a_fill_between_grid_prices_are_a_whole_tick_away_on_the_grid():
    assert K.bracket_levels(1.0, 20.02, 0.1, 0.1, 0.05) == (20.1, 19.95)
