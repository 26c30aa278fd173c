"""The pessimistic candle rule's in-loop half (``engine.data.candles`` replays each candle as open,
two extremes, close): the order of the extremes that makes each trade worst.

Which extreme a candle reached first is unknown, and no order is worst by itself: a long that
meets its low first keeps a stop the high-first order would have trailed up and hit, and an entry
bought at the high has a higher stop, which a later gap may make the better trade. So the order is
chosen for the whole trade: when the backtest reaches a candle's first extreme while an instrument
is exposed (a position, or an order pending) and no plan covers that candle, ``plan_worst`` steps
the instrument's trade through both orders of this candle and of every later one, through the
same kernels (fills, brackets, trailing, square-off, the strategy's decisions), until the trade has
closed on every path, and writes into the prices the orders of the path whose trade made the least
gross P&L. Paths that reach the same state go on as one (without a trailing interval, paths with
the same entry meet again at every candle's close), so the search stays a few paths wide.

It holds when decisions are made on candle opens only: a bar that closes inside a candle decides
on an extreme whose place is the question (``engine.research.backtest`` refuses that). The other
instruments are held as they are when the search starts (only the daily loss limit couples them).
"""

import numpy as np

from engine.core.kernels import entry, kernel
from engine.core.layout import (
    A_UNREAL,
    ACT_IGNORED,
    C_LAST,
    C_TRAIL,
    N_ACCOUNT,
    N_CLOCK,
    N_PARAMS,
    N_ROW_PLANES,
    N_STATE,
    ORDER_ENTRY,
    P_TRAIL_GAP_NS,
    ROW_NOW,
    S_OUT_PNL,
    S_PEND_KIND,
    S_POS,
)
from engine.core.step import close_session, on_tick

# A path's one row, as an int64: given the literal 0, Numba would compile on_tick again just for it.
ROW = np.int64(0)
MAX_PATHS = 16  # distinct states of one trade kept at once; more is refused (a trailing interval's doing)
TOO_MANY_PATHS = -1
TOO_LONG = -2


def workspace(width: int, levels: int, links: int) -> tuple:
    """The search's arrays for strategy rows ``width`` wide and trades of up to ``levels`` candles:
    two generations of paths (each path a one-instrument world: state, account, clock, row), whether
    each path's trade has opened, each candle's path back to its parent, and the candles in order.
    ``levels`` 0: the ohlc rule's empty arrays (one compiled loop serves both)."""
    paths = 2 * MAX_PATHS if levels else 0
    return (np.zeros((2, paths, 1, N_STATE)), np.zeros((2, paths, N_ACCOUNT)),
            np.zeros((2, paths, 1, N_CLOCK), np.int64), np.zeros((2, paths, N_ROW_PLANES, 1, width)),
            np.zeros((2, paths)), np.zeros((levels, paths), np.int64), np.zeros(levels, np.int64),
            np.zeros((1, N_PARAMS)), np.zeros((1, links), np.int64))


@kernel
def _same(x, y):
    """Float values equal, NaN equal to NaN."""
    return x == y or (x != x and y != y)


@kernel
def _alike(st, acct, clk, rows, a, b, now, gap):
    """Paths ``a`` and ``b`` of one generation go on alike. Only the trailing clock's recent past
    counts (a move longer than the interval ago is as good as any older one), and the account's
    unrealised sum may differ in its last bits (it adds the same marks in another order)."""
    for f in range(st.shape[2]):
        if not _same(st[a, 0, f], st[b, 0, f]):
            return False
    for f in range(acct.shape[1]):
        x, y = acct[a, f], acct[b, f]
        if f == A_UNREAL:
            if abs(x - y) > 1e-9 * max(1.0, abs(x)):
                return False
        elif not _same(x, y):
            return False
    for f in range(rows.shape[3]):
        if not _same(rows[a, ROW_NOW, 0, f], rows[b, ROW_NOW, 0, f]):
            return False
    for f in range(clk.shape[2]):
        x, y = clk[a, 0, f], clk[b, 0, f]
        if f == C_TRAIL:
            x, y = max(x, now - gap), max(y, now - gap)
        if x != y:
            return False
    return True


@kernel
def _put(dst, src):
    # element by element: a whole-array assignment may allocate (Numba copies what could overlap)
    for f in range(src.shape[0]):
        dst[f] = src[f]


