"""Config models: the shipped default, each rule's message, every error at once, JSON errors."""

import copy
from pathlib import Path

import orjson
import pytest

from config import Config, ConfigError, parse, validate
from engine.strategies import Catalog, default_catalog

SHIPPED = Path(__file__).resolve().parent.parent / "config"
DEFAULT = orjson.loads((SHIPPED / "default.json").read_bytes())


def errors_of(mutate) -> list[str]:
    data = copy.deepcopy(DEFAULT)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        validate(data, Catalog())  # the built-ins alone: no folder another test's config registered
    return info.value.errors


def test_shipped_default_validates():
    cfg = validate(DEFAULT, default_catalog())
    assert [(i.symbol, i.tick_size, i.quantity, i.strategy.kind) for i in cfg.instruments] == [
        ("NSE:INFY", 0.1, 10, "ema_cross"), ("NSE:SBIN", 0.05, 20, "vwap_reversion")]
    assert cfg.paper.feed == "synthetic"


def test_omitted_sections_take_their_defaults():
    cfg = validate({"instruments": [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 1,
                                     "strategy": {"kind": "orb"}}]}, default_catalog())
    assert (cfg.instruments[0].strategy.minutes, cfg.instruments[0].bracket.stop_pct) == (15, 0.25)
    assert (cfg.session.square_off, cfg.risk.max_orders_per_second, cfg.costs.gst_pct) == ("15:15", 10, 18.0)


def test_session_times_convert_to_nanoseconds_after_midnight():
    session = validate(DEFAULT, default_catalog()).session
    assert session.ns_after_midnight("open") == (9 * 60 + 15) * 60 * 10**9
    assert session.ns_after_midnight("close") == (15 * 60 + 30) * 60 * 10**9


def test_fast_must_be_smaller_than_slow():
    def mutate(d):
        d["instruments"][0]["strategy"]["fast"] = 30
    assert errors_of(mutate) == ["instruments[0].strategy.fast: 30 must be smaller than slow (21)"]


def test_square_off_must_lie_between_open_and_close():
    def mutate(d):
        d["session"]["square_off"] = "15:45"
    assert errors_of(mutate) == [
        "session.square_off: '15:45' must be after open (09:15) and before close (15:30)"]


def test_session_times_must_be_hh_mm():
    def mutate(d):
        d["session"]["open"] = "9:15"
    assert errors_of(mutate) == ["session.open: '9:15' must be a time as HH:MM"]


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


def test_unknown_field_is_an_error():
    def mutate(d):
        d["paper"]["bogus"] = 1
    assert errors_of(mutate) == ["paper.bogus: unknown field"]


def test_symbol_needs_an_exchange_prefix():
    def mutate(d):
        d["instruments"][1]["symbol"] = "INFY"
    assert errors_of(mutate) == ["instruments[1].symbol: 'INFY' must look like EXCHANGE:SYMBOL, e.g. NSE:INFY"]


def test_replay_feed_needs_a_file():
    def mutate(d):
        d["paper"]["feed"] = "replay"
    assert errors_of(mutate) == ["paper.replay_file: null must name a tick file when feed is 'replay'"]


def test_unknown_strategy_kind_names_the_known_ones():
    def mutate(d):
        d["instruments"][0]["strategy"] = {"kind": "macd"}
    assert errors_of(mutate) == [
        "instruments[0].strategy.kind: 'macd' must be one of 'ema_cross', 'orb', 'rsi_reversion', 'supertrend', "
        "'vwap_reversion'"]


def test_strategy_paths_leave_out_the_union_tag():
    def mutate(d):
        d["instruments"][1]["strategy"]["window"] = 1
    assert errors_of(mutate) == ["instruments[1].strategy.window: 1 must be greater than or equal to 2"]


def test_all_errors_are_reported_at_once():
    def mutate(d):
        d["instruments"][0]["tick_size"] = -1
        d["instruments"][1]["strategy"]["fast"] = 3
        d["session"]["square_off"] = "09:00"
        d["risk"]["max_daily_loss"] = "lots"
        d["costs"]["gst_pct"] = -18
    assert errors_of(mutate) == [
        "instruments[0].tick_size: -1 must be greater than 0",
        "instruments[1].strategy.fast: unknown field",
        "session.square_off: '09:00' must be after open (09:15) and before close (15:30)",
        'risk.max_daily_loss: "lots" must be a valid number, unable to parse string as a number',
        "costs.gst_pct: -18 must be greater than or equal to 0",
    ]


def test_cross_rules_still_run_when_another_section_is_invalid():
    def mutate(d):
        d["instruments"][0]["quantity"] = 2000
        d["instruments"][1]["quantity"] = 3000
        d["costs"]["gst_pct"] = -18
    assert errors_of(mutate) == [
        "instruments[0].quantity: 2000 must be at most risk.max_quantity (1000)",
        "instruments[1].quantity: 3000 must be at most risk.max_quantity (1000)",
        "costs.gst_pct: -18 must be greater than or equal to 0",
    ]


def test_config_error_str_joins_every_error_by_line():
    error = ConfigError(["a: one", "b: two"])
    assert (str(error), error.errors) == ("a: one\nb: two", ["a: one", "b: two"])


def test_invalid_json_names_line_and_column():
    with pytest.raises(ConfigError) as info:
        parse(b'{\n  "instruments": [\n}', default_catalog())
    assert info.value.errors == ["not valid JSON at line 3, column 1: unexpected character, expected a JSON value"]


def test_json_that_is_not_an_object_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        parse(b"[]", default_catalog())
    assert info.value.errors == ["config: [] must be a valid dictionary or instance of Config"]


def test_parse_reads_the_shipped_default():
    assert parse((SHIPPED / "default.json").read_bytes(), default_catalog()) == validate(DEFAULT, default_catalog())


def test_models_are_immutable():
    cfg: Config = validate(DEFAULT, default_catalog())
    with pytest.raises(ValueError, match="frozen"):
        cfg.risk.max_quantity = 1  # type: ignore[misc]


def test_calendar_lists_weekday_holidays_and_muhurat_session():
    from datetime import date

    calendar = orjson.loads((SHIPPED / "calendar.json").read_bytes())
    days = [date.fromisoformat(d) for d in calendar["holidays"]]
    assert len(days) == 16 and all(d.year == 2026 and d.weekday() < 5 for d in days)
    assert calendar["special_sessions"] == [
        {"date": "2026-11-08", "open": "18:00", "close": "19:00", "name": "Muhurat trading"}]


def test_exit_reprice_seconds_must_be_positive():
    def mutate(d):
        d["risk"]["exit_reprice_seconds"] = 0
    [error] = errors_of(mutate)
    assert error.startswith("risk.exit_reprice_seconds: 0") and "greater than 0" in error
