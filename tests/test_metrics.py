"""GET /metrics: what happened in a session, scraped in Prometheus' text format, to the right peers only."""

import argparse
import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.app import attach
from config import ConfigManager
from engine.brokers.kite.live import KiteLive, credentials
from engine.brokers.paper import PaperBroker
from engine.core import layout as L
from engine.data.feeds import ReplayFeed
from engine.data.recorder import Recorder
from engine.engine import Engine, State
from engine.orders import OrderRequest, OrderType, Purpose, Side
from engine.runtime.app import Runtime, _measure, _pump, _serve, _wire_kite
from engine.runtime.metrics import SAMPLE_EVERY, TOKEN_ENV, handler_from_env, refusal_reason
from engine.runtime.web import make_app, serve
from engine.services import logs
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.botapi import FakeBotAPI
from tests.conftest import DEFAULT, make_config, make_ticks, ns, seconds
from tests.kite_server import API_KEY, API_SECRET, STATIC_IP_REFUSAL, FakeKite
from tests.waiting import until

INFY = 408065
QUIET = 130  # flat ticks before the cross: enough for the one-in-SAMPLE_EVERY samples to show
TYPES = {  # the README's table
    "otrade_ticks_received": "counter", "otrade_ticks_recorded": "counter", "otrade_ticks_dropped": "counter",
    "otrade_tick_decision_seconds": "histogram", "otrade_broker_round_trip_seconds": "histogram",
    "otrade_broker_refusals": "counter", "otrade_orders_final": "counter", "otrade_order_rejections": "counter",
    "otrade_alerts": "counter", "otrade_metrics_events_missed": "counter", "otrade_engine_state": "gauge",
    "otrade_broker_session_ok": "gauge", "otrade_pnl_net_rupees": "gauge", "otrade_charges_rupees": "gauge",
    "otrade_daily_loss_limit_rupees": "gauge", "otrade_last_tick_age_seconds": "gauge",
}
LIVE_TYPES = {"otrade_ticker_reconnects": "counter", "otrade_ticker_connected": "gauge"}


class Clock:
    def __init__(self) -> None:
        self.now = ns("10:05:00")

    def now_ns(self) -> int:
        return self.now


