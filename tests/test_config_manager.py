"""ConfigManager: first load, set, atomic saves with backups, undo, reload, subscribers, diff, check_file."""

import asyncio
import copy
import os
from pathlib import Path

import orjson
import pytest

from config import Change, ConfigError, ConfigManager, check_file, diff, validate
from engine.strategies import default_catalog

DEFAULT = orjson.loads((Path(__file__).resolve().parent.parent / "config" / "default.json").read_bytes())


@pytest.fixture
def manager(tmp_path) -> ConfigManager:
    m = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    m.load()
    return m


def on_disk(m: ConfigManager) -> dict:
    return orjson.loads(m.path.read_bytes())


def backups(m: ConfigManager) -> list[Path]:
    return sorted(m.backups.glob("*.json")) if m.backups.exists() else []


def test_first_load_creates_the_file_from_the_shipped_default(manager):
    assert on_disk(manager) == DEFAULT
    assert manager.config == validate(DEFAULT, default_catalog())


def test_load_of_an_invalid_file_raises_and_keeps_the_file(tmp_path):
    path = tmp_path / "otrade.json"
    path.write_bytes(b'{"instruments": []}')
    with pytest.raises(ConfigError, match=r"instruments: \[\] must have at least 1 item"):
        ConfigManager(path, tmp_path / "data", default_catalog()).load()
    assert path.read_bytes() == b'{"instruments": []}'


def test_set_valid_value_changes_memory_file_and_keeps_a_backup(manager):
    change = manager.set("instruments.0.strategy.fast", "12")
    assert change == Change("instruments.0.strategy.fast", 9, 12)
    assert manager.config.instruments[0].strategy.fast == 12
    assert on_disk(manager)["instruments"][0]["strategy"]["fast"] == 12
    [backup] = backups(manager)
    assert backup.name.startswith("otrade-") and orjson.loads(backup.read_bytes()) == DEFAULT


def test_set_invalid_value_changes_neither_memory_nor_file(manager):
    before = manager.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        manager.set("instruments.0.strategy.fast", "30")
    assert info.value.errors == ["instruments[0].strategy.fast: 30 must be smaller than slow (21)"]
    assert manager.config.instruments[0].strategy.fast == 9
    assert manager.path.read_bytes() == before
    assert backups(manager) == []


def test_set_unknown_path_names_it(manager):
    with pytest.raises(ConfigError) as info:
        manager.set("risk.max_loss", "100")
    assert info.value.errors == ["risk.max_loss: no such setting"]


def test_set_index_past_the_end_says_how_many_there_are(manager):
    with pytest.raises(ConfigError) as info:
        manager.set("instruments.5.quantity", "1")
    assert info.value.errors == ["instruments.5: no such entry (there are 2)"]


def test_set_takes_a_bare_word_as_a_string(manager):
    manager.set("paper.replay_file", "ticks.jsonl")
    change = manager.set("paper.feed", "replay")
    assert change == Change("paper.feed", "synthetic", "replay")
    assert manager.config.paper.feed == "replay"


def test_set_parses_json_values(manager):
    manager.set("instruments.1.bracket.trail_pct", "null")
    manager.set("instruments.0.strategy.allow_short", "true")
    assert manager.config.instruments[1].bracket.trail_pct is None
    assert manager.config.instruments[0].strategy.allow_short is True


def test_set_accepts_the_bracket_paths_errors_print(manager):
    manager.set("instruments[1].quantity", "5")
    assert manager.config.instruments[1].quantity == 5


def test_set_reports_the_validated_value(manager):
    assert manager.set("risk.max_daily_loss", "2500").new == 2500.0


def test_set_of_the_same_value_writes_nothing(manager):
    manager.set("risk.max_quantity", "1000")
    assert backups(manager) == []


def test_backups_keep_only_the_last_twenty(manager):
    for n in range(25):
        manager.set("risk.max_trades_per_day", str(n + 1))
    kept = backups(manager)
    assert len(kept) == 20
    assert orjson.loads(kept[-1].read_bytes())["risk"]["max_trades_per_day"] == 24


def test_undo_restores_the_previous_version(manager):
    manager.set("risk.max_daily_loss", "2500")
    manager.set("risk.max_daily_loss", "1000")
    assert manager.undo().risk.max_daily_loss == 2500
    assert on_disk(manager)["risk"]["max_daily_loss"] == 2500
    manager.undo()
    assert manager.config.risk.max_daily_loss == 5000
    assert on_disk(manager) == DEFAULT


def test_undo_without_history_is_an_error(manager):
    with pytest.raises(ConfigError, match="no previous version"):
        manager.undo()


def test_undo_of_an_invalid_backup_keeps_the_current_config(manager):
    manager.set("risk.max_daily_loss", "2500")
    [backup] = backups(manager)
    backup.write_bytes(b"{")
    with pytest.raises(ConfigError, match="is not valid"):
        manager.undo()
    assert manager.config.risk.max_daily_loss == 2500
    assert on_disk(manager)["risk"]["max_daily_loss"] == 2500


def test_reload_of_a_corrupted_file_keeps_the_current_config(manager):
    manager.path.write_bytes(b"{ not json")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        manager.reload()
    assert manager.config == validate(DEFAULT, default_catalog())


