"""Which access token a live start uses: one saved by /token today beats an older one from the
environment, because Kite invalidates every access token around 06:00 IST."""

import logging
import os
from datetime import datetime

import pytest

from engine.brokers.kite.live import TOKEN_FILE, Credentials, credentials, token_day_start
from engine.core.layout import IST


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("KITE_API_KEY", "key")
    monkeypatch.setenv("KITE_API_SECRET", "secret")
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "env-token")
    return monkeypatch


def save(data_dir, token: str, written: str) -> None:
    path = data_dir / TOKEN_FILE
    path.write_text(token)
    stamp = at(written).timestamp()
    os.utime(path, (stamp, stamp))


def token_of(data_dir, now: str) -> str:
    creds, missing = credentials(data_dir, now=at(now))
    assert missing == [] and isinstance(creds, Credentials)
    return creds.access_token


@pytest.mark.parametrize(("written", "used"), [
    ("2026-11-23T08:40:00+05:30", "saved-token"),  # after this morning's six o'clock: today's token
    ("2026-11-23T05:59:00+05:30", "env-token"),  # before it: yesterday's
    ("2026-11-22T14:00:00+05:30", "env-token"),
], ids=["after-six", "before-six", "yesterday"])
def test_a_token_saved_since_this_mornings_six_oclock_wins_over_the_environment_an_older_one_loses(
        env, tmp_path, written, used):
    save(tmp_path, "saved-token\n", written)
    assert token_of(tmp_path, "2026-11-23T09:10:00+05:30") == used


def test_before_six_the_token_day_is_still_yesterdays(env, tmp_path):
    save(tmp_path, "saved-token", "2026-11-22T20:00:00+05:30")
    assert token_of(tmp_path, "2026-11-23T05:30:00+05:30") == "saved-token"
    assert token_of(tmp_path, "2026-11-23T06:00:01+05:30") == "env-token"


def test_the_token_day_is_ist_whatever_the_zone_of_now(env, tmp_path):
    save(tmp_path, "saved-token", "2026-11-23T00:45:00+00:00")  # 06:15 IST
    assert token_of(tmp_path, "2026-11-23T03:00:00+00:00") == "saved-token"  # 08:30 IST
    assert token_day_start(at("2026-11-23T00:15:00+00:00")) == datetime(2026, 11, 22, 6, tzinfo=IST)
    assert token_day_start(at("2026-11-23T06:00:00+05:30")) == datetime(2026, 11, 23, 6, tzinfo=IST)


def test_an_old_saved_token_is_used_when_the_environment_has_none(env, tmp_path):
    env.delenv("KITE_ACCESS_TOKEN")
    save(tmp_path, "saved-token", "2026-11-20T09:00:00+05:30")
    assert token_of(tmp_path, "2026-11-23T09:10:00+05:30") == "saved-token"


def test_the_environment_token_is_used_when_nothing_was_saved(env, tmp_path):
    assert token_of(tmp_path, "2026-11-23T09:10:00+05:30") == "env-token"


def test_an_empty_saved_file_does_not_replace_the_environment_token(env, tmp_path):
    save(tmp_path, "  \n", "2026-11-23T08:40:00+05:30")
    assert token_of(tmp_path, "2026-11-23T09:10:00+05:30") == "env-token"


def test_switching_to_the_saved_token_is_logged(env, tmp_path, caplog):
    save(tmp_path, "saved-token", "2026-11-23T08:40:00+05:30")
    with caplog.at_level(logging.INFO, logger="engine.brokers.kite.live"):
        token_of(tmp_path, "2026-11-23T09:10:00+05:30")
    assert "instead of KITE_ACCESS_TOKEN" in caplog.text and "saved-token" not in caplog.text


def test_no_token_anywhere_is_reported_missing(env, tmp_path):
    env.delenv("KITE_ACCESS_TOKEN")
    env.delenv("KITE_API_SECRET")
    creds, missing = credentials(tmp_path)
    assert creds is None
    assert missing == ["KITE_API_SECRET", "KITE_ACCESS_TOKEN (or a token saved by /token)"]


def test_now_defaults_to_the_current_time(env, tmp_path):
    (tmp_path / TOKEN_FILE).write_text("fresh-token")  # written just now: today's token day
    creds, _ = credentials(tmp_path)
    assert creds is not None and creds.access_token == "fresh-token"
