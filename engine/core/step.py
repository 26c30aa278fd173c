"""The per-tick state machine of the fill model, shared by the live engine and the backtest loop.

``on_tick`` is the one jitted call per tick. For the instrument that ticked it, in this order:
fill the pending market order at this price; bracket exits (not on the tick that opened the
position); square-off; the strategy (a tick strategy on every tick; a candle strategy when this
tick closes its bar: the bar updates the indicators and the decision runs, then the tick starts the
next bar; the session's last bar is closed by ``end_bar``), which may leave a market order pending
for the next tick; mark to market and the daily loss limit, which counts the day's charges (closed
trades' and open positions' entries) as the trader pays them. It returns ``ACT_*`` bits; the caller
only touches Python when a bit is set.

What a row's strategy does with a bar goes through three hooks (``HOOKS``). Here they serve any
strategy: its indicators updated by kind (``update_all``), its decision called through its address
(``kernels.decision``), so these kernels compile once whatever strategies run.
``engine.strategies.compiled`` writes the backtest loop out again for a set of strategies with the
hooks replaced by their own code. ``rows`` holds three planes of strategy rows, one row per
instrument (``ROW_NOW``; ``ROW_FRESH``, its fresh form; ``ROW_SAVED``, live, the row as it was before
its last decision), ``links`` each instrument's decision address and where its indicators sit
(``LINK_*``). Two arrays, not five: each array argument costs the live tick path Numba's dispatch.

Kernels run once a trade rather than once a tick (``_close``, ``_hold``, ``_book_entry``), and the
live half of a tick that a backtest never runs (``_live_orders``), are entries, called rather than
inlined: inlined at each of their call sites, they made every loop that holds them several times
longer to compile, for no faster tick.

The tick's own path (``in_session``, ``step``, the fill model, the candle, the decision's handling)
is ``inlined``: Numba copies it into the loop that runs it, once per loop. The kernels it reaches
that serve more than one caller (brackets, charges, a bar into the strategy and the hooks) are
``kernel``s, compiled once and inlined by LLVM: inlined by Numba at every call site instead, the
backtest loop took 12 s to compile on a fresh install (now about 7), and the tick path LLVM-inlined
whole ran 2-8 % fewer ticks a second (``engine.core.kernels``).
"""

import numpy as np

from engine.core.costs import N_RATES, trade_charges
from engine.core.indicators import bars_needed, update_all
from engine.core.kernels import (
    BRACKET_STOP,
    BRACKET_TARGET,
    BRACKET_TRAIL_MOVED,
    bracket_due,
    bracket_levels,
    bracket_step,
    decision,
    entry,
    inlined,
    kernel,
    round_to_tick,
    trail_stop,
)
from engine.core.layout import (
    A_CHARGES,
    A_COSTS,
    A_DAY,
    A_ENTRIES_ALLOWED,
    A_HALTED,
    A_LIVE,
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
    ACT_EXIT_PART,
    ACT_HALT,
    ACT_IGNORED,
    ACT_NEW_SESSION,
    ACT_OTHERS,
    ACT_STOP_MOVED,
    C_DAY,
    C_DAY0,
    C_ENTRY,
    C_EXIT,
    C_LAST,
    C_LTP,
    C_TRAIL,
    IST_OFFSET_NS,
    LINK_C,
    LINK_IND,
    LINK_JIT,
    NS_PER_DAY,
    NS_PER_S,
    ORDER_ENTRY,
    ORDER_EXIT,
    P_ALLOW_SHORT,
    P_CLOSE_NS,
    P_N_IND,
    P_OPEN_NS,
    P_QTY,
    P_RESET,
    P_SLIP,
    P_SQUARE_OFF_NS,
    P_STOP_PCT,
    P_TARGET_PCT,
    P_TF_NS,
    P_TICK,
    P_TRAIL_GAP_NS,
    P_TRAIL_PCT,
    P_TRAIL_STEP,
    P_WARMUP,
    REASON_RISK,
    REASON_SIGNAL,
    REASON_SQUARE_OFF,
    REASON_STOP,
    REASON_TARGET,
    REASON_TRAIL,
    ROW_FRESH,
    ROW_NOW,
    ROW_SAVED,
    S_BAR_CLOSE,
    S_BAR_END,
    S_BAR_HIGH,
    S_BAR_LOW,
    S_BAR_OPEN,
    S_BAR_START,
    S_BAR_VOLUME,
    S_BARS,
    S_BLOCKED,
    S_CHARGES,
    S_DAY,
    S_DAY_CHARGES,
    S_ENTRY_PRICE,
    S_EVENTS,
    S_LAST_PRICE,
    S_LTP,
    S_OUT_CHARGES,
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
    S_REALISED,
    S_REDECIDE,
    S_SQUARED,
    S_STOP,
    S_TARGET,
    S_TRAILED,
    S_UNREAL,
    SIG_EXIT_ANY,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    SIG_LONG,
    SIG_SHORT,
    X_CLOSE,
    X_HIGH,
    X_LOW,
    X_OPEN,
    X_SESSION,
    X_START,
    X_VOLUME,
)


