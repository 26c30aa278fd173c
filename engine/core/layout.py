"""State layouts shared by the kernels and the Python around them.

Every instrument owns one float64 row of state (``S_*``), one row of parameters (``P_*``) and one
strategy row (its bar, parameters, memory and indicators: ``engine.strategies.api``); the account
owns one float64 vector (``A_*``). Kernels read and write these in place, so the live engine and the
backtest loop share one representation.
"""

from datetime import timedelta, timezone

import numpy as np

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
IST_OFFSET_NS = (5 * 3600 + 30 * 60) * NS_PER_S
IST = timezone(timedelta(hours=5, minutes=30), "IST")

# --- per-instrument parameters -------------------------------------------------------------
P_TICK = 0  # tick size in rupees
P_QTY = 1  # order quantity
P_SLIP = 2  # slippage in rupees (slippage_ticks * tick)
P_TARGET_PCT = 3
P_STOP_PCT = 4
P_TRAIL_PCT = 5  # NaN when no trailing stop
P_ALLOW_SHORT = 6
P_OPEN_NS = 7  # session window start, ns after IST midnight
P_CLOSE_NS = 8  # session window end (exclusive)
P_SQUARE_OFF_NS = 9
P_TF_NS = 10  # the strategy's bar length in ns; 0: it decides on every tick
P_WARMUP = 11  # bars the strategy wants seen before its answers count
P_RESET = 12  # 1: its row starts again each session (tick strategies, or asked for)
P_N_IND = 13  # indicators in its row (their offsets: the first P_N_IND of the row's offsets)
P_TRAIL_STEP = 14  # the least a trailing stop moves, in rupees (trail_step_ticks * tick)
P_TRAIL_GAP_NS = 15  # the least time between two trailing moves
N_PARAMS = 16

# --- per-instrument state ------------------------------------------------------------------
S_DAY = 0  # IST day number of the session in progress (-1 before the first tick)
S_BARS = 1  # bars (ticks, for a tick strategy) fed to the strategy since its row last started
S_LAST_PRICE = 2
S_LAST_TS = 3  # epoch seconds of the last in-session tick
S_POS = 4  # signed position quantity
S_ENTRY_PRICE = 5
S_TARGET = 6
S_STOP = 7
S_TRAILED = 8  # 1 once the trailing stop has moved the stop
S_PEND_SIDE = 9  # +1 buy / -1 sell / 0 none: a market order waiting for the next tick
S_PEND_KIND = 10  # ORDER_* below
S_PEND_REASON = 11  # REASON_* to record when a pending exit fills
S_SQUARED = 12  # 1 once today's square-off happened
S_REALISED = 13  # today's realised gross P&L of this instrument
S_UNREAL = 14
S_REDECIDE = 15  # live: 1 while the last in-session tick's decision may be made again on a later fill
# outputs of the last step, valid when the matching ACT_* bit is set
S_OUT_ENTRY_PRICE = 16
S_OUT_EXIT_PRICE = 17  # average over the position's exit fills
S_OUT_EXIT_QTY = 18  # signed quantity closed so far (live exits may fill in parts)
S_OUT_EXIT_ENTRY = 19  # entry price of the closed position
S_OUT_REASON = 20
S_OUT_PNL = 21  # gross P&L of the quantity closed so far
# the bar being formed (candle strategies): it closes at the first tick at or after S_BAR_END
S_BAR_END = 22  # ns after IST midnight; -1: no bar forming
S_BAR_START = 23  # ns after the session open
S_BAR_OPEN = 24
S_BAR_HIGH = 25
S_BAR_LOW = 26
S_BAR_CLOSE = 27
S_BAR_VOLUME = 28
S_EVENTS = 29  # ACT_* bits raised on this row while another instrument's tick was processed
S_LTP = 30  # last traded price of any tick, in session or not (for status)
S_BLOCKED = 31  # 1: no new entries on this instrument (a fault on its path, until /resume)
S_CHARGES = 32  # charges booked for the open position's entry (its order alone), replaced at its close
S_OUT_CHARGES = 33  # charges of the trade closed by the last step (entry and exit), with ACT_EXIT_FILL
S_DAY_CHARGES = 34  # today's charges of this instrument's closed trades
N_STATE = 35

# --- the strategy row (engine.strategies.api): the bar it decides on comes first ---------------
X_OPEN = 0
X_HIGH = 1
X_LOW = 2
X_CLOSE = 3
X_VOLUME = 4
X_START = 5  # the bar's start (a tick's time), ns after the session open
X_SESSION = 6  # the session's IST day number
N_X_BAR = 7

