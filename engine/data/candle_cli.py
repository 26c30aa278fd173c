"""``otrade data fetch`` (Kite's historical candles) and ``otrade data import`` (CSV candles from
elsewhere): ``register`` adds them to the ``data`` group."""

import argparse
import os
import sys
import time
from pathlib import Path

INTERVALS = "minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute or day"


def register(data: argparse._SubParsersAction) -> None:
    fetch = data.add_parser("fetch", help="Kite's historical candles into the data directory (resumable)")
    fetch.add_argument("--symbols", required=True, help="comma-separated, e.g. NSE:INFY,NSE:SBIN")
    fetch.add_argument("--from", dest="start", required=True, help="yyyy-mm-dd or 'yyyy-mm-dd hh:mm:ss' (IST)")
    fetch.add_argument("--to", dest="end", required=True, help="yyyy-mm-dd (the whole day) or 'yyyy-mm-dd hh:mm:ss'")
    fetch.add_argument("--interval", default="minute", help=f"{INTERVALS} (default: minute)")
    fetch.add_argument("--data-dir", help="the data directory (default: OTRADE_DATA_DIR, else data/)")
    fetch.set_defaults(func=cmd_fetch)

    imp = data.add_parser("import", help="candles from a CSV file (time, open, high, low, close[, volume])")
    imp.add_argument("file", help="the CSV file: a header, then one candle a row in time order")
    imp.add_argument("--symbol", help="e.g. NSE:INFY (default: from a file named NSE_INFY.csv)")
    imp.add_argument("--interval", default="minute", help=f"{INTERVALS} (default: minute)")
    imp.add_argument("--data-dir", help="the data directory (default: OTRADE_DATA_DIR, else data/)")
    imp.set_defaults(func=cmd_import)


def _data_dir(args: argparse.Namespace) -> Path:
    from engine.services.paths import data_dir_from_env

    return Path(args.data_dir) if args.data_dir else data_dir_from_env()


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _exchange_missing(symbols: list[str]) -> str | None:
    """``TCS: name the exchange, e.g. NSE:TCS`` for the first symbol without one, else None."""
    bare = next((s for s in symbols if ":" not in s), None)
    return f"{bare}: name the exchange, e.g. NSE:{bare}" if bare is not None else None


def _fetch_arguments(args: argparse.Namespace) -> tuple[list[str], int, int]:
    """The symbols and the span (epoch s) ``data fetch`` asks for, checked before credentials are
    looked for or Kite is called; FetchError saying what is wrong."""
    from datetime import datetime

    from engine.core.layout import IST
    from engine.data import fetch

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise fetch.FetchError("--symbols names no instrument, e.g. NSE:INFY,NSE:SBIN")
    if bare := _exchange_missing(symbols):
        raise fetch.FetchError(bare)
    if args.interval not in fetch.MAX_DAYS:
        raise fetch.FetchError(f"unknown interval {args.interval!r}: one of {INTERVALS}")
    try:
        start = fetch.parse_time(args.start)
    except fetch.FetchError as exc:
        raise fetch.FetchError(f"--from {exc}") from None
    try:
        end = fetch.parse_time(args.end, end=True)
    except fetch.FetchError as exc:
        raise fetch.FetchError(f"--to {exc}") from None
    if start > end:
        raise fetch.FetchError(f"--from {args.start} is after --to {args.end}")
    if start >= fetch.forming(datetime.now(IST), args.interval):
        raise fetch.FetchError(f"--from {args.start} is in the future: no {args.interval} candle of it is complete")
    return symbols, start, end


def cmd_fetch(args: argparse.Namespace) -> int:
    from engine.brokers.kite.live import access_token
    from engine.brokers.kite.rest import DEFAULT_BASE, KiteREST
    from engine.data import fetch

    try:
        symbols, start, end = _fetch_arguments(args)
    except fetch.FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    root = _data_dir(args)
    key, token = os.environ.get("KITE_API_KEY", ""), access_token(root)
    if not key or not token:
        missing = [n for n, v in (("KITE_API_KEY", key), ("KITE_ACCESS_TOKEN (or a token saved by /token)", token))
                   if not v]
        print(f"error: data fetch needs {' and '.join(missing)} in the environment", file=sys.stderr)
        return 1

    async def main() -> list[fetch.Fetched]:
        async with KiteREST(key, token, os.environ.get("KITE_API_BASE", DEFAULT_BASE)) as rest:
            started = time.perf_counter()
            try:
                return await fetch.fetch(rest, symbols, args.interval, start, end, root,
                                         progress=sys.stderr.isatty(), warn=_warn)
            finally:
                if rest.historical_requests:  # "0 requests" before an error says nothing
                    print(f"{rest.historical_requests} request(s) to Kite in {time.perf_counter() - started:.1f}s",
                          file=sys.stderr)

    import asyncio  # here: every command's start imports this file

    try:
        results = asyncio.run(main())
    except fetch.FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: what Kite had answered is stored; the same command goes on from there", file=sys.stderr)
        return 130
    for r in results:
        got = f"{r.candles:,} candles in {r.requests} request(s)" if r.requests else "all stored already, no request"
        print(f"{r.symbol} {args.interval}: {got}; {r.stored:,} stored in {r.file}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from engine.data.candles import CandleError, import_csv, symbol_of

    file = Path(args.file)
    if not file.is_file():
        print(f"error: {file} is missing: no such file" if not file.exists() else f"error: {file} is not a file",
              file=sys.stderr)
        return 1
    symbol = args.symbol or symbol_of(file)
    if not symbol:
        print(f"error: say which instrument {file.name} holds, e.g. --symbol NSE:INFY", file=sys.stderr)
        return 1
    if bare := _exchange_missing([symbol]):
        print(f"error: {bare}", file=sys.stderr)
        return 1
    try:
        candles, target = import_csv(file, symbol, args.interval, _data_dir(args))
    except CandleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"imported {len(candles):,} {args.interval} candles of {symbol} into {target}")
    return 0
