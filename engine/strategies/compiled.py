"""One compiled backtest loop and live tick kernel per set of strategies: their indicators and
decisions compiled into them.

The loop for any strategy (``engine.core.loop.run_ticks``) and the live tick kernel
(``engine.core.step.on_tick``) update each indicator through ``update_all``'s dispatch on its kind and
call each decision through its address: about 20 ns a tick, most of the loop. ``kernels_for`` writes
them out again (``ROOTS``) as a small module for one set of strategies: the kernels of ``engine.core``
that lie between the roots and the strategy hooks (``engine.core.step.HOOKS``) copied in, the hooks
replaced by code for exactly these strategies (each indicator's update at its constant slot, each
decision called as a global), everything else imported. Numba compiles each of that module's roots
on its first call, once, and loads it from its cache in every later process; a loop taking the
strategies' functions as arguments would compile again in each (its cache entry is written and never
matched). A backtest so compiles only the loop, a live engine only its own kernels.

The module is written beside Numba's cache, named by a hash of everything its machine code depends
on (``cache_key``): its own text, every file of ``engine.core``, this file, and each strategy's file
with the project files it imports. A change to any of them makes a new module: Numba's own cache
checks only the file of the function it compiled. The hash is of contents, not paths, so the same
strategy file in another folder runs the same machine code. The trades are the generic loop's, bit
for bit: the same kernels, in the same order.
"""

import ast
import contextlib
import hashlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import numpy as np
import orjson
from numba import config, njit
from numba.core.dispatcher import Dispatcher

import engine.core
from engine.core import candle_order, loop, step
from engine.core.indicators._base import KIND, NEED, Indicator
from engine.core.indicators.layout import FEEDS
from engine.core.layout import LINK_STRATEGY
from engine.strategies.api import Strategy

# The entry points written out per set of strategies: the backtest loop, its end, the close of a session's
# last bar that both call (the generic one would compile every indicator kind into a backtest), the
# pessimistic candle rule's search that the loop calls (the generic one compiled the generic tick kernel,
# every indicator kind, into a candle backtest's first run), and what the live engine calls that reaches
# a strategy: its tick, a late fill's decision made again, its warm-up. The other live kernels (a
# reconcile's, a flatten) never reach one: engine.core.step's serve.
ROOTS = (loop.run_ticks, loop.finish, step.end_bar, candle_order.plan_worst, step.on_tick, step.decide_again,
         step.apply_entry_fill, step.apply_exit_fill, step.warm)
# A decision compiled into the loop: inlined where the loop asks it, as the strategy's helpers are (it is
# copied once per loop; compiled apart and inlined by LLVM instead, the loop compiled no faster).
_DECISION = {"error_model": "numpy", "_nrt": False, "inline": "always"}
_LIBRARIES = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})
_PROJECT = ("engine", "config")


def strategy_decision(strategy: Strategy) -> Callable[..., int]:
    """``strategy``'s decision as a compiled loop calls it (its module binds one per strategy)."""
    return njit(**_DECISION)(strategy.decide)


@dataclass(frozen=True)
class Kernels:
    """The roots compiled for ``strategies``, each taking the arguments of its namesake in
    ``engine.core.loop`` or ``engine.core.step``, with each row's place among ``strategies`` in its
    links (``bind``)."""

    strategies: tuple[Strategy, ...]
    run_ticks: Callable[..., tuple]
    finish: Callable[..., int]
    end_bar: Callable[..., None]
    plan_worst: Callable[..., int]
    on_tick: Callable[..., int]
    decide_again: Callable[..., int]
    apply_entry_fill: Callable[..., int]
    apply_exit_fill: Callable[..., int]
    warm: Callable[..., int]
    key: str  # cache_key

    def bind(self, strategies: Sequence[Strategy], links: np.ndarray) -> None:
        """Row ``j`` runs ``strategies[j]``: its place among this loop's, into its links. ValueError
        (nothing written) for a strategy the loop was not compiled for."""
        places = []
        for strategy in strategies:
            if strategy not in self.strategies:
                raise ValueError(f"this loop was compiled for {', '.join(s.name for s in self.strategies)}, "
                                 f"not for {strategy.name} ({strategy.file})")
            places.append(self.strategies.index(strategy))
        links[: len(places), LINK_STRATEGY] = places


_kernels: dict[tuple[Strategy, ...], Kernels] = {}
_modules: dict[str, ModuleType] = {}  # by cache key: the same contents share one module in a process


