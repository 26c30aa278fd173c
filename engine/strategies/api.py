"""The strategy API: a strategy is one Python file; the engine runs it in backtest, paper and live.

A file declares one ``Strategy`` (its name, parameters, timeframe, the indicators it needs from
``engine.core.indicators``, a few memory slots of its own) and one decision function::

    strategy = Strategy("my_cross", about="...", params={"fast": Param(9, low=1)},
                        indicators=lambda p: {"fast": ema(p.fast)}, memory={"prev": NAN})
    FAST, PREV = strategy.slot("fast"), strategy.mem("prev")

    @strategy.decision
    def decide(x, pos):
        ...
        return LONG

``decide(x, pos)`` runs on every closed bar (every tick for ``timeframe="tick"``) after the engine
has fed that bar to the indicators, the session's last bar included: that one closes at the
session's end, ``pos`` is 0 there (the session is over) and its answer is dropped, so the memory
always holds the previous bar's values (yesterday's last bar precedes today's first, as on a
chart). ``x`` is the instrument's row, read by slot: the bar (``x[CLOSE]``), the parameters
(``x[strategy.param(name)]``), the indicators' outputs (``x[strategy.slot(name, output)]``) and the
strategy's memory (``x[strategy.mem(name)]``, the only slots it may write: they keep their values
from one bar to the next). ``pos`` is the position's side
(+1 long, -1 short, 0 flat). It answers NONE, LONG, SHORT or EXIT (or EXIT_LONG / EXIT_SHORT).
What an answer does is the engine's, as are brackets, risk limits, square-off and costs: LONG
enters from flat or exits a short (no reversal on one answer), SHORT the mirror (entries only with
``allow_short``), EXIT leaves either side; the order fills at the next tick. Answers count once
every indicator is ready and ``warmup`` bars were seen: until then the engine takes NONE (the
function still runs, so its memory stays current).

An answer is heard once: the engine acts on it or refuses it (warming up, after the square-off, a
risk limit, an entry while one is pending, the session's last bar) and the next bar asks anew. The
function is not told which: a long its stop closed between two bars is flat at the next one just
as a refused entry is. Memory that keeps a wish (a turn not yet acted on, as ``supertrend``'s) is
spent when the wish is answered, so the strategy never enters again without a new reason.

The function is compiled by Numba (no Python objects, no allocation: plain arithmetic on ``x``)
once, cached across runs, and checked by ``otrade config check``.
"""

import ast
import faulthandler
import inspect
import math
import mmap
import os
import re
import select
import signal
import sys
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaExperimentalFeatureWarning
from pydantic import Field, create_model, field_validator, model_validator

from config.models import Model, rule_errors
from engine.core import layout as L
from engine.core.indicators import Indicator, IndicatorLayout
from engine.core.kernels import DECISION

# The engine calls every strategy's decision through its address, as a function of this one
# signature: its own kernels compile once, whatever strategies a config names.
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)
SIGNATURE = DECISION
# No reference counting (_nrt=False): a decision that would allocate does not compile.
_JIT = {"cache": True, "error_model": "numpy", "_nrt": False}
# For a strategy's own helper functions: compiled into the decision that calls them.
helper = njit(error_model="numpy", inline="always", _nrt=False)

NAN = math.nan

# --- answers (the engine's SIG_* codes) ---------------------------------------------------------
NONE = L.SIG_NONE
LONG = L.SIG_LONG  # enter long, or leave a short
SHORT = L.SIG_SHORT  # enter short (with allow_short), or leave a long
EXIT_LONG = L.SIG_EXIT_LONG  # leave a long, no entry
EXIT_SHORT = L.SIG_EXIT_SHORT  # leave a short, no entry
EXIT = L.SIG_EXIT_ANY  # leave either side
ANSWERS = {NONE: "NONE", LONG: "LONG", SHORT: "SHORT", EXIT_LONG: "EXIT_LONG", EXIT_SHORT: "EXIT_SHORT", EXIT: "EXIT"}

