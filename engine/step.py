"""The per-tick state machine of the fill model, shared by the live engine and the backtest loop.

``on_tick`` is the one jitted call per tick. For the instrument that ticked it, in this order:
fill the pending market order at this price; bracket exits (not on the tick that opened the
position); square-off; indicators and signals, which may leave a market order pending for the next
tick; mark to market and the daily loss limit. It returns ``ACT_*`` bits; the caller only touches
Python when a bit is set.
"""

import numpy as np
from numba import njit

from engine.kernels import (
    BRACKET_STOP,
    BRACKET_TARGET,
    BRACKET_TRAIL_MOVED,
    bracket_levels,
    bracket_step,
    round_to_tick,
)
from engine.layout import (
    A_DAY,
    A_ENTRIES_ALLOWED,
    A_HALTED,
    A_MAX_LOSS,
    A_MAX_QTY,
    A_MAX_RATE,
    A_MAX_TRADES,
    A_RATE_N,
    A_RATE_SEC,
    A_REALISED,
    A_TRADES,
    A_UNREAL,
    ACT_ENTRY_CANCELLED,
    ACT_ENTRY_FILL,
    ACT_ENTRY_ORDER,
    ACT_EXIT_FILL,
    ACT_EXIT_ORDER,
    ACT_HALT,
    ACT_IGNORED,
    ACT_NEW_SESSION,
    ACT_OTHERS,
    ACT_STOP_MOVED,
    C_ENTRY,
    C_EXIT,
    C_LAST,
    C_LTP,
    IST_OFFSET_NS,
    NS_PER_DAY,
    NS_PER_S,
    ORDER_ENTRY,
    ORDER_EXIT,
    P_ALLOW_SHORT,
    P_CLOSE_NS,
    P_KIND,
    P_OPEN_NS,
    P_QTY,
    P_SLIP,
    P_SQUARE_OFF_NS,
    P_STOP_PCT,
    P_TARGET_PCT,
    P_TICK,
    P_TRAIL_PCT,
    REASON_RISK,
    REASON_SIGNAL,
    REASON_SQUARE_OFF,
    REASON_STOP,
    REASON_TARGET,
    REASON_TRAIL,
    S_DAY,
    S_EMA_FAST,
    S_EMA_SLOW,
    S_ENTRY_PRICE,
    S_EVENTS,
    S_LAST_PRICE,
    S_LTP,
    S_OR_HIGH,
    S_OR_LOW,
    S_OUT_ENTRY_PRICE,
    S_OUT_EXIT_ENTRY,
    S_OUT_EXIT_PRICE,
    S_OUT_EXIT_QTY,
    S_OUT_PNL,
    S_OUT_REASON,
    S_PEND_KIND,
    S_PEND_REASON,
    S_PEND_SIDE,
    S_POS,
    S_PREV_PRICE,
    S_REALISED,
    S_SQUARED,
    S_STD,
    S_STOP,
    S_TARGET,
    S_TICKS,
    S_TRAILED,
    S_UNREAL,
    S_VWAP_PV,
    S_VWAP_V,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    SIG_LONG,
    SIG_SHORT,
)
from engine.strategies import SIG_EXIT_ANY, signal


@njit(cache=True)
def _book_exit(st, acct, clk, ts_ns, price, reason):
    pos = st[S_POS]
    entry = st[S_ENTRY_PRICE]
    pnl = (price - entry) * pos
    st[S_OUT_EXIT_PRICE] = price
    st[S_OUT_EXIT_QTY] = pos
    st[S_OUT_EXIT_ENTRY] = entry
    st[S_OUT_REASON] = reason
    st[S_OUT_PNL] = pnl
    st[S_REALISED] += pnl
    acct[A_REALISED] += pnl
    acct[A_UNREAL] -= st[S_UNREAL]
    st[S_UNREAL] = 0.0
    st[S_POS] = 0.0
    st[S_TRAILED] = 0.0
    clk[C_EXIT] = ts_ns


@njit(cache=True)
def _set_pending(st, acct, side, kind, reason):
    st[S_PEND_SIDE] = side
    st[S_PEND_KIND] = kind
    st[S_PEND_REASON] = reason
    acct[A_RATE_N] += 1.0