def kernels_for(strategies: Sequence[Strategy]) -> Kernels:
    """The kernels compiled for these strategies (each counted once, in their first order): their
    module written or found, imported once per process; Numba compiles each on its first call, or
    loads it from its cache."""
    own = tuple(dict.fromkeys(strategies))
    if config.DISABLE_JIT:  # pure Python (a benchmark's reference): nothing is compiled
        return Kernels(own, key="", **dict(zip(_root_names(), ROOTS, strict=True)))
    if own not in _kernels:
        for strategy in own:
            strategy.compile()  # a decision Numba cannot compile: StrategyError with its file and line
        text = _text(own)
        key = _key(own, text)
        if key not in _modules:
            _modules[key] = _load(key, text, own)
        module = _modules[key]
        _kernels[own] = Kernels(own, key=key, **{name: getattr(module, name) for name in _root_names()})
    return _kernels[own]


def _root_names() -> list[str]:
    return [getattr(root, "py_func", root).__name__ for root in ROOTS]  # a plain function without the JIT


def cache_key(strategies: Sequence[Strategy]) -> str:
    """The hash naming the kernels compiled for ``strategies`` (``kernels_for``): of its module's text, every
    file of ``engine.core``, this file, and each strategy's file with the project files it imports."""
    if config.DISABLE_JIT:  # as kernels_for: nothing is compiled, nothing named
        return ""
    own = tuple(dict.fromkeys(strategies))
    return _key(own, _text(own))


def loop_dir() -> Path:
    """Where the kernels' modules are written: beside Numba's cache (``NUMBA_CACHE_DIR``, which
    ``engine/__init__`` sets), else the user's cache folder (Numba then caches beside them)."""
    if config.CACHE_DIR:
        return Path(config.CACHE_DIR) / "loops"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otrade" / "loops"


# --- the module's text ------------------------------------------------------------------------
def _names(fn: Callable) -> dict[str, Any]:
    """The globals ``fn``'s code names, with their values."""
    names: set[str] = set()
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, CodeType)]
    return {n: fn.__globals__[n] for n in sorted(names) if n in fn.__globals__}


def _inlined(value: Any) -> bool:
    return isinstance(value, Dispatcher) and value.targetoptions.get("inline") == "always"


def _kernel(value: Any) -> bool:
    """A kernel of either kind (``engine.core.kernels``): one the loop holds, not an entry it calls."""
    return _inlined(value) or (isinstance(value, Dispatcher) and value.targetoptions.get("forceinline") is True)


def _chain() -> list[Dispatcher]:
    """The roots and every kernel they hold that reaches a hook, inlined by Numba or by LLVM: what is
    written out again. A kernel between a root and a hook left imported would call the hooks for any
    strategy; a copy calls this module's."""
    hooks = {getattr(step, h) for h in step.HOOKS}
    reach: dict[Dispatcher, bool] = {}

    def written(v: Any) -> bool:
        return v in ROOTS or _kernel(v)

    def reaches(d: Dispatcher) -> bool:
        if d not in reach:
            reach[d] = False  # a kernel does not call itself; this only ends a cycle
            reach[d] = any(v in hooks or (written(v) and reaches(v)) for v in _names(d.py_func).values())
        return reach[d]

    out: list[Dispatcher] = []

    def visit(d: Dispatcher) -> None:
        if d not in out:
            out.append(d)
            for v in _names(d.py_func).values():
                if _kernel(v) and v not in hooks and reaches(v):
                    visit(v)

    for root in ROOTS:
        if not reaches(root):
            raise RuntimeError(f"{root.py_func.__qualname__} reaches no strategy hook: nothing to compile for them")
        visit(root)
    return out


def _decorator(d: Dispatcher) -> str:
    """What a copy is compiled as: a root as an entry (cached), a kernel as the kind it is."""
    return "entry" if d in ROOTS else "inlined" if _inlined(d) else "kernel"


def _source(d: Dispatcher, decorator: str) -> str:
    """The function's own text under ``decorator`` (in place of its own)."""
    text = textwrap.dedent(inspect.getsource(d.py_func))
    node = ast.parse(text).body[0]
    return "\n".join([f"@{decorator}", *text.splitlines()[node.lineno - 1:]])


