"""Builders shared by the engine tests: configs from a few overrides, ticks from (time, price) rows."""

import contextlib
import copy
import os
from datetime import datetime, time
from pathlib import Path

import numpy as np
import orjson
import pytest

from config import Config, validate
from engine.data.ticks import Ticks
from engine.strategies import default_catalog

DEFAULT = orjson.loads((Path(__file__).resolve().parent.parent / "config" / "default.json").read_bytes())
DAY = "2026-11-23"  # a Monday
ROOT = Path(__file__).resolve().parent.parent


def process_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of an ``otrade`` subprocess: no credentials or OTrade settings of the caller's,
    its data under ``tmp_path``, this checkout importable, any free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_", "OTRADE_"))}
    env.update(OTRADE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), PORT="0", **extra)
    return env


def journal_records(path: Path) -> list[dict]:
    """The records of the journal file at ``path`` as a running process writes it: none before the
    file exists, and a line still being written left out."""
    out = []
    for line in path.read_bytes().splitlines() if path.exists() else ():
        with contextlib.suppress(orjson.JSONDecodeError):
            out.append(orjson.loads(line))
    return out


def _forget_strategy_folders():
    """The strategies folders configs registered meanwhile are forgotten after (one process runs
    every test; in a run there is one config)."""
    from engine import strategies

    kept = list(strategies._folders)
    yield
    strategies._folders[:] = kept


# per test, and per module: a module's fixture that loads a config is set up before any test's, so a
# test alone would keep its folder for every later module in the worker
_strategy_folders_per_test = pytest.fixture(autouse=True)(_forget_strategy_folders)
_strategy_folders_per_module = pytest.fixture(autouse=True, scope="module")(_forget_strategy_folders)


def make_config(strategy=None, bracket=None, risk=None, slippage_ticks=0, tick_size=0.05, quantity=10, bot=None,
                symbols=("NSE:INFY",), **sections) -> Config:
    return validate(config_data(strategy, bracket, risk, slippage_ticks, tick_size, quantity, bot, symbols,
                                **sections), default_catalog())


def config_data(strategy=None, bracket=None, risk=None, slippage_ticks=0, tick_size=0.05, quantity=10, bot=None,
                symbols=("NSE:INFY",), **sections) -> dict:
    """The shipped defaults with these overrides, not yet validated."""
    data = copy.deepcopy(DEFAULT)
    instrument = {
        "tick_size": tick_size, "quantity": quantity,
        "strategy": strategy or {"kind": "ema_cross", "fast": 1, "slow": 2, "allow_short": False},
        "bracket": bracket or {"target_pct": 1.0, "stop_pct": 1.0, "trail_pct": None},
    }
    data["instruments"] = [{"symbol": s, **copy.deepcopy(instrument)} for s in symbols]
    data["paper"]["slippage_ticks"] = slippage_ticks
    data["risk"].update(risk or {})
    for key, value in (bot or {}).items():
        data["bot"][key] = {**data["bot"][key], **value} if isinstance(value, dict) else value
    for name, values in sections.items():
        data[name].update(values)
    return data


def config_file(path: Path, **overrides) -> Path:
    """``make_config``'s settings (the same overrides) written at ``path``, for ``otrade run --config``."""
    path.write_bytes(orjson.dumps(config_data(**overrides)))
    return path


def ns(clock: str, day: str = DAY) -> int:
    return int(datetime.fromisoformat(f"{day}T{clock}+05:30").timestamp() * 1e9)


def make_ticks(rows, symbols=("NSE:INFY",)) -> Ticks:
    """rows: (HH:MM:SS[.fff], price) or (HH:MM:SS, price, symbol) or (day, HH:MM:SS, price, symbol)."""
    ts, price, instr = [], [], []
    for row in rows:
        if len(row) == 4:
            day, clock, p, sym = row
        else:
            day, (clock, p, *rest) = DAY, row
            sym = rest[0] if rest else symbols[0]
        ts.append(ns(clock, day))
        price.append(p)
        instr.append(symbols.index(sym))
    return Ticks(np.array(ts, dtype=np.int64), np.array(price, dtype=np.float64),
                 np.ones(len(ts)), np.array(instr, dtype=np.int32), tuple(symbols))


def seconds(start: str, prices, day: str = DAY):
    """One tick a second from ``start`` with the given prices."""
    h, m, s = (int(x) for x in start.split(":"))
    base = h * 3600 + m * 60 + s
    out = []
    for k, p in enumerate(prices):
        t = base + k
        out.append((day, f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}", p, "NSE:INFY"))
    return out


@pytest.fixture
def cross_up():
    """ema_cross 1/2 goes long on the third tick: 100, 99, 101 (entry fills on the fourth)."""
    return [100.0, 99.0, 101.0]


@pytest.fixture
async def kite_now(tmp_path):
    """A local Kite server and a config and calendar under which the live process would trade now."""
    from tests.kite_server import FakeKite
    from tests.live_process import all_day_session, write_config

    server = FakeKite()
    await server.start()
    write_config(tmp_path)
    all_day_session(tmp_path)
    yield server
    await server.stop()


@pytest.fixture
def kite_day(kite_now):
    """``kite_now`` with the day's trading still ahead: the live process trades now."""
    from engine.core.layout import IST

    if datetime.now(IST).time() >= time(23, 30):  # its tests stamp ticks up to 10 min ahead, into the square-off
        pytest.skip("the all-day test session squares off at 23:44 IST")
    return kite_now