@njit(cache=True)
def _entries_open(pr, acct, ts_ns):
    sec = ts_ns // NS_PER_S
    if sec != acct[A_RATE_SEC]:
        acct[A_RATE_SEC] = sec
        acct[A_RATE_N] = 0.0
    return (acct[A_ENTRIES_ALLOWED] == 1.0 and acct[A_HALTED] == 0.0
            and acct[A_TRADES] < acct[A_MAX_TRADES] and acct[A_RATE_N] < acct[A_MAX_RATE]
            and pr[P_QTY] <= acct[A_MAX_QTY])


@njit(cache=True)
def step(st, pr, ring, acct, clk, ts_ns, tod, price, volume):
    """One in-session tick of one instrument (the session day is already current)."""
    act = 0
    opened = False
    side = st[S_PEND_SIDE]
    if side != 0.0:
        kind = st[S_PEND_KIND]
        st[S_PEND_SIDE] = 0.0
        st[S_PEND_KIND] = 0.0
        if kind == ORDER_ENTRY:
            if tod >= pr[P_SQUARE_OFF_NS]:
                acct[A_TRADES] -= 1.0
                act |= ACT_ENTRY_CANCELLED
            else:
                fill = round_to_tick(price + side * pr[P_SLIP], pr[P_TICK])
                target, stop = bracket_levels(side, fill, pr[P_TARGET_PCT], pr[P_STOP_PCT], pr[P_TICK])
                st[S_POS] = side * pr[P_QTY]
                st[S_ENTRY_PRICE] = fill
                st[S_TARGET] = target
                st[S_STOP] = stop
                st[S_TRAILED] = 0.0
                st[S_OUT_ENTRY_PRICE] = fill
                clk[C_ENTRY] = ts_ns
                act |= ACT_ENTRY_FILL
                opened = True
        else:
            fill = round_to_tick(price + side * pr[P_SLIP], pr[P_TICK])
            _book_exit(st, acct, clk, ts_ns, fill, st[S_PEND_REASON])
            act |= ACT_EXIT_FILL

    pos = st[S_POS]
    if pos != 0.0 and not opened:
        sgn = 1.0 if pos > 0.0 else -1.0
        code, px, new_stop = bracket_step(sgn, price, st[S_TARGET], st[S_STOP], pr[P_TRAIL_PCT],
                                          pr[P_TICK], pr[P_SLIP])
        if code == BRACKET_TARGET:
            _book_exit(st, acct, clk, ts_ns, px, REASON_TARGET)
            act |= ACT_EXIT_FILL
        elif code == BRACKET_STOP:
            _book_exit(st, acct, clk, ts_ns, px, REASON_TRAIL if st[S_TRAILED] == 1.0 else REASON_STOP)
            act |= ACT_EXIT_FILL
        elif code == BRACKET_TRAIL_MOVED:
            st[S_STOP] = new_stop
            st[S_TRAILED] = 1.0
            act |= ACT_STOP_MOVED

    if tod >= pr[P_SQUARE_OFF_NS]:
        if st[S_POS] != 0.0:
            _book_exit(st, acct, clk, ts_ns, price, REASON_SQUARE_OFF)
            acct[A_RATE_N] += 1.0
            act |= ACT_EXIT_FILL
        st[S_SQUARED] = 1.0

    st[S_TICKS] += 1.0
    sig = signal(int(pr[P_KIND]), st, pr, ring, tod, price, volume)
    pos = st[S_POS]
    if pos > 0.0:
        if sig in (SIG_SHORT, SIG_EXIT_LONG, SIG_EXIT_ANY):
            _set_pending(st, acct, -1.0, ORDER_EXIT, REASON_SIGNAL)
            act |= ACT_EXIT_ORDER
    elif pos < 0.0:
        if sig in (SIG_LONG, SIG_EXIT_SHORT, SIG_EXIT_ANY):
            _set_pending(st, acct, 1.0, ORDER_EXIT, REASON_SIGNAL)
            act |= ACT_EXIT_ORDER
    elif (st[S_PEND_SIDE] == 0.0 and st[S_SQUARED] == 0.0
          and (sig == SIG_LONG or (sig == SIG_SHORT and pr[P_ALLOW_SHORT] == 1.0))
          and _entries_open(pr, acct, ts_ns)):
        _set_pending(st, acct, float(sig), ORDER_ENTRY, REASON_SIGNAL)
        acct[A_TRADES] += 1.0
        act |= ACT_ENTRY_ORDER

    st[S_PREV_PRICE] = price
    st[S_LAST_PRICE] = price
    clk[C_LAST] = ts_ns
    unreal = (price - st[S_ENTRY_PRICE]) * st[S_POS] if st[S_POS] != 0.0 else 0.0
    acct[A_UNREAL] += unreal - st[S_UNREAL]
    st[S_UNREAL] = unreal
    if acct[A_HALTED] == 0.0 and acct[A_REALISED] + acct[A_UNREAL] <= -acct[A_MAX_LOSS]:
        acct[A_HALTED] = 1.0
        act |= ACT_HALT
    return act


