"""Production metrics: ``GET /metrics`` in Prometheus' text format, on a registry of its own.

The tick path makes no prometheus_client call. The tick loops count into a ``TickMeter`` (plain
ints): every tick, and the latency of every tick the kernel decided on and of one in
``SAMPLE_EVERY`` of the rest, put in its bucket. Orders' final states, rejections and alerts are
counted from a bus subscription of their own (the events are published anyway); Kite's REST client
reports each request it makes (``KiteREST.on_request``). A custom collector turns all of it, and
what the engine, the recorder, the ticker and the registered gauges say, into metric families when
Prometheus scrapes.

Access: with ``OTRADE_METRICS_TOKEN`` set, a request needs ``Authorization: Bearer <token>``;
without it, only a loopback peer that no proxy forwarded. Anything else is a bare 401.
"""

import hmac
import ipaddress
import logging
import os
import re
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from engine.brokers.kite.rest import KiteError, KiteREST
from engine.brokers.kite.ticker import KiteTicker
from engine.data.recorder import Recorder
from engine.engine import Engine, State
from engine.live.venue import Refused
from engine.orders import FINAL, Status
from engine.services.events import ALERT, FILL, ORDER_PLACED, ORDER_UPDATED, Event, EventBus
from engine.services.logs import add_secret

log = logging.getLogger(__name__)

TOKEN_ENV = "OTRADE_METRICS_TOKEN"
SAMPLE_EVERY = 64  # a tick no decision came of is timed once in this many (a power of two: the loops test a mask)
SAMPLE_MASK = SAMPLE_EVERY - 1
NS = 1_000_000_000
# tick -> decision: a quiet tick is about a microsecond, one that orders tens of them
TICK_BOUNDS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
# a request to Kite: tens of milliseconds, up to the client's 7 s timeout
ROUND_TRIP_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ALERT_LEVELS = ("critical", "error", "warning", "info")
FINAL_IDS_KEPT = 100_000  # order ids remembered so that an order's final state counts once
_GAUGE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# Kite's refusal messages (and the paper venue's and OTrade's own) reduced to a fixed label set:
# a label never carries a message's text (prices, order ids, amounts), so the series stay few and
# nothing the trader typed or Kite echoed ends up in the exposition. First match wins.
_REASONS = (
    ("not_sent", r"^not sent\b"),  # OTrade held the order back (caps, an expired session) before Kite saw it
    ("rate_limited", r"too many requests"),
    ("modification_cap", r"modifications exceeded"),
    ("order_request_cap", r"order requests.*exceeded"),
    ("margin", r"margin|insufficient fund"),
    ("circuit_limit", r"circuit"),
    ("tick_size", r"tick size"),
    ("stop_limit_price", r"^price for stoploss"),
    ("trigger_price", r"trigger price"),
    ("market_protection", r"market protection"),
    ("quantity", r"quantity|lot size|freeze"),
    ("order_state", r"cannot be (modified|cancelled)|being processed"),
    ("unknown_order", r"invalid .?order_id"),
    ("instrument", r"unknown symbol|invalid .?(tradingsymbol|instrument|exchange)"),
    ("market_closed", r"market.{0,20}closed|outside .{0,20}hours"),
    ("static_ip", r"static ip"),
    ("session", r"token|session"),
)
_REASON_PATTERNS = tuple((label, re.compile(pattern, re.IGNORECASE)) for label, pattern in _REASONS)
_BY_ERROR_TYPE = {"TokenException": "session", "PermissionException": "permission", "MarginException": "margin",
                  "InputException": "input", "OrderException": "order"}
REASONS = (*(label for label, _ in _REASONS), "permission", "input", "order", "other")


def refusal_reason(message: str, error_type: str = "") -> str:
    """One of ``REASONS`` for a refusal's message (Kite's ``error_type`` where the words say nothing known)."""
    for label, pattern in _REASON_PATTERNS:
        if pattern.search(message):
            return label
    return _BY_ERROR_TYPE.get(error_type, "other")


