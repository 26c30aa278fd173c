"""The ``otrade`` command line: run, backtest, sweep, audit, ticks generate, config check, strategy new/list,
warm."""

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from engine.data import candle_cli
from engine.data import cli as data_cli

if TYPE_CHECKING:  # asyncio is imported by the commands that run a loop: a backtest's start never pays for it
    import asyncio

CONFIG_ENV = "OTRADE_CONFIG"
DEFAULT_CONFIG = "config/otrade.json"


class UsageError(Exception):
    """Arguments that cannot work, found before any work is done: exit 2, as argparse's own."""


def config_path(args: argparse.Namespace, create: bool = True) -> Path:
    """The config every command uses: ``--config``, else ``$OTRADE_CONFIG``, else ``config/otrade.json``.

    The last two are made from the shipped default on first use (``create``): a Procfile host's first
    start on a fresh volume needs that. A file named with ``--config`` is never made: a typo must not
    trade on the defaults. Sets ``args.config`` to the path, ``args.config_new`` when it was just made.
    """
    if getattr(args, "config_resolved", False):
        path = Path(args.config)
    elif args.config:
        path = Path(args.config)
        if not path.exists():
            raise UsageError(f"--config {path}: no such file (a config named with --config is never created; "
                             f"leave --config out to use ${CONFIG_ENV}, else {DEFAULT_CONFIG}, made from the "
                             "shipped default on first use)")
    else:
        path = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    args.config, args.config_resolved = str(path), True
    args.config_new = getattr(args, "config_new", False)
    if create and not path.exists():
        from config import ConfigManager
        from engine.services.paths import data_dir_from_env
        from engine.strategies import catalog_for

        ConfigManager(path, data_dir_from_env(), catalog_for(path)).load()  # as ``otrade run`` always made it
        args.config_new = True
    return path


def _say_config(args: argparse.Namespace, what: str, out: TextIO | None = None) -> None:
    """The first line of every command: the config it used and the data it read (``what``)."""
    new = " (new, from the shipped default)" if args.config_new else ""
    print(f"config {args.config}{new} · {what}", file=out or sys.stdout, flush=True)  # seen while the work runs


def _load_config(path: Path):
    """The config at ``path``, its strategies found (beside it) and compiled; SystemExit saying why not."""
    from config import ConfigError, parse
    from engine.arrays import in_use
    from engine.strategies import StrategyError, catalog_for

    try:
        cfg = parse(path.read_bytes(), catalog_for(path))
        for strategy in in_use(cfg):
            strategy.compile()
    except FileNotFoundError:
        raise SystemExit(f"config file not found: {path}") from None
    except ConfigError as exc:
        raise SystemExit(f"{path} is not a valid config:\n{exc}") from None
    except StrategyError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    return cfg


def _exists(flag: str, path: str) -> Path:
    """A data path the user named; a missing one is called missing, not mistaken for something else."""
    from engine.data.ticks import TickFileError

    if not Path(path).exists() and not _recording(Path(path)):
        raise TickFileError(f"{flag} {path} is missing: no such file or directory")
    return Path(path)


def _recording(path: Path) -> bool:
    """A recorded day not compacted yet: its parts are there, its day file not yet."""
    if path.suffix != ".parquet":
        return False
    from engine.data.store import parts_dir

    return parts_dir(path).is_dir()


def _error(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)
    return str(exc)