def _imports(chain: list[Dispatcher], defined: set[str]) -> list[str]:
    """Import lines for every global the copied functions name that the module does not define."""
    found: dict[str, tuple[str, Any]] = {}
    for d in chain:
        for name, value in _names(d.py_func).items():
            if name in defined:
                continue
            if name in found and found[name][1] is not value:
                raise RuntimeError(f"{name!r} names two things in the kernels a compiled loop copies")
            found.setdefault(name, (d.py_func.__module__, value))
    lines, by_module = [], {}
    for name, (module, value) in sorted(found.items()):
        if isinstance(value, ModuleType):
            lines.append(f"import {value.__name__} as {name}")
        else:
            by_module.setdefault(module, []).append(name)
    lines += [f"from {m} import {', '.join(names)}" for m, names in sorted(by_module.items())]
    return lines


def _feed(ind: Indicator) -> str:
    """The name of the update ``update_all`` makes for this indicator's kind."""
    return FEEDS[ind.head[KIND]].py_func.__name__


def _dispatch(bodies: list[list[str]]) -> list[str]:
    """A hook's body: each strategy's lines, chosen by the row's place among the loop's strategies."""
    if len(bodies) == 1:
        return [f"    {line}" for line in bodies[0]]
    out = ["    w = links[i, LINK_STRATEGY]"]
    for k, body in enumerate(bodies):
        out.append(f"    {'if' if k == 0 else 'elif'} w == {k}:" if k < len(bodies) - 1 else "    else:")
        out += [f"        {line}" for line in body]
    return out


def _hooks(strategies: tuple[Strategy, ...]) -> list[str]:
    """The strategy hooks for these strategies, with the signatures of ``engine.core.step``'s."""
    feeds, needs, answers = [], [], []
    for k, s in enumerate(strategies):
        blocks = s.blocks()
        feeds.append([f"{_feed(ind)}(s, {at}, session, start, high, low, close, volume)  # {name}: {ind.label}"
                      for name, at, ind in blocks] or ["pass"])
        needs.append(["most = 0.0", *(f"most = max(most, s[{at + NEED}])" for _, at, _ in blocks), "return int(most)"])
        answers.append([f"return int(_decide_{k}(s, side))  # {s.name}"])
    signature = {h: str(inspect.signature(getattr(step, h).py_func)) for h in step.HOOKS}
    return [
        *(f"_decide_{k} = strategy_decision(STRATEGIES[{k}])  # {s.name}" for k, s in enumerate(strategies)),
        "", "",
        "@kernel", f"def _indicators{signature['_indicators']}:", "    s = x[i]", *_dispatch(feeds),
        "", "",
        "@kernel", f"def _needed{signature['_needed']}:", "    s = x[i]", *_dispatch(needs),
        "", "",
        "@kernel", f"def _answer{signature['_answer']}:", "    s = x[i]", *_dispatch(answers),
    ]


_texts: dict[tuple[Strategy, ...], str] = {}  # the kernels' source a process loaded does not change under it


def _text(strategies: tuple[Strategy, ...]) -> str:
    if strategies not in _texts:
        _texts[strategies] = _written(strategies)
    return _texts[strategies]


def _written(strategies: tuple[Strategy, ...]) -> str:
    chain = _chain()
    defined = {d.py_func.__name__ for d in chain} | set(step.HOOKS)
    feeds = sorted({_feed(ind) for s in strategies for _, _, ind in s.blocks()})
    names = ", ".join(s.name for s in strategies)
    head = [
        f'"""The kernels compiled for {names} (engine.strategies.compiled wrote them, named by the hash',
        "of everything its machine code depends on: not to be edited). STRATEGIES, the strategies in the order",
        'links[:, LINK_STRATEGY] counts them, is given to it before it runs."""',
        "",
        *_imports(chain, defined),
        "from engine.core.kernels import entry, inlined, kernel",
        "from engine.core.layout import LINK_STRATEGY",
        *([f"from engine.core.indicators.layout import {', '.join(feeds)}"] if feeds else []),
        "from engine.strategies.compiled import strategy_decision",
        "",
    ]
    body = [_source(d, _decorator(d)) for d in chain]
    return "\n".join([*head, *_hooks(strategies), "", "", "\n\n\n".join(body), ""])


