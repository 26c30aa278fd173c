"""The evening parity audit (issue 21 §5): a paper session's recorded day, replayed through the
backtest with its journalled changes and controls, gives the session's trades; a journal that says
otherwise is named line by line; a restart is named and what it lost is not counted.

The sessions are real ``otrade run --console`` rehearsals on the synthetic market (tick strategies,
a tick every 20 ms, so trades come within seconds), driven through the console as a trader would."""

import argparse
import asyncio
import copy
import itertools
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.cli import main
from engine.core.layout import IST
from engine.data.recorder import Recorder
from engine.data.store import REHEARSAL, compact, last_ts, load_ticks, tick_file
from engine.engine import Engine
from engine.runtime.app import Runtime, _session_hooks
from engine.runtime.session import REPORT as REPORT_JOB
from engine.services.calendar import Session
from engine.services.clock import RehearsalClock
from engine.services.events import REPORT, EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import catalog_for
from tests.conftest import DEFAULT, journal_records, process_env

DAY = date(2026, 11, 23)  # a Monday
CLOCK = "2026-11-23T09:14:57+05:30"  # just before the open: the session opens at its scheduled time
LIMIT_S = 120.0  # for anything a session should do within seconds, on a loaded machine


def write_config(path: Path, target_pct: float = 0.1, stop_pct: float = 0.05) -> Path:
    data = copy.deepcopy(DEFAULT)
    strategy = {"kind": "ema_cross", "timeframe": "tick", "fast": 20, "slow": 80, "allow_short": True}
    data["instruments"] = [
        {"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 10, "strategy": strategy,
         "bracket": {"target_pct": target_pct, "stop_pct": stop_pct, "trail_pct": None}},
        {"symbol": "NSE:SBIN", "tick_size": 0.05, "quantity": 10, "strategy": strategy,
         "bracket": {"target_pct": target_pct, "stop_pct": stop_pct, "trail_pct": 0.03}}]
    data["paper"]["tick_interval_ms"] = 20
    data["risk"]["max_trades_per_day"] = 1000
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


def journal_of(root: Path) -> Path:
    return root / "data" / "journal" / f"{DAY}.rehearsal.jsonl"


def trades(path: Path) -> list[dict]:
    return [r for r in journal_records(path) if r["kind"] == "trade_closed"]


def ns_of(record: dict) -> int:
    return round(datetime.fromisoformat(record["ts"]).timestamp() * 1e6) * 1000


def clock(ns: int) -> str:
    """IST, to the millisecond when there is one: how the audit names a time."""
    ms = ns % 10**9 // 10**6
    return f"{datetime.fromtimestamp(ns // 10**9, IST):%H:%M:%S}" + (f".{ms:03d}" if ms else "")


