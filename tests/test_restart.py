"""`otrade run` killed with SIGKILL mid-day on paper, then started again on the same rehearsal day.

The synthetic feed is deterministic from its seed, so each run trades the same way: INFY alone, an
EMA cross slow enough that a position is held for a second or more, 100 ticks a second.
"""

import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.conftest import DEFAULT

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-23"


def configure(tmp_path: Path, **risk) -> None:
    data = copy.deepcopy(DEFAULT)
    data["instruments"] = [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 10,
                            "strategy": {"kind": "ema_cross", "fast": 40, "slow": 200, "allow_short": False},
                            "bracket": {"target_pct": 5.0, "stop_pct": 5.0, "trail_pct": None}}]
    data["paper"]["tick_interval_ms"] = 10
    data["risk"].update(risk)
    (tmp_path / "o.json").write_bytes(orjson.dumps(data))


class Run:
    """``otrade run --console`` on the rehearsal clock, its console on a pipe."""

    def __init__(self, tmp_path: Path, clock: str, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "TELEGRAM_", "OTRADE_"))}
        env.update(OTRADE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), PORT="0")
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--console", "--config", str(tmp_path / "o.json"),
             "--clock", f"{DAY}T{clock}+05:30"], cwd=tmp_path, env=env, stdin=subprocess.PIPE,
            stdout=self.out.open("w"), stderr=self.err.open("w"))

    def until(self, ready, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while not (found := ready()):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.err.read_text()[-3000:]
            time.sleep(0.02)
        return found

    def says(self, text: str) -> str:
        """Waits for ``text`` on the console; returns the console so far."""
        return self.until(lambda: text in (out := self.out.read_text()) and out)

    def send(self, *commands: str) -> None:
        self.proc.stdin.write("".join(f"{c}\n" for c in commands).encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.err.read_text()[-3000:]


def journal(tmp_path: Path) -> list[dict]:
    """The rehearsal day's records on disk (a line being written meanwhile is left out)."""
    path = tmp_path / "data" / "journal" / f"{DAY}.rehearsal.jsonl"
    records = []
    for line in path.read_bytes().splitlines() if path.exists() else ():
        with contextlib.suppress(orjson.JSONDecodeError):
            records.append(orjson.loads(line))
    return records


def holding(records: list[dict], entries: int) -> dict | None:
    """The position of the ``entries``-th entry fill while it is open and protected: its entry
    price, target and stop as journaled."""
    filled = [k for k, r in enumerate(records) if r["kind"] == "order" and r["purpose"] == "entry"
              and r["status"] == "COMPLETE"]
    if len(filled) != entries:
        return None
    k = filled[-1]
    after = records[k:]
    if any(r["kind"] == "trade_closed" for r in after):
        return None
    legs = {r["purpose"]: r for r in after if r["kind"] == "order" and r["purpose"] in ("target", "stop")}
    if len(legs) < 2:
        return None
    return {"price": records[k]["average_price"], "target": legs["target"]["price"],
            "stop": legs["stop"]["trigger_price"]}


def test_killed_mid_position_the_same_rehearsal_day_comes_back_whole(tmp_path):
    configure(tmp_path, max_trades_per_day=3)
    first = Run(tmp_path, "10:00:00", "first")
    held = first.until(lambda: holding(journal(tmp_path), 3))  # the third and last entry the limit allows
    first.kill()
    records = journal(tmp_path)
    trades = [r for r in records if r["kind"] == "trade_closed"]
    gross, charges = sum(t["pnl"] for t in trades), sum(t["charges"] for t in trades)

    second = Run(tmp_path, "10:01:00", "second")
    second.says("Restored from the journal")
    second.send("/risk", "/positions", "/trades", "/daily")
    console = second.says(f"{DAY}: ")
    time.sleep(6)  # ticks flow and the strategy signals: the limit must keep refusing entries
    second.stop()
    [restored] = [line for line in console.splitlines() if "Restored from the journal" in line]
    assert f": {len(trades)} trade(s), " in restored and ", 3 of 3 entries today, " in restored
    assert (f"1 open position(s) NSE:INFY +10 @ {held['price']:.2f} with target {held['target']:.2f} / stop "
            f"{held['stop']:.2f}") in restored
    assert "Trades: 3 of 3" in console
    assert re.search(rf"NSE:INFY \+10 @ {held['price']:.2f} .* target {held['target']:.2f} · stop "
                     rf"{held['stop']:.2f}", console)
    assert len(re.findall(r"^\d\d:\d\d:\d\d NSE:INFY long 10 ", console, re.M)) == len(trades)
    assert (f"{DAY}: ₹{gross - charges:,.2f} net (₹{gross:,.2f} gross, ₹{charges:,.2f} charges) over "
            f"{len(trades)} trade(s)") in console
    assert "New trading day" not in second.out.read_text()
    assert not [r for r in journal(tmp_path)[len(records):] if r["kind"] == "intent" and r["purpose"] == "entry"]


def test_a_day_halted_by_the_loss_limit_is_still_halted_after_kill_and_restart(tmp_path):
    configure(tmp_path, max_daily_loss=5)  # the first entry's charges pass it
    first = Run(tmp_path, "10:00:00", "first")
    first.until(lambda: any(r["kind"] == "trade_closed" for r in journal(tmp_path))
                and any(r["kind"] == "state" and r["new"] == "HALTED" for r in journal(tmp_path)))
    first.kill()
    seen = len(journal(tmp_path))

    second = Run(tmp_path, "10:01:00", "second")
    second.says("Restored from the journal")
    second.send("/status")
    console = second.says("Engine: ")
    time.sleep(5)
    second.stop()
    assert "HALTED (daily loss limit reached)" in console
    assert "Engine: HALTED — daily loss limit reached" in console
    after = journal(tmp_path)[seen:]
    assert not [r for r in after if r["kind"] == "intent" and r["purpose"] == "entry"]
    assert [(r["old"], r["new"]) for r in after if r["kind"] == "state"] == [("IDLE", "HALTED")]


def test_a_journal_line_torn_by_the_crash_is_reported_and_the_day_goes_on(tmp_path):
    configure(tmp_path)
    first = Run(tmp_path, "10:00:00", "first")
    first.until(lambda: any(r["kind"] == "trade_closed" for r in journal(tmp_path)))
    first.kill()
    path = tmp_path / "data" / "journal" / f"{DAY}.rehearsal.jsonl"
    torn = len(path.read_bytes().splitlines()) + 1
    with path.open("ab") as fh:
        fh.write(b'{"ts":"2026-11-23T10:00:30.000001+05:30","kind":"order","symbol":"NSE:IN')

    second = Run(tmp_path, "10:01:00", "second")
    console = second.says("Restored from the journal")
    second.stop()
    assert f"journal line {torn} was torn by a crash: skipped" in console
    lines = path.read_bytes().splitlines()
    assert lines[torn - 1].endswith(b'"symbol":"NSE:IN') and orjson.loads(lines[torn])["kind"]
