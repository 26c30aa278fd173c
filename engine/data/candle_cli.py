"""``otrade data fetch`` (Kite's historical candles) and ``otrade data import`` (CSV candles from
elsewhere): ``register`` adds them to the ``data`` group."""

import argparse
import asyncio
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
    fetch.add_argument("--interval", default="minute", help=INTERVALS)
    fetch.add_argument("--data-dir", help="the data directory (default: OTRADE_DATA_DIR, else data/)")
    fetch.set_defaults(func=cmd_fetch)

    imp = data.add_parser("import", help="candles from a CSV file (time, open, high, low, close[, volume])")
    imp.add_argument("file")
    imp.add_argument("--symbol", help="e.g. NSE:INFY (default: from a file named NSE_INFY.csv)")
    imp.add_argument("--interval", default="minute", help=INTERVALS)
    imp.add_argument("--data-dir", help="the data directory (default: OTRADE_DATA_DIR, else data/)")
    imp.set_defaults(func=cmd_import)


def _data_dir(args: argparse.Namespace) -> Path:
    from engine.services.paths import data_dir_from_env

    return Path(args.data_dir) if args.data_dir else data_dir_from_env()


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def cmd_fetch(args: argparse.Namespace) -> int:
    from engine.brokers.kite.live import access_token
    from engine.brokers.kite.rest import DEFAULT_BASE, KiteREST
    from engine.data import fetch

    root = _data_dir(args)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
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
                return await fetch.fetch(rest, symbols, args.interval, fetch.parse_time(args.start),
                                         fetch.parse_time(args.end, end=True), root,
                                         progress=sys.stderr.isatty(), warn=_warn)
            finally:
                print(f"{rest.historical_requests} request(s) to Kite in {time.perf_counter() - started:.1f}s",
                      file=sys.stderr)

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

    symbol = args.symbol or symbol_of(Path(args.file))
    if not symbol or ":" not in symbol:
        print(f"error: say which instrument {Path(args.file).name} holds, e.g. --symbol NSE:INFY", file=sys.stderr)
        return 1
    try:
        candles, target = import_csv(Path(args.file), symbol, args.interval, _data_dir(args))
    except CandleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"imported {len(candles):,} {args.interval} candles of {symbol} into {target}")
    return 0