@njit(cache=True)
def flatten(st, acct, reason):
    """Drop a pending entry and send a market exit for an open position (fills at the next tick)."""
    act = 0
    if st[S_PEND_KIND] == ORDER_ENTRY:
        st[S_PEND_SIDE] = 0.0
        st[S_PEND_KIND] = 0.0
        acct[A_TRADES] -= 1.0
        act |= ACT_ENTRY_CANCELLED
    pos = st[S_POS]
    if pos != 0.0 and st[S_PEND_KIND] != ORDER_EXIT:
        _set_pending(st, acct, -1.0 if pos > 0.0 else 1.0, ORDER_EXIT, reason)
        act |= ACT_EXIT_ORDER
    return act


@njit(cache=True)
def close_session(st, acct, clk):
    """The session ended with no tick at or after square-off: exit at its last tick's price."""
    act = 0
    if st[S_PEND_KIND] == ORDER_ENTRY:
        acct[A_TRADES] -= 1.0
        act |= ACT_ENTRY_CANCELLED
    st[S_PEND_SIDE] = 0.0
    st[S_PEND_KIND] = 0.0
    if st[S_POS] != 0.0:
        _book_exit(st, acct, clk, clk[C_LAST], st[S_LAST_PRICE], REASON_SQUARE_OFF)
        act |= ACT_EXIT_FILL
    return act


@njit(cache=True)
def start_session(st, day):
    st[S_DAY] = day
    st[S_TICKS] = 0.0
    st[S_SQUARED] = 0.0
    st[S_REALISED] = 0.0
    st[S_PREV_PRICE] = np.nan
    st[S_EMA_FAST] = np.nan
    st[S_EMA_SLOW] = np.nan
    st[S_VWAP_PV] = 0.0
    st[S_VWAP_V] = 0.0
    st[S_OR_HIGH] = np.nan
    st[S_OR_LOW] = np.nan
    for k in range(S_STD, S_STD + 5):
        st[k] = 0.0


@njit(cache=True)
def _park(st, j, act, e):
    """Park row ``j``'s events in its S_EVENTS for the caller to collect before the returned ones."""
    if e == 0:
        return act
    st[j, S_EVENTS] = int(st[j, S_EVENTS]) | e
    return act | ACT_OTHERS


@njit(cache=True)
def on_tick(st, pr, ring, acct, clk, i, ts_ns, price, volume):
    """Process one tick of instrument ``i``; returns ACT_* bits (ACT_IGNORED outside the session).

    A tick from a new IST day first closes what the previous session left open on every
    instrument (events parked, ACT_OTHERS) and resets the day's indicators, counters and loss
    limit. When the loss limit halts trading, every instrument is flattened (row ``i``'s events
    in the result, the others parked).
    """
    st[i, S_LTP] = price
    clk[i, C_LTP] = ts_ns
    local = ts_ns + IST_OFFSET_NS
    day = local // NS_PER_DAY
    tod = local - day * NS_PER_DAY
    if tod < pr[i, P_OPEN_NS] or tod >= pr[i, P_CLOSE_NS]:
        return ACT_IGNORED
    act = 0
    if day != acct[A_DAY]:
        for j in range(st.shape[0]):
            act = _park(st, j, act, close_session(st[j], acct, clk[j]))
            start_session(st[j], day)
        acct[A_DAY] = day
        acct[A_REALISED] = 0.0
        acct[A_UNREAL] = 0.0
        acct[A_TRADES] = 0.0
        acct[A_HALTED] = 0.0
        act |= ACT_NEW_SESSION
    act |= step(st[i], pr[i], ring[i], acct, clk[i], ts_ns, tod, price, volume)
    if act & ACT_HALT:
        for j in range(st.shape[0]):
            e = flatten(st[j], acct, REASON_RISK)
            act = act | e if j == i else _park(st, j, act, e)
    return act
