"""``my_idea``: a trader's own strategy, written from the template by ``otrade strategy new``, and the
config file that trades it."""

from pathlib import Path

import orjson

from engine.cli import main
from tests.conftest import DEFAULT


def write_idea(config: Path, **settings) -> Path:
    """``config``: the shipped defaults' first instrument alone, trading ``my_idea`` with ``settings``;
    ``my_idea`` written by ``otrade strategy new`` wherever it puts a strategy for that config."""
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["instruments"] = data["instruments"][:1]
    data["instruments"][0]["strategy"] = {"kind": "my_idea", **settings}
    config.write_bytes(orjson.dumps(data))
    assert main(["strategy", "new", "my_idea", "--config", str(config)]) == 0
    return config


def edit(folder: Path, old: str, new: str) -> Path:
    """``folder``'s ``strategies/my_idea.py`` with its first ``old`` (which must be there) made ``new``."""
    path = folder / "strategies" / "my_idea.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def config_check(config: Path, capsys) -> tuple[int, list[str]]:
    """``otrade config check``: its exit code and the lines under its first."""
    code = main(["config", "check", str(config)])
    out = capsys.readouterr()
    return code, [line.strip() for line in (out.err or out.out).splitlines()[1:]]
