"""The ``otrade`` command line: run, backtest, ticks generate, config check."""

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.json"


def _load_config(path: str):
    from config import ConfigError, parse

    try:
        return parse(Path(path).read_bytes())
    except FileNotFoundError:
        raise SystemExit(f"config file not found: {path}") from None
    except ConfigError as exc:
        raise SystemExit(f"{path} is not a valid config:\n{exc}") from None


def cmd_backtest(args: argparse.Namespace) -> int:
    from engine import backtest
    from engine.ticks import TickFileError, load

    cfg = _load_config(args.config)
    symbols = [i.symbol for i in cfg.instruments]
    started = time.perf_counter()
    try:
        ticks, skipped = load(args.ticks, symbols, skip_bad=args.skip_bad)
    except (TickFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    loaded = time.perf_counter()
    result = backtest.run(cfg, ticks, progress=sys.stderr.isatty())
    done = time.perf_counter()
    summary = result.summary()
    summary["skipped_rows"] = skipped
    summary["load_seconds"] = round(loaded - started, 3)
    summary["run_seconds"] = round(done - loaded, 3)
    if args.trades:
        result.write_trades(Path(args.trades))
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict) -> None:
    rows = [
        ("ticks", f"{s['ticks']:,}"), ("sessions", s["sessions"]), ("trades", s["trades"]),
        ("win rate", f"{s['win_rate']:.1%}"), ("gross P&L", f"₹{s['gross_pnl']:,.2f}"),
        ("costs", f"₹{s['costs']:,.2f}"), ("net P&L", f"₹{s['net_pnl']:,.2f}"),
        ("max drawdown", f"₹{s['max_drawdown']:,.2f}"), ("Sharpe (per day)", s["sharpe_daily"]),
        ("Sharpe (annualised)", s["sharpe_annualised"]), ("exposure", f"{s['exposure']:.1%}"),
        ("exits", ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()) or "-"),
        ("skipped rows", s["skipped_rows"]), ("load / run", f"{s['load_seconds']}s / {s['run_seconds']}s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_ticks_generate(args: argparse.Namespace) -> int:
    from engine.ticks import generate, save

    cfg = _load_config(args.config)
    ticks = generate(args.days, args.seed, [i.symbol for i in cfg.instruments],
                     tick_interval_ms=args.interval_ms, tick_sizes=[i.tick_size for i in cfg.instruments])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(out, ticks)
    print(f"wrote {len(ticks):,} ticks over {args.days} session(s) to {out}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from config import check_file

    errors = check_file(Path(args.file))
    if errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run the process's asyncio main on uvloop where it is installed, else on asyncio's own loop,
    and say which (once logging is set up: the line is logged when ``main`` first waits)."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop

    async def announced() -> int:
        loop = asyncio.get_running_loop()
        loop.call_soon(logging.getLogger("engine.cli").info, "event loop: %s", type(loop).__module__.split(".")[0])
        return await main

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(announced())


def _check_clock(text: str) -> None:
    """A bad ``--clock`` is a one-line error here, not a traceback from inside the running process."""
    example = "e.g. 2026-11-23T09:10:00+05:30"
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"error: --clock {text!r} is not an ISO-8601 date and time, {example}") from None
    if start.utcoffset() is None:
        raise SystemExit(f"error: --clock {text!r} needs a UTC offset, {example}")


def cmd_run(args: argparse.Namespace) -> int:
    from engine.app import data_dir_from_env, run
    from engine.lock import DataDirBusy, hold

    if args.clock:
        _check_clock(args.clock)
    try:
        with hold(data_dir_from_env()):
            return run_async(run(args))
    except DataDirBusy as exc:
        raise SystemExit(f"error: refusing to start: {exc}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otrade", description="Intraday NSE trading engine")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the live process (paper broker unless told otherwise)")
    run.add_argument("--config", default=os.environ.get("OTRADE_CONFIG", "config/otrade.json"))
    run.add_argument("--console", action="store_true", help="print events on stdout")
    run.add_argument("--clock", help="rehearsal clock start, ISO-8601 with offset (paper only)")
    run.add_argument("--for", dest="duration", type=float, help="stop after this many seconds")
    run.add_argument("--live", action="store_true",
                     help="trade through Zerodha Kite (needs KITE_API_KEY, KITE_API_SECRET, KITE_ACCESS_TOKEN)")
    run.set_defaults(func=cmd_run)

    bt = sub.add_parser("backtest", help="replay a tick file through the strategy")
    bt.add_argument("--config", default=str(DEFAULT_CONFIG))
    bt.add_argument("--ticks", required=True, help="tick file: .csv or the binary form")
    bt.add_argument("--json", action="store_true", help="print the summary as JSON")
    bt.add_argument("--trades", help="write one CSV row per trade to this file")
    bt.add_argument("--skip-bad", action="store_true", help="skip (and count) bad rows in the tick file")
    bt.set_defaults(func=cmd_backtest)

    ticks = sub.add_parser("ticks", help="tick files").add_subparsers(dest="ticks_command", required=True)
    gen = ticks.add_parser("generate", help="write synthetic sessions with IST timestamps")
    gen.add_argument("--days", type=int, default=1)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", required=True, help=".csv or the binary form")
    gen.add_argument("--config", default=str(DEFAULT_CONFIG), help="instruments to generate")
    gen.add_argument("--interval-ms", type=float, default=1000.0, help="mean gap between ticks")
    gen.set_defaults(func=cmd_ticks_generate)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = cfg.add_parser("check", help="validate a config file and list every error")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:  # a missing, unreadable or unwritable file: say which, without a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