@inlined
def _book_exit(st, acct, clk, i, ts_ns, price, reason):
    """Close the whole position at ``price``."""
    # a float, not the literal REASON_*: Numba compiles a called function again for each literal it is given
    _close(st, acct, clk, i, ts_ns, st[i, S_POS], price, float(reason))


@entry
def _close(st, acct, clk, i, ts_ns, qty, price, reason):
    """Close ``qty`` (signed like the position, at most all of it) at ``price``; the S_OUT_* exit
    fields accumulate over a position's exit fills. Returns True once the position is flat."""
    entry = st[i, S_ENTRY_PRICE]
    pnl = (price - entry) * qty
    closed = st[i, S_OUT_EXIT_QTY]
    if closed == 0.0:
        st[i, S_OUT_EXIT_PRICE] = price
    else:
        st[i, S_OUT_EXIT_PRICE] = (st[i, S_OUT_EXIT_PRICE] * closed + price * qty) / (closed + qty)
    st[i, S_OUT_EXIT_QTY] = closed + qty
    st[i, S_OUT_EXIT_ENTRY] = entry
    st[i, S_OUT_REASON] = reason
    st[i, S_OUT_PNL] += pnl
    st[i, S_REALISED] += pnl
    acct[A_REALISED] += pnl
    acct[A_UNREAL] -= st[i, S_UNREAL]
    st[i, S_UNREAL] = 0.0  # the next tick marks what is left
    st[i, S_POS] -= qty
    clk[i, C_EXIT] = ts_ns
    if st[i, S_POS] != 0.0:
        return False
    st[i, S_TRAILED] = 0.0
    # the trade's charges (entry and exit orders) replace those booked for its entry
    closed = abs(st[i, S_OUT_EXIT_QTY])
    long = st[i, S_OUT_EXIT_QTY] > 0.0
    exit_price = st[i, S_OUT_EXIT_PRICE]
    rates = acct[A_COSTS : A_COSTS + N_RATES]
    charges = trade_charges(rates, closed, entry if long else exit_price, exit_price if long else entry)
    acct[A_CHARGES] += charges - st[i, S_CHARGES]
    st[i, S_CHARGES] = 0.0
    st[i, S_OUT_CHARGES] = charges
    st[i, S_DAY_CHARGES] += charges
    return True


@entry
def _book_entry(st, acct, i):
    """Book the charges of the open position's entry order now, so the loss limit counts them."""
    pos = st[i, S_POS]
    price = st[i, S_ENTRY_PRICE]
    rates = acct[A_COSTS : A_COSTS + N_RATES]
    charges = trade_charges(rates, abs(pos), price if pos > 0.0 else 0.0, price if pos < 0.0 else 0.0)
    acct[A_CHARGES] += charges - st[i, S_CHARGES]
    st[i, S_CHARGES] = charges


@inlined
def _set_pending(st, acct, i, side, kind, reason):
    st[i, S_PEND_SIDE] = side
    st[i, S_PEND_KIND] = kind
    st[i, S_PEND_REASON] = reason
    acct[A_RATE_N] += 1.0


@inlined
def _entries_open(st, pr, acct, i, ts_ns):
    sec = ts_ns // NS_PER_S
    if sec != acct[A_RATE_SEC]:
        acct[A_RATE_SEC] = sec
        acct[A_RATE_N] = 0.0
    return (acct[A_ENTRIES_ALLOWED] == 1.0 and acct[A_HALTED] == 0.0 and st[i, S_BLOCKED] == 0.0
            and acct[A_TRADES] < acct[A_MAX_TRADES] and acct[A_RATE_N] < acct[A_MAX_RATE]
            and pr[i, P_QTY] <= acct[A_MAX_QTY])