class Run:
    """``otrade run --console`` in rehearsal on ``root``'s config and data, typed to on its stdin."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.err = root, root / f"{name}.err"
        argv = [sys.executable, "-m", "engine", "run", "--console", "--config", str(root / "o.json"), "--clock", CLOCK]
        with self.err.open("w") as err, (root / f"{name}.out").open("w") as out:
            self.proc = subprocess.Popen(argv, cwd=root, env=process_env(root), stdin=subprocess.PIPE, stdout=out,
                                         stderr=err, text=True)
        self.until(lambda: "next: " in self.err.read_text(), "the session to start")

    def until(self, ready, what: str) -> None:
        deadline = time.monotonic() + LIMIT_S
        while not ready():
            assert self.proc.poll() is None, f"otrade run ended waiting for {what}:\n{self.err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {LIMIT_S} s:\n{self.err.read_text()[-3000:]}"
            time.sleep(0.01)

    def trades(self, n: int) -> None:
        self.until(lambda: len(trades(journal_of(self.root))) >= n, f"{n} closed trades")

    def say(self, line: str, kind: str, **fields) -> None:
        """A console command, and the journal record it makes."""
        def made() -> bool:
            return any(r["kind"] == kind and all(r.get(k) == v for k, v in fields.items())
                       for r in journal_records(journal_of(self.root)))

        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.until(made, f"{kind} {fields} after {line!r}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)  # SIGTERM: the README's 10 s, and more on a loaded machine
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never left behind
            self.proc.wait()
            raise AssertionError(f"otrade run did not stop within 30 s:\n{self.err.read_text()[-3000:]}") from None
        finally:
            self.proc.stdin.close()
        assert code == (0 if sig == signal.SIGTERM else -sig), self.err.read_text()[-3000:]


def recorded_until(root: Path) -> int:
    return last_ts(tick_file(root / "data", DAY, REHEARSAL)) or 0


@pytest.fixture(scope="module")
def paper_day(tmp_path_factory) -> Path:
    """A morning on paper: a few trades, a strategy parameter changed with /set, a few more, a pause of
    two market seconds, a resume, a few more; then stopped (positions kept, as the default config says)."""
    root = tmp_path_factory.mktemp("paper_day")
    write_config(root / "o.json")
    run = Run(root, "run")
    try:
        run.trades(3)
        run.say("set instruments.0.strategy.fast 10", "config", path="instruments.0.strategy.fast", new=10)
        run.trades(len(trades(journal_of(root))) + 3)
        run.say("pause", "state", new="PAUSED")
        paused = ns_of(journal_records(journal_of(root))[-1])
        run.until(lambda: recorded_until(root) > paused + 2 * 10**9, "two market seconds paused")
        run.say("resume", "state", new="RUNNING", reason="resumed")
        run.trades(len(trades(journal_of(root))) + 2)
    finally:
        run.stop()
    return root


def day_copy(source: Path, tmp_path: Path) -> Path:
    """The day's data and config, to change without touching the others'; its recording one file
    (as the session's close leaves it): a process's recorder would compact it as it starts."""
    shutil.copytree(source / "data", tmp_path / "data")
    shutil.copy(source / "o.json", tmp_path / "o.json")
    compact(tick_file(tmp_path / "data", DAY, REHEARSAL))
    return tmp_path


def audit(root: Path, monkeypatch, capsys, *extra: str) -> tuple[int, list[str], str]:
    """``otrade audit`` on ``root``'s day: exit code, stdout lines, stderr."""
    monkeypatch.setenv("OTRADE_DATA_DIR", str(root / "data"))
    code = main(["audit", "--date", DAY.isoformat(), "--config", str(root / "o.json"), *extra])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def verdict(out: list[str]) -> list[str]:
    """The audit's own lines: its headline and what follows it."""
    return out[next(k for k, line in enumerate(out) if line.startswith("parity: ")):]


def rewrite(journal: Path, change) -> None:
    """The journal with each record passed through ``change`` (None drops it)."""
    kept = [r for r in map(change, journal_records(journal)) if r is not None]
    journal.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in kept))


def open_positions(journal: Path) -> int:
    """Entries the journal's trades do not close: fills of entries less trades closed."""
    entries = sum(1 for r in journal_records(journal) if r["kind"] == "order" and r["purpose"] == "entry"
                  and r["status"] == "COMPLETE")
    return entries - len(trades(journal))


def test_a_paper_session_audits_to_parity_on_every_trade(paper_day, monkeypatch, capsys):
    code, out, err = audit(paper_day, monkeypatch, capsys)
    n = len(trades(journal_of(paper_day))) + open_positions(journal_of(paper_day))
    assert n > 3
    assert code == 0, "\n".join(out) + err
    assert out[0] == f"config {paper_day / 'o.json'} · data {paper_day / 'data'}"
    assert verdict(out) == [f"parity: {n} of {n} trades"]


def test_a_set_mid_session_is_replayed_at_its_time(paper_day, tmp_path, monkeypatch, capsys):
    [applied] = [r for r in journal_records(journal_of(paper_day)) if r["kind"] == "config_applied"]
    at = datetime.fromisoformat(applied["ts"]).astimezone(IST)
    code, out, _ = audit(paper_day, monkeypatch, capsys)
    assert code == 0
    assert f"1 config change(s), at {at:%H:%M:%S}." in out[1]
    assert "the day started on the first change" in out[2]
    # replayed from the open on the config as it ended instead, the same day breaks: the time matters
    day = day_copy(paper_day, tmp_path)
    rewrite(journal_of(day), lambda r: None if r["kind"] in ("config_applied", "config") else r)
    code, out, _ = audit(day, monkeypatch, capsys)
    assert code == 1
    _, alike, _, compared, _ = verdict(out)[0].split(maxsplit=4)
    assert int(alike) < int(compared)


