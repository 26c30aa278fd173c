"""The folders are the architecture: every import, read from the source with ``ast`` (those inside
functions too), runs down the layers below, and no module imports itself round a circle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "config", "bot")

# Bottom to top. A part imports only itself and parts of lower layers; parts of one layer are
# siblings that know nothing of each other.
LAYERS = (
    ("engine.core",),  # pure jitted kernels over numpy arrays
    ("config",),  # typed settings; handed the strategy catalogue, it imports no strategy
    ("engine.strategies",),  # the public strategy API and the built-ins
    ("engine.services", "engine.orders"),  # journal, events, logs, clocks, calendar; the order vocabulary
    ("engine.arrays",),  # the kernels' arrays from a config
    ("engine.live",),  # order state machine, ledger, protection, restore, and the venue contract
    ("engine.brokers",),  # venues: paper, Kite
    ("engine.data",),  # ticks, feeds, recorder, store, candles, fetch
    ("engine.research", "engine.engine"),  # backtest, sweep, report; the live engine
    ("engine.charts",),  # pictures for chat: they read the engine and the store; the runtime and the bot draw them
    ("engine.runtime",),  # the process: app, session scheduler, web, lock
    ("engine.cli",),
    ("engine.__main__", "bot"),  # bot: chat-ops, above all of the engine, which never imports it
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" in path.parts:  # caches (a compiled loop's module) are no part of the package
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def known(name: str) -> str | None:
    """The project module ``name`` is (or is inside), or None for a library."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join([*base, node.module] if node.module else base)
            # ``from pkg import name`` names a submodule when there is one
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
        else:
            continue
        found.update(m for m in map(known, names) if m and m != module)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def part_of(module: str) -> str:
    parts = [p for p in RANK if module == p or module.startswith(p + ".")]
    assert parts, f"{module} belongs to no layer: add its part to LAYERS"
    return max(parts, key=len)


def test_the_engine_package_itself_imports_nothing_of_the_project():
    assert GRAPH["engine"] == set()  # its __init__ only keys the Numba cache


def test_every_module_belongs_to_a_layer():
    assert all(part_of(m) for m in MODULES if m != "engine")


def test_no_import_runs_up_or_across_the_layers():
    wrong = [f"{module} -> {target}" for module, targets in GRAPH.items() if module != "engine"
             for target in targets if target != "engine"
             and part_of(target) != part_of(module) and RANK[part_of(target)] >= RANK[part_of(module)]]
    assert wrong == []


def test_no_module_imports_itself_round_a_circle():
    # Tarjan's strongly connected components: any with two or more modules is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert circles == []


def test_the_core_imports_nothing_of_the_project_outside_itself():
    outside = {f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("engine.core")
               for t in ts if not t.startswith("engine.core")}
    assert outside == set()


def test_the_engine_never_imports_the_bot():
    assert {m for m, ts in GRAPH.items() if m.startswith("engine") and any(t.startswith("bot") for t in ts)} == set()
