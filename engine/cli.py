"""The ``otrade`` command line: run, backtest, sweep, ticks generate, config check, strategy new/list."""

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from engine.data import candle_cli
from engine.data import cli as data_cli

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.json"


def _load_config(path: str):
    """The config at ``path``, its strategies found (beside it) and compiled; SystemExit saying why not."""
    from config import ConfigError, parse
    from engine.arrays import in_use
    from engine.strategies import StrategyError, catalog_for

    try:
        cfg = parse(Path(path).read_bytes(), catalog_for(path))
        for strategy in in_use(cfg):
            strategy.compile()
    except FileNotFoundError:
        raise SystemExit(f"config file not found: {path}") from None
    except ConfigError as exc:
        raise SystemExit(f"{path} is not a valid config:\n{exc}") from None
    except StrategyError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    return cfg


def _load_data(args: argparse.Namespace, cfg: Any) -> tuple[Any, int, Any, str]:
    """The data ``backtest`` and ``sweep`` run on, from the options ``_data_options`` adds: the ticks, the
    bad rows skipped, a pessimistic candle replay's partner offsets (else None), and what it is."""
    from engine.data import candles
    from engine.data.tick_files import load
    from engine.data.ticks import TickFileError

    symbols = [i.symbol for i in cfg.instruments]
    if (args.ticks is None) == (args.candles is None):
        raise TickFileError("give the data as --ticks or as --candles (a data directory or a candle file)")
    if args.candles is not None:  # replayed as ticks by the candle rule
        found, interval = candles.load(Path(args.candles), symbols, args.interval)
        replay = candles.replay(found, symbols, interval, args.rule, cfg.session.ns_after_midnight("open"),
                                cfg.session.ns_after_midnight("close"))
        return replay.ticks, 0, replay.partner, replay.data
    if args.date:  # a data directory's recorded days
        from engine.data.store import load_days

        return load_days(Path(args.ticks), *args.date, symbols), 0, None, f"ticks recorded under {args.ticks}"
    ticks, skipped = load(args.ticks, symbols, skip_bad=args.skip_bad)
    return ticks, skipped, None, f"ticks of {Path(args.ticks).name}"