@inlined
def _simulated_fills(st, pr, acct, clk, i, ts_ns, tod, price):
    """The fill model: pending market order at this price, then bracket exits, then square-off."""
    act = 0
    opened = False
    side = st[i, S_PEND_SIDE]
    if side != 0.0:
        kind = st[i, S_PEND_KIND]
        st[i, S_PEND_SIDE] = 0.0
        st[i, S_PEND_KIND] = 0.0
        if kind == ORDER_ENTRY:
            if tod >= pr[i, P_SQUARE_OFF_NS]:
                acct[A_TRADES] -= 1.0
                act |= ACT_ENTRY_CANCELLED
            else:
                fill = round_to_tick(price + side * pr[i, P_SLIP], pr[i, P_TICK])
                act |= _hold(st, pr, clk, i, ts_ns, side * pr[i, P_QTY], fill)
                _book_entry(st, acct, i)
                opened = True
        else:
            fill = round_to_tick(price + side * pr[i, P_SLIP], pr[i, P_TICK])
            _book_exit(st, acct, clk, i, ts_ns, fill, st[i, S_PEND_REASON])
            act |= ACT_EXIT_FILL

    pos = st[i, S_POS]
    trail = _trail(pr, clk, i, ts_ns)
    if st.shape[0] == 1:  # one instrument: a branch on its position is predicted (a position lasts)
        sgn = 1.0 if pos > 0.0 else -1.0
        due = pos != 0.0
    else:
        # The side, NaN when flat (0 / 0), which every comparison in bracket_due fails: flat and held take one
        # branch, taken only where the bracket may act. Branching on the position (or selecting the side,
        # which LLVM turns into branches), the predictor missed whenever ticks of a held and a flat
        # instrument interleaved.
        sgn = pos / abs(pos)
        due = bracket_due(sgn, price, st[i, S_TARGET], st[i, S_STOP], trail, pr[i, P_TICK])
    if due & (not opened):
        code, px, new_stop = bracket_step(sgn, price, st[i, S_TARGET], st[i, S_STOP], trail,
                                          pr[i, P_TICK], pr[i, P_SLIP], pr[i, P_TRAIL_STEP])
        if code == BRACKET_TARGET:
            _book_exit(st, acct, clk, i, ts_ns, px, REASON_TARGET)
            act |= ACT_EXIT_FILL
        elif code == BRACKET_STOP:
            _book_exit(st, acct, clk, i, ts_ns, px, REASON_TRAIL if st[i, S_TRAILED] == 1.0 else REASON_STOP)
            act |= ACT_EXIT_FILL
        elif code == BRACKET_TRAIL_MOVED:
            st[i, S_STOP] = new_stop
            st[i, S_TRAILED] = 1.0
            clk[i, C_TRAIL] = ts_ns
            act |= ACT_STOP_MOVED

    if tod >= pr[i, P_SQUARE_OFF_NS]:
        if st[i, S_POS] != 0.0:
            _book_exit(st, acct, clk, i, ts_ns, price, REASON_SQUARE_OFF)
            acct[A_RATE_N] += 1.0
            act |= ACT_EXIT_FILL
        st[i, S_SQUARED] = 1.0

    return act


@inlined
def _trail(pr, clk, i, ts_ns):
    """The trailing percentage, or NaN while the stop may not move yet (trail_interval_s)."""
    if ts_ns - clk[i, C_TRAIL] < pr[i, P_TRAIL_GAP_NS]:
        return np.nan
    return pr[i, P_TRAIL_PCT]


@inlined
def _leg_crossed(st, i, price):
    """Live: this tick trades at or through the resting target or stop, so the broker is filling
    that leg now; what the tick decides waits for that fill (as the fill model's exit comes first)."""
    pos = st[i, S_POS]
    if pos == 0.0 or st[i, S_PEND_KIND] == ORDER_EXIT:
        return False
    sgn = 1.0 if pos > 0.0 else -1.0
    return sgn * (price - st[i, S_TARGET]) >= 0.0 or sgn * (price - st[i, S_STOP]) <= 0.0


