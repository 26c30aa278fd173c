"""Kite's historical candles into the candle store (``otrade data fetch``).

A symbol's range, less what its file says is fetched already, is asked for in as few requests as
Kite's range limit per interval allows (``MAX_DAYS``: calendar days per request, both ends
counted), at most 3 a second with every retry counted, each request's place held until a second
after its answer, 429s and 5xx retried with tenacity (the REST client's ``historical``). Each
answer is stored as it arrives, the candles and the fetched range replaced together in one file, so
an interrupted fetch goes on where it stopped and what is stored is never asked for again.
Candles still forming (the one in progress, a ``day`` candle of today) are left for a later fetch.
A trading day, or part of one, that Kite's answer lacks is named in a warning: it is stored as
Kite gave it.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.brokers.kite.rest import KiteError, KiteREST
from engine.core.layout import IST, NS_PER_S
from engine.data import candles as store
from engine.data.candles import INTERVAL_SECONDS, Candles, kite_time
from engine.services.calendar import TradingCalendar

MAX_DAYS = {"minute": 60, "3minute": 100, "5minute": 100, "10minute": 100, "15minute": 200, "30minute": 200,
            "60minute": 400, "day": 2000}
IN_FLIGHT = 3  # requests at once: as many as Kite takes in a second, each answer taking about one
DAY_S = 86_400
SHOWN_GAPS = 3  # gaps named in a warning; the rest are counted


class FetchError(Exception):
    """A fetch that cannot start or go on; one line, safe to show (Kite's own words, no secrets)."""


@dataclass
class Fetched:
    symbol: str
    file: Path
    requests: int = 0  # spans asked for (retries not counted)
    candles: int = 0  # candles Kite answered with
    stored: int = 0  # candles in the file afterwards
    missing: int = 0  # candles of trading days that the answers lacked
    gaps: list[tuple[int, str]] = field(default_factory=list)  # (where it starts, epoch s; what)


def _midnight(epoch_s: int) -> int:
    return int(datetime.fromtimestamp(epoch_s, IST).replace(hour=0, minute=0, second=0).timestamp())


def missing(start: int, end: int, fetched: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``start..end`` (epoch seconds, both included) outside the ``fetched`` ranges."""
    out, at = [], start
    for a, b in store.merge_ranges(fetched):
        if b < at:
            continue
        if a > end:
            break
        if a > at:
            out.append((at, a - 1))
        at = b + 1
    if at <= end:
        out.append((at, end))
    return out


def plan(start: int, end: int, interval: str, fetched: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """The spans to ask Kite for: what is missing, each part cut at ``MAX_DAYS`` calendar days, so
    a part of D calendar days takes ceil(D / limit) requests, the fewest the limit allows."""
    spans = []
    for a, b in missing(start, end, fetched):
        while a <= b:
            stop = min(b, _midnight(a) + MAX_DAYS[interval] * DAY_S - 1)
            spans.append((a, stop))
            a = stop + 1
    return spans


def forming(now: datetime, interval: str) -> int:
    """Where the candles still forming at ``now`` start (epoch s): a fetch ends before it."""
    midnight = _midnight(int(now.timestamp()))
    if interval == "day":
        return midnight
    step = INTERVAL_SECONDS[interval]
    t = int(now.timestamp()) - midnight
    opens, closes = 9 * 3600 + 15 * 60, 15 * 3600 + 30 * 60  # Kite's candles follow NSE's session
    return midnight + opens + (t - opens) // step * step if opens <= t < closes else int(now.timestamp())


def from_kite(rows: list[list], start: int, end: int) -> Candles:
    """Kite's ``[timestamp, open, high, low, close, volume]`` rows as candles covering ``start..end``."""
    ts = np.array([int(datetime.fromisoformat(r[0]).timestamp()) for r in rows], np.int64) * NS_PER_S
    values = np.array([r[1:6] for r in rows], np.float64).reshape(-1, 5)
    order = np.argsort(ts, kind="stable")
    return Candles(ts[order], *values[order].T, fetched=((start, end),))


def gaps(got: np.ndarray, start: int, end: int, interval: str,
         calendar: TradingCalendar) -> tuple[list[tuple[int, str]], int]:
    """What ``start..end`` should hold on the days NSE trades and ``got`` (candle starts, epoch s)
    lacks: (its first start, a description) per run of missing candles, and how many are missing."""
    step = INTERVAL_SECONDS[interval]
    expected, day_of = [], []
    day = datetime.fromtimestamp(start, IST).date()
    while day <= datetime.fromtimestamp(end, IST).date():
        session = calendar.session(day)
        if session is not None:
            first = int(datetime.combine(day, datetime.min.time(), IST).timestamp()) if interval == "day" \
                else int(session.open.timestamp())
            last = first if interval == "day" else int(session.close.timestamp()) - 1
            starts = [t for t in range(first, last + 1, step) if start <= t <= end]
            expected += starts
            day_of += [day] * len(starts)
        day += timedelta(days=1)
    if not expected:
        return [], 0
    exp = np.array(expected, np.int64)
    lack = ~np.isin(exp, got)
    days = np.array(day_of)
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], lack.astype(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2] - 1, strict=True):
        whole = (a == 0 or days[a - 1] != days[a]) and (b == len(exp) - 1 or days[b + 1] != days[b])
        if whole:
            n_days = len(set(days[a:b + 1].tolist()))
            out.append((int(exp[a]), f"no candles on {days[a]}" if n_days == 1 else
                        f"no candles on the {n_days} trading days from {days[a]} to {days[b]}"))
        else:
            lo, hi = (datetime.fromtimestamp(int(exp[k]), IST) for k in (a, b))
            until = f"{hi:%H:%M}" if lo.date() == hi.date() else f"{hi:%Y-%m-%d %H:%M}"
            out.append((int(exp[a]), f"{lo:%Y-%m-%d %H:%M} to {until} IST missing ({b - a + 1} candles)"))
    return out, int(lack.sum())


