"""Strategies by name: the built-ins (one file each in this package, on the public API in ``api``),
the files of a strategies folder (``folder_for``: ``$OTRADE_STRATEGIES``, else ``strategies/`` in the
project, outside ``config/``) and packaged ones (the ``otrade.strategies`` entry point group). A
built-in's name cannot be taken.

May import: ``engine.core`` and ``config`` (a strategy's parameters are config models).
"""

import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.strategies.api import LOADERS, Strategy, StrategyError

BUILTIN = ("ema_cross", "orb", "rsi_reversion", "supertrend", "vwap_reversion")
ENTRY_POINT_GROUP = "otrade.strategies"
FOLDER_ENV = "OTRADE_STRATEGIES"

log = logging.getLogger(__name__)

_loaded: dict[tuple[str, str], Strategy] = {}  # by source: each file is imported once per process
_folders: list[Path] = []  # the strategies folders of config files loaded in this process, newest first


def _located(exc: BaseException, file: Path) -> str:
    """``file:line: Error: message`` for an exception raised importing ``file``."""
    if isinstance(exc, StrategyError):
        return str(exc)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__))
                 if Path(f.filename).resolve() == file.resolve()), None)
    return f"{file}:{line or 1}: {type(exc).__name__}: {exc}"


def _strategy_of(module: Any, where: str) -> Strategy:
    strategy = getattr(module, "strategy", None)
    if not isinstance(strategy, Strategy):
        raise StrategyError(f"{where}:1: no strategy: the file must make one, strategy = Strategy(...)")
    return strategy


def load_file(path: Path | str) -> Strategy:
    """The strategy the file at ``path`` declares (imported once); StrategyError with file and line."""
    path = Path(path).resolve()
    key = ("file", str(path))
    if key not in _loaded:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        name = f"_otrade_strategies.{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise StrategyError(f"{path}:1: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise StrategyError(_located(exc, path)) from None
        strategy = _strategy_of(module, str(path))
        if strategy.name != path.stem:
            raise StrategyError(f"{strategy.where}: the strategy in {path.name} must be named {path.stem!r} "
                                f"(strategies are found by file name), not {strategy.name!r}")
        _loaded[key] = strategy
    return _loaded[key]


def load_builtin(name: str) -> Strategy:
    key = ("builtin", name)
    if key not in _loaded:
        strategy = _strategy_of(importlib.import_module(f"engine.strategies.{name}"), name)
        strategy.source = key
        _loaded[key] = strategy
    return _loaded[key]


def load_entry_point(name: str) -> Strategy:
    key = ("entry", name)
    if key not in _loaded:
        [ep] = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        try:
            found = ep.load()
        except Exception as exc:
            raise StrategyError(f"entry point {name} ({ep.value}): {type(exc).__name__}: {exc}") from None
        strategy = found if isinstance(found, Strategy) else _strategy_of(found, ep.value)
        strategy.source = key
        _loaded[key] = strategy
    return _loaded[key]


@functools.cache
def _packaged() -> list[str]:
    """The installed packages' strategy names (read once: installing one means a new process)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN))


def from_source(source: tuple[str, str]) -> Strategy:
    """A strategy again from its ``source`` (another process: a sweep's workers)."""
    kind, ref = source
    return LOADERS[kind](ref)


LOADERS.update(builtin=load_builtin, entry=load_entry_point, file=load_file)


class Catalog:
    """Strategies by name: built-ins first, then packages, then the folders (the first that has it)."""

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.folders = [Path(f) for f in folders or []]

    def _packaged(self) -> list[str]:
        return _packaged()

    def _file(self, name: str) -> Path | None:
        return next((f / f"{name}.py" for f in self.folders if (f / f"{name}.py").is_file()), None)

    def get(self, name: str) -> Strategy:
        """Strategy ``name``; ValueError if there is none, StrategyError if its file is broken."""
        if name in BUILTIN:
            return load_builtin(name)
        if name in self._packaged():
            return load_entry_point(name)
        path = self._file(name) if isinstance(name, str) and name.isidentifier() else None
        if path is None:
            where = f", or a file {name}.py in {', '.join(map(str, self.folders))}" if self.folders else ""
            raise ValueError(f"{name!r} must be one of {', '.join(map(repr, self.names()))}{where}")
        return load_file(path)

    def model(self, kind: str) -> type[BaseModel]:
        try:
            return self.get(kind).Params
        except StrategyError as exc:
            raise ValueError(str(exc)) from None

    def names(self) -> list[str]:
        """Every name, built-ins first; files starting with _ or test_ are not strategies."""
        files = sorted({p.stem for f in self.folders for p in _strategy_files(f)})
        return [*BUILTIN, *self._packaged(), *(n for n in files if n not in BUILTIN)]


def _strategy_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.py") if not p.stem.startswith(("_", "test_")) and p.stem.isidentifier()]


def _earlier_folder(config_path: Path | str) -> Path | None:
    """``config/strategies/``, where earlier versions wrote a ``config/`` config's strategies, while
    it holds any: they are still found, after the folder new ones go to."""
    home = Path(config_path).resolve().parent
    earlier = home / "strategies"
    if os.environ.get(FOLDER_ENV) or home.name != "config" or not _strategy_files(earlier):
        return None
    return earlier


def folder_for(config_path: Path | str) -> Path:
    """The folder a config file's strategies are written to and looked for first:
    ``$OTRADE_STRATEGIES`` if set; else ``strategies/`` beside the config file's folder when that
    folder is named ``config`` (``config/otrade.json`` -> ``strategies/``: the project's ``config``
    is a Python package that is linted and packaged, a trader's files belong to neither), else
    ``strategies/`` beside the config file."""
    env = os.environ.get(FOLDER_ENV)
    if env:
        return Path(env)
    home = Path(config_path).resolve().parent
    folder = (home.parent if home.name == "config" else home) / "strategies"
    earlier = _earlier_folder(config_path)
    if earlier is not None:
        log.warning("the strategies in %s (where earlier versions wrote them) are still found; new ones go to %s",
                    earlier, folder)
    return folder


def catalog_for(config_path: Path | str) -> Catalog:
    """The catalog a config file's strategies are found in (``folder_for``'s folder, then the one
    earlier versions wrote to, if it holds any); its folders are remembered, so a config validated
    later in this process without one (a sweep's variants) finds them too."""
    folders = [folder_for(config_path)]
    earlier = _earlier_folder(config_path)
    if earlier is not None:
        folders.append(earlier)
    for folder in reversed(folders):
        if folder in _folders:
            _folders.remove(folder)
        _folders.insert(0, folder)
    return Catalog(folders)


def default_catalog() -> Catalog:
    """Built-ins, packages, ``$OTRADE_STRATEGIES`` and the folders of config files loaded so far."""
    env = [Path(os.environ[FOLDER_ENV])] if os.environ.get(FOLDER_ENV) else []
    return Catalog(env + [f for f in _folders if f not in env])


__all__ = ["BUILTIN", "Catalog", "Strategy", "StrategyError", "catalog_for", "default_catalog", "folder_for",
           "from_source", "load_file"]