@entry
def _live_orders(st, pr, acct, clk, i, ts_ns, tod, price, crossed):
    """With a real broker the stop and target rest there: the kernel only trails the stop (not on a
    tick that fills a leg) and sends the square-off; fills come back through
    ``apply_entry_fill``/``apply_exit_fill``."""
    act = 0
    pos = st[i, S_POS]
    if pos == 0.0 or st[i, S_PEND_KIND] == ORDER_EXIT or crossed:
        if tod >= pr[i, P_SQUARE_OFF_NS]:
            st[i, S_SQUARED] = 1.0
        return act
    sgn = 1.0 if pos > 0.0 else -1.0
    new_stop = trail_stop(sgn, price, st[i, S_STOP], _trail(pr, clk, i, ts_ns), pr[i, P_TICK], pr[i, P_TRAIL_STEP])
    if new_stop != st[i, S_STOP]:
        st[i, S_STOP] = new_stop
        st[i, S_TRAILED] = 1.0
        clk[i, C_TRAIL] = ts_ns
        act |= ACT_STOP_MOVED
    if tod >= pr[i, P_SQUARE_OFF_NS]:
        _set_pending(st, acct, i, -sgn, ORDER_EXIT, REASON_SQUARE_OFF)
        st[i, S_SQUARED] = 1.0
        act |= ACT_EXIT_ORDER
    return act


# --- the strategy hooks, for any strategy (engine.strategies.compiled replaces them by name) ------
@kernel
def _indicators(x, pr, links, i, session, start, high, low, close, volume):
    """The bar into row ``i``'s indicators."""
    _update_all(x[i], _offsets(pr, links, i), session, start, high, low, close, volume)


@kernel
def _needed(x, pr, links, i):
    """The most bars any of row ``i``'s indicators still needs (0: all are ready)."""
    return bars_needed(x[i], _offsets(pr, links, i))


@kernel
def _answer(x, links, i, side):
    """Row ``i``'s decision on its row as it stands, for a position of ``side``."""
    return decision(links[i, LINK_JIT], links[i, LINK_C])(x[i], side)


HOOKS = ("_indicators", "_needed", "_answer")


@entry
def _update_all(s, offsets, session, start, high, low, close, volume):
    # A called function, not inlined into the kernels that feed bars: inlined, the whole indicator
    # library made on_tick take minutes more to compile, for no faster tick.
    update_all(s, offsets, session, start, high, low, close, volume)


@kernel
def _feed(st, pr, x, links, i, open_, high, low, close, volume, start):
    """A closed bar (or a tick) into row ``i``'s strategy row and its indicators."""
    x[i, X_OPEN] = open_
    x[i, X_HIGH] = high
    x[i, X_LOW] = low
    x[i, X_CLOSE] = close
    x[i, X_VOLUME] = volume
    x[i, X_START] = start
    x[i, X_SESSION] = st[i, S_DAY]
    _indicators(x, pr, links, i, st[i, S_DAY], start, high, low, close, volume)
    st[i, S_BARS] += 1.0


@inlined
def _offsets(pr, links, i):
    """Where row ``i``'s indicators sit in its strategy row."""
    return links[i, LINK_IND : LINK_IND + int(pr[i, P_N_IND])]


@kernel
def _close_bar(st, pr, x, links, i):
    """The forming bar is complete: into the indicators."""
    _feed(st, pr, x, links, i, st[i, S_BAR_OPEN], st[i, S_BAR_HIGH], st[i, S_BAR_LOW], st[i, S_BAR_CLOSE],
          st[i, S_BAR_VOLUME], st[i, S_BAR_START])
    st[i, S_BAR_END] = -1.0


@inlined
def _candle(st, pr, x, links, i, tod, price, volume):
    """This tick into its bar (bar k covers [open + k·N, open + (k+1)·N)); True when it first closed
    the bar before (fed to the indicators: the decision is due). One comparison a tick mid-bar."""
    if tod < st[i, S_BAR_END]:
        if price > st[i, S_BAR_HIGH]:
            st[i, S_BAR_HIGH] = price
        if price < st[i, S_BAR_LOW]:
            st[i, S_BAR_LOW] = price
        st[i, S_BAR_CLOSE] = price
        st[i, S_BAR_VOLUME] += volume
        return False
    closed = st[i, S_BAR_END] >= 0.0
    if closed:
        _close_bar(st, pr, x, links, i)
    tf = pr[i, P_TF_NS]
    start = (tod - pr[i, P_OPEN_NS]) // tf * tf
    st[i, S_BAR_START] = start
    st[i, S_BAR_END] = pr[i, P_OPEN_NS] + start + tf
    st[i, S_BAR_OPEN] = price
    st[i, S_BAR_HIGH] = price
    st[i, S_BAR_LOW] = price
    st[i, S_BAR_CLOSE] = price
    st[i, S_BAR_VOLUME] = volume
    return closed


