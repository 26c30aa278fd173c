"""Load, change, save (atomically, keeping the previous version), undo and announce the config.

On the event loop, ``set_async`` and ``undo_async`` write and sync the files on a worker thread, so
a change never stalls the ticks; the change is still checked and taken live on the loop.

Undo takes back the changes ``set`` made in this process, newest first, as deep as the kept backups
go (``KEEP_BACKUPS``): older backups, from earlier runs, stay on disk for a hand restore but are
never restored by surprise.
"""

import contextlib
import itertools
import logging
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from config.models import Config, ConfigError, StrategyCatalog, parse, validate

if TYPE_CHECKING:  # imported by the async methods: a backtest or a config check never runs a loop
    import asyncio

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default.json"
KEEP_BACKUPS = 20
STAMP = "%Y%m%dT%H%M%S%f"
INDEX = re.compile(r"\[(\d+)\]")
STRATEGY_KIND = re.compile(r"^instruments\.\d+\.strategy\.kind$")
KEPT_ACROSS_KINDS = ("allow_short", "timeframe")  # every strategy's own fields (engine.strategies.api.RESERVED)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any
    note: str = field(default="", compare=False)  # what else the change did, when it did more than asked


Listener = Callable[[Config, Config, list[Change]], None]
Check = Callable[[Config], None]


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def diff(old: Config, new: Config) -> list[Change]:
    """Changed leaves as dotted paths (``instruments.0.strategy.fast``), in the config's own order."""
    a, b = _leaves(old.model_dump()), _leaves(new.model_dump())
    paths = [*a, *(p for p in b if p not in a)]
    return [Change(p, a.get(p), b.get(p)) for p in paths if a.get(p) != b.get(p)]


def as_json(value: Any) -> str:
    """A setting's value as the config file spells it (``true``, ``null``, ``"text"``, ``{"kind": ...}``)."""
    return orjson.dumps(value, default=str).decode()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (``Bracket``, or ``Instrument`` for ``list[Instrument]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_of, typing.get_args(annotation))), None)


def takes_restart(path: str) -> bool:
    """Whether the setting at ``path`` (or the section holding it) is read only at start (``RESTART`` in
    config.models): a change to it is saved now and takes effect after a restart."""
    model: type[BaseModel] | None = Config
    for part in _dotted(path).split("."):
        if part.isdigit():
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return False
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("restart"):
            return True
        model = _model_of(info.annotation)
    return False


def changed_leaves(changes: list[Change]) -> list[str]:
    """The single settings ``changes`` changed, a changed section looked into (``server`` -> ``server.port``)."""
    paths: list[str] = []
    for change in changes:
        old, new = _leaves(change.old, change.path), _leaves(change.new, change.path)
        paths += [p for p in dict.fromkeys([*old, *new]) if old.get(p) != new.get(p)]
    return paths


def check_file(path: Path | str, strategies: StrategyCatalog) -> list[str]:
    """Every problem with the config file at ``path``; empty when it is valid."""
    try:
        parse(Path(path).read_bytes(), strategies)
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    except ConfigError as exc:
        return exc.errors
    return []


def _parse_value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # `/set paper.feed replay` needs no quotes


def _dotted(path: str) -> str:
    """``instruments[0].quantity`` spelled as ``instruments.0.quantity``."""
    return INDEX.sub(r".\1", path).strip(".")