def cmd_backtest(args: argparse.Namespace) -> int:
    from engine.data import candles
    from engine.data.ticks import TickFileError
    from engine.research import backtest

    cfg = _load_config(args.config)
    started = time.perf_counter()
    try:
        ticks, skipped, partner, data = _load_data(args, cfg)
    except (TickFileError, candles.CandleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    loaded = time.perf_counter()
    result = backtest.run(cfg, ticks, progress=sys.stderr.isatty(), partner=partner)
    done = time.perf_counter()
    summary = {"data": data, **result.summary(), "days": result.per_day()}
    summary["skipped_rows"] = skipped
    summary["load_seconds"] = round(loaded - started, 3)
    summary["run_seconds"] = round(done - loaded, 3)
    if args.trades:
        result.write_trades(Path(args.trades))
    if args.report:
        from engine.research import report

        report.write(Path(args.report), [_report_figure(args, result, ticks, "Backtest")], "OTrade backtest")
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        _print_summary(summary)
    return 0


def _report_figure(args: argparse.Namespace, result: Any, ticks: Any, title: str) -> Any:
    from engine.research import report

    try:
        day = date.fromisoformat(args.report_day) if args.report_day else None
    except ValueError:
        raise SystemExit(f"error: --report-day {args.report_day!r} is not a date, e.g. 2026-11-23") from None
    try:
        return report.backtest_figure(result, ticks, day, title)
    except report.ReportError as exc:
        raise SystemExit(f"error: --report-day: {exc}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from config import ConfigError
    from engine.data.candles import CandleError
    from engine.data.ticks import TickFileError
    from engine.research import backtest, sweep

    cfg = _load_config(args.config)
    try:
        if args.metric not in sweep.METRICS:
            raise sweep.SweepError(f"--metric {args.metric!r}: one of {', '.join(sweep.METRICS)}")
        if args.out and Path(args.out).suffix.lower() not in sweep.OUTPUTS:
            raise sweep.SweepError(f"--out {args.out}: write {' or '.join(sweep.OUTPUTS)}")
        if bool(args.train) != bool(args.test):
            raise sweep.SweepError("walk-forward takes both --train and --test")
        walk = (sweep.parse_days(args.train), sweep.parse_days(args.test)) if args.train else None
        combos = sweep.grid([sweep.parse_param(p) for p in args.param], args.samples, args.seed)
        ticks, _, partner, what = _load_data(args, cfg)
        data = sweep.Data(ticks, partner, what)
        res = sweep.run(cfg, data, combos, args.metric, walk, args.workers, args.ray, progress=sys.stderr.isatty())
        if args.out:
            res.write(Path(args.out))
    except (sweep.SweepError, ConfigError, TickFileError, CandleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(res.table(args.top))
    if args.out:
        print(f"wrote {len(res.rows):,} rows to {args.out}")
    if args.report:
        from engine.research import report

        best = {p: res.ranked()[0][p] for p in res.paths}
        result = backtest.run(sweep.configure(cfg, best), data.ticks, partner=data.partner)
        figure = _report_figure(args, result, data.ticks,
                                "Best: " + ", ".join(f"{p}={v}" for p, v in best.items()))
        report.write(Path(args.report), report.sweep_figures(res, figure), "OTrade sweep")
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
    if "data" in s:
        rows.insert(0, ("data", s["data"]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if len(s.get("days", ())) > 1:
        print()
        _print_days(s["days"])


def _print_days(days: list[dict]) -> None:
    """The per-day table of a multi-day backtest: trades, gross P&L, charges, net."""
    head = ("day", "trades", "gross", "charges", "net")
    cells = [head] + [(d["day"], str(d["trades"]), *(f"{d[k]:,.2f}" for k in head[2:])) for d in days]
    widths = [max(len(r[c]) for r in cells) for c in range(len(head))]
    for r in cells:
        print("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths, strict=True))))


def cmd_ticks_generate(args: argparse.Namespace) -> int:
    from engine.data.synthetic import generate
    from engine.data.tick_files import save

    cfg = _load_config(args.config)
    ticks = generate(args.days, args.seed, [i.symbol for i in cfg.instruments],
                     tick_interval_ms=args.interval_ms, tick_sizes=[i.tick_size for i in cfg.instruments])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(out, ticks)
    print(f"wrote {len(ticks):,} ticks over {args.days} session(s) to {out}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from config import check_file, parse
    from engine.arrays import in_use
    from engine.strategies import StrategyError, catalog_for

    catalog = catalog_for(args.file)
    errors = check_file(Path(args.file), catalog)
    notes = []
    if not errors:  # each strategy it names compiled and tried on a few hundred bars, never at a first tick
        cfg = parse(Path(args.file).read_bytes(), catalog)
        for strategy in in_use(cfg):
            try:
                for ins in cfg.instruments:
                    if type(ins.strategy).__strategy__ is strategy:
                        strategy.check(ins.strategy)
            except StrategyError as exc:
                errors.append(str(exc))
            else:
                how = "from the cache" if strategy.cached else "compiled, cached for the next runs"
                notes.append(f"{strategy.name}: {how} in {strategy.compile_seconds:.2f} s")
    if errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    for note in notes:
        print(f"  {note}")
    return 0


def cmd_strategy_new(args: argparse.Namespace) -> int:
    from engine.strategies import folder_for
    from engine.strategies.scaffold import write

    folder = Path(args.dir) if args.dir else folder_for(args.config)
    try:
        strategy, test = write(args.name, folder)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {strategy} and {test}\n"
          f"use it: \"strategy\": {{\"kind\": \"{args.name}\"}} in {args.config}, then otrade config check")
    return 0


def cmd_strategy_list(args: argparse.Namespace) -> int:
    from engine.strategies import StrategyError, catalog_for

    catalog = catalog_for(args.config)
    print(f"strategies (built-in, packaged, and files in {catalog.folders[0]}):")
    for name in catalog.names():
        try:
            strategy = catalog.get(name)
        except StrategyError as exc:
            print(f"{name}  BROKEN: {exc}")
            continue
        print(f"{name}  {strategy.about}  [{strategy.file}]")
        for line in strategy.describe():
            print(f"    {line}")
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The process's event loop: uvloop where it is installed, else (None) asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run the process's asyncio main on ``loop_factory()``'s loop and say which (once logging is
    set up: the line is logged when ``main`` first waits)."""

    async def announced() -> int:
        loop = asyncio.get_running_loop()
        loop.call_soon(logging.getLogger("engine.cli").info, "event loop: %s", type(loop).__module__.split(".")[0])
        return await main

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
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
    from engine.runtime.app import run
    from engine.runtime.lock import DataDirBusy, hold
    from engine.services.paths import data_dir_from_env

    if args.clock:
        _check_clock(args.clock)
    try:
        with hold(data_dir_from_env()):
            return run_async(run(args))
    except DataDirBusy as exc:
        raise SystemExit(f"error: refusing to start: {exc}") from None


def _data_options(p: argparse.ArgumentParser) -> None:
    """The data options of backtest and sweep: both run on the same data the same way (``_load_data``)."""
    p.add_argument("--ticks",
                   help="tick file: .csv, the binary form or a recorded day's .parquet; with --date, the data dir")
    p.add_argument("--candles", nargs="?", const=os.environ.get("OTRADE_DATA_DIR", "data"), metavar="PATH",
                   help="or candles: a data directory (default: OTRADE_DATA_DIR, else data/) or one candle file")
    p.add_argument("--interval", help="the candles' interval (default: minute, or the candle file's folder)")
    p.add_argument("--candle-rule", "--rule", dest="rule", default="ohlc", choices=("ohlc", "pessimistic"),
                   help="how a candle replays as ticks (README: Candles)")
    p.add_argument("--date", type=data_cli.day_span, metavar="DAY[:DAY]",
                   help="the recorded day(s) under the data directory --ticks names, e.g. 2026-11-23")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) bad rows in the tick file")


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

    bt = sub.add_parser("backtest", help="replay ticks (or candles, as ticks) through the strategy")
    bt.add_argument("--config", default=str(DEFAULT_CONFIG))
    _data_options(bt)
    bt.add_argument("--json", action="store_true", help="print the summary as JSON")
    bt.add_argument("--trades", help="write one CSV row per trade to this file")
    bt.add_argument("--report", help="write an HTML report (equity, drawdown, daily P&L, a day's trades)")
    bt.add_argument("--report-day", help="the day the report shows trades on (default: the last with a trade)")
    bt.set_defaults(func=cmd_backtest)

    sw = sub.add_parser("sweep", help="backtest every combination of parameter values in parallel, ranked")
    sw.add_argument("--config", default=str(DEFAULT_CONFIG))
    _data_options(sw)
    sw.add_argument("--param", action="append", default=[], metavar="PATH=VALUES",
                    help="a setting and its values: LOW:HIGH:STEP (inclusive), a,b,c or one value; repeatable")
    sw.add_argument("--samples", type=int, help="run a seeded random draw of this many combinations")
    sw.add_argument("--seed", type=int, default=1, help="seed of the --samples draw")
    sw.add_argument("--metric", default="net_pnl", help="rank by net_pnl, sharpe_daily, profit_factor or max_drawdown")
    sw.add_argument("--train", help="walk-forward: days of data to choose on, e.g. 60d (with --test)")
    sw.add_argument("--test", help="walk-forward: days after each train window to score the choice on, e.g. 20d")
    sw.add_argument("--workers", type=int, help="processes (default: one per core)")
    sw.add_argument("--ray", metavar="ADDRESS",
                    help="run on a Ray cluster: its address, auto (the one running here) or local (start one)")
    sw.add_argument("--out", help="write every row to this .csv or .parquet file")
    sw.add_argument("--top", type=int, default=10, help="rows of the ranking to print")
    sw.add_argument("--report", help="write an HTML report of the best combination, the ranking, walk-forward")
    sw.add_argument("--report-day", help="the day the report shows trades on (default: the last with a trade)")
    sw.set_defaults(func=cmd_sweep)

    ticks = sub.add_parser("ticks", help="tick files").add_subparsers(dest="ticks_command", required=True)
    gen = ticks.add_parser("generate", help="write synthetic sessions with IST timestamps")
    gen.add_argument("--days", type=int, default=1)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", required=True, help=".csv or the binary form")
    gen.add_argument("--config", default=str(DEFAULT_CONFIG), help="instruments to generate")
    gen.add_argument("--interval-ms", type=float, default=1000.0, help="mean gap between ticks")
    gen.set_defaults(func=cmd_ticks_generate)

    candle_cli.register(data_cli.register(sub))

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = cfg.add_parser("check", help="validate a config file, compile its strategies, list every error")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    strat = sub.add_parser("strategy", help="strategies").add_subparsers(dest="strategy_command", required=True)
    config_default = os.environ.get("OTRADE_CONFIG", "config/otrade.json")
    new = strat.add_parser("new", help="write a commented strategy file to start from, and its test")
    new.add_argument("name")
    new.add_argument("--config", default=config_default, help="the config whose strategies folder gets it")
    new.add_argument("--dir", help="write it here instead (default: strategies/ beside the config)")
    new.set_defaults(func=cmd_strategy_new)
    listing = strat.add_parser("list", help="every strategy the config can name, with its parameters")
    listing.add_argument("--config", default=config_default, help="the config whose strategies folder to list")
    listing.set_defaults(func=cmd_strategy_list)
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