def _outside_session(ticks: Any, cfg: Any) -> str:
    """What the session window leaves out of tick data (the kernels' rule: open <= IST time < close)."""
    import numpy as np

    from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY

    tod = (ticks.ts + IST_OFFSET_NS) % NS_PER_DAY
    out = (tod < cfg.session.ns_after_midnight("open")) | (tod >= cfg.session.ns_after_midnight("close"))
    if not out.any():
        return ""
    days = [date.fromordinal(date(1970, 1, 1).toordinal() + int(d))
            for d in np.unique((ticks.ts[out] + IST_OFFSET_NS) // NS_PER_DAY)]
    shown = ", ".join(d.isoformat() for d in days[:3]) + (f" and {len(days) - 3} more day(s)" if len(days) > 3 else "")
    return (f"; {int(out.sum()):,} ticks outside the {cfg.session.open}–{cfg.session.close} session left out "
            f"(on {shown}; Muhurat trading is such a session)")


def _load_data(args: argparse.Namespace, cfg: Any) -> tuple[Any, int, Any, str]:
    """The data ``backtest`` and ``sweep`` run on, from the options ``_data_options`` adds: the ticks, the
    bad rows skipped, a pessimistic candle replay's partner offsets (else None), and what it is (with
    what the session window leaves out: the backtest trades only inside it)."""
    from engine.data import candles
    from engine.data.tick_files import load
    from engine.data.ticks import TickFileError

    symbols = [i.symbol for i in cfg.instruments]
    if (args.ticks is None) == (args.candles is None):
        raise TickFileError("give the data as --ticks or as --candles (a data directory or a candle file)")
    if args.candles is not None:  # replayed as ticks by the candle rule
        found, interval = candles.load(_exists("--candles", args.candles), symbols, args.interval)
        replay = candles.replay(found, symbols, interval, args.rule, cfg.session.ns_after_midnight("open"),
                                cfg.session.ns_after_midnight("close"))
        left = sum(len(c) for c in found.values()) - len(replay.ticks) // 4  # four ticks a replayed candle
        note = (f"; {left:,} candles outside the {cfg.session.open}–{cfg.session.close} session left out "
                "(Muhurat trading is such a session)") if left else ""
        return replay.ticks, 0, replay.partner, replay.data + note
    source = _exists("--ticks", args.ticks)
    if args.date:  # a data directory's recorded days
        from engine.data.store import load_days

        first, last = args.date
        ticks = load_days(source, first, last, symbols)
        span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        return ticks, 0, None, f"ticks recorded under {args.ticks} on {span}" + _outside_session(ticks, cfg)
    ticks, skipped = load(source, symbols, skip_bad=args.skip_bad)
    return ticks, skipped, None, f"ticks of {args.ticks}" + _outside_session(ticks, cfg)


def _calendar(cfg: Any) -> Any:
    """The trading calendar ``otrade run`` keeps (``$OTRADE_CALENDAR`` over the shipped overrides)."""
    from engine.services.calendar import SHIPPED_OVERRIDES, TradingCalendar

    overrides = Path(os.environ.get("OTRADE_CALENDAR") or SHIPPED_OVERRIDES)
    try:
        return TradingCalendar(cfg.session.open, cfg.session.close, overrides, cfg.session.square_off)
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: calendar {overrides} is not valid: {type(exc).__name__}: {exc}") from None


def _report_day(args: argparse.Namespace) -> date | None:
    """``--report-day``, checked before any work."""
    try:
        return date.fromisoformat(args.report_day) if args.report_day else None
    except ValueError:
        raise UsageError(f"--report-day {args.report_day!r} is not a date, e.g. 2026-11-23") from None


def _check_outputs(*names: str | None) -> None:
    """The files a command will write, checked before any work: a folder that is not there fails now,
    not after the run."""
    for name in filter(None, names):
        if not Path(name).parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"no folder {Path(name).parent} to write it in", name)


def _wrote(what: str, path: Path, out: TextIO) -> None:
    print(f"wrote {what} to {path.resolve()}", file=out)


def cmd_backtest(args: argparse.Namespace) -> int:
    from engine.data import candles
    from engine.data.ticks import TickFileError
    from engine.research import backtest

    report_day = _report_day(args)
    _check_outputs(args.trades, args.report)
    cfg = _load_config(config_path(args))
    calendar = _calendar(cfg)
    started = time.perf_counter()
    try:
        ticks, skipped, partner, data = _load_data(args, cfg)
    except (TickFileError, candles.CandleError, FileNotFoundError) as exc:
        print(f"error: {_error(exc)}", file=sys.stderr)
        return 1
    notes = sys.stderr if args.json else sys.stdout  # JSON on stdout stays parseable
    _say_config(args, f"data {data}", notes)
    loaded = time.perf_counter()
    try:
        result = backtest.run(cfg, ticks, progress=sys.stderr.isatty(), partner=partner)
    except candles.CandleError as exc:  # the pessimistic rule refusing a strategy it cannot bound
        print(f"error: {_error(exc)}", file=sys.stderr)
        return 1
    done = time.perf_counter()
    summary = {"config": args.config, "data": data, **result.summary(), "days": result.per_day(),
               "closed_days": [d.isoformat() for d in result.closed_days(calendar)]}
    summary["skipped_rows"] = skipped
    summary["load_seconds"] = round(loaded - started, 3)
    summary["run_seconds"] = round(done - loaded, 3)
    if args.trades:  # the files first: a reader that stops early (``| head``) must not cost them
        result.write_trades(Path(args.trades))
    if args.report:
        from engine.research import report

        report.write(Path(args.report), [_report_figure(report_day, result, ticks, "Backtest")], "OTrade backtest")
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        _print_summary(summary)
    if args.trades:
        _wrote(f"{len(result.tf):,} trade(s)", Path(args.trades), notes)
    if args.report:
        _wrote("the report", Path(args.report), notes)
    return 0


def _report_figure(day: date | None, result: Any, ticks: Any, title: str) -> Any:
    from engine.research import report

    try:
        return report.backtest_figure(result, ticks, day, title)
    except report.ReportError as exc:
        raise SystemExit(f"error: --report-day: {exc}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from config import ConfigError
    from engine.data.candles import CandleError
    from engine.data.ticks import TickFileError
    from engine.research import backtest, sweep

    report_day = _report_day(args)
    _check_outputs(args.out, args.report)
    cfg = _load_config(config_path(args))
    try:
        if args.metric not in sweep.METRICS:
            raise sweep.SweepError(f"--metric {args.metric!r}: one of {', '.join(sweep.METRICS)}")
        if args.out and Path(args.out).suffix.lower() not in sweep.OUTPUTS:
            raise sweep.SweepError(f"--out {args.out}: write {' or '.join(sweep.OUTPUTS)}")
        if args.min_trades is not None and args.min_trades < 0:
            raise sweep.SweepError(f"--min-trades {args.min_trades}: a number of trades, 0 or more")
        if bool(args.train) != bool(args.test):
            raise sweep.SweepError("walk-forward takes both --train and --test")
        walk = (sweep.parse_days(args.train), sweep.parse_days(args.test)) if args.train else None
        combos = sweep.grid([sweep.parse_param(p) for p in args.param], args.samples, args.seed)
        ticks, _, partner, what = _load_data(args, cfg)
        _say_config(args, f"data {what}")
        data = sweep.Data(ticks, partner, what)
        res = sweep.run(cfg, data, combos, args.metric, walk, args.workers, args.ray, progress=sys.stderr.isatty(),
                        min_trades=sweep.MIN_TRADES if args.min_trades is None else args.min_trades)
        if args.out:
            res.write(Path(args.out))
    except (sweep.SweepError, ConfigError, TickFileError, CandleError, FileNotFoundError) as exc:
        print(f"error: {_error(exc)}", file=sys.stderr)
        return 1
    if args.report:  # before the table: a reader that stops early (``| head``) must not cost the file
        from engine.research import report

        figure = None
        if ranked := res.ranked():
            best = {p: ranked[0][p] for p in res.paths}
            result = backtest.run(sweep.configure(cfg, best), data.ticks, partner=data.partner)
            figure = _report_figure(report_day, result, data.ticks, "In sample (all days, test days included), "
                                    "the best: " + ", ".join(f"{p}={v}" for p, v in best.items()))
        report.write(Path(args.report), report.sweep_figures(res, figure), "OTrade sweep")
    print(res.table(args.top))
    if args.out:
        print(f"wrote {len(res.rows):,} rows to {args.out}")
    if args.report:
        _wrote("the report", Path(args.report), sys.stdout)
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
    if s["closed_days"]:
        rows.insert(2, ("closed days", f"{', '.join(s['closed_days'])}: closed on the trading calendar "
                                       "(holiday or weekend); traded on what the data holds"))
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

    cfg = _load_config(config_path(args))
    symbols = [i.symbol for i in cfg.instruments]
    _say_config(args, f"instruments {', '.join(symbols)} (no data read: the ticks are synthetic)")
    ticks = generate(args.days, args.seed, symbols, tick_interval_ms=args.interval_ms,
                     tick_sizes=[i.tick_size for i in cfg.instruments])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(out, ticks)
    print(f"wrote {len(ticks):,} ticks over {args.days} session(s) to {out}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from config import check_file, live_session_problems, parse
    from engine.arrays import in_use
    from engine.strategies import StrategyError, catalog_for

    catalog = catalog_for(args.file)
    errors = check_file(Path(args.file), catalog)
    notes = []
    if not errors:  # each strategy it names compiled and tried on a few hundred bars, never at a first tick
        cfg = parse(Path(args.file).read_bytes(), catalog)
        # hours live trading cannot keep: errors for --live, as ``otrade run --live`` refuses them; paper keeps any
        hours = live_session_problems(cfg.session)
        if args.live:
            errors += hours
        else:
            notes += [f"warning (otrade run --live would refuse it): {problem}" for problem in hours]
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

    path = config_path(args, create=False)  # made only once the strategy is written: a refused name changes nothing
    folder = Path(args.dir) if args.dir else folder_for(path)
    try:
        strategy, test = write(args.name, folder)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.dir:
        config_path(args)
    _say_config(args, f"strategies {folder}")
    print(f"wrote {strategy} and {test}\n"
          f"use it: \"strategy\": {{\"kind\": \"{args.name}\"}} in {args.config}, then otrade config check")
    return 0


def cmd_strategy_list(args: argparse.Namespace) -> int:
    from engine.strategies import StrategyError, catalog_for

    catalog = catalog_for(config_path(args))
    _say_config(args, f"strategies {catalog.folders[0]}")
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


def cmd_audit(args: argparse.Namespace) -> int:
    """The day's parity audit, as the end-of-day report has it: exit 0 at parity, 1 on a break or
    when the day cannot be audited."""
    from engine.research.audit import AuditError, audit_day
    from engine.runtime.app import warm_up_sessions
    from engine.services.calendar import SHIPPED_OVERRIDES
    from engine.services.paths import data_dir_from_env
    from engine.strategies import catalog_for

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise UsageError(f"--date {args.date!r} is not a day, e.g. 2026-11-23") from None
    path = config_path(args)
    cfg = _load_config(path)
    data_dir = data_dir_from_env()
    _say_config(args, f"data {data_dir}")
    overrides = Path(os.environ.get("OTRADE_CALENDAR") or SHIPPED_OVERRIDES)

    def warm_up(c: Any, until_ns: int, synthetic: bool) -> list:
        return warm_up_sessions(c, data_dir, overrides, until_ns, synthetic)

    try:
        result = audit_day(data_dir, day, cfg, catalog_for(path), overrides, warm_up, args.rehearsal or None)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.describe())
    for note in result.notes:
        print(note)
    print(result.text())
    return 1 if result.breaks else 0


WARM_PARTS = ("run", "backtest")
WARM_DECODER = "ticker decoder"  # the Kite ticker's, among the live engine's kernels
PACKAGES = ("config", "engine", "bot")  # the project's, as pyproject.toml lists them


def cmd_warm(args: argparse.Namespace) -> int:
    """Compile into Numba's cache, ahead of the runs that load it: the config's strategies, the live
    engine's kernels and the ticker's decoder (``run``), the backtest's loop (``backtest``: sweeps and
    audits run it too). Prints each with its seconds and whether the cache already held it. The
    trading calendar's exchange days are kept beside them (``engine.services.calendar``), and the
    project's bytecode is written.

    Both parts on more than one core: a child process compiles the live engine's beside this one's
    backtest loop (Numba compiles on one core; the two share little), its lines printed when it ends."""
    from numba.core.event import install_recorder

    from engine.arrays import in_use
    from engine.services.calendar import exchange_days

    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    config_path(args)
    _say_config(args, f"numba cache {cache}")
    began = time.perf_counter()
    exchange_days()
    _write_bytecode()
    with install_recorder("numba:compile") as compiled:
        cfg = _load_config(Path(args.config))  # compiles the strategies
    _warmed("strategies", bool(compiled.buffer), {s.name: s.compile_seconds for s in in_use(cfg)})
    child = None
    if args.only is None and (os.cpu_count() or 1) > 1:  # after the strategies: the child loads them
        import subprocess

        child = subprocess.Popen([sys.executable, "-m", "engine", "warm", "--only", "run", "--config", args.config],
                                 stdout=subprocess.PIPE, text=True)
    try:
        if args.only == "run" or (args.only is None and child is None):
            _warm_run(cfg, args.skip)
        if args.only in (None, "backtest"):
            _warm_backtest(cfg)
    except BaseException:
        if child is not None:  # this warm stops: its child with it
            child.kill()
        raise
    if child is not None:
        out, _ = child.communicate()  # its errors went to our stderr as they came
        if child.returncode:
            print(f"error: compiling the live engine's kernels in a child process failed (exit {child.returncode})",
                  file=sys.stderr)
            return 1
        lines = out.splitlines()  # from its live engine's part on: the config, strategies and total are ours too
        print("\n".join(lines[next(k for k, line in enumerate(lines) if line.startswith("live engine")):-1]))
    files = len(_cache_files(cache))
    print(f"{time.perf_counter() - began:.1f} s in all; the cache holds {files} files")
    return 0


def _write_bytecode() -> None:
    """The project's own bytecode, which a process run with PYTHONDONTWRITEBYTECODE (as many container
    images set it) compiles from source at every start: 0.05 s of a warm start's 0.7 here."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=2)  # a read-only install: left as it is


def _warm_run(cfg: Any, skip: list[str]) -> None:
    """The live engine's kernels and the ticker's decoder, but those named in ``skip``."""
    from numba.core.event import install_recorder

    from engine.arrays import build
    from engine.brokers.kite.ticker_codec import PriceDecoder
    from engine.engine import warm_kernels

    with install_recorder("numba:compile") as compiled:
        try:
            took = warm_kernels(build(cfg), time.time_ns(), skip=[k for k in skip if k != WARM_DECODER])
        except ValueError as exc:  # a name in --skip that is none of them
            raise UsageError(f"--skip: {exc}") from None
        if WARM_DECODER not in skip:
            decoder = time.perf_counter()
            PriceDecoder(8)
            took[WARM_DECODER] = time.perf_counter() - decoder
    _warmed("live engine (otrade run)", bool(compiled.buffer), took)


def _warm_backtest(cfg: Any) -> None:
    import numpy as np
    from numba.core.event import install_recorder

    from engine.data.ticks import Ticks
    from engine.research import backtest

    with install_recorder("numba:compile") as compiled:
        loop = time.perf_counter()
        n = len(cfg.instruments)  # a tick of each: the loop's argument types whatever the data
        backtest.run(cfg, Ticks(np.full(n, time.time_ns()), np.ones(n), np.ones(n), np.arange(n),
                                tuple(i.symbol for i in cfg.instruments)))
    _warmed("backtest loop (otrade backtest, sweep, audit)", bool(compiled.buffer),
            {"backtest.run": time.perf_counter() - loop})


def _cache_files(cache: Path) -> set[Path]:
    return set(cache.rglob("*.nbc")) if cache.is_dir() else set()


def _warmed(what: str, compiled: bool, took: dict[str, float]) -> None:
    """One part's lines: compiled (Numba compiled something for it) or loaded, then each piece's seconds."""
    print(f"{what}: {'compiled' if compiled else 'from the cache'}", flush=True)
    for name, seconds in took.items():
        print(f"  {name:<22} {seconds:6.2f} s", flush=True)


def loop_factory() -> "Callable[[], asyncio.AbstractEventLoop] | None":
    """The process's event loop: uvloop where it is installed, else (None) asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run the process's asyncio main on ``loop_factory()``'s loop and say which (once logging is
    set up: the line is logged when ``main`` first waits)."""
    import asyncio

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
    config_path(args)
    data_dir = data_dir_from_env()
    try:
        with hold(data_dir):
            _say_config(args, f"data {data_dir}", sys.stderr)  # beside the logs: stdout carries --console's events
            return run_async(run(args))
    except DataDirBusy as exc:
        raise SystemExit(f"error: refusing to start: {exc}") from None


# --- arguments -------------------------------------------------------------------------------------
def _config_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--config``, the same for every command (``config_path``)."""
    here = os.environ.get(CONFIG_ENV)
    p.add_argument("--config", metavar="FILE",
                   help=f"{what} (default: ${CONFIG_ENV}{f', here {here}' if here else ''}, else {DEFAULT_CONFIG}; "
                        "either is made from the shipped default on first use, a file named here must exist)")


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


def _positive(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return x


def _tick_file_out(text: str) -> str:
    """``--out`` of ``ticks generate``: its type is known before anything is generated."""
    from engine.data.tick_files import BINARY_SUFFIX

    suffix = Path(text).suffix.lower()
    if suffix not in (".csv", BINARY_SUFFIX):
        raise argparse.ArgumentTypeError(f"{text}: unknown tick file type {suffix or '(no extension)'}: "
                                         f"name a .csv or {BINARY_SUFFIX} file")
    return text


def _data_options(p: argparse.ArgumentParser) -> None:
    """The data options of backtest and sweep: both run on the same data the same way (``_load_data``)."""
    p.add_argument("--ticks",
                   help="tick file: .csv, the binary form or a recorded day's .parquet; with --date, the data dir")
    p.add_argument("--candles", nargs="?", const=os.environ.get("OTRADE_DATA_DIR", "data"), metavar="PATH",
                   help="or candles: a data directory (default: OTRADE_DATA_DIR, else data/) or one candle file")
    p.add_argument("--interval", help="the candles' interval (default: minute, or the candle file's folder)")
    p.add_argument("--candle-rule", "--rule", dest="rule", default="ohlc", choices=("ohlc", "pessimistic"),
                   help="how a candle replays as ticks (default: ohlc; README: Candles)")
    p.add_argument("--date", type=data_cli.day_span, metavar="DAY[:DAY]",
                   help="the recorded day(s) under the data directory --ticks names, e.g. 2026-11-23")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) bad rows in the tick file")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otrade", description="Intraday NSE trading engine")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the live process (paper broker unless told otherwise)")
    _config_option(run, "the config to trade on")
    run.add_argument("--console", action="store_true", help="print events on stdout")
    run.add_argument("--clock", help="rehearsal clock start, ISO-8601 with offset (paper only)")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    run.add_argument("--live", action="store_true",
                     help="trade through Zerodha Kite (needs KITE_API_KEY, KITE_API_SECRET, KITE_ACCESS_TOKEN)")
    run.set_defaults(func=cmd_run)

    bt = sub.add_parser("backtest", help="replay ticks (or candles, as ticks) through the strategy")
    _config_option(bt, "the config whose instruments and strategies are backtested")
    _data_options(bt)
    bt.add_argument("--json", action="store_true", help="print the summary as JSON (the other lines go to stderr)")
    bt.add_argument("--trades", metavar="OUT.csv",
                    help="write one CSV row per trade to this file: times, prices, gross P&L, charges, net P&L")
    bt.add_argument("--report", metavar="R.html",
                    help="write an HTML report (equity, drawdown, daily P&L, a day's trades)")
    bt.add_argument("--report-day", metavar="YYYY-MM-DD",
                    help="the day the report shows trades on (default: the last with a trade)")
    bt.set_defaults(func=cmd_backtest)

    sw = sub.add_parser("sweep", help="backtest every combination of parameter values in parallel, ranked")
    _config_option(sw, "the config the parameter values are set in")
    _data_options(sw)
    sw.add_argument("--param", action="append", default=[], metavar="PATH=VALUES",
                    help="a setting and its values: LOW:HIGH:STEP (inclusive), a,b,c or one value; repeatable")
    sw.add_argument("--samples", type=int, help="run a seeded random draw of this many combinations")
    sw.add_argument("--seed", type=int, default=1, help="seed of the --samples draw (default: 1)")
    sw.add_argument("--metric", default="net_pnl",
                    help="rank by net_pnl (default), sharpe_daily, profit_factor or max_drawdown")
    sw.add_argument("--min-trades", type=int, metavar="N",
                    help="rank only combinations with at least N trades over the data, pro rata on a walk-forward "
                         "train window (default: 30)")
    sw.add_argument("--train", help="walk-forward: days of data to choose on, e.g. 60d (with --test)")
    sw.add_argument("--test", help="walk-forward: days after each train window to score the choice on, e.g. 20d")
    sw.add_argument("--workers", type=int, help="processes (default: one per core)")
    sw.add_argument("--ray", metavar="ADDRESS",
                    help="run on a Ray cluster: its address, auto (the one running here) or local (start one)")
    sw.add_argument("--out", help="write every row to this .csv or .parquet file")
    sw.add_argument("--top", type=int, default=10, help="rows of the ranking to print (default: 10)")
    sw.add_argument("--report", metavar="R.html",
                    help="write an HTML report of the best combination, the ranking, walk-forward")
    sw.add_argument("--report-day", metavar="YYYY-MM-DD",
                    help="the day the report shows trades on (default: the last with a trade)")
    sw.set_defaults(func=cmd_sweep)

    ticks = sub.add_parser("ticks", help="tick files").add_subparsers(dest="ticks_command", required=True)
    gen = ticks.add_parser("generate", help="write synthetic sessions with IST timestamps")
    gen.add_argument("--days", type=_at_least_one, default=1,
                     help="trading sessions to generate, weekdays from 2026-11-02 (default: 1)")
    gen.add_argument("--seed", type=int, default=1,
                     help="seed of the random walk: the same seed gives the same ticks (default: 1)")
    gen.add_argument("--out", required=True, type=_tick_file_out, help="the file to write: .csv or the binary .otk")
    _config_option(gen, "the config whose instruments (symbols, tick sizes) get ticks")
    gen.add_argument("--interval-ms", type=_positive, default=1000.0,
                     help="mean gap between an instrument's ticks, in milliseconds (default: 1000)")
    gen.set_defaults(func=cmd_ticks_generate)

    candle_cli.register(data_cli.register(sub))

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = cfg.add_parser("check", help="validate a config file, compile its strategies, list every error")
    check.add_argument("file", help="the config file to check")
    check.add_argument("--live", action="store_true",
                       help="for otrade run --live: session hours the exchange or Zerodha would defeat are errors")
    check.set_defaults(func=cmd_config_check)

    strat = sub.add_parser("strategy", help="strategies").add_subparsers(dest="strategy_command", required=True)
    new = strat.add_parser("new", help="write a commented strategy file to start from, and its test")
    new.add_argument("name", help="the strategy's name, a Python name: NAME.py and test_NAME.py are written")
    _config_option(new, "the config whose strategies folder gets it")
    new.add_argument("--dir", help="write it here instead (default: strategies/ beside the config)")
    new.set_defaults(func=cmd_strategy_new)
    listing = strat.add_parser("list", help="every strategy the config can name, with its parameters")
    _config_option(listing, "the config whose strategies folder to list")
    listing.set_defaults(func=cmd_strategy_list)

    audit = sub.add_parser("audit", help="replay a recorded day through the backtest and compare it with its journal")
    audit.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day to audit")
    _config_option(audit, "the config the day ran on (its journalled changes are replayed at their times)")
    audit.add_argument("--rehearsal", action="store_true",
                       help="audit the day's rehearsal (otrade run --clock): its journal and recording")
    audit.set_defaults(func=cmd_audit)

    warm = sub.add_parser("warm", help="compile the strategies and kernels into Numba's cache ahead of the runs")
    _config_option(warm, "the config whose strategies to compile")
    warm.add_argument("--only", choices=WARM_PARTS,
                      help="only what otrade run calls, or only the backtest's loop (default: both)")
    # a paper start's child: the kernels it leaves to its parent, and those paper never calls
    warm.add_argument("--skip", type=lambda text: text.split(","), default=[], help=argparse.SUPPRESS)
    warm.set_defaults(func=cmd_warm)
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line's command; as the process itself (``argv`` None), a backtest's ends it at once."""
    args = parser().parse_args(argv)
    code = _command(args)
    if argv is None and args.func is cmd_backtest:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process without tearing the interpreter down: freeing Numba's and LLVM's objects one by
    one costs a warm ``otrade backtest`` 0.1 s of its 0.7 (measured for issue 23); the OS frees them
    at once. What Python runs at exit for the program still runs (atexit: logging's flush, finalizers)."""
    import atexit

    atexit._run_exitfuncs()
    with contextlib.suppress(OSError):  # a reader gone: main already said so in the exit status
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _command(args: argparse.Namespace) -> int:
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader gone (``| head``) shows here, not as a warning at exit
        return code
    except BrokenPipeError:
        # the reader has what it wanted: stop quietly with a shell's status for it (128 + SIGPIPE);
        # stdout points at /dev/null so the flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing, unreadable or unwritable file: say which, without a traceback
        print(f"error: {_error(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
