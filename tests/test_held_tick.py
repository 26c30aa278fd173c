"""The held tick made cheaper (issue 23): the fill model skips the bracket only where it would hold."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import kernels as K

levels = st.floats(min_value=90.0, max_value=110.0, allow_nan=False)
trails = st.one_of(st.just(math.nan), st.floats(min_value=0.05, max_value=5.0))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1.0, -1.0]), levels, levels, levels, trails, st.sampled_from([0.05, 0.1, 1.0]))
def test_a_tick_the_bracket_is_not_due_on_holds_the_bracket_as_it_was(side, price, target, stop, trail, tick):
    if not K.bracket_due(side, price, target, stop, trail, tick):
        assert K.bracket_step(side, price, target, stop, trail, tick, 0.0, 0.0) == (K.BRACKET_HOLD, 0.0, stop)


@settings(max_examples=100, deadline=None)
@given(levels, levels, levels, trails)
def test_the_bracket_is_never_due_without_a_position(price, target, stop, trail):
    assert not K.bracket_due(np.nan, price, target, stop, trail, 0.05)  # the side of no position: 0 / 0


def test_the_bracket_is_due_at_the_target_the_stop_and_where_the_trail_may_move():
    assert K.bracket_due(1.0, 1005.0, 1005.0, 997.5, math.nan, 0.05)  # at the target
    assert K.bracket_due(-1.0, 1002.5, 995.0, 1002.5, math.nan, 0.05)  # a short's stop
    assert K.bracket_due(1.0, 1003.0, 1005.0, 997.5, 0.5, 0.05)  # 1003 * 0.995 = 997.985: the stop trails
    assert not K.bracket_due(1.0, 1000.0, 1005.0, 997.5, 0.5, 0.05)  # 995: far short of the stop
