"""Changing settings from chat, as a newcomer meets it: when a change takes effect, what /undo took
back and how far it goes, a strategy's kind changed as a whole, values echoed as JSON, and a log
line naming every change."""

import logging
import textwrap

import orjson
import pytest

from bot.commands import CONSOLE, Commands, Services, resolve
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.engine import Engine
from engine.services import logs
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import Catalog, default_catalog
from tests.test_telegram import Clock, write_config


def make_commands(tmp_path, catalog=None) -> Commands:
    """Commands over a paper engine and the real ConfigManager on ``tmp_path/otrade.json``, wired as
    ``otrade run`` wires them (the engine vetoes and applies every change)."""
    if not (tmp_path / "otrade.json").exists():
        write_config(tmp_path / "otrade.json")
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", catalog or default_catalog())
    cfg = manager.load()
    clock = Clock()
    engine = Engine(cfg, PaperBroker({"NSE:INFY": 0.05}, clock), EventBus(), Journal(tmp_path / "data", clock),
                    clock)
    manager.add_check(engine.check_config)
    manager.subscribe(lambda old, new, changes: engine.apply_config(new))
    engine.start_session()
    return Commands(Services(engine, manager, tmp_path / "data", clock))


@pytest.fixture
def commands(tmp_path) -> Commands:
    return make_commands(tmp_path)


async def say(commands: Commands, text: str) -> str:
    return (await resolve(commands.handle_text(CONSOLE, text))).text


def on_disk(commands: Commands) -> dict:
    return orjson.loads(commands.s.config.path.read_bytes())


# --- /undo ---------------------------------------------------------------------------------------

async def test_undo_names_the_change_it_took_back_and_how_many_are_left(commands):
    await say(commands, "/set risk.max_quantity 500")
    await say(commands, "/set risk.max_trades_per_day 7")
    assert await say(commands, "/undo") == ("Undone (saved, live):\nrisk.max_trades_per_day: 7 → 20\n"
                                            "1 earlier change(s) left to undo.")
    assert commands.s.engine.risk()["max_trades_per_day"] == on_disk(commands)["risk"]["max_trades_per_day"] == 20
    assert await say(commands, "/undo") == ("Undone (saved, live):\nrisk.max_quantity: 500 → 1000\n"
                                            "That was the oldest change /undo can take back: nothing more to undo.")
    assert commands.s.engine.risk()["max_quantity"] == 1000


async def test_undo_never_reaches_back_into_an_earlier_run(tmp_path):
    write_config(tmp_path / "otrade.json")
    earlier = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    earlier.load()
    earlier.set("risk.max_quantity", "100000")
    earlier.set("risk.max_quantity", "2000")  # what the earlier run left
    commands = make_commands(tmp_path)  # a restart
    await say(commands, "/set risk.max_quantity 1500")
    assert "risk.max_quantity: 1500 → 2000" in await say(commands, "/undo")
    assert await say(commands, "/undo") == ("Nothing to undo: /undo takes back the changes /set made since OTrade "
                                            "started, newest first (up to 20), and none is left.")
    assert commands.s.engine.risk()["max_quantity"] == 2000 and on_disk(commands)["risk"]["max_quantity"] == 2000
    assert len(list((tmp_path / "data" / "config-backups").glob("*.json"))) == 2  # the earlier run's, kept


async def test_undo_of_a_restart_only_setting_says_it_waits_for_a_restart(commands):
    await say(commands, "/set server.port 9999")
    assert (await say(commands, "/undo")).startswith("Undone (saved; takes effect after a restart):\n"
                                                     "server.port: 9999 → 8080\n")


async def test_help_says_how_far_undo_goes(commands):
    assert "/undo — take back the last /set; again for the one before (this run's, up to 20) (admin)" in \
        await say(commands, "/help")


# --- when a change takes effect ------------------------------------------------------------------

@pytest.mark.parametrize(("command", "answer"), [
    ("/set server.port 9999", "server.port: 8080 → 9999 (saved; takes effect after a restart)"),
    ("/set paper.seed 11", "paper.seed: 7 → 11 (saved; takes effect after a restart)"),
    ("/set paper.tick_interval_ms 100", "paper.tick_interval_ms: 250 → 100 (saved; takes effect after a restart)"),
    ("/set risk.order_lookup_seconds 20", "risk.order_lookup_seconds: 15.0 → 20.0 (saved; takes effect after a "
                                          "restart)"),
    ("/set session.on_shutdown flatten", 'session.on_shutdown: "keep" → "flatten" (saved; takes effect after a '
                                         'restart)'),
])
async def test_settings_read_only_at_start_say_they_take_effect_after_a_restart(commands, command, answer):
    assert await say(commands, command) == answer