@dataclass
class Scrape:
    status: int
    text: str

    def families(self) -> dict:
        return {f.name: f for f in text_string_to_metric_families(self.text)}

    def value(self, sample: str, **labels: str) -> float:
        found = [s.value for f in text_string_to_metric_families(self.text) for s in f.samples
                 if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, f"{sample} {labels}: {found}"
        return found[0]

    def labels(self, sample: str, label: str) -> set[str]:
        return {s.labels[label] for f in text_string_to_metric_families(self.text) for s in f.samples
                if s.name == sample}


async def scrape(base: str, token: str | None = None, **headers: str) -> Scrape:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics", headers=headers) as response:
        return Scrape(response.status, await response.text())


@contextlib.asynccontextmanager
async def server(rt: Runtime, remote: str | None = None) -> AsyncIterator[str]:
    """/metrics on 127.0.0.1; ``remote``: every request is taken as that peer's (what a peer elsewhere looks like)."""
    app = make_app(rt.health_report, metrics=handler_from_env(rt.metrics))
    if remote is not None:
        @web.middleware
        async def elsewhere(request: web.Request, handler):
            return await handler(request.clone(remote=remote))

        app.middlewares.append(elsewhere)
    runner = await serve(app, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def runtime(tmp_path, engine: Engine, bus: EventBus, clock, source: str, config=None) -> Runtime:
    manager = config or ConfigManager(tmp_path / "c.json", tmp_path, default_catalog())
    rt = Runtime(argparse.Namespace(console=False), manager, engine, bus, clock, tmp_path / "data", LogBuffer(),
                 started_ns=clock.now_ns())
    _measure(rt, source)
    return rt


def acts_of(engine: Engine) -> list[int]:
    """The kernel's answer to each tick the engine takes from now on, in order."""
    acts: list[int] = []
    on_tick = engine.on_tick

    def seen(*tick) -> int:
        acts.append(act := on_tick(*tick))
        return act

    engine.on_tick = seen
    return acts


# --- a paper session -------------------------------------------------------------------------------
@dataclass
class PaperDay:
    rt: Runtime
    acts: list[int]  # the kernel's answer to each tick, in order
    base: str
    fed: int


@pytest.fixture
async def paper_day(tmp_path, monkeypatch) -> AsyncIterator[PaperDay]:
    """A paper engine fed a replay: flat ticks, a cross that buys, a fill, the target hit; then an alert
    and an order the venue rejects (off the tick grid). The ticks are recorded; /metrics on 127.0.0.1."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    clock, bus = Clock(), EventBus()
    engine = Engine(make_config(), PaperBroker({"NSE:INFY": 0.05}, clock.now_ns), bus,
                    Journal(tmp_path / "data", clock.now_ns), clock.now_ns)
    engine.start_session()
    rt = runtime(tmp_path, engine, bus, clock, "replay")
    rt.recorder = Recorder(tmp_path / "data", ["NSE:INFY"], synthetic=True, now_ns=clock.now_ns)
    acts = acts_of(engine)
    prices = [100.0] * QUIET + [99.0, 101.0, 101.5, 104.0] + [104.0] * 10
    await _pump(rt, ReplayFeed(make_ticks(seconds("10:00:00", prices)), 0, clock), replay=False)
    await rt.recorder.close()
    engine.alert("disk nearly full", critical=False, level="warning")
    engine.send_order(0, Side.BUY, OrderType.LIMIT, Purpose.ENTRY, price=100.03)
    async with server(rt) as base:
        yield PaperDay(rt, acts, base, len(prices))


async def test_the_exposition_parses_with_the_documented_names_and_types(paper_day):
    got = await scrape(paper_day.base)
    assert got.status == 200
    families = got.families()
    assert {name: families[name].type for name in TYPES} == TYPES


async def test_every_tick_of_the_feed_is_counted_by_its_source(paper_day):
    got = await scrape(paper_day.base)
    assert got.value("otrade_ticks_received_total", source="replay") == paper_day.fed == len(paper_day.acts)


async def test_recorded_ticks_are_the_recorders_count(paper_day):
    got = await scrape(paper_day.base)
    assert got.value("otrade_ticks_recorded_total") == paper_day.rt.recorder.recorded == paper_day.fed
    assert got.value("otrade_ticks_dropped_total", reason="recorder_behind") == 0


async def test_the_latency_histogram_counts_every_decision_and_one_in_n_of_the_rest(paper_day):
    acts = paper_day.acts
    decisions = sum(act > 0 for act in acts)
    sampled = sum(act <= 0 for k, act in enumerate(acts, 1) if k % SAMPLE_EVERY == 0)
    got = await scrape(paper_day.base)
    assert decisions >= 2 and sampled >= 2  # the entry order and its fill; the flat ticks'
    assert got.value("otrade_tick_decision_seconds_count", outcome="decision") == decisions
    assert got.value("otrade_tick_decision_seconds_count", outcome="none") == sampled
    assert got.value("otrade_tick_decision_seconds_bucket", outcome="decision", le="+Inf") == decisions
    assert 0 < got.value("otrade_tick_decision_seconds_sum", outcome="decision") < decisions * 0.1


async def test_each_order_counts_once_in_its_final_state(paper_day):
    got = await scrape(paper_day.base)
    finals = {s: got.value("otrade_orders_final_total", state=s) for s in ("complete", "cancelled", "rejected")}
    # the entry and its target filled, the stop went with the target; the off-grid order was rejected
    assert finals == {"complete": 2, "cancelled": 1, "rejected": 1}
    assert [t["exit_reason"] for t in paper_day.rt.engine.trades()] == ["target"]


async def test_a_rejection_is_counted_by_a_reason_label_not_by_its_words(paper_day):
    got = await scrape(paper_day.base)
    assert got.value("otrade_order_rejections_total", reason="tick_size") == 1
    assert "100.03" not in got.text and "multiple" not in got.text


async def test_alerts_are_counted_by_level(paper_day):
    got = await scrape(paper_day.base)
    levels = {level: got.value("otrade_alerts_total", level=level) for level in ("critical", "warning", "info")}
    assert levels == {"critical": 0, "warning": 1, "info": 0}


async def test_net_pnl_and_state_are_the_engines(paper_day):
    engine = paper_day.rt.engine
    got = await scrape(paper_day.base)
    net = sum(t["net_pnl"] for t in engine.trades())
    assert net > 0
    assert got.value("otrade_pnl_net_rupees") == pytest.approx(engine.pnl()["net"]) == pytest.approx(net)
    assert got.value("otrade_charges_rupees") == pytest.approx(engine.pnl()["charges"])
    assert got.value("otrade_daily_loss_limit_rupees") == engine.cfg.risk.max_daily_loss
    assert {s: got.value("otrade_engine_state", state=s) for s in State} == {
        s: float(s == State.RUNNING) for s in State}
    engine.pause("by hand")
    assert (await scrape(paper_day.base)).value("otrade_engine_state", state="PAUSED") == 1


async def test_the_last_tick_age_is_read_on_the_runtimes_clock(paper_day):
    rt = paper_day.rt
    got = await scrape(paper_day.base)
    assert got.value("otrade_last_tick_age_seconds") == pytest.approx((rt.clock.now_ns() - rt.last_tick_ns) / 1e9)


async def test_a_transport_may_register_a_gauge_and_a_bad_name_changes_nothing(paper_day):
    rt = paper_day.rt
    depth = [3]
    rt.gauges.add("queue_depth", "a test queue", lambda: depth[0])
    with pytest.raises(ValueError, match="lower-case letters"):
        rt.gauges.add("Queue-Depth", "bad", lambda: 1)
    with pytest.raises(ValueError, match="registered already"):
        rt.gauges.add("queue_depth", "twice", lambda: 1)
    assert (await scrape(paper_day.base)).value("otrade_queue_depth") == 3
    depth[0] = 0
    got = await scrape(paper_day.base)
    assert got.value("otrade_queue_depth") == 0
    assert not any(name.lower().startswith("otrade_queue_depth") and name != "otrade_queue_depth"
                   for name in got.families())


# --- access ----------------------------------------------------------------------------------------
async def test_without_a_token_a_peer_elsewhere_gets_401_and_nothing_else(paper_day):
    async with server(paper_day.rt, remote="203.0.113.7") as base:
        got = await scrape(base)
    assert got.status == 401
    assert "otrade" not in got.text and "#" not in got.text


async def test_without_a_token_a_request_a_proxy_forwarded_is_not_local(paper_day):
    got = await scrape(paper_day.base, **{"X-Forwarded-For": "198.51.100.4"})
    assert got.status == 401 and "otrade" not in got.text


async def test_with_a_token_only_its_bearer_scrapes_even_from_localhost(paper_day, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "metrics-token-5f3a9c")
    async with server(paper_day.rt) as base:
        assert (await scrape(base, "metrics-token-5f3a9c")).status == 200
        for wrong in (await scrape(base, "metrics-token-5f3a9d"), await scrape(base)):
            assert wrong.status == 401 and "otrade" not in wrong.text
    async with server(paper_day.rt, remote="203.0.113.7") as base:
        assert (await scrape(base, "metrics-token-5f3a9c")).status == 200


async def test_the_metrics_token_is_redacted_from_logs(paper_day, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "metrics-token-77b1e0")
    handler_from_env(paper_day.rt.metrics)
    assert logs.redact("scrape with metrics-token-77b1e0 failed") == "scrape with *** failed"


async def test_the_process_server_serves_metrics_beside_healthz(paper_day, monkeypatch):
    monkeypatch.setenv("PORT", "0")
    runner = await _serve(paper_day.rt, make_config(server={"host": "127.0.0.1"}).server, None)
    try:
        host, port = runner.addresses[0][:2]
        got = await scrape(f"http://{host}:{port}")
    finally:
        await runner.cleanup()
    assert got.status == 200 and got.value("otrade_ticks_received_total", source="replay") == paper_day.fed


# --- refusal reasons -------------------------------------------------------------------------------
@pytest.mark.parametrize(("message", "error_type", "reason"), [
    ("Too many requests", "NetworkException", "rate_limited"),
    (STATIC_IP_REFUSAL, "PermissionException", "static_ip"),
    ("Trigger price for stoploss sell orders should be lower than the last traded price.", "InputException",
     "trigger_price"),
    ("Price for stoploss buy orders should be higher than or equal to the trigger price.", "InputException",
     "stop_limit_price"),
    ("Trigger price cannot be below the lower circuit price", "InputException", "circuit_limit"),
    ("Insufficient funds. Required margin is 95417.84 but available margin is 74251.80.", "MarginException",
     "margin"),
    ("Maximum allowed order modifications exceeded", "InputException", "modification_cap"),
    ("Order cannot be cancelled as it is COMPLETE", "OrderException", "order_state"),
    ("not sent: 6 orders for NSE:INFY in the last minute (risk cap)", "", "not_sent"),
    ("Incorrect `api_key` or `access_token`.", "TokenException", "session"),
    ("RMS:Rule: something new from the exchange for ABC123", "OrderException", "order"),
    ("words nobody has seen", "", "other"),
])
def test_a_refusal_message_reduces_to_a_fixed_label(message, error_type, reason):
    assert refusal_reason(message, error_type) == reason


# --- live, against the local Kite ------------------------------------------------------------------
@dataclass
class LiveDay:
    rt: Runtime
    kite: FakeKite
    live: KiteLive
    base: str
    acts: list[int]


@pytest.fixture
async def live_day(tmp_path, monkeypatch) -> AsyncIterator[LiveDay]:
    """The live wiring (``_wire_kite``) against the local Kite, credentials from the environment, the
    ticker running; /metrics on 127.0.0.1 behind a bearer token."""
    kite = FakeKite()
    await kite.start()
    for name, value in (("KITE_API_BASE", kite.base), ("KITE_WS_URL", kite.base.replace("http", "ws") + "/ws"),
                        ("KITE_API_KEY", API_KEY), ("KITE_API_SECRET", API_SECRET),
                        ("KITE_ACCESS_TOKEN", kite.access_token), (TOKEN_ENV, "metrics-token-live-1")):
        monkeypatch.setenv(name, value)
    clock, bus = Clock(), EventBus()
    creds, missing = credentials(tmp_path / "data")
    assert not missing
    journal = Journal(tmp_path / "data", clock.now_ns)
    live = KiteLive(creds, tmp_path / "data", journal, clock.now_ns, ["NSE:INFY"], {"NSE:INFY": 0.1}, 10)
    await live.prepare()
    engine = Engine(make_config(tick_size=0.1), live.broker, bus, journal, clock.now_ns)
    engine.start_session()
    rt = runtime(tmp_path, engine, bus, clock, "kite")
    rt.recorder = Recorder(tmp_path / "data", ["NSE:INFY"], synthetic=False, quotes=True, now_ns=clock.now_ns)
    acts = acts_of(engine)
    _wire_kite(rt, live)
    feed = asyncio.create_task(rt.tasks["feed"]())
    try:
        await until(lambda: live.ticker.connected and kite.modes)
        async with server(rt) as base:
            yield LiveDay(rt, kite, live, base, acts)
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        await rt.recorder.close()
        await live.rest.close()
        await kite.stop()


async def settled(day: LiveDay, order_id: str, *statuses: str) -> None:
    await until(lambda: day.live.broker.order(order_id).status in statuses and not day.live.broker.in_flight)


async def test_round_trips_are_timed_per_call_as_kite_counted_them(live_day):
    broker = live_day.live.broker
    order = broker.submit(OrderRequest("NSE:INFY", Side.BUY, 1, OrderType.LIMIT, price=1000.0, tag="mt1"),
                          Purpose.ENTRY)
    await settled(live_day, order.order_id, "OPEN")
    broker.modify(order.order_id, price=1000.5)
    await until(lambda: live_day.kite.calls["modify"] == 1 and not broker.in_flight)
    broker.cancel(order.order_id)
    await settled(live_day, order.order_id, "CANCELLED")
    got = await scrape(live_day.base, "metrics-token-live-1")
    for call in ("place", "modify", "cancel"):
        assert got.value("otrade_broker_round_trip_seconds_count", call=call) == live_day.kite.calls[call] == 1
        assert got.value("otrade_broker_round_trip_seconds_bucket", call=call, le="+Inf") == 1
    assert "order_history" in got.labels("otrade_broker_round_trip_seconds_count", "call")
    assert got.value("otrade_orders_final_total", state="cancelled") == 1


async def refused_then_scraped(live_day: LiveDay, tag: str) -> Scrape:
    """An entry Kite refuses (its static-IP rule), then /metrics as scraped with the bearer token."""
    live_day.kite.fault("place", "static-ip")
    order = live_day.live.broker.submit(
        OrderRequest("NSE:INFY", Side.BUY, 1, OrderType.LIMIT, price=1000.0, tag=tag), Purpose.ENTRY)
    await settled(live_day, order.order_id, "REJECTED")
    return await scrape(live_day.base, "metrics-token-live-1")


async def test_a_kite_refusal_is_counted_by_call_and_reason(live_day):
    got = await refused_then_scraped(live_day, "mt2")
    assert got.value("otrade_broker_refusals_total", call="place", reason="static_ip") == 1
    assert got.value("otrade_order_rejections_total", reason="static_ip") == 1
    assert "static IP" not in got.text


async def test_ticker_reconnects_are_counted(live_day):
    ticker = live_day.live.ticker
    await live_day.kite.drop()
    await until(lambda: ticker.reconnects == 1 and ticker.connected)
    got = await scrape(live_day.base, "metrics-token-live-1")
    assert got.value("otrade_ticker_reconnects_total") == 1
    assert got.value("otrade_ticker_connected") == 1
    assert {name: got.families()[name].type for name in LIVE_TYPES} == LIVE_TYPES


async def test_live_ticks_are_counted_and_their_decisions_timed_from_the_frame(live_day):
    from engine.brokers.kite.ticker_codec import Tick

    stamp = int(ns("10:01:00") // 10**9)
    prices = [100.0, 100.0, 99.0, 101.0]  # the cross on the last: an entry order
    for k, price in enumerate(prices):
        await live_day.kite.push([Tick(INFY, price, "full", True, exchange_timestamp=stamp + k)])
    await until(lambda: len(live_day.acts) == len(prices))
    assert live_day.acts[-1] & L.ACT_ENTRY_ORDER
    got = await scrape(live_day.base, "metrics-token-live-1")
    assert got.value("otrade_ticks_received_total", source="kite") == len(prices)
    decisions = sum(act > 0 for act in live_day.acts)
    assert got.value("otrade_tick_decision_seconds_count", outcome="decision") == decisions
    # from the frame's arrival: more than nothing, far less than a second on any machine
    assert 0 < got.value("otrade_tick_decision_seconds_sum", outcome="decision") < decisions * 1.0


async def test_no_secret_is_in_the_exposition(live_day):
    got = await refused_then_scraped(live_day, "mt3")
    assert got.status == 200
    for secret in (live_day.kite.access_token, API_KEY, API_SECRET, "metrics-token-live-1"):
        assert secret not in got.text


# --- the chat's outbox -----------------------------------------------------------------------------
async def test_the_chat_outbox_depth_is_read_when_scraped(tmp_path, monkeypatch):
    """The chat transport registers its outbox's depth: a message Telegram asks to hold back waits there."""
    api = FakeBotAPI("123456:TEST-secret-token-abcdef")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
    monkeypatch.setenv("TELEGRAM_API_BASE", await api.start())
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    data = orjson.loads(orjson.dumps(DEFAULT))
    data["bot"].update({"allowed_chats": [77], "admins": [77], "coalesce_ms": 0})
    (tmp_path / "c.json").write_bytes(orjson.dumps(data))
    manager = ConfigManager(tmp_path / "c.json", tmp_path / "data", default_catalog())
    cfg = manager.load()
    clock, bus = Clock(), EventBus()
    engine = Engine(cfg, PaperBroker({i.symbol: i.tick_size for i in cfg.instruments}, clock.now_ns), bus,
                    Journal(tmp_path / "data", clock.now_ns), clock.now_ns)
    rt = runtime(tmp_path, engine, bus, clock, "synthetic", manager)
    attach(rt)
    tasks = [asyncio.create_task(rt.tasks[name]()) for name in ("telegram", "notifier")]
    try:
        async with server(rt) as base:
            assert (await scrape(base)).value("otrade_outbox_depth") == 0
            api.fail_next(("429", 60))  # Telegram: retry after a minute
            engine.alert("broker unreachable")
            await until(lambda: api.calls.count("sendMessage") >= 1)
            got = await scrape(base)
            assert got.value("otrade_outbox_depth") == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.stop()


def test_every_metric_name_is_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in (*TYPES, *LIVE_TYPES, "otrade_outbox_depth"):
        assert re.search(rf"`{name}`", readme), name