def test_a_trade_removed_from_the_journal_is_named_as_in_the_backtest_only(paper_day, tmp_path, monkeypatch,
                                                                           capsys):
    day = day_copy(paper_day, tmp_path)
    gone = trades(journal_of(day))[2]
    rewrite(journal_of(day), lambda r: None if r == gone else r)
    n = len(trades(journal_of(paper_day))) + open_positions(journal_of(paper_day))
    code, out, _ = audit(day, monkeypatch, capsys)
    assert code == 1
    assert verdict(out) == [f"parity: {n - 1} of {n} trades",
                            f"{gone['symbol']} {gone['side']} {gone['qty']} @ {gone['entry_price']:.2f} "
                            f"{clock(gone['entry_time_ns'])} → {gone['exit_price']:.2f} {clock(gone['exit_time_ns'])} "
                            f"({gone['exit_reason']}): in the backtest only"]


def test_a_fill_price_changed_in_the_journal_is_named_with_both_prices(paper_day, tmp_path, monkeypatch, capsys):
    day = day_copy(paper_day, tmp_path)
    changed = trades(journal_of(day))[1]
    sign = 1 if changed["side"] == "long" else -1

    def worse(r: dict) -> dict:
        if r == changed:
            return {**r, "exit_price": r["exit_price"] - 0.5, "pnl": r["pnl"] - sign * 0.5 * r["qty"]}
        return r

    rewrite(journal_of(day), worse)
    code, out, _ = audit(day, monkeypatch, capsys)
    n = len(trades(journal_of(paper_day))) + open_positions(journal_of(paper_day))
    assert code == 1
    head = f"{changed['symbol']} {changed['side']} {changed['qty']} {clock(changed['entry_time_ns'])}"
    assert verdict(out) == [f"parity: {n - 1} of {n} trades",
                            f"{head}: exit {changed['exit_price'] - 0.5:.2f} in the session, "
                            f"{changed['exit_price']:.2f} in the backtest; "
                            f"₹{-sign * 0.5 * changed['qty']:+,.2f} gross (fill price)"]


def test_a_day_without_a_journal_is_a_clear_error(paper_day, monkeypatch, capsys):
    monkeypatch.setenv("OTRADE_DATA_DIR", str(paper_day / "data"))
    code = main(["audit", "--date", "2026-11-24", "--config", str(paper_day / "o.json")])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == (f"error: no journal of 2026-11-24 in {paper_day / 'data' / 'journal'}: otrade run writes one "
                   "on every day it trades\n")


def test_a_day_without_a_recording_is_a_clear_error(paper_day, tmp_path, monkeypatch, capsys):
    day = day_copy(paper_day, tmp_path)
    shutil.rmtree(day / "data" / "ticks")
    code, _, err = audit(day, monkeypatch, capsys)
    assert code == 1
    assert err.startswith(f"error: no recording of 2026-11-23 under {day / 'data' / 'ticks'} (looked for "
                          "2026-11-23.rehearsal.parquet, 2026-11-23.synthetic.parquet)")


def test_a_date_that_is_not_a_day_is_a_one_line_usage_error(tmp_path, monkeypatch, capsys):
    write_config(tmp_path / "o.json")
    monkeypatch.setenv("OTRADE_DATA_DIR", str(tmp_path / "data"))
    assert main(["audit", "--date", "yesterday", "--config", str(tmp_path / "o.json")]) == 2
    assert capsys.readouterr().err == "error: --date 'yesterday' is not a day, e.g. 2026-11-23\n"
    assert not (tmp_path / "data").exists()  # refused before any work


# --- the end-of-day report -------------------------------------------------------------------
async def report_of(root: Path) -> str:
    """The end-of-day report hook run at 15:35 on ``root``'s day, by a process on its config and data."""
    clock = RehearsalClock(datetime(2026, 11, 23, 15, 35, tzinfo=IST))
    manager = ConfigManager(root / "o.json", root / "data", catalog_for(root / "o.json"))
    cfg = manager.load()
    bus = EventBus()
    reports = bus.subscribe()
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock.now_ns), bus,
                    Journal(root / "data", clock.now_ns, rehearsal=True), clock.now_ns)
    rt = Runtime(argparse.Namespace(clock=CLOCK), manager, engine, bus, clock, root / "data", LogBuffer())
    rt.recorder = Recorder(root / "data", [i.symbol for i in cfg.instruments], synthetic=True, rehearsal=True,
                           now_ns=clock.now_ns)
    try:
        at = lambda hh, mm: datetime(2026, 11, 23, hh, mm, tzinfo=IST)  # noqa: E731
        await _session_hooks(rt)[REPORT_JOB](Session(DAY, at(9, 15), at(15, 30), at(15, 15)))
    finally:
        await rt.recorder.close()
    sent = [e for e in iter(reports.get_nowait, None) if e.kind == REPORT]
    assert len(sent) == 1
    return sent[0].data["text"]


