"""/chart, /equity and the end-of-day picture as a trader gets them: photos over the real
python-telegram-bot against the local Bot API server, PNG files from the console."""

import argparse
import asyncio
import contextlib
import io
import re
import threading
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from PIL import Image

from bot.commands import Caller, resolve
from bot.console import ConsoleTransport
from config import ConfigManager
from engine.brokers.paper import PaperBroker
from engine.charts import draw as D
from engine.core.layout import IST
from engine.data.recorder import Recorder
from engine.engine import Engine
from engine.runtime.app import Runtime, _session_hooks
from engine.runtime.session import REPORT as REPORT_JOB
from engine.services.calendar import Session
from engine.services.events import EventBus
from engine.services.journal import Journal
from engine.services.logs import LogBuffer
from engine.strategies import default_catalog
from tests.botapi import FakeBotAPI
from tests.conftest import DAY, make_ticks, ns, seconds
from tests.test_telegram import ADMIN, CHAT, OTHER_CHAT, TOKEN, Clock, ask, running_bot, write_config

DATA = "data"
TRADE = [100.0, 99.0, 101.0, 101.0, 107.0]  # ema_cross 1/2 enters long at 101, the 5% target closes it at 107


QUIET = {"order_placed": "off", "fill": "off", "rejected": "off", "trade_closed": "off", "alert": "off",
         "session": "off", "report": "on"}  # the chat hears of the end of the day only: replies are all it gets


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    """The chat's bot (``running_bot``) drawing pictures, its engine recording its ticks (``feed``;
    ``recorded`` closes the recording)."""
    async with running_bot(tmp_path, charts=True, notify=QUIET) as bot:
        recorder = Recorder(tmp_path / DATA, ["NSE:INFY"], synthetic=True, now_ns=bot.clock)

        def feed(rows) -> None:
            ticks = make_ticks(rows)
            for k in range(len(ticks)):
                bot.clock.ns = int(ticks.ts[k])
                bot.engine.on_tick(0, bot.clock.ns, float(ticks.price[k]))
                recorder.add((0, bot.clock.ns, float(ticks.price[k]), 1.0))

        try:
            yield SimpleNamespace(**vars(bot), feed=feed, recorded=recorder.close, recorder=recorder, root=tmp_path)
        finally:
            await recorder.close()


@pytest.fixture
async def chat(tmp_path):
    async with running(tmp_path) as it:
        yield it


async def a_day_with_a_trade(chat) -> None:
    chat.feed(seconds("10:00:00", TRADE))
    await chat.recorded()


async def photo_to(api: FakeBotAPI, chat_id: int, after: int = 0) -> dict:
    return (await api.wait_for(lambda: [p for p in api.photos[after:] if p["chat_id"] == chat_id]))[0]


def png_size(data: bytes) -> tuple[str, tuple[int, int]]:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a truncated file fails here
    return image.format, image.size


# --- /chart --------------------------------------------------------------------------------------
async def test_chart_answers_with_a_photo_of_the_day_and_a_one_line_caption(chat):
    await a_day_with_a_trade(chat)
    [trade] = chat.engine.trades()
    chat.api.user_says(CHAT, ADMIN, "/chart")
    photo = await photo_to(chat.api, CHAT)
    assert png_size(photo["photo"]) == ("PNG", (1280, 720)) and photo["size"] == (1280, 720)
    assert photo["caption"] == (f"NSE:INFY 23 Nov at 10:00: ticks, ema_cross with fast EMA(1), slow "
                                f"EMA(2,seed=1); 1 trade(s), ₹{trade['net_pnl']:,.2f} net; flat")
    assert chat.api.to_chat(CHAT) == []  # the photo is the answer: no text beside it


async def test_chart_draws_the_days_ticks_and_marks_its_trade(chat):
    await a_day_with_a_trade(chat)
    [trade] = chat.engine.trades()
    reply = await resolve(chat.commands.handle_text(Caller(CHAT, ADMIN), "/chart INFY"))
    ax = reply.picture.figure.axes[0]
    [price] = [line for line in ax.get_lines() if line.get_label() == "price (ticks)"]
    assert list(price.get_ydata()) == TRADE
    marks = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert marks["long entry"] == [[D.x_of([trade["entry_time_ns"]])[0], trade["entry_price"]]]
    assert marks["exit"] == [[D.x_of([trade["exit_time_ns"]])[0], trade["exit_price"]]]
    assert f"target +₹{trade['net_pnl']:,.2f}" in [t.get_text() for t in ax.texts]
    assert reply.picture.png.startswith(b"\x89PNG") and reply.text == reply.picture.caption


async def test_a_chat_not_allowed_gets_no_picture(chat):
    await a_day_with_a_trade(chat)
    chat.api.user_says(OTHER_CHAT, 5, "/chart")
    chat.api.user_says(CHAT, ADMIN, "/chart")  # answered after the stranger's message was dealt with
    await photo_to(chat.api, CHAT)
    assert [p["chat_id"] for p in chat.api.photos] == [CHAT] and chat.api.to_chat(OTHER_CHAT) == []


