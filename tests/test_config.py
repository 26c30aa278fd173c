"""Configuration: validation messages, dotted-path changes, atomic saves, undo and reload."""

import copy
import os

import orjson
import pytest

from config import ConfigError, ConfigManager, check_file, validate
from config.models import parse
from tests.conftest import DEFAULT


def errors_of(mutate) -> list[str]:
    data = copy.deepcopy(DEFAULT)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        validate(data)
    return info.value.errors


def test_shipped_default_is_valid():
    assert [i.symbol for i in validate(DEFAULT).instruments] == ["NSE:INFY", "NSE:SBIN"]


def test_fast_must_be_smaller_than_slow():
    def mutate(d):
        d["instruments"][0]["strategy"]["fast"] = 30
    assert errors_of(mutate) == ["instruments[0].strategy.fast: 30 must be smaller than slow (21)"]


def test_square_off_must_lie_inside_the_session():
    def mutate(d):
        d["session"]["square_off"] = "15:45"
    assert errors_of(mutate) == [
        "session.square_off: '15:45' must be after open (09:15) and before close (15:30)"]


def test_order_rate_is_capped_at_kites_retail_limit():
    def mutate(d):
        d["risk"]["max_orders_per_second"] = 50
    assert errors_of(mutate) == [
        "risk.max_orders_per_second: 50 must be at most 10 (Kite's retail limit without a registered algo id)"]


def test_quantity_above_max_quantity_is_refused():
    def mutate(d):
        d["instruments"][1]["quantity"] = 5000
    assert errors_of(mutate) == ["instruments[1].quantity: 5000 must be at most risk.max_quantity (1000)"]


def test_duplicate_symbols_are_refused():
    def mutate(d):
        d["instruments"][1]["symbol"] = "NSE:INFY"
    assert errors_of(mutate) == ["instruments[1].symbol: 'NSE:INFY' is already instruments[0]"]


def test_symbol_needs_an_exchange_prefix():
    def mutate(d):
        d["instruments"][0]["symbol"] = "INFY"
    assert errors_of(mutate) == ["instruments[0].symbol: 'INFY' must look like EXCHANGE:SYMBOL, e.g. NSE:INFY"]


def test_unknown_fields_are_errors():
    def mutate(d):
        d["paper"]["slipage_ticks"] = 1
    assert errors_of(mutate) == ["paper.slipage_ticks: unknown field"]


def test_replay_feed_needs_a_file():
    def mutate(d):
        d["paper"]["feed"] = "replay"
    assert errors_of(mutate) == ["paper.replay_file: null must name a tick file when feed is 'replay'"]


def test_every_field_error_is_reported_at_once():
    def mutate(d):
        d["instruments"][0]["tick_size"] = -1
        d["instruments"][1]["strategy"]["window"] = 1
        d["risk"]["max_daily_loss"] = "lots"
    assert errors_of(mutate) == [
        "instruments[0].tick_size: -1 must be greater than 0",
        "instruments[1].strategy.window: 1 must be greater than or equal to 2",
        "risk.max_daily_loss: \"lots\" must be a valid number, unable to parse string as a number",
    ]


def test_invalid_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse(b'{"instruments": [')


def test_check_file_lists_errors_and_nothing_for_a_good_file(tmp_path):
    bad = tmp_path / "bad.json"
    data = copy.deepcopy(DEFAULT)
    data["risk"]["max_trades_per_day"] = 0
    bad.write_bytes(orjson.dumps(data))
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(DEFAULT))
    assert check_file(good) == []
    assert check_file(bad) == ["risk.max_trades_per_day: 0 must be greater than or equal to 1"]


@pytest.fixture
def manager(tmp_path):
    m = ConfigManager(tmp_path / "otrade.json", tmp_path / "data")
    m.load()
    return m


def test_first_load_creates_the_file_from_the_shipped_default(manager):
    assert orjson.loads(manager.path.read_bytes()) == DEFAULT


def test_set_changes_memory_and_file_and_keeps_the_previous_version(manager):
    change = manager.set("instruments.0.strategy.fast", "12")
    assert (change.old, change.new) == (9, 12)
    assert manager.config.instruments[0].strategy.fast == 12
    assert orjson.loads(manager.path.read_bytes())["instruments"][0]["strategy"]["fast"] == 12
    [backup] = (manager.backups).iterdir()
    assert orjson.loads(backup.read_bytes()) == DEFAULT


def test_set_with_an_invalid_value_changes_nothing(manager):
    before = manager.path.read_bytes()
    with pytest.raises(ConfigError, match=r"instruments\[0\].strategy.fast: 30 must be smaller than slow"):
        manager.set("instruments.0.strategy.fast", "30")
    assert manager.config.instruments[0].strategy.fast == 9
    assert manager.path.read_bytes() == before


def test_set_of_an_unknown_path_names_it(manager):
    with pytest.raises(ConfigError, match=r"risk.max_loss: no such setting"):
        manager.set("risk.max_loss", "100")


def test_set_takes_bare_words_as_strings(manager):
    manager.set("session.square_off", "15:10")
    assert manager.config.session.square_off == "15:10"


def test_undo_restores_the_previous_version(manager):
    manager.set("risk.max_daily_loss", "2500")
    manager.undo()
    assert manager.config.risk.max_daily_loss == 5000
    assert orjson.loads(manager.path.read_bytes()) == DEFAULT


def test_undo_without_history_is_an_error(manager):
    with pytest.raises(ConfigError, match="no previous version"):
        manager.undo()


def test_reload_of_a_corrupted_file_keeps_the_current_config(manager):
    manager.path.write_bytes(b"{ not json")
    with pytest.raises(ConfigError):
        manager.reload()
    assert manager.config.risk.max_daily_loss == 5000


def test_reload_announces_what_changed(manager):
    seen = []
    manager.subscribe(lambda old, new, changes: seen.extend(changes))
    data = orjson.loads(manager.path.read_bytes())
    data["risk"]["max_trades_per_day"] = 7
    manager.path.write_bytes(orjson.dumps(data))
    manager.reload()
    assert [(c.path, c.old, c.new) for c in seen] == [("risk.max_trades_per_day", 20, 7)]


def test_a_crash_during_save_leaves_the_previous_file_intact(manager, monkeypatch):
    before = manager.path.read_bytes()

    def crash(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        manager.set("risk.max_daily_loss", "100")
    assert manager.path.read_bytes() == before
    assert [p.name for p in manager.path.parent.iterdir() if p.suffix == ".tmp"] == []
    assert manager.config.risk.max_daily_loss == 5000


def test_a_veto_refuses_the_change_and_keeps_the_file(manager):
    def veto(cfg):
        raise ConfigError(["instruments: can change only when flat"])

    manager.add_check(veto)
    before = manager.path.read_bytes()
    with pytest.raises(ConfigError, match="only when flat"):
        manager.set("instruments.0.quantity", "5")
    assert manager.path.read_bytes() == before