@kernel
def _ask(st, x, links, i):
    """Row ``i``'s decision on its row as it stands, for the position it holds."""
    pos = st[i, S_POS]
    return _answer(x, links, i, 1.0 if pos > 0.0 else (-1.0 if pos < 0.0 else 0.0))


@inlined
def _keep_row(x, xs, i):
    """Live: the row before its decision, so the decision can be made again after a late fill."""
    for k in range(x.shape[1]):
        xs[i, k] = x[i, k]


@inlined
def step(st, pr, acct, clk, x, xs, links, i, ts_ns, tod, price, volume):
    """One in-session tick of one instrument (the session day is already current)."""
    act = 0
    crossed = False
    live = acct[A_LIVE] == 1.0
    if live:
        crossed = _leg_crossed(st, i, price)
        act = _live_orders(st, pr, acct, clk, i, ts_ns, tod, price, crossed)
    else:
        act = _simulated_fills(st, pr, acct, clk, i, ts_ns, tod, price)

    if pr[i, P_TF_NS] == 0.0:
        _feed(st, pr, x, links, i, price, price, price, price, volume, tod - pr[i, P_OPEN_NS])
        due = True
    else:
        due = _candle(st, pr, x, links, i, tod, price, volume)
    if due:
        ready = st[i, S_BARS] >= pr[i, P_WARMUP] and _needed(x, pr, links, i) == 0
        if live:
            _keep_row(x, xs, i)
        sig = _ask(st, x, links, i)  # runs while warming up too: its memory stays current
        decided = 0 if crossed or not ready else _decide(st, pr, acct, i, ts_ns, sig)
        # an answer acted on is spent; one not yet may be asked again on the position a later fill leaves
        st[i, S_REDECIDE] = 1.0 if ready and not decided else 0.0
        act |= decided
    else:
        st[i, S_REDECIDE] = 0.0

    st[i, S_LAST_PRICE] = price
    clk[i, C_LAST] = ts_ns
    pos = st[i, S_POS]
    marked = (price - st[i, S_ENTRY_PRICE]) * pos
    unreal = marked if pos != 0.0 else 0.0  # a select, no branch on the position (see _simulated_fills)
    unreal_all = acct[A_UNREAL] + (unreal - st[i, S_UNREAL])  # kept: the loss limit reads it again below
    acct[A_UNREAL] = unreal_all
    st[i, S_UNREAL] = unreal
    if acct[A_HALTED] == 0.0 and acct[A_REALISED] + unreal_all - acct[A_CHARGES] <= -acct[A_MAX_LOSS]:
        acct[A_HALTED] = 1.0
        act |= ACT_HALT
    return act


@inlined
def _decide(st, pr, acct, i, ts_ns, sig):
    """What a signal does to the position: exit it, enter one, or nothing."""
    pos = st[i, S_POS]
    if st[i, S_PEND_KIND] == ORDER_EXIT:
        return 0  # an exit is already on its way (live: until the broker fills it)
    if pos > 0.0:
        if sig in (SIG_SHORT, SIG_EXIT_LONG, SIG_EXIT_ANY):
            _set_pending(st, acct, i, -1.0, ORDER_EXIT, REASON_SIGNAL)
            return ACT_EXIT_ORDER
    elif pos < 0.0:
        if sig in (SIG_LONG, SIG_EXIT_SHORT, SIG_EXIT_ANY):
            _set_pending(st, acct, i, 1.0, ORDER_EXIT, REASON_SIGNAL)
            return ACT_EXIT_ORDER
    elif ((sig == SIG_LONG or (sig == SIG_SHORT and pr[i, P_ALLOW_SHORT] == 1.0))
          and st[i, S_PEND_SIDE] == 0.0 and st[i, S_SQUARED] == 0.0 and _entries_open(st, pr, acct, i, ts_ns)):
        _set_pending(st, acct, i, float(sig), ORDER_ENTRY, REASON_SIGNAL)
        acct[A_TRADES] += 1.0
        return ACT_ENTRY_ORDER
    return 0