async def test_the_end_of_day_report_ends_with_the_days_audit(paper_day, tmp_path):
    day = day_copy(paper_day, tmp_path)
    n = len(trades(journal_of(day))) + open_positions(journal_of(day))
    text = await report_of(day)
    assert text.startswith("End of day 2026-11-23: ")
    assert text.splitlines()[-1] == f"parity: {n} of {n} trades"


async def test_a_report_whose_audit_cannot_run_still_goes_out_saying_why(paper_day, tmp_path):
    day = day_copy(paper_day, tmp_path)
    shutil.rmtree(day / "data" / "ticks")
    text = await report_of(day)
    assert text.startswith("End of day 2026-11-23: ")
    assert text.splitlines()[-1].startswith("parity audit: not possible: no recording of 2026-11-23 under ")


async def test_the_audit_runs_off_the_event_loop(paper_day, tmp_path):
    """The loop goes on (a tick, a chat message) while the report's audit replays the day."""
    day = day_copy(paper_day, tmp_path)
    beats: list[float] = []

    async def beat() -> None:
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(beat())
    started = time.monotonic()
    try:
        await report_of(day)
    finally:
        task.cancel()
    took = time.monotonic() - started
    # on the loop, the replay would be one gap as long as the whole audit
    assert len(beats) > 10 and max(b - a for a, b in itertools.pairwise(beats)) < took / 2


# --- restarts --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def restarted_day(tmp_path_factory) -> tuple[Path, list[int]]:
    """A morning on paper killed (kill -9) while holding a position, started again, killed again while
    holding one, started again and stopped (SIGTERM). Returns the data and, for each restart, the index
    of the restarted process's first journal record."""
    root = tmp_path_factory.mktemp("restarted_day")
    write_config(root / "o.json", target_pct=0.3, stop_pct=0.2)  # positions held for seconds
    journal, starts = journal_of(root), []

    def holding() -> bool:
        fills = [r for r in journal_records(journal) if r["kind"] == "order" and r["status"] == "COMPLETE"]
        return len(trades(journal)) >= 2 and fills[-1]["purpose"] == "entry"

    for k, sig in enumerate((signal.SIGKILL, signal.SIGKILL, signal.SIGTERM)):
        if k:
            starts.append(len(journal_records(journal)))
        run = Run(root, f"run{k}")
        try:
            run.trades(len(trades(journal)) + 2)
            if k < 2:
                run.until(holding, "an open position")
        finally:
            run.stop(sig)
    return root, starts


def restart_lines(out: list[str]) -> list[str]:
    return [line for line in verdict(out) if line.startswith("restart: ")]


def breaks(out: list[str]) -> list[str]:
    """The audit's lines of differences outside restarts."""
    return [line for line in verdict(out)[1:] if not line.startswith(("restart: ", "  "))]


def test_each_restart_is_named_with_the_seconds_it_lost(restarted_day, monkeypatch, capsys):
    """From the journal's last record before the restarted process's first (or the recording's last
    tick, when the crash lost the recording's last seconds) to the restarted session's opening."""
    root, starts = restarted_day
    _, out, _ = audit(root, monkeypatch, capsys)
    journal = journal_records(journal_of(root))
    ticks = load_ticks(tick_file(root / "data", DAY, REHEARSAL), ("NSE:INFY", "NSE:SBIN")).ts
    expected = []
    for s in starts:
        began, last = ns_of(journal[s]), ns_of(journal[s - 1])
        start = min(last, int(ticks[ticks < began].max()))
        end = ns_of(next(r for r in journal[s:] if r["kind"] == "state" and r["old"] == "IDLE"))
        expected.append(f"restart: {(end - start) / 1e9:.1f} s lost, {clock(start)}–{clock(end)}")
    assert restart_lines(out) == expected
    assert ticks[ticks < ns_of(journal[starts[0]])].max() < ns_of(journal[starts[0] - 1])  # kill -9 lost ticks


def test_a_day_killed_twice_audits_to_no_difference_outside_the_seconds_the_restarts_lost(restarted_day, monkeypatch,
                                                                                        capsys):
    """The restarted processes catch their strategies up on the day's recording, and their feed waits
    for the session's open: what they trade is what a backtest of the recording trades."""
    root, _ = restarted_day
    _, out, _ = audit(root, monkeypatch, capsys)
    assert len(restart_lines(out)) == 2 and len(trades(journal_of(root))) >= 6
    assert breaks(out) == []


