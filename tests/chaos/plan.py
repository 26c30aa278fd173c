"""A seed's whole session, drawn up front: the price paths and the schedule of faults.

Everything here is a pure function of the seed (and the number of steps), so the same seed always
gives the same schedule; only asyncio's timing decides which call a queued fault meets.
"""

import random
from dataclasses import dataclass, field
from typing import Any

SYMBOLS = ("NSE:INFY", "NSE:SBIN")
TOKENS = {"NSE:INFY": 408065, "NSE:SBIN": 779521}
TICKS = {"NSE:INFY": 0.1, "NSE:SBIN": 0.05}  # the server's instruments file at the start
START = {"NSE:INFY": 1074.3, "NSE:SBIN": 801.1}

ORDER_KINDS = ("hang", "500-before", "429", "reset", "timeout", "network", "hang-after", "500-after", "503",
               "network-after", "reset-after", "timeout-after")
READ_KINDS = ("hang", "500-before", "429", "reset", "timeout", "500-after", "503", "reset-after")
WS_CONNECT_KINDS = ("503", "429", "reset", "hang", "drop")
# where lost answers hurt: placements most, then modifies (the trailing stop), cancels, look-ups
FAULT_ENDPOINTS = ("place", "place", "place", "modify", "modify", "cancel", "orders", "history", "positions")
MARKET_REFUSAL = "RMS:Rule: Check circuit limit including square off order exceeds"
STOP_REFUSAL = "RMS:Trigger price is outside the price protection range for this instrument"
PROTECTION_CANCEL = "Your order price is outside the current allowed limit price protection range"
# Kite's RMS words for an order its circuit rule blocks (as a real account sees them), here for a successor stop
SUCCESSOR_REFUSAL = "RMS:Rule: Check circuit limit including square off order exceeds"
MODIFICATION_CAPS = (2, 3, 4, 6)  # a lowered cap per order: its stops see a few changes, so the cap is met often


@dataclass(frozen=True)
class Action:
    """One thing done to the world at a step: ``kind`` with its arguments; ``until`` ends a window."""

    step: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    until: int | None = None

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        window = f" until step {self.until}" if self.until is not None else ""
        return f"step {self.step:4d}: {self.kind} {args}{window}".rstrip()


@dataclass(frozen=True)
class Plan:
    seed: int
    steps: int
    prices: dict[str, list[float]]  # per symbol, one price per step (snapped to the tick grid when pushed)
    actions: list[Action]
    transition_delay_s: float  # the server's pace between an order's states (0: all before the answer)
    partial_rate: float  # chance that a fill is only part of what could fill
    hang_s: float  # how long a hung call hangs at the server
    max_modifications: int = 25  # the server's cap per order (Kite's is 25), which OTrade is told

    def at(self, step: int) -> list[Action]:
        return [a for a in self.actions if a.step == step]

    def describe(self) -> list[str]:
        head = (f"seed {self.seed}: {self.steps} steps, transition_delay_s={self.transition_delay_s}, "
                f"partial_rate={self.partial_rate}, hang_s={self.hang_s}, max_modifications={self.max_modifications}")
        return [head, *(a.describe() for a in self.actions)]


def _walk(rng: random.Random, start: float, steps: int) -> list[float]:
    """A random walk in regimes (calm, volatile, trending) with rare jumps, so targets, stops,
    trailing and signal exits all happen."""
    prices, price = [], start
    vol, drift, left = 0.001, 0.0, 0
    for _ in range(steps):
        if left <= 0:
            vol = rng.choice((0.0004, 0.0008, 0.0012, 0.002))
            drift = rng.choice((0.0, 0.0, 0.0006, -0.0006, 0.0012, -0.0012))
            left = rng.randint(15, 60)
        left -= 1
        move = drift + rng.gauss(0.0, vol)
        if rng.random() < 0.01:
            move += rng.choice((-1, 1)) * rng.uniform(0.004, 0.008)  # a gap through a stop or a target
        price = max(1.0, price * (1.0 + move))
        prices.append(price)
    return prices