@inlined
def _decide_again(st, pr, acct, clk, x, xs, links, i):
    """Live: a fill arrived after the tick it belongs to; that tick's decision is made again, from
    the row as it was before it, on the position the fill left (the fill model fills first, then
    decides), until one is acted on."""
    if st[i, S_REDECIDE] != 1.0:
        return 0
    for k in range(x.shape[1]):
        x[i, k] = xs[i, k]
    act = _decide(st, pr, acct, i, clk[i, C_LAST], _ask(st, x, links, i))
    if act:
        st[i, S_REDECIDE] = 0.0
    return act


@entry
def decide_again(st, pr, acct, clk, rows, links, i):
    """Live: the last tick's decision made again on the position as it is now (one that tick left to
    wait for a resting leg's fill, which the broker has not confirmed)."""
    return _decide_again(st, pr, acct, clk, rows[ROW_NOW], rows[ROW_SAVED], links, i)


@entry
def cancel_entry(st, acct, i):
    """Drop a pending entry; a trade it already opened (a live entry filled in part) still counts."""
    return _cancel_entry(st, acct, i)


@inlined
def _cancel_entry(st, acct, i):
    # inlined, so flatten (on the tick path) holds it instead of calling another compiled entry
    if st[i, S_PEND_KIND] != ORDER_ENTRY:
        return 0
    st[i, S_PEND_SIDE] = 0.0
    st[i, S_PEND_KIND] = 0.0
    if st[i, S_POS] == 0.0:
        acct[A_TRADES] -= 1.0
    return ACT_ENTRY_CANCELLED


@entry
def flatten(st, acct, i, reason):
    """Drop a pending entry and send a market exit for an open position (fills at the next tick)."""
    act = _cancel_entry(st, acct, i)
    pos = st[i, S_POS]
    if pos != 0.0 and st[i, S_PEND_KIND] != ORDER_EXIT:
        _set_pending(st, acct, i, -1.0 if pos > 0.0 else 1.0, ORDER_EXIT, reason)
        act |= ACT_EXIT_ORDER
    return act


@entry
def apply_entry_fill(st, pr, acct, clk, rows, links, i, ts_ns, qty, price, done):
    """A real broker filled ``qty`` (signed) of the pending entry at ``price``: open the position
    and its bracket on the first fill, grow it (at the average price) on later ones. ``done``: the
    entry order is final, nothing more will fill."""
    if done:
        st[i, S_PEND_SIDE] = 0.0
        st[i, S_PEND_KIND] = 0.0
    if qty == 0.0:
        return 0
    pos = st[i, S_POS]
    if pos == 0.0:
        act = _hold(st, pr, clk, i, ts_ns, qty, price)
        _book_entry(st, acct, i)
        return act | _decide_again(st, pr, acct, clk, rows[ROW_NOW], rows[ROW_SAVED], links, i)
    avg = (st[i, S_ENTRY_PRICE] * pos + price * qty) / (pos + qty)
    st[i, S_POS] = pos + qty
    st[i, S_ENTRY_PRICE] = avg
    st[i, S_OUT_ENTRY_PRICE] = avg
    _book_entry(st, acct, i)
    return ACT_ENTRY_FILL


@entry
def adopt_position(st, pr, clk, i, ts_ns, qty, price):
    """Take over a position the broker reports (an earlier run's), with its bracket."""
    return _hold(st, pr, clk, i, ts_ns, qty, price)


@entry
def book_entry_charges(st, acct, i):
    """The charges of an adopted position's entry (it was opened by an earlier run, today)."""
    _book_entry(st, acct, i)


@entry
def _hold(st, pr, clk, i, ts_ns, qty, price):
    """Hold ``qty`` (signed) bought or sold at ``price``, with the bracket that price implies."""
    side = 1.0 if qty > 0.0 else -1.0
    target, stop = bracket_levels(side, price, pr[i, P_TARGET_PCT], pr[i, P_STOP_PCT], pr[i, P_TICK])
    st[i, S_POS] = qty
    st[i, S_ENTRY_PRICE] = price
    st[i, S_TARGET] = target
    st[i, S_STOP] = stop
    st[i, S_TRAILED] = 0.0
    st[i, S_OUT_ENTRY_PRICE] = price
    st[i, S_OUT_EXIT_QTY] = 0.0
    st[i, S_OUT_PNL] = 0.0
    clk[i, C_ENTRY] = ts_ns
    clk[i, C_TRAIL] = ts_ns  # placing the stop counts as its first move
    return ACT_ENTRY_FILL


