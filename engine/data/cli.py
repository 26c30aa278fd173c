"""``otrade data``: the store's commands. ``register`` adds the group and ``list``; it returns the
group's subparsers, so other modules add theirs (``fetch``, ``import``) beside it."""

import argparse
import sys
from datetime import date, datetime
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``otrade data`` under ``sub``; returns its subparsers: ``register(sub).add_parser("fetch", ...)``."""
    group = sub.add_parser("data", help="the tick and candle store").add_subparsers(dest="data_command",
                                                                                   required=True)
    ls = group.add_parser("list", help="days, instruments, ticks and size stored (ticks and candles)")
    ls.add_argument("--data-dir", help="the data directory (default: OTRADE_DATA_DIR, else data/)")
    ls.set_defaults(func=cmd_list)
    return group


def data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else the process's data directory."""
    from engine.services.paths import data_dir_from_env

    return Path(args.data_dir) if getattr(args, "data_dir", None) else data_dir_from_env()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[tuple[str, ...]], right: set[int]) -> str:
    """Aligned columns, the ``right`` ones (numbers) flush right, indented under their heading."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(v.rjust(w) if k in right else v.ljust(w)
                                       for k, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    from engine.core.layout import IST
    from engine.data.store import StoreError, list_candles, list_ticks

    root = data_dir(args)
    try:
        days, candles = list_ticks(root), list_candles(root)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not days and not candles:
        print(f"nothing stored in {root} yet: `otrade run` records ticks, `otrade data fetch` fetches candles")
        return 0
    if days:
        print(f"ticks ({root / 'ticks'}): {len(days)} day(s), {sum(d.ticks for d in days):,} ticks, "
              f"{_size(sum(d.size for d in days))}")
        rows = [("day", "kind", "instruments", "ticks", "size", "")]
        rows += [(d.day.isoformat(), d.kind, str(d.instruments), f"{d.ticks:,}", _size(d.size),
                  f"recording or cut short: {d.parts} part(s)" if d.parts else "") for d in days]
        print(_table(rows, {2, 3, 4}))
    if candles:
        print(f"candles ({root / 'candles'}): {len(candles)} set(s), {sum(c.candles for c in candles):,} candles, "
              f"{_size(sum(c.size for c in candles))}")
        rows = [("interval", "symbol", "candles", "from", "to", "size")]
        rows += [(c.interval, c.symbol, f"{c.candles:,}",
                  *(datetime.fromtimestamp(ns / 1e9, IST).date().isoformat() if ns is not None else "-"
                    for ns in (c.first_ns, c.last_ns)), _size(c.size)) for c in candles]
        print(_table(rows, {2, 5}))
    return 0


def day_span(text: str) -> tuple[date, date]:
    """``--date`` (argparse type): ``2026-11-23`` or ``2026-11-23:2026-11-27``, inclusive."""
    first, _, last = text.partition(":")
    try:
        span = date.fromisoformat(first), date.fromisoformat(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day or FROM:TO, e.g. 2026-11-23 or "
                                         "2026-11-23:2026-11-27") from None
    if span[1] < span[0]:
        raise argparse.ArgumentTypeError(f"{text!r} ends before it starts")
    return span