# --- the bar, at the start of every row ----------------------------------------------------------
OPEN = L.X_OPEN
HIGH = L.X_HIGH
LOW = L.X_LOW
CLOSE = L.X_CLOSE
VOLUME = L.X_VOLUME
START = L.X_START  # the bar's start (a tick's time), ns after the session open
SESSION = L.X_SESSION  # the session's IST day number
N_BAR = L.N_X_BAR
_BAR_NAMES = {OPEN: "OPEN", HIGH: "HIGH", LOW: "LOW", CLOSE: "CLOSE", VOLUME: "VOLUME", START: "START",
              SESSION: "SESSION"}

TIMEFRAME_MINUTES = 375  # NSE's session, 09:15-15:30: the longest bar
RESERVED = ("kind", "timeframe", "allow_short")  # every strategy's own fields


class StrategyError(Exception):
    """A strategy that cannot run, said in one line: ``file:line: what is wrong``."""


class _Scratch:
    def __repr__(self) -> str:
        return "SCRATCH"


# A memory slot declared as SCRATCH holds where the strategy's scratch slots start in its row.
SCRATCH = _Scratch()


def _declared_at(depth: int) -> str:
    frame = sys._getframe(depth + 1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@dataclass(frozen=True)
class Param:
    """One parameter: its default (its type: int, float or bool), its range, what it means."""

    default: int | float | bool
    low: float | None = None
    high: float | None = None
    about: str = ""
    where: str = field(default="", compare=False)  # file:line of the declaration, for errors

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", self.where or _declared_at(2))
        if not isinstance(self.default, bool | int | float):
            raise StrategyError(f"{self.where}: Param default {self.default!r} must be an int, a float or a bool")
        too_low = self.low is not None and self.default < self.low
        if too_low or (self.high is not None and self.default > self.high):
            raise StrategyError(f"{self.where}: Param default {self.default!r} is outside its range ({self.range})")

    @property
    def range(self) -> str:
        """``2..500``, ``>= 1``, ``<= 9`` or "" (no bounds)."""
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g}"
        if self.low is not None or self.high is not None:
            return f">= {self.low:g}" if self.low is not None else f"<= {self.high:g}"
        return ""


def _timeframe(v: Any) -> str | int:
    if v == "tick" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= TIMEFRAME_MINUTES):
        return v
    rule_errors([("", f"{v!r} must be 'tick' or whole minutes from 1 to {TIMEFRAME_MINUTES}")])
    raise AssertionError  # unreachable: rule_errors raised


class StrategyParams(Model):
    """A strategy's settings in the config: its kind, timeframe, allow_short and the parameters it
    declares (each strategy gets its own subclass). Picklable by source into worker processes."""

    __strategy__: ClassVar[Any] = None
    kind: str
    timeframe: Any = "tick"
    allow_short: bool = False

    @field_validator("timeframe", mode="plain")
    @classmethod
    def _timeframe_is_tick_or_minutes(cls, v: Any) -> str | int:
        return _timeframe(v)

    @model_validator(mode="after")
    def _strategy_rules(self) -> "StrategyParams":
        rules = type(self).__strategy__.rules
        if rules is not None:
            rule_errors(list(rules(self)))
        return self

    def __reduce__(self) -> tuple:
        return _rebuild_params, (type(self).__strategy__.source, self.model_dump())

    @property
    def timeframe_ns(self) -> int:
        """The bar's length in ns; 0 for ticks."""
        return 0 if self.timeframe == "tick" else int(self.timeframe) * 60_000_000_000


# How a strategy is found again from its ``source`` kind ("builtin", "entry", "file"): filled by the
# package (engine.strategies), whose __init__ Python always runs before this module's.
LOADERS: dict[str, Callable[[str], "Strategy"]] = {}


def _rebuild_params(source: tuple[str, str], data: dict) -> StrategyParams:
    kind, ref = source
    return LOADERS[kind](ref).Params.model_validate(data)


