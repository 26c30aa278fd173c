"""Waiting in tests on a loaded machine: on a condition, never a fixed sleep, with a generous limit
that costs time only when the condition never comes."""

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
LIMIT_S = 60.0


async def until(predicate: Callable[[], T], limit: float = LIMIT_S, every: float = 0.01) -> T:
    """``predicate()``'s first truthy value, looked at every ``every`` s; AssertionError after ``limit`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not (result := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"not true within {limit:g} s: {getattr(predicate, '__qualname__', predicate)}")
        await asyncio.sleep(every)
    return result


def until_sync(predicate: Callable[[], T], limit: float = LIMIT_S, every: float = 0.02) -> T:
    """``until`` for a test outside the event loop (a process, a thread)."""
    deadline = time.monotonic() + limit
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {limit:g} s: {getattr(predicate, '__qualname__', predicate)}")
        time.sleep(every)
    return result