async def test_chart_of_an_instrument_otrade_does_not_trade_says_which_it_does(chat):
    await a_day_with_a_trade(chat)
    reply = await ask(chat.api, "/chart TCS")
    assert reply["text"] == "/chart: TCS is not an instrument OTrade trades: NSE:INFY"
    assert chat.api.photos == []


async def test_chart_before_any_tick_says_there_is_nothing_to_draw(chat):
    reply = await ask(chat.api, "/chart")
    assert reply["text"] == "/chart: Nothing to draw for NSE:INFY yet: no tick today."


async def test_chart_with_two_names_says_how_it_is_used(chat):
    reply = await ask(chat.api, "/chart INFY SBIN")
    assert reply["text"] == "/chart: usage: /chart [SYMBOL], e.g. /chart INFY"


async def test_a_picture_telegram_asks_to_wait_for_arrives_when_it_may(chat):
    await a_day_with_a_trade(chat)
    chat.api.fail_next(("429", 1))
    chat.api.user_says(CHAT, ADMIN, "/chart")
    photo = await photo_to(chat.api, CHAT)
    assert photo["caption"].startswith("NSE:INFY 23 Nov") and chat.api.calls.count("sendPhoto") == 2


async def test_the_picture_is_drawn_off_the_event_loop(chat, monkeypatch):
    await a_day_with_a_trade(chat)
    drawn_on, real = [], D.png
    monkeypatch.setattr(D, "png", lambda figure: drawn_on.append(threading.get_ident()) or real(figure))
    chat.api.user_says(CHAT, ADMIN, "/chart")
    await photo_to(chat.api, CHAT)
    assert len(drawn_on) == 1 and drawn_on[0] != threading.get_ident()


# --- /equity -------------------------------------------------------------------------------------
def trade_on(root: Path, day: str) -> float:
    """An earlier session of the same data directory with one closed trade; its net P&L."""
    clock = Clock()
    write_config(root / "otrade.json")
    manager = ConfigManager(root / "otrade.json", root / DATA, default_catalog())
    engine = Engine(manager.load(), PaperBroker({"NSE:INFY": 0.05}, clock), EventBus(), Journal(root / DATA, clock),
                    clock)
    engine.start_session()
    ticks = make_ticks([(day, f"10:00:0{k}", p, "NSE:INFY") for k, p in enumerate(TRADE)])
    for k in range(len(ticks)):
        clock.ns = int(ticks.ts[k])
        engine.on_tick(0, clock.ns, float(ticks.price[k]))
    engine.journal.flush()
    engine.journal.close()
    [trade] = engine.trades()
    return trade["net_pnl"]


async def test_equity_draws_each_journalled_day_and_today_through_the_day(tmp_path):
    earlier = {d: trade_on(tmp_path, d) for d in ("2026-11-18", "2026-11-19", "2026-11-20")}
    async with running(tmp_path) as chat:
        await a_day_with_a_trade(chat)
        chat.feed(seconds("10:00:05", [101.0, 102.0, 104.0, 105.0]))  # long again, at 105: open
        reply = await resolve(chat.commands.handle_text(Caller(CHAT, ADMIN), "/equity"))
    [today] = chat.engine.trades()
    intraday, daily = reply.picture.figure.axes
    assert [t.get_text() for t in daily.get_xticklabels()] == ["18 Nov", "19 Nov", "20 Nov", "23 Nov"]
    assert [b.get_height() for b in daily.containers[0]] == pytest.approx([*earlier.values(), today["net_pnl"]])
    [closed] = [line for line in intraday.get_lines() if line.get_label() == "net P&L of the closed trades"]
    assert list(closed.get_ydata()) == pytest.approx([0.0, today["net_pnl"], today["net_pnl"]])
    now = [c for c in intraday.collections if c.get_label().startswith("now, open positions included")]
    assert now[0].get_offsets()[0][1] == pytest.approx(chat.engine.pnl()["net"]) != today["net_pnl"]
    assert reply.text == (f"P&L 23 Nov: ₹{chat.engine.pnl()['net']:,.2f} net over 1 closed trade(s); last 4 day(s): "
                          f"₹{sum(earlier.values()) + today['net_pnl']:,.2f} net")


async def test_equity_answers_with_a_photo(chat):
    await a_day_with_a_trade(chat)
    chat.api.user_says(CHAT, ADMIN, "/equity")
    photo = await photo_to(chat.api, CHAT)
    assert png_size(photo["photo"]) == ("PNG", (1280, 720)) and photo["caption"].startswith("P&L 23 Nov: ")