class Buckets:
    """A histogram in plain ints, in nanoseconds: ``add`` is one bisect and two additions."""

    __slots__ = ("bounds_ns", "bounds_s", "counts", "sum_ns")

    def __init__(self, bounds_s: tuple[float, ...]) -> None:
        self.bounds_s = bounds_s
        self.bounds_ns = tuple(round(b * NS) for b in bounds_s)
        self.counts = [0] * (len(bounds_s) + 1)  # the last: above every bound
        self.sum_ns = 0

    def add(self, ns: int) -> None:
        self.counts[bisect_left(self.bounds_ns, ns)] += 1  # le: a value on a bound counts in that bucket
        self.sum_ns += ns

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(floatToGoString, self.bounds_s), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class TickMeter:
    """What the tick loops count. Per tick: ``ticks += 1``; for a tick the kernel decided on (its
    answer above 0) and for every ``SAMPLE_EVERY``-th tick, ``took(ns, act)``."""

    __slots__ = ("decided", "quiet", "source", "ticks")

    def __init__(self, source: str = "paper") -> None:
        self.source = source  # the label of the feed: synthetic, replay or kite
        self.ticks = 0
        self.decided = Buckets(TICK_BOUNDS_S)  # every tick that made a decision
        self.quiet = Buckets(TICK_BOUNDS_S)  # one in SAMPLE_EVERY of the rest

    def took(self, ns: int, act: int) -> None:
        (self.decided if act > 0 else self.quiet).add(max(ns, 0))  # a wall clock stepped back: 0, not negative


