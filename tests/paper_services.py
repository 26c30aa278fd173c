"""The engine on paper under the shipped default config, with what chat commands are handed."""

import time
from pathlib import Path

from bot.commands import Services
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.engine import Engine
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.strategies import default_catalog


def paper_services(tmp_path: Path) -> Services:
    """A config saved under ``tmp_path``, its engine on paper on the wall clock (session not yet
    open), and the data directory beside it."""
    manager = ConfigManager(tmp_path / "otrade.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    clock = time.time_ns
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock), EventBus(),
                    Journal(tmp_path / "data", clock), clock)
    return Services(engine, manager, tmp_path / "data", clock)