async def test_settings_the_engine_reapplies_say_live_and_are(commands):
    assert await say(commands, "/set paper.slippage_ticks 2") == "paper.slippage_ticks: 0 → 2 (saved, live)"
    assert commands.s.engine.arrays.pr[0, L.P_SLIP] == pytest.approx(0.10)  # two ticks of 0.05, from the next tick
    assert await say(commands, "/set risk.max_quantity 500") == "risk.max_quantity: 1000 → 500 (saved, live)"
    assert commands.s.engine.risk()["max_quantity"] == 500


async def test_a_section_of_live_and_restart_settings_says_which_wait(commands):
    reply = await say(commands, '/set paper {"slippage_ticks": 1, "seed": 8}')
    assert reply.endswith("(saved; live, but paper.seed after a restart)")


async def test_setting_a_value_it_already_has_says_nothing_changed(commands):
    assert await say(commands, "/set risk.max_quantity 1000") == "risk.max_quantity is already 1000: nothing changed."
    assert await say(commands, "/undo") == ("Nothing to undo: /undo takes back the changes /set made since OTrade "
                                            "started, newest first (up to 20), and none is left.")


async def test_a_whole_object_is_echoed_as_json(commands):
    reply = await say(commands, '/set instruments.0.bracket {"target_pct": 2, "stop_pct": 1, "trail_pct": null}')
    assert reply == ('instruments.0.bracket: {"target_pct":5.0,"stop_pct":5.0,"trail_pct":null,"trail_step_ticks":1,'
                     '"trail_interval_s":0.0} → {"target_pct":2.0,"stop_pct":1.0,"trail_pct":null,'
                     '"trail_step_ticks":1,"trail_interval_s":0.0} (saved, live)')


# --- a strategy's kind ---------------------------------------------------------------------------

async def test_a_new_strategy_kind_starts_from_its_defaults_keeping_allow_short_and_timeframe(commands):
    await say(commands, "/set instruments.0.strategy.timeframe 3")
    reply = await say(commands, "/set instruments.0.strategy.kind supertrend")
    new = {"kind": "supertrend", "timeframe": 3, "allow_short": False, "period": 10, "factor": 3.0}
    assert reply == ('instruments.0.strategy: {"kind":"ema_cross","timeframe":3,"allow_short":false,"fast":1,'
                     '"slow":2} → ' + orjson.dumps(new).decode()
                     + '; "supertrend" starts from its defaults, keeping allow_short and timeframe (saved, live)')
    assert commands.s.engine.cfg.instruments[0].strategy.model_dump() == new
    assert on_disk(commands)["instruments"][0]["strategy"] == new
    assert "instruments.0.strategy.kind" in await say(commands, "/undo")
    assert commands.s.engine.cfg.instruments[0].strategy.kind == "ema_cross"


async def test_a_new_kind_drops_a_kept_setting_it_does_not_accept(tmp_path):
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "minutes_only.py").write_text(textwrap.dedent('''
        from engine.strategies.api import NONE, Strategy

        strategy = Strategy("minutes_only", about="bars only", timeframe=15,
                            rules=lambda p: [("timeframe", "must be minutes")] if p.timeframe == "tick" else [])


        @strategy.decision
        def decide(x, pos):
            return NONE
    '''))
    write_config(tmp_path / "otrade.json")
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", Catalog([folder]))
    manager.load()
    manager.set("instruments.0.strategy.allow_short", "true")
    change = manager.set("instruments.0.strategy.kind", "minutes_only")
    assert change.new == {"kind": "minutes_only", "timeframe": 15, "allow_short": True}
    assert change.note == '"minutes_only" starts from its defaults, keeping allow_short'


async def test_an_unknown_kind_is_refused_naming_the_kinds_there_are_and_changes_nothing(commands):
    before = on_disk(commands)
    reply = await say(commands, "/set instruments.0.strategy.kind moonshot")
    assert reply.startswith("/set: instruments[0].strategy.kind: 'moonshot' must be one of 'ema_cross'")
    assert on_disk(commands) == before and commands.s.engine.cfg.instruments[0].strategy.kind == "ema_cross"


# --- the log ---------------------------------------------------------------------------------------

@pytest.fixture
def process_logs():
    """The process's own logging (stderr and the /logs buffer), undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield logs.setup()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_every_change_is_a_log_line_with_path_old_and_new_values_redacted(tmp_path, process_logs):
    commands = make_commands(tmp_path)
    commands.s.logs = process_logs
    logs.add_secret("sekrit-7c1f2a")
    await say(commands, "/set risk.max_quantity 500")
    await say(commands, "/set paper.replay_file /mnt/sekrit-7c1f2a/day.csv")
    await say(commands, "/undo")
    lines = (await say(commands, "/logs 3")).splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO config.manager: config changed by set: risk.max_quantity: 1000 -> 500",
        'INFO config.manager: config changed by set: paper.replay_file: null -> "/mnt/***/day.csv"',
        'INFO config.manager: config changed by undo: paper.replay_file: "/mnt/***/day.csv" -> null',
    ]