class Gauges:
    """Values read at scrape time, registered by whoever has them (a chat transport's outbox, say):
    each is exposed as ``otrade_<name>``."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, Callable[[], float]]] = {}

    def add(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        if not _GAUGE_NAME.match(name):
            raise ValueError(f"gauge name {name!r}: lower-case letters, digits and _ only, a letter first")
        if name in self._items:
            raise ValueError(f"gauge {name!r} is registered already")
        self._items[name] = (documentation, read)

    def items(self) -> list[tuple[str, str, Callable[[], float]]]:
        return [(name, doc, read) for name, (doc, read) in self._items.items()]


class Metrics:
    """The process's metrics. ``run`` is a task (the bus subscription's consumer); ``watch_kite``
    takes Kite's REST client and ticker in live mode; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self, engine: Engine, bus: EventBus, meter: TickMeter, gauges: Gauges,
                 recorder: Callable[[], Recorder | None] = lambda: None) -> None:
        self.engine, self.meter, self.gauges, self._recorder = engine, meter, gauges, recorder
        self._events = bus.subscribe()
        self.ticker: KiteTicker | None = None
        self.round_trips: dict[str, Buckets] = {}  # by call
        self.refusals: dict[tuple[str, str], int] = {}  # (call, reason) -> answers
        self.final: dict[str, int] = {}  # final status -> orders
        self.rejections: dict[str, int] = {}  # reason -> orders rejected
        self.alerts = dict.fromkeys((*ALERT_LEVELS, "other"), 0)
        self._final_ids: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # CPU, memory, open files: read from /proc at scrape time

    def watch_kite(self, rest: KiteREST, ticker: KiteTicker) -> None:
        rest.on_request = self.request
        self.ticker = ticker

    def request(self, call: str, ns: int, error: KiteError | None) -> None:
        """One request to Kite: its round trip, and what Kite refused (not an unknown outcome)."""
        trips = self.round_trips.get(call)
        if trips is None:
            trips = self.round_trips[call] = Buckets(ROUND_TRIP_BOUNDS_S)
        trips.add(ns)
        if isinstance(error, Refused):
            key = (call, refusal_reason(error.message, error.error_type))
            self.refusals[key] = self.refusals.get(key, 0) + 1

    async def run(self) -> None:
        while True:
            self._count(await self._events.get())

    def catch_up(self) -> None:
        """The events published since the task last ran: a scrape sees everything before it."""
        while (event := self._events.get_nowait()) is not None:
            self._count(event)

    def _count(self, event: Event) -> None:
        d = event.data
        if event.kind == ALERT:
            level = d.get("level")
            self.alerts[level if level in ALERT_LEVELS else "other"] += 1
        elif event.kind in (ORDER_PLACED, ORDER_UPDATED, FILL) and d.get("status") in FINAL:
            order_id = d.get("order_id")
            if order_id in self._final_ids:
                return
            self._final_ids[order_id] = None
            if len(self._final_ids) > FINAL_IDS_KEPT:
                del self._final_ids[next(iter(self._final_ids))]
            state = str(d["status"]).lower()
            self.final[state] = self.final.get(state, 0) + 1
            if d["status"] == Status.REJECTED:
                reason = refusal_reason(str(d.get("status_message") or ""))
                self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and its content type (OpenMetrics when the scraper asks for it)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class _Collector:
    """Everything, as metric families, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        m.catch_up()
        meter, engine = m.meter, m.engine
        ticks = CounterMetricFamily("otrade_ticks_received", "Ticks handed to the engine", labels=["source"])
        ticks.add_metric([meter.source], meter.ticks)
        yield ticks
        latency = HistogramMetricFamily(
            "otrade_tick_decision_seconds", f"Tick to decision: every tick the kernel decided on "
            f"(outcome=decision) and one in {SAMPLE_EVERY} of the rest (outcome=none)", labels=["outcome"])
        for outcome, buckets in (("decision", meter.decided), ("none", meter.quiet)):
            latency.add_metric([outcome], buckets.cumulative(), buckets.sum_ns / NS)
        yield latency
        recorder, ticker = m._recorder(), m.ticker
        if recorder is not None:
            yield CounterMetricFamily("otrade_ticks_recorded", "Ticks written to the day's Parquet file",
                                      value=recorder.recorded)
        dropped = CounterMetricFamily("otrade_ticks_dropped", "Ticks lost: the recorder's writer was behind "
                                      "(recorder_behind) or failed (write_error); ticks Kite sent again after a "
                                      "reconnect, not delivered twice (duplicate)", labels=["reason"])
        if recorder is not None:
            dropped.add_metric(["recorder_behind"], recorder.dropped)
            dropped.add_metric(["write_error"], recorder.failed)
        if ticker is not None:
            dropped.add_metric(["duplicate"], ticker.duplicates)
        yield dropped
        if ticker is not None:
            yield CounterMetricFamily("otrade_ticker_reconnects", "Kite ticker connections lost and made again",
                                      value=ticker.reconnects)
            yield GaugeMetricFamily("otrade_ticker_connected", "1 while Kite's ticker is connected",
                                    value=float(ticker.connected))
        trips = HistogramMetricFamily("otrade_broker_round_trip_seconds", "Requests to Kite, answered or not "
                                      "(one that timed out counts its wait), by call", labels=["call"])
        for call, buckets in sorted(m.round_trips.items()):
            trips.add_metric([call], buckets.cumulative(), buckets.sum_ns / NS)
        yield trips
        refusals = CounterMetricFamily("otrade_broker_refusals", "Kite's refusals (it did not do what was asked), "
                                       "by call and reason", labels=["call", "reason"])
        for (call, reason), n in sorted(m.refusals.items()):
            refusals.add_metric([call, reason], n)
        yield refusals
        final = CounterMetricFamily("otrade_orders_final", "Orders that reached a final state", labels=["state"])
        for state in sorted(s.lower() for s in FINAL):
            final.add_metric([state], m.final.get(state, 0))
        yield final
        rejected = CounterMetricFamily("otrade_order_rejections", "Orders that ended rejected, by reason",
                                       labels=["reason"])
        for reason, n in sorted(m.rejections.items()):
            rejected.add_metric([reason], n)
        yield rejected
        alerts = CounterMetricFamily("otrade_alerts", "Alerts raised, by level", labels=["level"])
        for level, n in m.alerts.items():
            alerts.add_metric([level], n)
        yield alerts
        yield CounterMetricFamily("otrade_metrics_events_missed", "Events the metrics' bus subscription shed "
                                  "(the counts above are short by these)", value=m._events.dropped)
        state = GaugeMetricFamily("otrade_engine_state", "1 for the engine's state, 0 for the others",
                                  labels=["state"])
        for s in State:
            state.add_metric([str(s)], float(engine.state == s))
        yield state
        yield GaugeMetricFamily("otrade_broker_session_ok", "0 while the broker's session (token) is expired",
                                value=float(engine.token_ok))
        pnl = engine.pnl()
        yield GaugeMetricFamily("otrade_pnl_net_rupees", "Today's net P&L after charges (the loss limit's measure)",
                                value=pnl["net"])
        yield GaugeMetricFamily("otrade_charges_rupees", "Today's charges", value=pnl["charges"])
        yield GaugeMetricFamily("otrade_daily_loss_limit_rupees", "risk.max_daily_loss",
                                value=float(engine.cfg.risk.max_daily_loss))
        for name, doc, read in m.gauges.items():
            try:
                value = float(read())
            except Exception:  # one broken reading must not cost the scrape
                log.exception("metrics: gauge %s could not be read", name)
                continue
            yield GaugeMetricFamily(f"otrade_{name}", doc, value=value)


def _local(request: web.Request) -> bool:
    """A loopback peer, and not a proxy's forward of someone else's request."""
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False
    try:
        ip = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def allowed(request: web.Request, token: str) -> bool:
    """The bearer token when one is configured, else a local peer."""
    if not token:
        return _local(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def handler(metrics: Metrics, token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics``; ``token``: OTRADE_METRICS_TOKEN ("" for local peers only), never logged."""
    add_secret(token)

    async def serve_metrics(request: web.Request) -> web.Response:
        if not allowed(request, token):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return serve_metrics


def handler_from_env(metrics: Metrics | None) -> Callable[[web.Request], Awaitable[web.Response]] | None:
    """``GET /metrics`` guarded by ``OTRADE_METRICS_TOKEN`` (None: the process keeps no metrics)."""
    return None if metrics is None else handler(metrics, os.environ.get(TOKEN_ENV, "").strip())
