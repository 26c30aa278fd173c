"""The fill model, specified through the backtest (the same kernel runs live)."""

import pytest

from engine.research import backtest
from tests.conftest import DAY, make_config, make_ticks, ns, seconds

WIDE = {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}


def trades(cfg, rows, symbols=("NSE:INFY",)):
    return backtest.run(cfg, make_ticks(rows, symbols)).trade_rows()


def test_entry_fills_at_the_next_ticks_price(cross_up):
    [t] = trades(make_config(bracket=WIDE), seconds("10:00:00", [*cross_up, 101.5, 101.6]))
    assert (t["side"], t["entry_price"], t["entry_time"]) == ("long", 101.5, "2026-11-23T10:00:03.000+05:30")


def test_entry_fill_is_moved_against_us_by_the_slippage(cross_up):
    [t] = trades(make_config(bracket=WIDE, slippage_ticks=2), seconds("10:00:00", [*cross_up, 101.5, 101.6]))
    assert t["entry_price"] == pytest.approx(101.6)


def test_target_fills_at_the_target_price_when_a_tick_trades_through(cross_up):
    [t] = trades(make_config(), seconds("10:00:00", [*cross_up, 101.0, 101.5, 103.0]))
    assert (t["exit_reason"], t["exit_price"], t["pnl"]) == ("target", 102.0, pytest.approx(10.0))


def test_stop_fills_at_the_ticks_price_moved_by_slippage_through_a_gap(cross_up):
    cfg = make_config(slippage_ticks=2)
    [t] = trades(cfg, seconds("10:00:00", [*cross_up, 101.0, 98.0]))
    # entry 101.10 -> stop 100.10; the gap to 98.00 fills at 98.00 - 0.10
    assert (t["exit_reason"], t["exit_price"]) == ("stop", pytest.approx(97.9))


def test_no_bracket_exit_on_the_tick_that_opened_the_position(cross_up):
    [t] = trades(make_config(), seconds("10:00:00", [*cross_up, 110.0, 110.0]))
    assert t["entry_price"] == 110.0 and t["exit_reason"] == "square_off"


def test_trailing_stop_tightens_and_exits_with_reason_trail(cross_up):
    cfg = make_config(bracket={"target_pct": 5.0, "stop_pct": 1.0, "trail_pct": 0.5})
    [t] = trades(cfg, seconds("10:00:00", [*cross_up, 101.0, 102.0, 101.4]))
    assert (t["exit_reason"], t["exit_price"]) == ("trail", 101.4)


def test_opposite_crossover_exits_at_the_next_tick_without_reversing():
    cfg = make_config(bracket=WIDE, strategy={"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": True})
    [t] = trades(cfg, seconds("10:00:00", [100.0, 100.0, 101.0, 101.0, 100.5, 100.7]))
    assert (t["side"], t["exit_reason"], t["exit_price"]) == ("long", "signal", 100.7)


def test_square_off_exits_at_the_first_tick_at_or_after_square_off(cross_up):
    rows = seconds("15:14:56", [*cross_up, 101.0]) + seconds("15:15:00", [101.3, 101.4])
    [t] = trades(make_config(bracket=WIDE), rows)
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == (
        "square_off", 101.3, "2026-11-23T15:15:00.000+05:30")


def test_entry_whose_next_tick_is_at_square_off_is_not_taken(cross_up):
    rows = seconds("15:14:57", cross_up) + seconds("15:15:00", [101.3, 101.4])
    assert trades(make_config(bracket=WIDE), rows) == []


def test_no_entry_signalled_at_or_after_square_off(cross_up):
    assert trades(make_config(bracket=WIDE), seconds("15:15:00", [*cross_up, 101.0, 101.2])) == []


def test_session_without_a_tick_after_square_off_exits_at_its_last_tick(cross_up):
    [t] = trades(make_config(bracket=WIDE), seconds("15:00:00", [*cross_up, 101.0, 101.2]))
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == (
        "square_off", 101.2, "2026-11-23T15:00:04.000+05:30")


def test_next_session_starts_flat_with_fresh_indicators(cross_up):
    rows = seconds("15:00:00", [*cross_up, 101.0]) + seconds("09:15:00", [50.0, 50.0], day="2026-11-24")
    [t] = trades(make_config(bracket=WIDE), rows)
    assert t["exit_time"].startswith("2026-11-23T15:00:03")


def test_ticks_outside_the_session_window_are_ignored(cross_up):
    rows = seconds("09:14:57", cross_up) + seconds("15:30:00", [101.0, 101.0])
    result = backtest.run(make_config(bracket=WIDE), make_ticks(rows))
    assert (result.ticks, result.trade_rows()) == (0, [])