def test_a_trade_open_across_a_restart_is_named_under_it_and_not_counted(restarted_day, tmp_path, monkeypatch,
                                                                         capsys):
    """The position held across the kill -9, closed by the restarted process: journalled as closed
    at another price (what the crash may make of it), it is named under the restart, not counted."""
    root, starts = restarted_day
    _, before, _ = audit(root, monkeypatch, capsys)
    day = day_copy(root, tmp_path)
    restart_ns = ns_of(journal_records(journal_of(day))[starts[0]])
    [held] = [t for t in trades(journal_of(day)) if t["entry_time_ns"] < restart_ns < t["exit_time_ns"]]
    sign = 1 if held["side"] == "long" else -1
    rewrite(journal_of(day), lambda r: {**r, "exit_price": r["exit_price"] - sign * 1.0,
                                        "pnl": r["pnl"] - held["qty"]} if r == held else r)
    _, out, _ = audit(day, monkeypatch, capsys)
    assert breaks(out) == breaks(before)  # not counted
    lines = verdict(out)
    first = lines.index(restart_lines(out)[0])
    under = list(itertools.takewhile(lambda line: line.startswith("  "), lines[first + 1:]))
    assert [line for line in under if line.startswith(f"  {held['symbol']} {held['side']} {held['qty']} ")
            and f"exit {held['exit_price'] - sign * 1.0:.2f}" in line and line.endswith("(restart gap, not counted)")]


# --- live: Kite's prices -----------------------------------------------------------------------
async def test_a_live_fill_at_another_price_is_slippage_not_a_break(tmp_path, monkeypatch, capsys):
    """The live engine trading at the strict local Kite server (tests/parity.py) journals a live day;
    its ticks, recorded as the market's, audit to parity. Kite filling an exit 0.50 worse is then
    slippage, named in its line and summed in the headline, not a parity break."""
    import pyarrow as pa

    from engine.data.store import MARKET, TICK_SCHEMA, write_table
    from tests.conftest import make_config, make_ticks, seconds
    from tests.parity import START, live_run, walk

    cfg = make_config(strategy={"kind": "ema_cross", "fast": 5, "slow": 20, "allow_short": True},
                      bracket={"target_pct": 0.2, "stop_pct": 0.1, "trail_pct": None}, tick_size=0.1,
                      risk={"max_trades_per_day": 1000})
    values = walk(300, seed=33)
    book, run = await live_run(tmp_path, cfg, values)
    run.engine.journal.flush()
    ticks = make_ticks(seconds(START, values))
    write_table(tick_file(tmp_path, DAY, MARKET), pa.table(
        {"ts": ticks.ts, "symbol": pa.DictionaryArray.from_arrays(pa.array(ticks.instr), pa.array(ticks.symbols)),
         "price": ticks.price, "volume": ticks.volume}, schema=TICK_SCHEMA))
    config = tmp_path / "o.json"
    config.write_bytes(orjson.dumps(cfg.model_dump(mode="json")))
    journal = tmp_path / "journal" / f"{DAY}.jsonl"
    n = len(book.trades) + (book.held is not None)
    assert len(book.trades) > 3

    def audit_live() -> tuple[int, list[str]]:
        monkeypatch.setenv("OTRADE_DATA_DIR", str(tmp_path))
        code = main(["audit", "--date", DAY.isoformat(), "--config", str(config)])
        return code, verdict(capsys.readouterr().out.splitlines())

    code, lines = audit_live()
    assert (code, lines) == (0, [f"parity: {n} of {n} trades; slippage ₹+0.00, latency up to 0.0 s "
                                 "(fills at Kite's prices)"])
    slipped = trades(journal)[1]
    sign = 1 if slipped["side"] == "long" else -1
    rewrite(journal, lambda r: {**r, "exit_price": r["exit_price"] - sign * 0.5,
                                "pnl": r["pnl"] - 0.5 * r["qty"]} if r == slipped else r)
    code, lines = audit_live()
    assert code == 0
    assert lines == [f"parity: {n} of {n} trades; slippage ₹{-0.5 * slipped['qty']:+,.2f}, latency up to 0.0 s "
                     "(fills at Kite's prices)",
                     f"NSE:INFY {slipped['side']} {slipped['qty']} {clock(slipped['entry_time_ns'])}: exit "
                     f"{slipped['exit_price'] - sign * 0.5:.2f} in the session, {slipped['exit_price']:.2f} in the "
                     f"backtest; ₹{-0.5 * slipped['qty']:+,.2f} gross (fill price, not counted)"]