@entry
def apply_exit_fill(st, pr, acct, clk, rows, links, i, ts_ns, qty, price, reason):
    """A real broker filled ``qty`` (unsigned, at most the position) of an exit at ``price``: book
    it; the trade is closed (ACT_EXIT_FILL) once the position is flat, else ACT_EXIT_PART. Once
    flat, the last tick's signal may enter again, as it would have on that tick."""
    if reason == REASON_STOP and st[i, S_TRAILED] == 1.0:
        reason = REASON_TRAIL
    sgn = 1.0 if st[i, S_POS] > 0.0 else -1.0
    if not _close(st, acct, clk, i, ts_ns, sgn * qty, price, float(reason)):
        return ACT_EXIT_PART
    st[i, S_PEND_SIDE] = 0.0
    st[i, S_PEND_KIND] = 0.0
    return ACT_EXIT_FILL | _decide_again(st, pr, acct, clk, rows[ROW_NOW], rows[ROW_SAVED], links, i)


@entry
def close_session(st, acct, clk, i):
    """The session ended with no tick at or after square-off: exit at its last tick's price."""
    act = 0
    if st[i, S_PEND_KIND] == ORDER_ENTRY:
        acct[A_TRADES] -= 1.0
        act |= ACT_ENTRY_CANCELLED
    st[i, S_PEND_SIDE] = 0.0
    st[i, S_PEND_KIND] = 0.0
    if st[i, S_POS] != 0.0 and acct[A_LIVE] == 0.0:  # live positions are the broker's to report
        _book_exit(st, acct, clk, i, clk[i, C_LAST], st[i, S_LAST_PRICE], REASON_SQUARE_OFF)
        act |= ACT_EXIT_FILL
    return act


@entry
def end_bar(st, pr, rows, links, i):
    """The session ended: its last bar closes, updates the indicators and reaches the decision, which
    sees no position (the session is over: every position was squared off) and whose answer is
    dropped. The strategy's memory so sees every bar: yesterday's last precedes today's first. No
    decision of the session is made again after this (a late live fill)."""
    if st[i, S_BAR_END] >= 0.0:
        _close_bar(st, pr, rows[ROW_NOW], links, i)
        _answer(rows[ROW_NOW], links, i, 0.0)
    st[i, S_REDECIDE] = 0.0


@entry
def start_session(st, pr, rows, i, day):
    """The day's counters start again; so does the strategy's row when it starts each session (tick
    strategies always; candle strategies carry their indicators across sessions unless they ask)."""
    st[i, S_DAY] = day
    st[i, S_SQUARED] = 0.0
    st[i, S_REALISED] = 0.0
    st[i, S_DAY_CHARGES] = 0.0
    st[i, S_BAR_END] = -1.0
    st[i, S_REDECIDE] = 0.0
    if pr[i, P_RESET] == 1.0:
        st[i, S_BARS] = 0.0
        for k in range(rows.shape[2]):
            rows[ROW_NOW, i, k] = rows[ROW_FRESH, i, k]


# An int64, as Python's callers pass: given the literal REASON_RISK, Numba would compile flatten again for it.
_RISK = np.int64(REASON_RISK)


@inlined
def _park(st, j, act, e):
    """Park row ``j``'s events in its S_EVENTS for the caller to collect before the returned ones."""
    if e == 0:
        return act
    st[j, S_EVENTS] = int(st[j, S_EVENTS]) | e
    return act | ACT_OTHERS


@inlined
def session_time(st, pr, clk, i, ts_ns):
    """Ns since IST midnight, or -1 outside the session window.

    The common case is one subtraction and two comparisons (the IST midnight of the row's last tick
    is cached, so no division per tick).
    """
    tod = ts_ns - clk[i, C_DAY0]
    if tod < 0 or tod >= NS_PER_DAY:
        day = (ts_ns + IST_OFFSET_NS) // NS_PER_DAY
        clk[i, C_DAY] = day
        clk[i, C_DAY0] = day * NS_PER_DAY - IST_OFFSET_NS
        tod = ts_ns - clk[i, C_DAY0]
    if tod < pr[i, P_OPEN_NS] or tod >= pr[i, P_CLOSE_NS]:
        return -1
    return tod