def test_reload_returns_what_changed_on_disk(manager):
    data = on_disk(manager)
    data["risk"]["max_trades_per_day"] = 7
    manager.path.write_bytes(orjson.dumps(data))
    assert manager.reload() == [Change("risk.max_trades_per_day", 20, 7)]
    assert manager.config.risk.max_trades_per_day == 7


def test_crash_while_replacing_leaves_the_previous_file_intact(manager, monkeypatch):
    before = manager.path.read_bytes()

    def crash(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        manager.set("risk.max_daily_loss", "100")
    assert manager.path.read_bytes() == before
    assert [p.name for p in manager.path.parent.iterdir() if p.suffix == ".tmp"] == []
    assert backups(manager) == []
    assert manager.config.risk.max_daily_loss == 5000


def test_crash_while_writing_leaves_the_previous_file_intact(manager, monkeypatch):
    before = manager.path.read_bytes()

    def crash(fd):
        raise OSError("no space left")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="no space left"):
        manager.set("risk.max_daily_loss", "100")
    assert manager.path.read_bytes() == before
    assert [p.name for p in manager.path.parent.iterdir() if p.suffix == ".tmp"] == []
    assert manager.config.risk.max_daily_loss == 5000


def test_subscribers_get_old_new_and_changes_after_set_undo_and_reload(manager):
    seen = []
    manager.subscribe(lambda old, new, changes: seen.append((old.risk.max_quantity, new.risk.max_quantity, changes)))
    manager.set("risk.max_quantity", "500")
    manager.undo()
    data = on_disk(manager)
    data["risk"]["max_quantity"] = 300
    manager.path.write_bytes(orjson.dumps(data))
    manager.reload()
    assert seen == [
        (1000, 500, [Change("risk.max_quantity", 1000, 500)]),
        (500, 1000, [Change("risk.max_quantity", 500, 1000)]),
        (1000, 300, [Change("risk.max_quantity", 1000, 300)]),
    ]


def test_subscribers_are_not_called_when_set_fails(manager):
    seen = []
    manager.subscribe(lambda *args: seen.append(args))
    with pytest.raises(ConfigError):
        manager.set("session.square_off", "16:00")
    assert seen == []


def test_a_check_can_veto_a_change(manager):
    def veto(cfg):
        raise ConfigError(["instruments: can change only when flat"])

    manager.add_check(veto)
    before = manager.path.read_bytes()
    with pytest.raises(ConfigError, match="only when flat"):
        manager.set("instruments.0.quantity", "5")
    assert manager.path.read_bytes() == before
    assert manager.config.instruments[0].quantity == 10


def test_diff_lists_changed_leaves_as_dotted_paths():
    old = validate(DEFAULT, default_catalog())
    data = copy.deepcopy(DEFAULT)
    data["instruments"][0]["strategy"] = {"kind": "orb", "minutes": 30, "timeframe": 5}
    data["costs"]["gst_pct"] = 12.0
    assert diff(old, validate(data, default_catalog())) == [
        Change("instruments.0.strategy.kind", "ema_cross", "orb"),
        Change("instruments.0.strategy.fast", 9, None),
        Change("instruments.0.strategy.slow", 21, None),
        Change("costs.gst_pct", 18.0, 12.0),
        Change("instruments.0.strategy.minutes", None, 30),
    ]


def test_check_file_lists_every_error_and_nothing_for_a_valid_file(tmp_path):
    data = copy.deepcopy(DEFAULT)
    data["risk"]["max_trades_per_day"] = 0
    data["paper"]["speed"] = -1
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_bytes(orjson.dumps(data))
    good.write_bytes(orjson.dumps(DEFAULT))
    assert check_file(good, default_catalog()) == []
    assert check_file(bad, default_catalog()) == ["paper.speed: -1 must be greater than or equal to 0",
                               "risk.max_trades_per_day: 0 must be greater than or equal to 1"]


def test_check_file_reports_a_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    assert check_file(missing, default_catalog()) == [f"{missing}: No such file or directory"]


async def test_async_changes_asked_at_once_apply_one_after_the_other(manager):
    await asyncio.gather(manager.set_async("risk.max_quantity", "500"),
                         manager.set_async("risk.max_trades_per_day", "7"))
    assert (manager.config.risk.max_quantity, manager.config.risk.max_trades_per_day) == (500, 7)
    assert (on_disk(manager)["risk"]["max_quantity"], on_disk(manager)["risk"]["max_trades_per_day"]) == (500, 7)
    assert len(backups(manager)) == 2


async def test_an_async_change_a_check_refuses_once_the_file_is_written_changes_nothing(manager):
    answers = iter([None, ConfigError(["instruments: NSE:INFY busy: /flatten first"])])  # a position opened meanwhile

    def check(cfg):
        if (answer := next(answers)) is not None:
            raise answer

    manager.add_check(check)
    before = manager.path.read_bytes()
    with pytest.raises(ConfigError, match="busy"):
        await manager.set_async("instruments.0.quantity", "5")
    assert manager.path.read_bytes() == before and manager.config.instruments[0].quantity == 10
    assert backups(manager) == [] and [p for p in manager.path.parent.iterdir() if p.suffix == ".tmp"] == []
