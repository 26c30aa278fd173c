"""Where the process keeps its files: the one data directory of the contract."""

import os
from pathlib import Path


def data_dir_from_env() -> Path:
    """Where everything the process writes lives (``OTRADE_DATA_DIR``, default ``data/``)."""
    return Path(os.environ.get("OTRADE_DATA_DIR", "data"))