@inlined
def _last_traded(st, clk, i, ts_ns, price):
    """The LTP, in session or not: for the trader's status (a backtest loop has none to show)."""
    st[i, S_LTP] = price
    clk[i, C_LTP] = ts_ns


@inlined
def in_session(st, pr, acct, clk, rows, links, i, ts_ns, tod, price, volume):
    """Everything after the session gate: the day roll, the step, the loss-limit flatten."""
    act = 0
    day = clk[i, C_DAY]
    if day != acct[A_DAY]:
        if day < acct[A_DAY]:  # a straggler from a session already closed
            return ACT_IGNORED
        carried = 0.0  # entry charges of positions still open (live: the broker's to close)
        for j in range(st.shape[0]):
            act = _park(st, j, act, close_session(st, acct, clk, j))
            end_bar(st, pr, rows, links, j)
            start_session(st, pr, rows, j, float(day))  # a float, as from Python: one compile
            carried += st[j, S_CHARGES]
        acct[A_DAY] = day
        acct[A_REALISED] = 0.0
        acct[A_UNREAL] = 0.0
        acct[A_CHARGES] = carried
        acct[A_TRADES] = 0.0
        acct[A_HALTED] = 0.0
        act |= ACT_NEW_SESSION
    act |= step(st, pr, acct, clk, rows[ROW_NOW], rows[ROW_SAVED], links, i, ts_ns, tod, price, volume)
    if act & ACT_HALT:
        for j in range(st.shape[0]):
            e = flatten(st, acct, j, _RISK)
            act = act | e if j == i else _park(st, j, act, e)
    return act


@entry
def on_tick(st, pr, acct, clk, rows, links, i, ts_ns, price, volume):
    """Process one tick of instrument ``i``; returns ACT_* bits (ACT_IGNORED outside the session).

    A tick from a new IST day first closes what the previous session left open on every
    instrument (events parked, ACT_OTHERS) and its last bars, and starts the day's counters, loss
    limit and the strategy rows that start each session again. When the loss limit halts trading,
    every instrument is flattened (row ``i``'s events in the result, the others parked).
    """
    _last_traded(st, clk, i, ts_ns, price)
    tod = session_time(st, pr, clk, i, ts_ns)
    if tod < 0:
        return ACT_IGNORED
    return in_session(st, pr, acct, clk, rows, links, i, ts_ns, tod, price, volume)


@entry
def warm(ts, price, volume, instr, st, pr, clk, rows, links, under_way):
    """Sessions' ticks into the strategy rows alone: their bars, indicators and decisions (their
    answers dropped), no order. Returns the bars fed. Earlier sessions (``under_way`` False): each
    row's last bar closed and the trading state left as a fresh engine's, so the first live tick
    still opens the session. Today's before a restart (``under_way`` True, the day's session already
    started by the restore): the session stays under way, its forming bar open, as if the process
    had never stopped."""
    fed = 0
    x = rows[ROW_NOW]
    for k in range(ts.shape[0]):
        i = np.int64(instr[k])  # as the engine's rows: end_bar and start_session compile once, not for int32 too
        _last_traded(st, clk, i, ts[k], price[k])
        tod = session_time(st, pr, clk, i, ts[k])
        if tod < 0:
            continue
        if clk[i, C_DAY] != st[i, S_DAY]:
            end_bar(st, pr, rows, links, i)
            start_session(st, pr, rows, i, float(clk[i, C_DAY]))
        if pr[i, P_TF_NS] == 0.0:
            _feed(st, pr, x, links, i, price[k], price[k], price[k], price[k], volume[k], tod - pr[i, P_OPEN_NS])
            due = True
        else:
            due = _candle(st, pr, x, links, i, tod, price[k], volume[k])
        if due:
            _ask(st, x, links, i)
            fed += 1
    if under_way:
        return fed
    for j in range(st.shape[0]):
        end_bar(st, pr, rows, links, j)
        st[j, S_DAY] = -1.0
        st[j, S_LTP] = np.nan
        clk[j, C_LTP] = 0
        clk[j, C_DAY0] = 0
    return fed
