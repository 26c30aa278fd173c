"""The backtest loop: ticks through the live tick kernel's in-session half, trades recorded as they close.

``run_ticks`` is the loop ``engine.research.backtest`` runs (and the audit's replay): here in its form
for any strategy; ``engine.strategies.compiled`` writes it out again per set of strategies, their
indicators and decisions compiled into it.
"""

import numpy as np

from engine.core import layout as L
from engine.core.candle_order import plan_worst
from engine.core.kernels import entry
from engine.core.step import close_session, end_bar, in_session, session_time

# trade record columns
T_INSTR, T_SIDE, T_QTY, T_ENTRY, T_EXIT, T_REASON, T_PNL = range(7)
N_TF = 7
TI_ENTRY, TI_EXIT = 0, 1
_ENDS_TRADE = L.ACT_EXIT_FILL | L.ACT_ENTRY_CANCELLED


@entry
def _record(st, clk, j, tf, ti, n):
    tf[n, T_INSTR] = j
    tf[n, T_SIDE] = 1.0 if st[j, L.S_OUT_EXIT_QTY] > 0.0 else -1.0
    tf[n, T_QTY] = abs(st[j, L.S_OUT_EXIT_QTY])
    tf[n, T_ENTRY] = st[j, L.S_OUT_EXIT_ENTRY]
    tf[n, T_EXIT] = st[j, L.S_OUT_EXIT_PRICE]
    tf[n, T_REASON] = st[j, L.S_OUT_REASON]
    tf[n, T_PNL] = st[j, L.S_OUT_PNL]
    ti[n, TI_ENTRY] = clk[j, L.C_ENTRY]
    ti[n, TI_EXIT] = clk[j, L.C_EXIT]
    return n + 1


@entry
def run_ticks(ts, price, volume, instr, start, stop, st, pr, acct, clk, rows, links, tf, ti, n_tr, days, n_days,
              partner, planned, ws):
    """Process ticks ``start:stop``; returns (next index, trades, in-session ticks, session days,
    fault: 0, or the search's refusal at the returned index).

    Stops early when the trade buffer could overflow on the next tick so the caller can grow it.
    ``partner`` (candles replayed by the pessimistic rule; None otherwise, and so is ``ws``: Numba then
    leaves the search out, and compiles none of it): ``partner[k] > 0`` makes tick ``k`` and tick
    ``k + partner[k]`` one candle's extremes, whose order ``candle_order.plan_worst`` writes into
    ``price`` for the trade that meets them; ``planned[i]``: the last candle of instrument ``i`` its plan
    covers (-1: none).
    """
    n_instr = st.shape[0]
    seen = 0
    day_may_change = True  # the session day moves only with a new session, or between two calls
    # Indices known not to be negative spare Numba's wraparound test on every array access.
    for k in range(max(start, 0), stop):
        if tf.shape[0] - n_tr <= n_instr:
            return k, n_tr, seen, n_days, 0
        # Unsigned, this tick's index spares Numba's wraparound test on each of the tick arrays.
        ku = np.uint64(k)
        i = np.int64(instr[ku])  # as the rows of range(): the entries it reaches compile once, not for int32 too
        if i < 0:  # never: rows count from 0
            continue
        if partner is not None and (k < partner.shape[0] and partner[k] > 0 and planned[i] < k
                                    and (st[i, L.S_POS] != 0.0 or st[i, L.S_PEND_KIND] != L.ORDER_NONE)):
            planned[i] = plan_worst(ts, price, volume, instr, partner, st, pr, acct, clk, rows, links, i, k, ws)
            if planned[i] < 0:
                return k, n_tr, seen, n_days, planned[i]
        tod = session_time(st, pr, clk, i, ts[ku])
        if tod < 0:
            continue
        act = in_session(st, pr, acct, clk, rows, links, i, ts[ku], tod, price[ku], volume[ku])
        if act == L.ACT_IGNORED:
            continue
        seen += 1
        if act == 0 and not day_may_change:  # most ticks: nothing to record
            continue
        if (day_may_change or act & L.ACT_NEW_SESSION) and (n_days == 0 or acct[L.A_DAY] != days[n_days - 1]):
            days[n_days] = acct[L.A_DAY]
            n_days += 1
        day_may_change = False
        if act & L.ACT_OTHERS:
            for j in range(n_instr):
                e = int(st[j, L.S_EVENTS])
                if e != 0:
                    st[j, L.S_EVENTS] = 0.0
                    if e & L.ACT_EXIT_FILL:
                        n_tr = _record(st, clk, j, tf, ti, n_tr)
                    if e & _ENDS_TRADE:
                        planned[j] = -1
        if act & L.ACT_EXIT_FILL:
            n_tr = _record(st, clk, i, tf, ti, n_tr)
        if act & _ENDS_TRADE:  # a plan ends with its trade, however it ended (a loss limit's flatten)
            planned[i] = -1
    return stop, n_tr, seen, n_days, 0


@entry
def finish(st, pr, acct, clk, rows, links, tf, ti, n_tr):
    """End of data: the last session closes at each instrument's last tick, its last bar too."""
    for j in range(st.shape[0]):
        if close_session(st, acct, clk, j) & L.ACT_EXIT_FILL:
            n_tr = _record(st, clk, j, tf, ti, n_tr)
        end_bar(st, pr, rows, links, j)
    return n_tr