# --- its name: the hash of what its machine code depends on ------------------------------------------
def _ours(module: ModuleType) -> Path | None:
    """The file of a project module (not the standard library's or an installed library's)."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    if module.__name__.split(".")[0] in _PROJECT or not file.startswith(_LIBRARIES):
        return Path(file)
    return None


def _imported(module: ModuleType, file: Path) -> Iterator[ModuleType]:
    """The modules ``module`` holds, those its functions and classes come from, and those its import
    statements name (a constant imported from another file is frozen into the machine code too)."""
    for value in vars(module).values():
        if isinstance(value, ModuleType):
            yield value
            continue
        name = getattr(getattr(value, "py_func", value), "__module__", None)
        if isinstance(name, str) and name in sys.modules:
            yield sys.modules[name]
    yield from (sys.modules[n] for n in _source_facts(file)[1] if n in sys.modules)


def _import_names(source: bytes) -> list[str]:
    """What the file's import statements name, at any depth of statements (expressions hold none)."""
    names: list[str] = []
    todo: list[Any] = list(ast.parse(source).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module and not node.level:
                names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            for block in ("body", "orelse", "finalbody", "handlers", "cases"):
                todo += getattr(node, block, ())
    return names


# A file's digest and import names, by its path, modification time and size, kept in loop_dir()'s
# SOURCES: a start reads a stat per file instead of parsing ~20 of them. A file modified within
# _RACY_NS of being read is not kept: another write in the same tick of the clock would keep both
# its time and its size (git's "racily clean" files).
SOURCES = "sources.json"
_RACY_NS = 2 * 10**9
_facts: dict[str, list] = {}  # path: [mtime_ns, size, sha256 hex, import names]
_facts_read = False
_unsaved: set[str] = set()


def _source_facts(file: Path) -> tuple[str, list[str]]:
    """``file``'s sha256 and the names its import statements import."""
    global _facts_read
    if not _facts_read:
        _facts_read = True
        with contextlib.suppress(OSError, ValueError, TypeError):
            _facts.update(dict(orjson.loads((loop_dir() / SOURCES).read_bytes())))
    path = str(file)
    stat = file.stat()
    known = _facts.get(path)
    if known and known[:2] == [stat.st_mtime_ns, stat.st_size]:
        return known[2], known[3]
    source = file.read_bytes()
    facts = [stat.st_mtime_ns, stat.st_size, hashlib.sha256(source).hexdigest(), _import_names(source)]
    if time.time_ns() - stat.st_mtime_ns > _RACY_NS and len(source) == stat.st_size:
        _facts[path] = facts
        _unsaved.add(path)
    return facts[2], facts[3]


def _save_facts() -> None:
    """SOURCES written whole, when it learnt something (a temporary file renamed: a reader never sees half)."""
    if not _unsaved:
        return
    _unsaved.clear()
    for gone in [p for p in _facts if not os.path.exists(p)]:  # a file removed (a test's) is never asked again
        del _facts[gone]
    path = loop_dir() / SOURCES
    tmp = path.with_name(f".{SOURCES}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(_facts))
        os.replace(tmp, path)
    except OSError:  # a read-only cache: every start parses again
        tmp.unlink(missing_ok=True)


def _files(strategy: Strategy) -> set[Path]:
    """The strategy's file and every project file it imports, through any depth."""
    files = {Path(strategy.file)}
    seen: set[str] = set()
    decide = strategy.decide  # None: no decision, which compiling it refuses (StrategyError)
    todo = [m for m in (sys.modules.get(decide.__module__) if decide else None,) if m is not None]
    while todo:
        module = todo.pop()
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        file = _ours(module)
        if file is None:
            continue
        files.add(file)
        todo += _imported(module, file)
    return files


def _key(strategies: tuple[Strategy, ...], text: str) -> str:
    files = {Path(__file__), *Path(engine.core.__file__).parent.rglob("*.py")}
    for s in strategies:
        files |= _files(s)
    contents = sorted(_source_facts(f)[0] for f in {f.resolve() for f in files})
    _save_facts()
    return hashlib.sha256(text.encode() + "".join(contents).encode()).hexdigest()[:16]


def _load(key: str, text: str, strategies: tuple[Strategy, ...]) -> ModuleType:
    """The module for ``key``: written once (the first writer's file stays, so the modification time
    Numba's cache checks does not move under another process), then imported with its strategies."""
    path = loop_dir() / f"loop_{key}.py"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.read_text() != text:  # a damaged file: replaced
                os.replace(tmp, path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    name = f"_otrade_loops.loop_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.STRATEGIES = strategies
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


__all__ = ["ROOTS", "Kernels", "cache_key", "kernels_for", "loop_dir", "strategy_decision"]