@kernel
def _copy(sts, accts, clks, rws, held, p, b, q, c):
    """Path ``b`` of generation ``p`` into slot ``c`` of generation ``q``. Only the row's current
    plane: a path ends before a new session could read its fresh one."""
    _put(sts[q, c, 0], sts[p, b, 0])
    _put(accts[q, c], accts[p, b])
    _put(clks[q, c, 0], clks[p, b, 0])
    _put(rws[q, c, ROW_NOW, 0], rws[p, b, ROW_NOW, 0])
    held[q, c] = held[p, b]


@kernel
def _step(ts, price, volume, instr, i, k, m, k_next, first, second, st, pr, acct, clk, rows, links, held):
    """Instrument ``i``'s ticks ``k`` to ``k_next - 1`` in a one-instrument world, ``first`` at ``k``
    and ``second`` at ``m``. Returns (the trade is over, it had opened, its gross P&L)."""
    for t in range(k, k_next):
        if instr[t] != i:
            continue
        p = first if t == k else (second if t == m else price[t])
        # the live engine's own compiled call: inlining the tick kernel here again doubled the compile
        if on_tick(st, pr, acct, clk, rows, links, ROW, ts[t], p, volume[t]) == ACT_IGNORED:
            continue
        if st[0, S_POS] != 0.0:
            held = True
        elif held:
            return True, held, st[0, S_OUT_PNL]
        elif st[0, S_PEND_KIND] != ORDER_ENTRY:  # the entry was dropped: no trade
            return True, held, 0.0
    return False, held, 0.0


@entry
def plan_worst(ts, price, volume, instr, partner, st, pr, acct, clk, rows, links, i, k0, ws):
    """Instrument ``i`` is exposed at tick ``k0``, the first extreme of one of its candles: write
    into ``price`` the orders of the extremes of this candle and the next ones that make its trade
    worst (see the module's doc). Returns the first extreme of the candle the trade closes in, or
    TOO_MANY_PATHS / TOO_LONG."""
    sts, accts, clks, rws, held, back, cand, pr1, links1 = ws
    n = ts.shape[0]
    _put(pr1[0], pr[i])
    _put(links1[0], links[i])
    gap = int(pr[i, P_TRAIL_GAP_NS])
    p = 0
    _put(sts[p, 0, 0], st[i])
    _put(accts[p, 0], acct)
    _put(clks[p, 0, 0], clk[i])
    _put(rws[p, 0, ROW_NOW, 0], rows[ROW_NOW, i])
    held[p, 0] = 1.0 if st[i, S_POS] != 0.0 else 0.0
    live = 1
    best, best_level, best_path, best_choice = np.inf, -1, 0, 0
    level, k = 0, k0
    while live:
        if level + 1 >= cand.shape[0]:
            return TOO_LONG
        cand[level] = k
        m = k + partner[k]
        k_next = m + 1
        while k_next < n and not (instr[k_next] == i and partner[k_next] > 0):
            k_next += 1
        q, made = 1 - p, 0
        for b in range(live):
            for choice in range(2):
                _copy(sts, accts, clks, rws, held, p, b, q, made)
                first, second = (price[k], price[m]) if choice == 0 else (price[m], price[k])
                done, opened, pnl = _step(ts, price, volume, instr, i, k, m, k_next, first, second, sts[q, made],
                                          pr1, accts[q, made], clks[q, made], rws[q, made], links1,
                                          held[q, made] == 1.0)
                if not done and k_next == n:  # the data ends: the session closes at the last tick
                    close_session(sts[q, made], accts[q, made], clks[q, made], ROW)
                    done, pnl = True, sts[q, made, 0, S_OUT_PNL] if opened else 0.0
                if done:
                    if pnl < best:
                        best, best_level, best_path, best_choice = pnl, level, b, choice
                    continue
                held[q, made] = 1.0 if opened else 0.0
                now = clks[q, made, 0, C_LAST]
                alike = False
                for e in range(made):
                    if _alike(sts[q], accts[q], clks[q], rws[q], e, made, now, gap):
                        alike = True
                        break
                if not alike:
                    back[level + 1, made] = 2 * b + choice
                    made += 1
        if made > MAX_PATHS:
            return TOO_MANY_PATHS
        live, p, level, k = made, q, level + 1, k_next
    level, path, choice = best_level, best_path, best_choice
    while True:
        if choice == 1:
            k = cand[level]
            m = k + partner[k]
            price[k], price[m] = price[m], price[k]
        if level == 0:
            return cand[best_level]
        e = back[level, path]
        path, choice = e >> 1, e & 1
        level -= 1