class Strategy:
    """One strategy's declaration; see the module docstring. Errors say the file and line."""

    def __init__(self, name: str, *, about: str, params: dict[str, Param] | None = None,
                 indicators: Callable[[Any], dict[str, Indicator]] | None = None,
                 memory: dict[str, float | _Scratch] | None = None, scratch: Callable[[Any], int] | None = None,
                 warmup: int | Callable[[Any], int] = 0, timeframe: str | int = "tick",
                 reset_each_session: bool = False,
                 rules: Callable[[Any], list[tuple[str, str]]] | None = None) -> None:
        self.where = _declared_at(1)
        self.file = self.where.rsplit(":", 1)[0]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise StrategyError(f"{self.where}: strategy name {name!r} must be lower case letters, digits and _")
        self.name, self.about = name, about
        self.params = dict(params or {})
        for key in self.params:
            if key in RESERVED or not key.isidentifier():
                raise StrategyError(f"{self.params[key].where}: {key!r} cannot name a parameter "
                                    f"({', '.join(RESERVED)} are every strategy's own)")
        self.memory = dict(memory or {})
        self._indicators = indicators or (lambda p: {})
        self._scratch = scratch or (lambda p: 0)
        self._warmup = warmup if callable(warmup) else (lambda p: warmup)
        self.reset_each_session = reset_each_session
        self.rules = rules
        self.source: tuple[str, str] = ("file", self.file)  # how another process finds it again
        self.decide: Callable[..., int] | None = None  # the decision as written (a test can call it)
        self._compiled: Any = None
        self.compile_seconds = 0.0
        self.cached = False
        try:
            _timeframe(timeframe)
        except Exception:
            raise StrategyError(f"{self.where}: timeframe {timeframe!r} must be 'tick' or whole minutes from 1 to "
                                f"{TIMEFRAME_MINUTES}") from None
        self.Params = self._params_model(timeframe)
        try:
            self.defaults = self.Params(kind=name)
        except Exception as exc:
            raise StrategyError(f"{self.where}: the defaults break a rule: {exc}") from None
        self._layout = self._layout_for(self.defaults)
        self.base = N_BAR + len(self.params) + len(self.memory)

    def _params_model(self, timeframe: str | int) -> type[StrategyParams]:
        fields: dict[str, Any] = {"kind": (Literal[self.name], self.name), "timeframe": (Any, timeframe)}
        for key, p in self.params.items():
            fields[key] = (type(p.default), Field(p.default, ge=p.low, le=p.high, description=p.about))
        model = create_model(f"{self.name.title().replace('_', '')}Params", __base__=StrategyParams, **fields)
        model.__strategy__ = self
        return model

    def _layout_for(self, p: Any) -> IndicatorLayout:
        try:
            layout = IndicatorLayout(**self._indicators(p))
        except ValueError as exc:
            raise StrategyError(f"{self.where}: indicators: {exc}") from None
        if hasattr(self, "_layout") and [i.head[0] for i in layout.indicators.values()] != [
                i.head[0] for i in self._layout.indicators.values()]:
            raise StrategyError(f"{self.where}: the indicators' kinds must not depend on the parameters "
                                "(their slots are constants of the file)")
        return layout

    # --- slots: constants the decision function reads ------------------------------------------
    def param(self, name: str) -> int:
        """The slot of parameter ``name``."""
        if name not in self.params:
            raise StrategyError(f"{_declared_at(1)}: {self.name} has no parameter {name!r}; it has "
                                f"{', '.join(self.params) or 'none'}")
        return N_BAR + list(self.params).index(name)

    def mem(self, name: str) -> int:
        """The slot of memory ``name``."""
        if name not in self.memory:
            raise StrategyError(f"{_declared_at(1)}: {self.name} has no memory {name!r}; it has "
                                f"{', '.join(self.memory) or 'none'}")
        return N_BAR + len(self.params) + list(self.memory).index(name)

    def slot(self, name: str, output: str | None = None) -> int:
        """The slot of indicator ``name``'s ``output`` (its first by default)."""
        if name not in self._layout.indicators:
            raise StrategyError(f"{_declared_at(1)}: {self.name} has no indicator {name!r}; it has "
                                f"{', '.join(self._layout.indicators) or 'none'}")
        try:
            return self.base + self._layout.slot(name, output)
        except ValueError as exc:
            raise StrategyError(f"{_declared_at(1)}: {exc}") from None

    # --- the decision -------------------------------------------------------------------------
    def decision(self, fn: Callable[..., int]) -> Callable[..., int]:
        """Decorator: ``fn(x, pos) -> answer`` is this strategy's decision (returned as written, so
        a test can call it on a numpy row; the engine runs its compiled form)."""
        self.decide = fn
        return fn

    @property
    def decide_at(self) -> str:
        code = self.decide.__code__ if self.decide else None
        return f"{code.co_filename}:{code.co_firstlineno}" if code else self.where

    def compile(self) -> Any:
        """The compiled decision (from Numba's cache after the first run); StrategyError with the
        file and line of what Numba cannot compile."""
        if self._compiled is None:
            if self.decide is None:
                raise StrategyError(f"{self.where}: {self.name} has no decision: decorate one function "
                                    "with @strategy.decision")
            self._refuse_fixed_writes()
            started = time.perf_counter()
            try:
                compiled = njit(SIGNATURE, **_JIT)(self.decide)
            except Exception as exc:
                raise StrategyError(numba_error(exc, self.decide_at)) from None
            self.compile_seconds = time.perf_counter() - started
            stats = getattr(compiled, "stats", None)
            self.cached = bool(stats and stats.cache_hits)
            self._compiled = compiled
        return self._compiled

    def _refuse_fixed_writes(self) -> None:
        """StrategyError at the first line of the decision that writes a slot named by a constant
        (``x[CLOSE] = ...``) other than memory: the bar, a parameter or an indicator's header.
        Writes through computed indices are caught by ``check``, which watches every slot."""
        fn = self.decide
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):  # no source to read (made by exec): check() still watches the row
            return
        func = ast.parse(source).body[0]
        if not isinstance(func, ast.FunctionDef) or not func.args.args:
            return
        row = func.args.args[0].arg
        local = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        names = {k: v for k, v in {**fn.__globals__, **inspect.getclosurevars(fn).nonlocals}.items()
                 if k not in local}
        memory = range(N_BAR + len(self.params), self.base)
        heads = self.base + sum(len(i.head) for i in self._layout.indicators.values())
        writes = sorted((n for n in ast.walk(func) if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store)
                         and isinstance(n.value, ast.Name) and n.value.id == row), key=lambda n: n.lineno)
        for node in writes:
            slot = _value(node.slice, names)
            if isinstance(slot, int) and not isinstance(slot, bool) and 0 <= slot < heads and slot not in memory:
                line = fn.__code__.co_firstlineno + node.lineno - 1
                raise StrategyError(f"{fn.__code__.co_filename}:{line}: {fn.__name__}() writes "
                                    f"{row}[{ast.unparse(node.slice)}]: only memory slots may be written")

    def _slot_name(self, k: int, p: Any) -> str:
        """Slot ``k`` of the row for parameters ``p``, as an error names it."""
        if k < N_BAR:
            return f"x[{_BAR_NAMES[k]}]"
        if k < N_BAR + len(self.params):
            return f"x[{k}] (the parameter {list(self.params)[k - N_BAR]!r})"
        layout = self._layout_for(p)
        for name, ind in layout.indicators.items():
            at = self.base + layout.offsets[name]
            if at <= k < at + len(ind.head):
                output = dict((slot, out) for out, slot in ind.outputs).get(k - at, "state")
                return f"x[{k}] (indicator {name!r}: {output})"
        return f"x[{k}] (an indicator's window)"

    def check(self, p: Any, bars: int = 300, seconds: float = 5.0) -> None:
        """Compile, then decide on ``bars`` bars of a seeded walk, flat, long and short: every answer
        must be one the engine knows, only memory and scratch slots may change, and every call must
        return within ``seconds``. StrategyError names the decision's file and line.

        The trial runs in a forked child, killed if a call does not return: a compiled loop cannot
        be interrupted in-process, and a thread left running it would keep a core spinning."""
        compiled = self.compile()
        from engine.core.indicators import update_all

        # The compiled form converts any number to the int answer: what the function itself returns
        # is typed again without the signature's return type.
        typed = njit(error_model="numpy", _nrt=False)(self.decide)
        typed.compile(SIGNATURE.args)
        returned = typed.nopython_signatures[0].return_type
        if not isinstance(returned, types.Integer):
            raise StrategyError(f"{self.decide_at}: the decision returns {returned}; it must answer one of "
                                f"{', '.join(ANSWERS.values())}")

        fresh, offsets = self.row(p)
        fixed = np.ones(fresh.size, dtype=bool)  # every slot but memory and scratch
        fixed[N_BAR + len(self.params) : self.base] = False
        fixed[fresh.size - int(self._scratch(p)) :] = False
        closes = 100.0 + np.cumsum(np.random.default_rng(11).normal(0.0, 0.4, bars))
        positions = (0.0, 1.0, -1.0)
        update_all(fresh.copy(), offsets, 0.0, 0.0, 100.0, 100.0, 100.0, 1.0)  # compiled here, not in the child

        def trial(progress: np.ndarray) -> str:
            for n, pos in enumerate(positions):
                x = fresh.copy()
                for k, c in enumerate(closes):
                    progress[0] = n * bars + k
                    x[OPEN], x[HIGH], x[LOW], x[CLOSE], x[VOLUME] = c, c + 0.3, c - 0.3, c, 100.0
                    x[START], x[SESSION] = k % 75 * 300e9, k // 75
                    update_all(x, offsets, x[SESSION], x[START], c + 0.3, c - 0.3, c, 100.0)
                    before = x.copy()
                    answer = compiled(x, pos)
                    if answer not in ANSWERS:
                        return (f"{self.decide_at}: the decision answered {answer} (bar {k}, position {pos:+.0f}); "
                                f"it must answer one of {', '.join(ANSWERS.values())}")
                    written = np.flatnonzero(fixed & (x.view(np.int64) != before.view(np.int64)))  # bits: NaN too
                    if written.size:
                        slot = self._slot_name(int(written[0]), p)
                        return (f"{self.decide_at}: {self.decide.__name__}() writes {slot} (bar {k}): only memory "
                                "slots may be written")
            return ""

        outcome, said, step = _bounded(trial, seconds)
        bar = f"bar {step % bars} (position {positions[step // bars]:+.0f})"
        if outcome == "hung":
            raise StrategyError(f"{self.decide_at}: {self.decide.__name__}() did not answer within {seconds:g} s on "
                                f"{bar}: an endless loop?")
        if outcome == "died":
            raise StrategyError(f"{self.decide_at}: {self.decide.__name__}() crashed on {bar} ({said}): "
                                "an index outside the row?")
        if said:
            raise StrategyError(said)

    # --- one instrument's row -----------------------------------------------------------------
    def row(self, p: Any) -> tuple[np.ndarray, np.ndarray]:
        """The fresh row for parameters ``p`` (bar, parameters, memory, indicators, scratch) and
        where its indicators sit in it."""
        layout = self._layout_for(p)
        heads = sum(len(ind.head) for ind in layout.indicators.values())
        scratch_at = self.base + layout.size
        row = np.zeros(scratch_at + int(self._scratch(p)))
        row[:N_BAR] = NAN
        for k, key in enumerate(self.params):
            row[N_BAR + k] = float(getattr(p, key))
        for k, value in enumerate(self.memory.values()):
            row[N_BAR + len(self.params) + k] = scratch_at if value is SCRATCH else float(value)
        ring = self.base + heads  # headers in declaration order, then their rings (IndicatorLayout's order)
        for key, ind in layout.indicators.items():
            ind.place(row, self.base + layout.offsets[key], ring)
            ring += ind.ring
        return row, self.base + layout.offsets_array

    def warmup(self, p: Any) -> int:
        return int(self._warmup(p))

    def indicator_names(self) -> list[str]:
        return list(self._layout.indicators)

    def blocks(self) -> list[tuple[str, int, Indicator]]:
        """Each indicator's name, where its block starts in the row and its declaration (the
        defaults'): the starts are constants of the file, for the kinds alone decide them."""
        return [(name, self.base + self._layout.offsets[name], ind) for name, ind in self._layout.indicators.items()]

    def indicators(self, p: Any) -> dict[str, Indicator]:
        """The indicators declared for parameters ``p``, by name, in their row's order (for charts)."""
        return dict(self._layout_for(p).indicators)

    def describe(self) -> list[str]:
        """One line per setting, for ``otrade strategy list``."""
        lines = [f"timeframe = {self.defaults.timeframe!r} ('tick' or minutes)", "allow_short = False"]
        for key, p in self.params.items():
            lines.append(f"{key} = {p.default!r}" + (f" ({p.range})" if p.range else "")
                         + (f": {p.about}" if p.about else ""))
        return lines