# --- the console ---------------------------------------------------------------------------------
async def test_the_console_saves_the_picture_under_the_data_directory_and_prints_its_path(chat):
    await a_day_with_a_trade(chat)
    console = ConsoleTransport(chat.commands, io.StringIO())
    await console.handle_line("/chart")
    caption, saved = console.out.getvalue().splitlines()
    path = Path(re.fullmatch(r"  picture: (.+)", saved)[1])
    assert path.parent == (chat.root / DATA / "charts").resolve()
    assert path.name == "2026-11-23_100004_chart-NSE_INFY.png"
    assert png_size(path.read_bytes()) == ("PNG", (1280, 720)) and caption.startswith("NSE:INFY 23 Nov at 10:00")


async def test_two_pictures_of_the_same_second_are_both_kept(chat):
    await a_day_with_a_trade(chat)
    console = ConsoleTransport(chat.commands, io.StringIO())
    await console.handle_line("/equity")
    await console.handle_line("/equity")
    assert sorted(p.name for p in (chat.root / DATA / "charts").iterdir()) == [
        "2026-11-23_100004_equity-1.png", "2026-11-23_100004_equity.png"]


# --- the end of the day --------------------------------------------------------------------------
async def end_of_day(chat) -> None:
    """The scheduler's report job, run by a process on this engine and its recording."""
    chat.clock.ns = ns("15:35:00")
    rt = Runtime(argparse.Namespace(clock=None), chat.manager, chat.engine, chat.bus, SimpleNamespace(
        now_ns=chat.clock), chat.root / DATA, LogBuffer())
    rt.recorder = chat.recorder
    at = lambda hh, mm: datetime(2026, 11, 23, hh, mm, tzinfo=IST)  # noqa: E731
    await _session_hooks(rt)[REPORT_JOB](Session(date.fromisoformat(DAY), at(9, 15), at(15, 30), at(15, 15)))


async def test_the_end_of_day_report_arrives_with_its_picture(chat):
    await a_day_with_a_trade(chat)
    await end_of_day(chat)
    photo = await photo_to(chat.api, CHAT)
    [report] = [m["text"] for m in chat.api.to_chat(CHAT)]  # the report's text came first, stamped 15:35:00
    assert report.splitlines()[0] == f"15:35:00 {photo['caption']}"
    assert photo["caption"].startswith("End of day 2026-11-23: 1 trade(s), 1 won, P&L ₹")
    assert png_size(photo["photo"])[0] == "PNG"


async def test_the_console_saves_the_reports_picture_and_prints_its_path(chat):
    await a_day_with_a_trade(chat)
    console = ConsoleTransport(chat.commands, io.StringIO())
    printing = asyncio.create_task(console.follow(chat.bus.subscribe()))
    await end_of_day(chat)
    saved = await chat.api.wait_for(lambda: re.search(r"   picture: (.+\.png)", console.out.getvalue()))
    printing.cancel()
    assert Path(saved[1]).name == "2026-11-23_153500_report.png" and png_size(Path(saved[1]).read_bytes())[0] == "PNG"


# --- the local Bot API is as strict as Telegram ------------------------------------------------
@pytest.mark.parametrize(("photo", "caption", "error"), [
    (None, "", "Bad Request: there is no photo in the request"),
    ("AgACAgIAAxkBAAIB", "", "Bad Request: wrong file identifier/HTTP URL specified"),
    (b"GIF89a not a png", "", "Bad Request: IMAGE_PROCESS_FAILED"),
    ("png", "x" * 1025, "Bad Request: message caption is too long"),
])
async def test_the_local_bot_api_refuses_a_photo_telegram_would(photo, caption, error):
    api = FakeBotAPI(TOKEN)
    base = await api.start()
    form = aiohttp.FormData({"chat_id": str(CHAT), "caption": caption})
    if photo == "png":
        image = io.BytesIO()
        Image.new("RGB", (64, 48)).save(image, "PNG")
        photo = image.getvalue()
    if isinstance(photo, bytes):
        form.add_field("photo", photo, filename="chart.png", content_type="image/png")
    elif photo is not None:
        form.add_field("photo", photo)
    try:
        async with aiohttp.ClientSession() as http, http.post(f"{base}/bot{TOKEN}/sendPhoto", data=form) as got:
            body = await got.json()
    finally:
        await api.stop()
    assert (got.status, body) == (400, {"ok": False, "error_code": 400, "description": error})
    assert api.photos == []


async def test_the_local_bot_api_refuses_a_photo_too_long_for_its_width():
    api = FakeBotAPI(TOKEN)
    base = await api.start()
    strip = io.BytesIO()
    Image.fromarray(np.zeros((10, 400), np.uint8)).save(strip, "PNG")  # 400 x 10: forty times wider than high
    form = aiohttp.FormData({"chat_id": str(CHAT)})
    form.add_field("photo", strip.getvalue(), filename="strip.png", content_type="image/png")
    try:
        async with aiohttp.ClientSession() as http, http.post(f"{base}/bot{TOKEN}/sendPhoto", data=form) as got:
            body = await got.json()
    finally:
        await api.stop()
    assert (got.status, body["description"]) == (400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
