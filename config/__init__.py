"""Configuration: typed models, validation, and the manager that changes and saves it."""

from config.manager import Change, ConfigManager, check_file, diff
from config.models import (
    Bot,
    Bracket,
    Config,
    ConfigError,
    Costs,
    Instrument,
    Notify,
    Paper,
    Risk,
    Server,
    Session,
    StrategyCatalog,
    live_session_problems,
    parse,
    validate,
)

__all__ = ["Bot", "Bracket", "Change", "Config", "ConfigError", "ConfigManager", "Costs", "Instrument", "Notify",
           "Paper", "Risk", "Server", "Session", "StrategyCatalog", "check_file", "diff", "live_session_problems",
           "parse", "validate"]
