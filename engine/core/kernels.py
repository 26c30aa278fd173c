"""Bracket kernels and the call of a strategy's decision: O(1) per tick, allocation-free, pure
functions over numpy arrays (the indicators are engine.core.indicators).

State lives in caller-owned arrays so the same kernels run one tick at a time in live trading and
inside the jitted backtest loop. Nothing here imports the rest of the project.
"""

import math

from numba import config, njit, types
from numba.core import cgutils
from numba.experimental.function_type import _get_jit_address, _get_wrapper_address
from numba.extending import intrinsic

# Kernels allocate nothing, so they compile without Numba's reference counting (_nrt=False): with
# it, every array handed between kernels costs an atomic incref/decref pair per tick, which made
# the backtest loop 4-5x slower. Inner kernels are inlined into the entry points, which are cached.
# error_model="numpy": no Python zero-division checks (and their exception paths) on the hot path.
#
# Two ways in. A `kernel` compiles once per signature as a function of its own, which LLVM inlines
# wherever it is called (forceinline); Numba's own inlining (`inlined`) types and lowers a copy of it at
# each call site instead, which made a fresh install's first backtest spend 8 of its 12 s compiling
# the loop. `inlined` is kept where it measured faster or is needed: the tick's own path in
# engine.core.step (2-8 % more ticks a second than LLVM-inlined, whose calls that may fail leave
# exception-status checks and spills in the loop), a kernel returning a view (a call cannot without
# reference counting), and small ones called with constants (Numba compiles a call again per literal).
# No cfunc wrapper: a kernel is never called through a C pointer. An entry says forceinline=False,
# else one first compiled from a kernel would inherit it.
kernel = njit(error_model="numpy", forceinline=True, no_cfunc_wrapper=True, _nrt=False)
inlined = njit(error_model="numpy", inline="always", _nrt=False)
entry = njit(cache=True, error_model="numpy", _nrt=False, forceinline=False)

# Every strategy's decision has this signature (engine.strategies.api). The kernels call it through
# its address, read from an int64 array: compiled once whatever strategies run, and no per-call cost
# of typing a tuple of functions in Python (that costs 100 us a tick).
DECISION = types.int64(types.float64[::1], types.float64)
_DECISION_TYPE = types.FunctionType(DECISION)

if config.DISABLE_JIT:  # pure Python (a benchmark's reference): an "address" indexes the functions
    _PURE: list = []

    def decision_address(compiled) -> tuple[int, int]:
        _PURE.append(compiled)
        return len(_PURE) - 1, 0

    def decision(jit_addr, c_addr):
        return _PURE[jit_addr]
else:
    def decision_address(compiled) -> tuple[int, int]:
        """The addresses ``decision`` takes: the compiled decision's own and its C wrapper's."""
        return _get_jit_address(compiled, DECISION), _get_wrapper_address(compiled, DECISION)

    @intrinsic
    def decision(typingctx, jit_addr, c_addr):
        """The decision at these addresses (``decision_address``), callable in a kernel."""
        def codegen(context, builder, signature, args):
            fn = cgutils.create_struct_proxy(_DECISION_TYPE)(context, builder)
            voidptr = context.get_value_type(types.voidptr)
            fn.jit_addr = builder.inttoptr(args[0], voidptr)
            fn.c_addr = builder.inttoptr(args[1], voidptr)
            fn.py_addr = context.get_constant_null(types.voidptr)
            return fn._getvalue()

        return _DECISION_TYPE(types.int64, types.int64), codegen

# bracket_step results
BRACKET_HOLD = 0
BRACKET_TARGET = 1
BRACKET_STOP = 2
BRACKET_TRAIL_MOVED = 3


@kernel
def round_to_tick(x: float, tick: float) -> float:
    # The second round strips float noise (1074.35 / 0.05 * 0.05 = 1074.3500000000001).
    return round(round(x / tick) * tick, 8)