def describe_gaps(result: Fetched, interval: str) -> str:
    shown = "; ".join(text for _, text in sorted(result.gaps)[:SHOWN_GAPS])
    more = f"; and {len(result.gaps) - SHOWN_GAPS} more" if len(result.gaps) > SHOWN_GAPS else ""
    return f"{result.symbol} {interval}: Kite's answer has gaps ({result.missing:,} candles): {shown}{more}"


async def fetch(rest: KiteREST, symbols: Sequence[str], interval: str, start: int, end: int, data_dir: Path,
                now: datetime | None = None, progress: bool = False,
                warn: Callable[[str], None] = lambda line: None) -> list[Fetched]:
    """Fetch and store ``symbols``' candles from ``start`` to ``end`` (epoch s, both included)."""
    if interval not in MAX_DAYS:
        raise FetchError(f"unknown interval {interval!r}: one of {', '.join(MAX_DAYS)}")
    if start > end:
        raise FetchError(f"--from {kite_time(start)} is after --to {kite_time(end)}")
    if bad := [s for s in symbols if ":" not in s]:
        raise FetchError(f"symbol {', '.join(bad)} needs its exchange, e.g. NSE:INFY")
    limit = forming(now or datetime.now(IST), interval)
    if start >= limit:
        raise FetchError(f"the range {kite_time(start)} to {kite_time(end)} is in the future: "
                         f"no {interval} candle from {kite_time(limit)} on is complete yet")
    if end >= limit:
        warn(f"--to {kite_time(end)} is in the future: fetching to {kite_time(limit - 1)}, "
             f"the {interval} candles from then on are not complete yet")
        end = limit - 1
    known = {}
    try:
        for exchange in sorted({s.split(":")[0] for s in symbols}):
            known.update(await rest.instruments(exchange))
    except KiteError as exc:
        raise FetchError(f"Kite's instruments list: {exc.message}") from None
    if unknown := [s for s in symbols if s not in known]:
        raise FetchError(f"unknown symbol {', '.join(unknown)}: not in Kite's instruments list")

    results, state, spans = {}, {}, []
    for symbol in symbols:
        file = store.path(data_dir, interval, symbol)
        state[symbol] = store.read(file) if file.exists() else Candles(*[[]] * 6)
        results[symbol] = Fetched(symbol, file, stored=len(state[symbol]))
        spans += [(symbol, a, b) for a, b in plan(start, end, interval, state[symbol].fetched)]
    calendar = TradingCalendar()
    slots = asyncio.Semaphore(IN_FLIGHT)
    locks = {s: asyncio.Lock() for s in symbols}
    bar = tqdm(total=len(spans), unit="request", disable=not progress, leave=False)

    failed: list[str] = []  # after a failure no new request starts; the answers in flight are still stored

    async def one(symbol: str, a: int, b: int) -> None:
        async with slots:
            if failed:
                return
            try:
                rows = await rest.historical(known[symbol].token, interval, kite_time(a), kite_time(b))
            except KiteError as exc:
                failed.append(f"{symbol} {interval} {kite_time(a)} to {kite_time(b)}: {exc.message}")
                return
        got = from_kite(rows, a, b)
        found, lacking = gaps(got.ts // NS_PER_S, a, b, interval, calendar)
        result = results[symbol]
        async with locks[symbol]:
            state[symbol] = state[symbol].merged(got)
            try:
                await asyncio.to_thread(store.write, result.file, state[symbol])
            except OSError as exc:
                failed.append(f"{result.file}: {exc.strerror or exc}")
                return
        result.requests += 1
        result.candles += len(got)
        result.stored = len(state[symbol])
        result.gaps += found
        result.missing += lacking
        bar.update(1)

    try:
        await asyncio.gather(*(one(symbol, a, b) for symbol, a, b in spans))
    finally:
        bar.close()
        for result in results.values():
            if result.gaps:
                warn(describe_gaps(result, interval))
    if failed:
        done = sum(r.requests for r in results.values())
        raise FetchError(f"{failed[0]} ({done} of {len(spans)} requests answered and stored: "
                         f"the same command goes on from there)")
    return list(results.values())


def parse_time(text: str, end: bool = False) -> int:
    """``yyyy-mm-dd`` (the day's start, or with ``end`` its last second) or ``yyyy-mm-dd hh:mm:ss``, IST."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return int(datetime.combine(day + timedelta(days=end), datetime.min.time(), IST).timestamp()) - end
        return store.parse_kite_time(text)
    except ValueError:
        raise FetchError(f"{text!r} is not yyyy-mm-dd or 'yyyy-mm-dd hh:mm:ss'") from None