# --- the planes of the strategy rows (one row per instrument in each) -----------------------
ROW_NOW = 0  # as the strategy left it
ROW_FRESH = 1  # as it starts: a new session of a strategy that starts again each session
ROW_SAVED = 2  # live: as it was before its last decision, to make that decision again after a late fill
N_ROW_PLANES = 3

# --- each instrument's links: its decision's addresses (kernels.decision), its strategy's place in a
# compiled loop's strategies (engine.strategies.compiled), its indicators' offsets
LINK_JIT = 0
LINK_C = 1
LINK_STRATEGY = 2
LINK_IND = 3  # the first of P_N_IND offsets

# --- per-instrument clock (int64, exact nanoseconds) ---------------------------------------
C_LAST = 0  # last in-session tick
C_ENTRY = 1  # entry fill of the open (or last closed) position
C_EXIT = 2  # last exit fill
C_LTP = 3  # time of S_LTP
C_DAY0 = 4  # UTC ns of the IST midnight of this row's last tick: saves two divisions a tick
C_DAY = 5  # its IST day number
C_TRAIL = 6  # last trailing move of the stop
N_CLOCK = 7

# --- account -------------------------------------------------------------------------------
A_DAY = 0
A_REALISED = 1  # realised gross P&L today, all instruments
A_UNREAL = 2  # unrealised P&L, all instruments
A_TRADES = 3  # entries taken today
A_ENTRIES_ALLOWED = 4  # 1 while the engine is RUNNING
A_HALTED = 5  # set by the kernel when the daily loss limit is reached
A_MAX_LOSS = 6
A_MAX_TRADES = 7
A_MAX_RATE = 8  # orders per second
A_RATE_SEC = 9  # epoch second of the current rate window
A_RATE_N = 10  # orders sent in that second
A_MAX_QTY = 11
A_LIVE = 12  # 1: a real broker fills orders (apply_* kernels); 0: the fill model simulates them
A_COSTS = 13  # the charge rates (costs.rates), 7 slots
A_CHARGES = 20  # charges today: closed trades' and the open positions' entries (the loss limit counts them)
N_ACCOUNT = 21

# --- pending order kinds -------------------------------------------------------------------
ORDER_NONE = 0
ORDER_ENTRY = 1
ORDER_EXIT = 2

# --- exit reasons (index into REASONS) -----------------------------------------------------
REASON_TARGET = 0
REASON_STOP = 1
REASON_TRAIL = 2
REASON_SIGNAL = 3
REASON_SQUARE_OFF = 4
REASON_FLATTEN = 5
REASON_RISK = 6
REASONS = ("target", "stop", "trail", "signal", "square_off", "flatten", "risk")

# --- strategy answers (engine.strategies.api: NONE, LONG, ...) ----------------------------------
SIG_NONE = 0
SIG_LONG = 1  # go long (and leave a short)
SIG_SHORT = -1  # go short (and leave a long)
SIG_EXIT_LONG = 2  # leave a long, no entry
SIG_EXIT_SHORT = -2
SIG_EXIT_ANY = 3  # leave either side

# --- step results (bit mask) ---------------------------------------------------------------
ACT_ENTRY_ORDER = 1  # a market entry is pending for the next tick
ACT_ENTRY_FILL = 2
ACT_EXIT_ORDER = 4  # a market exit is pending for the next tick
ACT_EXIT_FILL = 8
ACT_STOP_MOVED = 16
ACT_ENTRY_CANCELLED = 32  # a pending entry was dropped (square-off reached, new session)
ACT_HALT = 64  # daily loss limit reached: the caller flattens every instrument
ACT_OTHERS = 128  # other rows raised events: scan S_EVENTS
ACT_NEW_SESSION = 256  # this tick opened a new IST trading day
ACT_EXIT_PART = 512  # live: part of the position was closed, the rest stays open
ACT_IGNORED = -1  # tick outside the session window


def new_state(n: int) -> np.ndarray:
    st = np.zeros((n, N_STATE))
    st[:, S_DAY] = -1.0
    st[:, S_LTP] = np.nan
    st[:, S_BAR_END] = -1.0
    return st


def new_clock(n: int) -> np.ndarray:
    return np.zeros((n, N_CLOCK), dtype=np.int64)


def new_account() -> np.ndarray:
    acct = np.zeros(N_ACCOUNT)
    acct[A_DAY] = -1.0
    acct[A_ENTRIES_ALLOWED] = 1.0
    acct[A_RATE_SEC] = -1.0
    acct[A_MAX_LOSS] = np.inf
    acct[A_MAX_TRADES] = np.inf
    acct[A_MAX_RATE] = np.inf
    acct[A_MAX_QTY] = np.inf
    return acct
