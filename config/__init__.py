"""Configuration: typed models, validation, and the manager that changes and saves it."""

from config.manager import Change, ConfigManager, check_file, diff
from config.models import Config, ConfigError, Costs, Instrument, parse, validate

__all__ = ["Change", "Config", "ConfigError", "ConfigManager", "Costs", "Instrument", "check_file", "diff",
           "parse", "validate"]