def _value(node: ast.expr, names: dict[str, Any]) -> Any:
    """What a literal, a name or a dotted name in the decision's source stands for; None otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        return getattr(_value(node.value, names), node.attr, None)
    return None


def _bounded(trial: Callable[[np.ndarray], str], seconds: float) -> tuple[str, str, int]:
    """``trial(progress)`` in a forked child that counts its steps in ``progress[0]``: ("answered",
    what it returned, steps), ("hung", "", step) once one step has run ``seconds`` (the child is
    killed and reaped: nothing is left running), or ("died", how, step)."""
    progress = np.frombuffer(mmap.mmap(-1, 8), dtype=np.int64)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers through the pipe and leaves without the parent's exit handlers
        faulthandler.disable()  # a crash is the parent's to report, not a dump of the parent's stack
        code = 1
        try:
            os.close(read)
            os.write(write, b"." + trial(progress).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    reaped = False
    try:
        waiting = select.poll()  # not select.select: a long-running process may hold fds past its 1024
        waiting.register(read, select.POLLIN)
        seen, since = -1, time.monotonic()
        while not waiting.poll(seconds * 50):  # ms: a twentieth of the limit
            if progress[0] != seen:
                seen, since = int(progress[0]), time.monotonic()
            elif time.monotonic() - since >= seconds:
                return "hung", "", seen
        reply = b""
        while chunk := os.read(read, 1 << 16):
            reply += chunk
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        reaped = True
        if reply.startswith(b"."):
            return "answered", reply[1:].decode(), int(progress[0])
        return "died", signal.Signals(-code).name if code < 0 else f"exit status {code}", int(progress[0])
    finally:
        os.close(read)
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


_NUMBA_PLACE = re.compile(r'File "([^"]+)", line (\d+)|" at (/[^ ]+\.py) \((\d+)\)')
_NUMBA_NOISE = re.compile(r"^(Failed in \w+ mode pipeline|During: |Enable logging|- Resolution failure|$|\s*<source)")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def numba_error(exc: BaseException, where: str) -> str:
    """One line from a Numba compile error: the last place in the strategy's file, and the reason."""
    text = str(exc)
    file = Path(where.rsplit(":", 1)[0]).resolve()
    places = [f"{file}:{n or m}" for f, n, g, m in _NUMBA_PLACE.findall(text) if Path(f or g).resolve() == file]
    if "NRT required but not enabled" in text:
        reason = "it allocates (a list, dict, string or new array): a decision only does arithmetic on x"
    elif "No conversion from none" in text:
        reason = "a path through it returns nothing: every path must return an answer"
    else:
        reasons = [line.strip() for line in text.splitlines() if not _NUMBA_NOISE.match(line)
                   and not _NUMBA_PLACE.search(line) and not line.startswith(("    ", "^"))]
        reason = _ADDRESS.sub("", reasons[0]).rstrip(":") if reasons else type(exc).__name__
    return f"{places[-1] if places else where}: Numba cannot compile the decision: {reason}"


__all__ = ["ANSWERS", "CLOSE", "EXIT", "EXIT_LONG", "EXIT_SHORT", "HIGH", "LONG", "LOW", "NAN", "NONE", "N_BAR",
           "OPEN", "SCRATCH", "SESSION", "SHORT", "SIGNATURE", "START", "VOLUME", "Param", "Strategy",
           "StrategyError", "StrategyParams", "helper", "numba_error"]
