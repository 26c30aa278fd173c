"""Paper tick sources."""

import time
from datetime import datetime

import numpy as np
import pytest

from engine.clock import RehearsalClock, SystemClock
from engine.feeds import ReplayFeed, SyntheticFeed
from engine.ticks import generate


async def collect(feed, n):
    out = []
    async for tick in feed:
        out.append(tick)
        if len(out) == n:
            feed.stop()
    return out


async def test_replay_at_full_speed_yields_the_files_ticks_in_order():
    ticks = generate(1, 1, ["NSE:INFY"])
    got = await collect(ReplayFeed(ticks, float("inf"), SystemClock()), len(ticks))
    assert [t[1] for t in got] == ticks.ts.tolist() and [t[2] for t in got] == ticks.price.tolist()


async def test_replay_paces_ticks_by_their_gaps_over_speed():
    ticks = generate(1, 1, ["NSE:INFY"], tick_interval_ms=100).slice(6)
    span = (ticks.ts[-1] - ticks.ts[0]) / 1e9
    started = time.monotonic()
    await collect(ReplayFeed(ticks, 2.0, SystemClock()), 6)
    assert time.monotonic() - started == pytest.approx(span / 2, abs=0.1)


async def test_synthetic_ticks_are_stamped_by_the_clock_on_the_tick_grid():
    clock = RehearsalClock(datetime.fromisoformat("2026-11-23T10:00:00+05:30"))
    feed = SyntheticFeed(["NSE:INFY", "NSE:SBIN"], [1500.0, 800.0], [0.1, 0.05], 1, clock, 20)
    got = await collect(feed, 10)
    stamps = np.array([t[1] for t in got])
    assert np.all(np.diff(stamps) >= 0)
    assert abs(stamps[0] / 1e9 - clock.now_ns() / 1e9) < 1.0
    assert all(abs(p / (0.1 if k == 0 else 0.05) - round(p / (0.1 if k == 0 else 0.05))) < 1e-6
               for k, _, p, _ in got)


def test_rehearsal_clock_starts_at_the_given_instant_and_runs_at_real_speed():
    clock = RehearsalClock(datetime.fromisoformat("2026-11-23T09:14:30+05:30"))
    first = clock.now_ns()
    time.sleep(0.05)
    assert first // 10**9 == 1795405470 and 0.04 < (clock.now_ns() - first) / 1e9 < 0.5


def test_rehearsal_clock_needs_an_offset():
    with pytest.raises(ValueError, match="needs a UTC offset"):
        RehearsalClock(datetime.fromisoformat("2026-11-23T09:14:30"))