@kernel
def rolling_extreme_update(dq_val, dq_idx, meta, price: float, window: int, sign: float) -> float:
    """Rolling maximum (``sign=1``) or minimum (``sign=-1``) of the last ``window`` prices.

    A monotonic deque in two ring arrays of capacity ``window`` (values, tick numbers); ``meta``
    holds the tick count, the deque head and its length. Amortised O(1), no allocation.
    """
    count = meta[0]
    head = int(meta[1])
    length = int(meta[2])
    if length > 0 and dq_idx[head] <= count - window:
        head = (head + 1) % window
        length -= 1
    key = sign * price
    while length > 0:
        last = (head + length - 1) % window
        if sign * dq_val[last] <= key:
            length -= 1
        else:
            break
    slot = (head + length) % window
    dq_val[slot] = price
    dq_idx[slot] = count
    length += 1
    meta[0] = count + 1
    meta[1] = head
    meta[2] = length
    return dq_val[head]


@kernel
def bracket_levels(side: float, fill: float, target_pct: float, stop_pct: float, tick: float):
    """Target and stop for a position of ``side`` (+1 long, -1 short) filled at ``fill``, on the tick
    grid and each at least one tick away from the fill: a level rounded onto the entry would exit on
    the next tick at zero (a long at 20.00 with 0.1 %/0.1 % on a 0.05 tick)."""
    target = _tick_away(side, fill, round_to_tick(fill * (1.0 + side * target_pct / 100.0), tick), tick)
    stop = _tick_away(-side, fill, round_to_tick(fill * (1.0 - side * stop_pct / 100.0), tick), tick)
    return target, stop


@kernel
def _tick_away(direction: float, fill: float, level: float, tick: float) -> float:
    """``level``, or the first grid price a whole tick past ``fill`` in ``direction`` when ``level`` is
    nearer. Rounded outwards: a live entry's average over partial fills may lie between grid prices."""
    edge = direction * math.ceil(direction * (fill + direction * tick) / tick - 1e-6) * tick
    return level if direction * (level - edge) >= -1e-9 else round(edge, 8)


@kernel
def bracket_step(side: float, price: float, target: float, stop: float, trail_pct: float,
                 tick: float, slip: float, min_step: float = 0.0):
    """One tick of a bracket: returns (BRACKET_* code, exit price, stop after this tick).

    Target first (fills at the target price when the tick trades at or through it), then the stop
    (fills at the tick's price moved by the slippage, so a gap through the stop costs the gap),
    then the trailing stop tightens to ``price * (1 -/+ trail_pct%)`` rounded to the tick, by at
    least ``min_step`` (NaN ``trail_pct``: no trailing, or not yet allowed to move again).
    """
    if side * (price - target) >= 0.0:
        return BRACKET_TARGET, target, stop
    if side * (price - stop) <= 0.0:
        return BRACKET_STOP, round_to_tick(price - side * slip, tick), stop
    new_stop = trail_stop(side, price, stop, trail_pct, tick, min_step)
    return (BRACKET_TRAIL_MOVED if new_stop != stop else BRACKET_HOLD), 0.0, new_stop


@kernel
def bracket_due(side: float, price: float, target: float, stop: float, trail_pct: float, tick: float) -> bool:
    """False only where ``bracket_step`` holds for certain: the tick is short of the target and the
    stop and the trailing level is more than a tick short of the stop (``trail_stop``'s own test).
    Evaluated without a branch."""
    level = price * (1.0 - side * trail_pct / 100.0)
    return (side * (price - target) >= 0.0) | (side * (price - stop) <= 0.0) | (side * (level - stop) >= -tick)


@kernel
def trail_stop(side: float, price: float, stop: float, trail_pct: float, tick: float,
               min_step: float = 0.0) -> float:
    """The stop after this tick: ``price * (1 -/+ trail_pct%)`` on the tick grid when tighter by at
    least ``min_step`` (a tick's float noise tolerated)."""
    if trail_pct == trail_pct:
        level = price * (1.0 - side * trail_pct / 100.0)
        if side * (level - stop) < -tick:  # on the grid it moves half a tick at most: not past the stop
            return stop
        candidate = round_to_tick(level, tick)
        move = side * (candidate - stop)
        if move > 0.0 and move >= min_step - 1e-9:
            return candidate
    return stop
