"""Load, change, save (atomically, keeping the previous version), undo and announce the config."""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from config.models import Config, ConfigError, parse, validate

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default.json"
KEEP_BACKUPS = 20


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any


Listener = Callable[[Config, Config, list[Change]], None]


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
    a, b = _leaves(old.model_dump()), _leaves(new.model_dump())
    return [Change(p, a.get(p), b.get(p)) for p in sorted(a.keys() | b.keys()) if a.get(p) != b.get(p)]


def check_file(path: Path) -> list[str]:
    try:
        parse(Path(path).read_bytes())
    except FileNotFoundError:
        return [f"{path}: no such file"]
    except ConfigError as exc:
        return exc.errors
    return []


def _parse_value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # `/set paper.feed replay` needs no quotes


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ConfigManager:
    def __init__(self, path: Path, data_dir: Path) -> None:
        self.path = Path(path)
        self.backups = Path(data_dir) / "config-backups"
        self.config: Config | None = None
        self._listeners: list[Listener] = []
        self._checks: list[Callable[[Config], None]] = []

    def load(self) -> Config:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SHIPPED_DEFAULT, self.path)
        self.config = parse(self.path.read_bytes())
        return self.config

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_check(self, check: Callable[[Config], None]) -> None:
        """A veto run on every valid candidate before it is saved; it raises ConfigError to refuse."""
        self._checks.append(check)

    def set(self, dotted_path: str, raw_value: str) -> Change:
        data = self._current().model_dump(mode="json")
        node, key = self._locate(data, dotted_path)
        old = node[key]
        node[key] = _parse_value(raw_value)
        new_config = validate(data)
        self._commit(new_config)
        return Change(dotted_path, old, node[key])

    def undo(self) -> Config:
        backups = self._backups()
        if not backups:
            raise ConfigError(["undo: there is no previous version to restore"])
        restored = parse(backups[-1].read_bytes())
        self._commit(restored, keep_backup=False)
        backups[-1].unlink()
        return restored

    def reload(self) -> list[Change]:
        new_config = parse(self.path.read_bytes())
        for check in self._checks:
            check(new_config)
        return self._announce(new_config)

    def _current(self) -> Config:
        if self.config is None:
            raise RuntimeError("load() the config first")
        return self.config

    @staticmethod
    def _locate(data: dict, dotted_path: str) -> tuple[Any, Any]:
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

    def _commit(self, new_config: Config, keep_backup: bool = True) -> None:
        for check in self._checks:
            check(new_config)
        if keep_backup and self.path.exists():
            self.backups.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
            shutil.copyfile(self.path, self.backups / f"{self.path.stem}-{stamp}.json")
            for old in self._backups()[:-KEEP_BACKUPS]:
                old.unlink()
        payload = orjson.dumps(new_config.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
        _write_atomic(self.path, payload)
        self._announce(new_config)

    def _announce(self, new_config: Config) -> list[Change]:
        old, self.config = self._current(), new_config
        changes = diff(old, new_config)
        if changes:
            for listener in self._listeners:
                listener(old, new_config, changes)
        return changes

    def _backups(self) -> list[Path]:
        return sorted(self.backups.glob(f"{self.path.stem}-*.json"))


__all__ = ["Change", "ConfigManager", "check_file", "diff"]
