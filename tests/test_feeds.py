"""Paper tick sources and the clocks that pace them."""

import asyncio
import time
from datetime import datetime

import numpy as np
import pytest

from engine.data.feeds import ReplayFeed, SyntheticFeed
from engine.data.synthetic import generate
from engine.services.clock import RehearsalClock, SystemClock

START = "2026-11-23T10:00:00+05:30"


class VirtualClock:
    """Time moves only when someone sleeps: runs are exact and take no real time."""

    def __init__(self, ns: int = 1795409400 * 10**9) -> None:
        self.ns = ns
        self.sleeps = 0

    def now_ns(self) -> int:
        return self.ns

    async def sleep_until(self, ns: int) -> None:
        self.sleeps += 1
        self.ns = max(self.ns, ns)
        await asyncio.sleep(0)


async def collect(feed, n=None):
    out = []
    async for tick in feed:
        out.append(tick)
        if len(out) == n:
            feed.stop()
    return out


def synthetic(clock, seed=1, interval_ms=20.0):
    return SyntheticFeed(["NSE:INFY", "NSE:SBIN"], [1500.0, 800.0], [0.1, 0.05], seed, clock, interval_ms)


# --- replay -----------------------------------------------------------------------------------
async def test_replay_at_full_speed_yields_the_files_ticks_in_order():
    ticks = generate(1, 1, ["NSE:INFY", "NSE:SBIN"])
    got = await collect(ReplayFeed(ticks, float("inf"), SystemClock()))
    assert got == list(zip(ticks.instr.tolist(), ticks.ts.tolist(), ticks.price.tolist(), ticks.volume.tolist(),
                           strict=True))


async def test_replay_at_speed_zero_never_sleeps_on_the_clock():
    clock = VirtualClock()
    got = await collect(ReplayFeed(generate(1, 1, ["NSE:INFY"]), 0, clock))
    assert len(got) > 20_000 and clock.sleeps == 0


async def test_replay_at_full_speed_lets_other_tasks_run():
    turns = 0

    async def other():
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await collect(ReplayFeed(generate(1, 1, ["NSE:INFY"]), float("inf"), SystemClock()))
    task.cancel()
    assert turns >= 5


async def test_replay_paces_ticks_by_their_gaps_over_speed():
    ticks = generate(1, 1, ["NSE:INFY"], tick_interval_ms=100).slice(6)
    span = (ticks.ts[-1] - ticks.ts[0]) / 1e9
    started = time.monotonic()
    await collect(ReplayFeed(ticks, 2.0, SystemClock()))
    assert time.monotonic() - started == pytest.approx(span / 2, abs=0.1)


async def test_stop_cuts_a_replay_sleep_short():
    ticks = generate(2, 1, ["NSE:INFY"], tick_interval_ms=60_000)  # gaps of a minute at real speed
    feed = ReplayFeed(ticks, 1.0, SystemClock())
    asyncio.get_running_loop().call_later(0.05, feed.stop)
    started = time.monotonic()
    got = await collect(feed)
    assert len(got) == 1 and time.monotonic() - started < 1.0


def test_replay_exposes_the_files_symbols():
    assert ReplayFeed(generate(1, 1, ["NSE:SBIN"]), 1.0, SystemClock()).symbols == ("NSE:SBIN",)


def test_replay_refuses_a_negative_speed():
    with pytest.raises(ValueError, match="must be >= 0"):
        ReplayFeed(generate(1, 1, ["NSE:SBIN"]), -1.0, SystemClock())


# --- synthetic --------------------------------------------------------------------------------
async def test_synthetic_ticks_are_stamped_by_the_clock():
    clock = RehearsalClock(datetime.fromisoformat(START))
    before = clock.now_ns()
    got = await collect(synthetic(clock), 10)
    stamps = [t[1] for t in got]
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= clock.now_ns()


async def test_synthetic_feed_paces_ticks_in_real_time():
    feed = synthetic(SystemClock(), interval_ms=20.0)  # two instruments: a tick every 10 ms on average
    asyncio.get_running_loop().call_later(0.3, feed.stop)
    got = await collect(feed)
    assert 12 <= len(got) <= 60


async def test_synthetic_feed_is_reproducible_per_seed():
    a, b, c = [await collect(synthetic(VirtualClock(), seed), 300) for seed in (7, 7, 8)]
    assert a == b and [t[2] for t in a] != [t[2] for t in c]


async def test_synthetic_prices_are_positive_on_the_tick_grid():
    got = await collect(synthetic(VirtualClock()), 2000)
    for instr, tick in ((0, 0.1), (1, 0.05)):
        prices = np.array([p for k, _, p, _ in got if k == instr])
        assert np.all(prices > 0) and np.allclose(np.round(prices / tick) * tick, prices, rtol=0, atol=1e-9)


async def test_synthetic_feed_ticks_every_instrument():
    got = await collect(synthetic(VirtualClock()), 200)
    assert {k for k, *_ in got} == {0, 1}


# --- clocks -----------------------------------------------------------------------------------
def test_rehearsal_clock_starts_at_the_given_instant_and_runs_at_real_speed():
    clock = RehearsalClock(datetime.fromisoformat("2026-11-23T09:14:30.5+05:30"))
    first = clock.now_ns()
    time.sleep(0.05)
    assert 0 <= first - 1795405470_500_000_000 < 10**7 and 0.04 < (clock.now_ns() - first) / 1e9 < 0.5


def test_rehearsal_clock_needs_an_offset():
    with pytest.raises(ValueError, match="needs a UTC offset"):
        RehearsalClock(datetime.fromisoformat("2026-11-23T09:14:30"))


async def test_rehearsal_clock_sleeps_until_an_instant_on_itself():
    clock = RehearsalClock(datetime.fromisoformat(START))
    target = clock.now_ns() + 50_000_000
    await clock.sleep_until(target)
    assert 0 <= clock.now_ns() - target < 50_000_000
