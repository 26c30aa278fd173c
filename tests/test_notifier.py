"""Engine events become messages: levels, coalescing, shedding, retries."""

import asyncio

from bot.notifier import Message, Notifier, Outbox
from engine.services.events import ALERT, FILL, TRADE_CLOSED, Event, EventBus
from tests.conftest import make_config
from tests.waiting import until


class Sink:
    def __init__(self):
        self.messages: list[Message] = []

    def put(self, message: Message) -> None:
        self.messages.append(message)


def fill(k: int) -> Event:
    return Event(FILL, 0, {"side": "BUY", "quantity": 10, "filled_quantity": 10, "symbol": "NSE:INFY",
                           "average_price": 100.0 + k, "last_quantity": 10, "last_price": 100.0 + k,
                           "purpose": "entry"})


def notifier(**bot):
    cfg = make_config(bot=bot)
    sink = Sink()
    bus = EventBus()
    return Notifier(bus.subscribe(), lambda: cfg.bot, [sink]), bus, sink


def test_a_few_events_arrive_one_message_each():
    n, _, sink = notifier()
    n.publish([fill(1), fill(2)])
    assert [m.text for m in sink.messages] == ["05:30:00 ✓ BUY 10 NSE:INFY filled @ 101.00 (entry)",
                                               "05:30:00 ✓ BUY 10 NSE:INFY filled @ 102.00 (entry)"]


def test_a_burst_is_coalesced_into_one_digest():
    n, _, sink = notifier()
    closed = Event(TRADE_CLOSED, 0, {"pnl": 52.0, "charges": 2.0, "net_pnl": 50.0})
    n.publish([fill(k) for k in range(20)] + [closed])
    assert [m.text for m in sink.messages] == ["Burst of 21 events: 20 fill, 1 trade closed; closed P&L ₹50.00 net"]


def test_event_types_switched_off_are_not_sent_and_silent_ones_are_quiet():
    n, _, sink = notifier(notify={"fill": "off", "alert": "silent"})
    n.publish([fill(1), Event(ALERT, 0, {"text": "hi"})])
    assert [(m.text, m.silent) for m in sink.messages] == [("05:30:00 ⚠ hi", True)]


def test_critical_alerts_go_first_and_are_never_digested():
    n, _, sink = notifier()
    n.publish([fill(k) for k in range(8)] + [Event(ALERT, 0, {"text": "token expired"}, critical=True)])
    assert sink.messages[0].critical and sink.messages[0].text.endswith("token expired")
    assert sink.messages[1].text.startswith("Burst of 8 events")


async def test_events_published_within_the_window_are_batched():
    n, bus, sink = notifier(coalesce_ms=100)
    task = asyncio.create_task(n.run())
    for k in range(8):
        bus.publish(fill(k))
    await until(lambda: sink.messages)
    task.cancel()
    assert [m.text for m in sink.messages] == ["Burst of 8 events: 8 fill"]


async def test_a_notifier_cancelled_as_an_event_arrives_in_its_window_stops():
    n, bus, _ = notifier(coalesce_ms=60_000)
    task = asyncio.create_task(n.run())
    bus.publish(fill(1))
    await until(lambda: n._batch)  # the first of a batch taken: the window is open
    bus.publish(fill(2))  # its wait for the next ends in the same turn of the loop as the cancel
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled()  # a stop ends it, its batch left for flush()


async def test_the_outbox_retries_until_the_transport_takes_the_message():
    attempts = []

    async def flaky(message):
        attempts.append(message.text)
        if len(attempts) < 3:
            raise ConnectionError("down")

    outbox = Outbox(flaky, lambda exc: isinstance(exc, ConnectionError), retry_after=lambda exc: 0.01)
    outbox.put(Message("fill", critical=True))
    task = asyncio.create_task(outbox.run())
    await until(lambda: len(outbox) == 0)
    task.cancel()
    assert attempts == ["fill", "fill", "fill"] and len(outbox) == 0


async def test_a_full_outbox_sheds_info_keeps_critical_and_says_how_many_it_shed():
    sent = []

    async def send(message):
        sent.append(message.text)

    outbox = Outbox(send, lambda exc: False, max_len=2)
    for k in range(5):
        outbox.put(Message(f"info {k}"))
    outbox.put(Message("critical", critical=True))
    task = asyncio.create_task(outbox.run())
    await until(lambda: len(outbox) == 0)
    task.cancel()
    assert sent == ["(3 info message(s) dropped while the chat was unreachable)", "info 0", "info 1", "critical"]
