"""The monitoring page as a person uses it (issue 22 §4): Debian's chromium, headless, driven by
Playwright against the process's own server, with a paper engine trading in the same event loop.

Without chromium (``apt-get install -y chromium``) or Playwright these tests skip and say why; under
CI, whose ``.ci/run`` installs both, they fail instead.
"""

import os
import shutil
import time
from datetime import datetime

import pytest

from engine.services.journal import Journal
from tests.monitor_harness import open_desk

CHROMIUM = shutil.which("chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
WAIT_MS = 30_000  # what a loaded machine may take to show what is already there


def missing() -> str | None:
    why = "the monitoring page's browser tests did not run"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return f"Playwright is not installed (pip install -e '.[test]'): {why}"
    if CHROMIUM is None:
        return f"chromium is not installed (apt-get install -y chromium): {why}"
    return None


@pytest.fixture
async def browser():
    if why := missing():
        if os.environ.get("CI"):
            pytest.fail(f"{why}; .ci/run installs it")
        pytest.skip(why)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def phone_page(browser):
    """A page at phone size, collecting the browser's errors (a blocked script or style is one)."""
    page = await (await browser.new_context(**PHONE)).new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda message: message.type == "error"
            and page.errors.append(f"{message.text} ({message.location.get('url')})"))
    return page


async def opened(page, link: str):
    """Tap the link from the chat: it lands on the page, connected, without the token in its address."""
    from playwright.async_api import expect

    await page.goto(link)
    await page.wait_for_url("**/web/", timeout=WAIT_MS)
    await expect(page.locator("#conn")).to_have_class("conn live", timeout=WAIT_MS)
    assert "token" not in page.url
    return page


async def test_a_link_from_the_chat_opens_the_live_page(tmp_path, monkeypatch, browser):
    from playwright.async_api import expect

    async with open_desk(tmp_path, monkeypatch) as desk:
        desk.tick("10:00:00", 1500.0)
        desk.monitor.sample()
        page = await opened(await phone_page(browser), desk.link())
        await expect(page.locator("#state")).to_have_text("RUNNING", timeout=WAIT_MS)
        await expect(page.locator('#charts [data-symbol="NSE:INFY"] .chart-head')).to_contain_text("1500.00")
        await expect(page.locator('#charts [data-symbol="NSE:INFY"] canvas')).to_be_visible()
        await expect(page.locator("#health")).to_contain_text("synthetic")
        assert page.errors == []


async def test_without_a_link_the_page_is_refused(tmp_path, monkeypatch, browser):
    async with open_desk(tmp_path, monkeypatch) as desk:
        desk.tick("10:00:00", 1500.0)
        page = await phone_page(browser)
        answer = await page.goto(desk.base + "/web/")
        text = await page.locator("body").inner_text()
        assert answer.status == 401 and text.startswith("401: Unauthorized") and "INFY" not in text
        tampered = desk.link()[:-2] + "xx"
        answer = await page.goto(tampered)
        assert answer.status == 401 and "not valid or has expired" in await page.locator("body").inner_text()
        assert await page.context.cookies() == []


async def test_a_paper_fill_shows_within_two_seconds_without_a_reload(tmp_path, monkeypatch, browser):
    from playwright.async_api import expect

    async with open_desk(tmp_path, monkeypatch) as desk:
        page = await opened(await phone_page(browser), desk.link())
        loads = []
        page.on("framenavigated", lambda frame: loads.append(frame.url))
        for at, price in (("10:00:00", 100.0), ("10:00:01", 99.0), ("10:00:02", 101.0)):
            desk.tick(at, price)
        started = time.monotonic()
        desk.tick("10:00:03", 101.5)  # the entry (decided on 101) fills on this tick
        await page.locator('#orders [data-status="COMPLETE"]').wait_for(timeout=WAIT_MS)
        took = time.monotonic() - started
        assert took < 2.0, f"the fill showed {took:.2f} s after it happened"
        row = page.locator('#orders [data-status="COMPLETE"]')
        await expect(row).to_contain_text("BUY 10 NSE:INFY MARKET")
        await expect(row).to_contain_text("10 @ 101.50")
        await expect(page.locator('#positions [data-symbol="NSE:INFY"]')).to_contain_text("NSE:INFY +10 @ 101.50")
        assert loads == [] and page.errors == []


async def test_the_page_says_when_its_session_has_ended(tmp_path, monkeypatch, browser):
    from playwright.async_api import expect

    async with open_desk(tmp_path, monkeypatch, server={"web_link_hours": 3 / 3600}) as desk:  # a 3 s link
        page = await opened(await phone_page(browser), desk.link())
        await expect(page.locator("#banner")).to_contain_text("Send /web in the chat", timeout=WAIT_MS)
        await expect(page.locator("#conn")).to_have_text("signed out")


async def test_at_phone_width_the_whole_day_reads_without_sideways_scrolling(tmp_path, monkeypatch, browser):
    from playwright.async_api import expect

    evening = Journal(tmp_path / "data", lambda: int(datetime.fromisoformat("2026-11-20T15:35:00+05:30")
                                                       .timestamp() * 1e9))
    evening.record("report", text="End of day 2026-11-20: 6 trade(s), 4 won, P&L ₹412.50 net\n"
                                  "parity audit: the day's replay made the same 6 trades")
    evening.flush()
    evening.close()
    strategy = {"kind": "ema_cross", "fast": 30, "slow": 90, "allow_short": True}
    async with open_desk(tmp_path, monkeypatch, symbols=("NSE:INFY", "NSE:SBIN"), strategy=strategy,
                         at="09:15:00") as desk:
        desk.morning("09:15:10", 90 * 60)  # six trades, and a position open in each
        desk.engine.alert("Ticks are flowing again: entries resumed", critical=False)
        assert desk.engine.trades() and desk.engine.positions(), "the morning should have trades and a position"
        page = await opened(await phone_page(browser), desk.link())
        await expect(page.locator("#report")).to_contain_text("parity audit", timeout=WAIT_MS)
        await expect(page.locator("#alerts")).to_contain_text("entries resumed")
        await expect(page.locator("canvas")).to_have_count(3)  # two instruments and the day's P&L
        assert await page.locator("#trades .trade").count() == len(desk.engine.trades())
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        shot = tmp_path / "monitor-phone.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert page.errors == []