def _write_synced(path: Path, payload: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable. Best effort: the file is already replaced, and some systems (Windows,
    # some network mounts) cannot open or sync a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _payload(config: Config, payload: bytes | None) -> bytes:
    if payload is not None:
        return payload
    return orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"


def _discard(tmp: Path, backup: Path | None) -> None:
    tmp.unlink(missing_ok=True)
    if backup is not None:
        backup.unlink(missing_ok=True)


class ConfigManager:
    """The config file and the live Config made from it; every change is validated whole before it is saved."""

    def __init__(self, path: Path | str, data_dir: Path | str, strategies: StrategyCatalog) -> None:
        self.path = Path(path)
        self.strategies = strategies  # where the strategies its kinds name are found
        self.backups = Path(data_dir) / "config-backups"
        self._config: Config | None = None
        self._listeners: list[Listener] = []
        self._checks: list[Check] = []
        self._async_lock: asyncio.Lock | None = None  # async changes one at a time: each builds on the one before
        self._undo: list[Path] = []  # the backups this process's changes made, oldest first: what undo restores

    @property
    def _lock(self) -> "asyncio.Lock":
        import asyncio

        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock

    @property
    def config(self) -> Config:
        if self._config is None:
            raise RuntimeError("load() the config first")
        return self._config

    def load(self) -> Config:
        """Read and validate the file, first creating it from the shipped default when there is none."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._save(SHIPPED_DEFAULT.read_bytes(), keep_backup=False)
        self._config = parse(self.path.read_bytes(), self.strategies)
        return self._config

    def subscribe(self, listener: Listener) -> None:
        """``listener(old, new, changes)`` runs after every set, undo or reload that changed something."""
        self._listeners.append(listener)

    def add_check(self, check: Check) -> None:
        """A veto run on every valid candidate before it is saved; it raises ConfigError to refuse."""
        self._checks.append(check)

    @property
    def undoable(self) -> int:
        """How many changes ``undo`` can still take back."""
        return len(self._undo)

    def set(self, dotted_path: str, raw_value: str) -> Change:
        """Set one setting (``risk.max_daily_loss``, ``instruments.0.strategy.fast`` or ``instruments[0]...``)
        from its JSON text, or from plain text when that is not JSON. A new strategy kind
        (``instruments.0.strategy.kind``) starts from that kind's defaults, keeping allow_short and
        timeframe where the new kind takes them: the old kind's parameters mean nothing to it."""
        candidate, change = self._candidate(dotted_path, raw_value)
        if candidate != self.config:
            self._commit(candidate, why="set")
        return change

    async def set_async(self, dotted_path: str, raw_value: str) -> Change:
        """``set`` for the event loop: the files are written and synced on a worker thread."""
        async with self._lock:
            candidate, change = self._candidate(dotted_path, raw_value)
            if candidate != self.config:
                await self._commit_async(candidate, why="set")
            return change

    def _candidate(self, dotted_path: str, raw_value: str) -> tuple[Config, Change]:
        dotted_path = _dotted(dotted_path)
        data = self.config.model_dump(mode="json")  # a fresh tree: the live config is untouched until commit
        node, key = self._locate(data, dotted_path)
        old, value = node[key], _parse_value(raw_value)
        if STRATEGY_KIND.match(dotted_path) and value != old:
            return self._new_kind(data, node, value, dotted_path.rpartition(".")[0])
        node[key] = value
        candidate = validate(data, self.strategies)
        new = self._locate(candidate.model_dump(mode="json"), dotted_path)
        return candidate, Change(dotted_path, old, new[0][new[1]])

    def _new_kind(self, data: dict[str, Any], block: dict[str, Any], kind: Any, path: str) -> tuple[Config, Change]:
        """The strategy block at ``path`` reset to ``kind``'s defaults, with as many of allow_short and
        timeframe kept as the new kind accepts; the error of the bare kind when none is accepted."""
        old = dict(block)
        shared = [k for k in KEPT_ACROSS_KINDS if k in old]

        def reset(kept: tuple[str, ...]) -> tuple[Config, Change]:
            block.clear()
            block.update({"kind": kind, **{k: old[k] for k in kept}})
            candidate = validate(data, self.strategies)
            new, key = self._locate(candidate.model_dump(mode="json"), path)
            note = f"{as_json(kind)} starts from its defaults" + (f", keeping {' and '.join(kept)}" if kept else "")
            return candidate, Change(path, old, new[key], note)

        for kept in (c for n in range(len(shared), 0, -1) for c in itertools.combinations(shared, n)):
            with contextlib.suppress(ConfigError):
                return reset(kept)
        return reset(())  # refused: its error says what is wrong with the kind itself

    def get(self, path: str = "") -> Any:
        """One setting or section as JSON data, by the paths ``set`` takes; the whole config for ""."""
        data, path = self.config.model_dump(mode="json"), _dotted(path)
        if not path:
            return data
        node, key = self._locate(data, path)
        return node[key]

    def undo(self) -> Config:
        """Take back the last change ``set`` made in this process; repeated undos walk further back.
        Returns the config restored (``undo_async``, the chat's, returns what changed)."""
        backup, raw, restored = self._previous()
        self._commit(restored, payload=raw, keep_backup=False, why="undo")
        self._forget(backup)
        return restored

    async def undo_async(self) -> list[Change]:
        """``undo`` for the event loop (the files are read, written and synced on a worker thread):
        what it changed, each setting from its current value back to the one restored."""
        import asyncio

        async with self._lock:
            backup, raw, restored = await asyncio.to_thread(self._previous)
            changes = await self._commit_async(restored, payload=raw, keep_backup=False, why="undo")
            await asyncio.to_thread(self._forget, backup)
            return changes

    def _previous(self) -> tuple[Path, bytes, Config]:
        """The newest backup this process made, its bytes and the config they hold."""
        if not self._undo:
            raise ConfigError(["undo: there is no previous version to restore: no change made since the start is "
                               f"left to undo (older versions stay in {self.backups})"])
        backup = self._undo[-1]
        raw = backup.read_bytes()
        try:
            return backup, raw, parse(raw, self.strategies)
        except ConfigError as exc:
            raise ConfigError([f"undo: {backup.name} is not valid", *exc.errors]) from None

    def _forget(self, backup: Path) -> None:
        backup.unlink()
        self._undo.remove(backup)

    def reload(self) -> list[Change]:
        """Take up edits made to the file by hand; an invalid file changes nothing."""
        new_config = parse(self.path.read_bytes(), self.strategies)
        for check in self._checks:
            check(new_config)
        return self._announce(new_config, "reload")

    @staticmethod
    def _locate(data: dict[str, Any], dotted_path: str) -> tuple[Any, Any]:
        parts = dotted_path.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError([f"{where}: no such entry (there are {len(node)})"])
                key: Any = int(part)
            elif isinstance(node, dict) and part in node:
                key = part
            else:
                raise ConfigError([f"{where}: no such setting"])
            if depth == len(parts) - 1:
                return node, key
            node = node[key]
        raise ConfigError([f"{dotted_path}: no such setting"])

    def _check(self, new_config: Config) -> None:
        for check in self._checks:
            check(new_config)

    def _commit(self, new_config: Config, why: str, payload: bytes | None = None,
                keep_backup: bool = True) -> list[Change]:
        self._check(new_config)
        self._save(_payload(new_config, payload), keep_backup)
        return self._announce(new_config, why)

    async def _commit_async(self, new_config: Config, why: str, payload: bytes | None = None,
                            keep_backup: bool = True) -> list[Change]:
        import asyncio

        self._check(new_config)
        staged = await asyncio.to_thread(self._stage, _payload(new_config, payload), keep_backup)
        # Checked again: the engine may have changed (a position opened) while the files were written.
        self._install(*staged, check=lambda: self._check(new_config))
        changes = self._announce(new_config, why)
        await asyncio.to_thread(self._settle)
        return changes

    def _save(self, payload: bytes, keep_backup: bool) -> None:
        """Write a temp file beside the config, keep the current file as a backup, then rename over it.

        Any failure leaves the previous file in place, with neither the temp file nor the backup left behind.
        """
        self._install(*self._stage(payload, keep_backup))
        self._settle()

    def _stage(self, payload: bytes, keep_backup: bool) -> tuple[Path, Path | None]:
        """The temp file and the current file's backup, written and synced; nothing replaced yet."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        backup: Path | None = None
        try:
            _write_synced(tmp, payload)
            if keep_backup and self.path.exists():
                backup = self._new_backup_path()
                _write_synced(backup, self.path.read_bytes())
        except BaseException:
            _discard(tmp, backup)
            raise
        return tmp, backup

    def _install(self, tmp: Path, backup: Path | None, check: Callable[[], None] = lambda: None) -> None:
        """Rename the staged file over the config (no sync: cheap enough for the loop); its backup
        becomes the one the next undo restores."""
        try:
            check()
            os.replace(tmp, self.path)
        except BaseException:
            _discard(tmp, backup)
            raise
        if backup is not None:
            self._undo.append(backup)

    def _settle(self) -> None:
        _fsync_dir(self.path.parent)
        for old in self._backups()[:-KEEP_BACKUPS]:
            old.unlink()
            if old in self._undo:
                self._undo.remove(old)

    def _new_backup_path(self) -> Path:
        self.backups.mkdir(parents=True, exist_ok=True)
        when = datetime.now()
        if existing := self._backups():
            # Strictly after the newest one, so undo order survives a coarse or stepped-back clock.
            newest = datetime.strptime(existing[-1].stem.rpartition("-")[2], STAMP)
            when = max(when, newest + timedelta(microseconds=1))
        return self.backups / f"{self.path.stem}-{when.strftime(STAMP)}.json"

    def _announce(self, new_config: Config, why: str) -> list[Change]:
        old, self._config = self.config, new_config
        changes = diff(old, new_config)
        if changes:
            log.info("config changed by %s: %s", why,
                     "; ".join(f"{c.path}: {as_json(c.old)} -> {as_json(c.new)}" for c in changes))
            for listener in self._listeners:
                listener(old, new_config, changes)
        return changes

    def _backups(self) -> list[Path]:
        # Only this file's backups: another config sharing the data dir may have a name starting with our stem.
        return sorted(self.backups.glob(f"{self.path.stem}-{'[0-9]' * 8}T{'[0-9]' * 12}.json"))


__all__ = ["Change", "ConfigManager", "as_json", "changed_leaves", "check_file", "diff", "takes_restart"]