def make_plan(seed: int, steps: int = 240) -> Plan:
    rng = random.Random(seed)
    prices = {s: _walk(random.Random(f"{seed}:{s}"), START[s], steps) for s in SYMBOLS}
    actions: list[Action] = []
    body = range(10, max(11, steps - 10))  # faults inside the session, none in the first or last steps

    def step() -> int:
        return rng.choice(body)

    def window(lo: int, hi: int) -> tuple[int, int]:
        start = step()
        return start, min(steps - 1, start + rng.randint(lo, hi))

    for _ in range(rng.randint(3, 9)):  # lost, refused and hung REST calls
        endpoint = rng.choice(FAULT_ENDPOINTS)
        kinds = ORDER_KINDS if endpoint in ("place", "modify", "cancel") else READ_KINDS
        actions.append(Action(step(), "fault", {"endpoint": endpoint, "kind": rng.choice(kinds),
                                                "times": rng.choice((1, 1, 2, 3))}))
    if rng.random() < 0.15:  # Kite refuses the order for the static IP rule: a refusal, alerted
        actions.append(Action(step(), "fault", {"endpoint": "place", "kind": "static-ip", "times": 1}))
    for _ in range(rng.choice((0, 1, 1, 2, 3))):  # the ticker's connection drops (and may not come back at once)
        at = step()
        if rng.random() < 0.4:
            actions.append(Action(at, "fault", {"endpoint": "ws", "kind": rng.choice(WS_CONNECT_KINDS),
                                                "times": rng.choice((1, 2))}))
        actions.append(Action(at, "drop"))
    if rng.random() < 0.4:
        start, end = window(20, 60)
        actions.append(Action(start, "ws_loss", {"rate": rng.choice((0.2, 0.4, 0.6))}, end))
    if rng.random() < 0.4:
        start, end = window(20, 60)
        actions.append(Action(start, "ws_delay", {"seconds": rng.choice((0.05, 0.2, 0.5))}, end))
    if rng.random() < 0.35:
        start, end = window(20, 80)
        actions.append(Action(start, "book_lag", {"seconds": rng.choice((0.3, 0.6, 1.0))}, end))
    if rng.random() < 0.35:
        start, end = window(20, 80)
        actions.append(Action(start, "positions_lag", {"seconds": rng.choice((0.5, 1.0, 2.0))}, end))
    if rng.random() < 0.3:  # MARKET orders (exits and entries) refused by Kite's RMS for a while
        start, end = window(10, 40)
        actions.append(Action(start, "reject", {"types": "MARKET", "reason": MARKET_REFUSAL}, end))
    if rng.random() < 0.25:  # stops refused for a while
        start, end = window(10, 40)
        actions.append(Action(start, "reject", {"types": "SL-M", "reason": STOP_REFUSAL}, end))
    if rng.random() < 0.2:
        start, end = window(10, 40)
        actions.append(Action(start, "cancel_refusal", {"reason": "Order cannot be cancelled: RMS busy"}, end))
    if rng.random() < 0.3:  # market orders parked as limits that a fast move leaves behind
        start, end = window(15, 50)
        actions.append(Action(start, "stuck_market", {}, end))
    for _ in range(rng.choice((0, 0, 1, 2))):  # the exchange cancels a working stop
        actions.append(Action(step(), "exchange_cancel", {"reason": PROTECTION_CANCEL}))
    if rng.random() < 0.3:  # a price band change: a new tick size, which the engine learns a little later
        symbol = rng.choice(SYMBOLS)
        size = 0.05 if TICKS[symbol] == 0.1 else 0.1
        at = step()
        actions.append(Action(at, "tick_size", {"symbol": symbol, "size": size}))
        actions.append(Action(min(steps - 1, at + rng.randint(10, 60)), "learn_tick_size",
                              {"symbol": symbol, "size": size}))
    if rng.random() < 0.3:  # a stretch of random faults on every endpoint (the server's own seeded RNG)
        start, end = window(30, 90)
        actions.append(Action(start, "chaos", {"rate": rng.choice((0.05, 0.1, 0.15)), "seed": seed * 7919 + 1},
                              end))
    for _ in range(rng.choice((0, 1, 1, 2))):  # kill -9 and start again
        actions.append(Action(step(), "restart", {"down_s": rng.choice((0.0, 0.1, 0.3))}))
    for _ in range(2):  # quiet stretches (no ticks): the book settles and positions are compared
        actions.append(Action(step(), "pause", {"seconds": 1.4}))
    transition_delay_s = rng.choice((0.0, 0.0, 0.01, 0.03))
    partial_rate, hang_s = rng.choice((0.0, 0.15, 0.3, 0.5)), rng.choice((1.0, 1.5))
    cap = _levels(random.Random(f"{seed}:levels"), steps, actions)  # its own RNG: the faults above stay as they were
    actions.sort(key=lambda a: (a.step, a.kind))
    return Plan(seed, steps, prices, actions, transition_delay_s=transition_delay_s, partial_rate=partial_rate,
                hang_s=hang_s, max_modifications=cap)


def _levels(rng: random.Random, steps: int, actions: list[Action]) -> int:
    """The faults that test levels rather than presence: the engine's ticks behind Kite's price, circuit
    bands, a lowered modification cap with successor stops refused by RMS, and exits wanted by /flatten
    and the square-off. Adds them to ``actions``; returns the server's modification cap."""
    body = range(10, max(11, steps - 10))

    def window(lo: int, hi: int) -> tuple[int, int]:
        start = rng.choice(body)
        return start, min(steps - 1, start + rng.randint(lo, hi))

    if rng.random() < 0.4:  # the exchange moves first: Kite's last price and matching now, the engine's ticks later
        start, end = window(20, 80)
        actions.append(Action(start, "stale", {"seconds": rng.choice((0.02, 0.05, 0.2, 0.5, 1.0, 1.5))}, end))
    for symbol in SYMBOLS:  # the day's band, tight: targets and some trailed stops would fall outside it
        if rng.random() < 0.25:
            start, end = window(20, 80)
            late = rng.choice((0, 0, 5, 20, 50))  # steps until the engine reads it (0: at once, as at a refresh)
            actions.append(Action(start, "circuit", {"symbol": symbol, "below": rng.choice((0.002, 0.003, 0.005)),
                                                     "above": rng.choice((0.002, 0.003, 0.005)), "late": late}, end))
            if late:
                actions.append(Action(min(steps - 1, start + late), "learn_circuit", {"symbol": symbol}))
    cap = 25
    if rng.random() < 0.35:
        cap = rng.choice(MODIFICATION_CAPS)
        if rng.random() < 0.5:  # Kite's RMS refuses the successor of each stop at the cap, from a step on
            actions.append(Action(rng.choice(body[:max(1, len(body) // 3)]), "rms_successor",
                                  {"reason": SUCCESSOR_REFUSAL}, steps - 1))
    if rng.random() < 0.3:  # /flatten from chat, trading on (/flatten resume)
        actions.append(Action(rng.choice(body), "flatten"))
    if rng.random() < 0.2:  # the scheduler's square-off
        actions.append(Action(rng.choice(body), "square_off"))
    return cap
