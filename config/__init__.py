"""Configuration: typed models, validation, and the manager that changes and saves it."""

from config.manager import Change, ConfigManager, check_file, diff
from config.models import (
    Bot,
    Bracket,
    Config,
    ConfigError,
    Costs,
    EmaCross,
    Instrument,
    Notify,
    Orb,
    Paper,
    Risk,
    Server,
    Session,
    VwapReversion,
    parse,
    validate,
)

__all__ = ["Bot", "Bracket", "Change", "Config", "ConfigError", "ConfigManager", "Costs", "EmaCross", "Instrument",
           "Notify", "Orb", "Paper", "Risk", "Server", "Session", "VwapReversion", "check_file", "diff", "parse",
           "validate"]