def test_max_trades_per_day_refuses_further_entries(cross_up):
    cfg = make_config(risk={"max_trades_per_day": 1})
    prices = [*cross_up, 101.0, 103.0, 99.0, 101.0, 102.0, 104.0]  # target, then a second cross up
    assert len(trades(cfg, seconds("10:00:00", prices))) == 1


def test_daily_loss_limit_flattens_at_the_next_tick_and_stops_entries():
    cfg = make_config(bracket=WIDE, risk={"max_daily_loss": 5},
                      strategy={"kind": "orb", "minutes": 1, "allow_short": False})
    rows = seconds("09:15:00", [100.0, 101.0, 99.5])
    rows += seconds("09:16:30", [100.5, 101.5, 101.6, 101.2, 101.0, 100.9, 100.5, 101.5, 101.8])
    [t] = trades(cfg, rows)
    assert (t["entry_price"], t["exit_reason"], t["exit_price"]) == (101.6, "risk", 100.9)


def test_short_entries_need_allow_short():
    falling = [100.0, 100.0, 99.0, 99.0, 99.0]
    cfg = make_config(bracket=WIDE)
    short = make_config(bracket=WIDE,
                        strategy={"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": True})
    assert trades(cfg, seconds("10:00:00", falling)) == []
    [t] = trades(short, seconds("10:00:00", falling))
    assert (t["side"], t["entry_price"]) == ("short", 99.0)


def test_orb_goes_long_on_a_break_above_the_opening_range():
    cfg = make_config(bracket=WIDE, strategy={"kind": "orb", "minutes": 1, "allow_short": False})
    rows = seconds("09:15:00", [100.0, 101.0, 99.5]) + seconds("09:16:30", [100.5, 101.5, 101.6])
    [t] = trades(cfg, rows)
    assert (t["side"], t["entry_price"]) == ("long", 101.6)


def test_vwap_reversion_buys_a_deep_dip_and_exits_at_vwap():
    cfg = make_config(bracket=WIDE, strategy={"kind": "vwap_reversion", "window": 5, "k": 1.5,
                                              "allow_short": False})
    prices = [100.0, 100.2, 99.8, 100.0, 100.1, 97.0, 97.5, 100.5, 100.6]
    [t] = trades(cfg, seconds("10:00:00", prices))
    assert (t["entry_price"], t["exit_reason"], t["exit_price"]) == (97.5, "signal", 100.6)


def test_instruments_trade_independently(cross_up):
    symbols = ("NSE:INFY", "NSE:SBIN")
    cfg = make_config(bracket=WIDE, symbols=symbols)
    rows = [(f"10:00:0{k}", p, "NSE:INFY") for k, p in enumerate([*cross_up, 101.5])]
    rows += [(f"10:01:0{k}", p, "NSE:SBIN") for k, p in enumerate([*cross_up, 101.7])]
    result = trades(cfg, rows, symbols)
    assert [(t["symbol"], t["entry_price"]) for t in result] == [("NSE:INFY", 101.5), ("NSE:SBIN", 101.7)]


def test_order_rate_limit_refuses_entries_beyond_it_in_one_second(cross_up):
    symbols = ("NSE:INFY", "NSE:SBIN")
    cfg = make_config(bracket=WIDE, symbols=symbols, risk={"max_orders_per_second": 1})
    rows = [("10:00:00.1", 100.0, "NSE:INFY"), ("10:00:00.2", 100.0, "NSE:SBIN"),
            ("10:00:00.3", 99.0, "NSE:INFY"), ("10:00:00.4", 99.0, "NSE:SBIN"),
            ("10:00:00.5", 101.0, "NSE:INFY"), ("10:00:00.6", 101.0, "NSE:SBIN"),
            ("10:00:01.5", 101.5, "NSE:INFY"), ("10:00:01.6", 101.5, "NSE:SBIN")]
    assert [t["symbol"] for t in trades(cfg, rows, symbols)] == ["NSE:INFY"]


def test_bracket_levels_that_would_round_onto_the_entry_stay_a_tick_away():
    cfg = make_config(bracket={"target_pct": 0.1, "stop_pct": 0.1, "trail_pct": None})  # on a 0.05 tick
    [t] = trades(cfg, seconds("10:00:00", [19.0, 18.8, 19.2, 20.0, 20.0, 20.05]))
    assert (t["entry_price"], t["exit_reason"], t["exit_price"], t["pnl"]) == (20.0, "target", 20.05,
                                                                                 pytest.approx(0.5))


def test_a_trades_times_print_the_millisecond_they_fall_in_even_a_nanosecond_before_the_next():
    just_before = ns("10:00:05") + 8_999_999  # as a float of seconds, 10:00:05.009
    assert backtest.iso(just_before) == f"{DAY}T10:00:05.008+05:30"
    assert backtest.iso(just_before + 1) == f"{DAY}T10:00:05.009+05:30"
