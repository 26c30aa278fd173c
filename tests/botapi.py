"""A local Telegram Bot API server (aiohttp) that the real python-telegram-bot talks to in tests.

It speaks the Bot API's envelope (``{"ok": true, "result": ...}``) for the methods the bot uses,
queues updates that tests inject (a user typing or editing a message, a button press, in a
private chat or a group: a negative chat id), records what the bot sends and how it answers
button presses, and can be told to fail: HTTP 502, 429 with ``retry_after``, or a hang past the client timeout.
``sendPhoto`` is as strict as Telegram's: the photo must be an uploaded file (multipart), an image
(here: a PNG, what OTrade sends) within Telegram's size and dimension limits, its caption at most
1024 characters.
"""

import asyncio
import contextlib
import itertools
import struct
import time
from typing import Any

import orjson
from aiohttp import web

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "OTrade", "username": "otrade_test_bot"}
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # Telegram's limits for a photo: 10 MB, width + height <= 10000,
MAX_PHOTO_SIDES = 10_000  # and neither side more than 20 times the other
MAX_CAPTION = 1024
PNG = b"\x89PNG\r\n\x1a\n"


def _chat(chat_id: int) -> dict[str, Any]:
    """Telegram's ids: a private chat has its user's (positive) id, a group a negative one."""
    return {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "t"}


class FakeBotAPI:
    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # sendMessage and editMessageText calls, in order
        self.photos: list[dict[str, Any]] = []  # sendPhoto calls taken: chat_id, caption, the file's bytes, size
        self.answers: list[dict[str, Any]] = []  # answerCallbackQuery calls, in order
        self.calls: list[str] = []
        self.failures: list[tuple[str, float]] = []  # ("502" | "429" | "hang", retry_after / seconds)
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._new_update = asyncio.Event()
        self._received = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    # --- what tests do -------------------------------------------------------------------------
    def user_says(self, chat_id: int, user_id: int, text: str) -> int:
        """A new message; returns its id."""
        message = self._message(chat_id, user_id, text, next(self._message_ids))
        self._push({"message": message})
        return message["message_id"]

    def user_edits(self, chat_id: int, user_id: int, message_id: int, text: str) -> None:
        """The user edits an earlier message of theirs into ``text``."""
        message = self._message(chat_id, user_id, text, message_id)
        self._push({"edited_message": {**message, "date": message["date"] - 60, "edit_date": message["date"]}})

    def press(self, chat_id: int, user_id: int, data: str, message_id: int) -> str:
        """A tap on a button of the bot's message; returns the callback query's id."""
        query_id = str(next(self._ids))
        self._push({"callback_query": {
            "id": query_id, "from": {"id": user_id, "is_bot": False, "first_name": "Trader"},
            "chat_instance": "ci", "data": data,
            "message": {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id), "text": "…",
                        "from": BOT_USER}}})
        return query_id

    @staticmethod
    def _message(chat_id: int, user_id: int, text: str, message_id: int) -> dict[str, Any]:
        message = {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id),
                   "from": {"id": user_id, "is_bot": False, "first_name": "Trader"}, "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def fail_next(self, *modes: tuple[str, float]) -> None:
        self.failures.extend(modes)

    def to_chat(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if int(m["chat_id"]) == chat_id]

    async def wait_for(self, predicate, timeout: float = 60.0) -> Any:  # generous: returns once it holds
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out waiting; sent so far: {[m.get('text') for m in self.sent]}")
            self._received.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._received.wait(), min(left, 0.2))

    def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._ids)
        self.updates.append(update)
        self._new_update.set()

    # --- the Bot API ---------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            if key in ("text", "caption"):  # text stays text, even one that reads as JSON ("10")
                params[key] = value
                continue
            try:
                params[key] = orjson.loads(value) if isinstance(value, str) else value
            except orjson.JSONDecodeError:
                params[key] = value
        return params

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(method)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._ok(True)
        if method in ("sendMessage", "editMessageText", "sendPhoto") and self.failures:
            mode, value = self.failures.pop(0)
            if mode == "502":
                return web.Response(status=502, text="Bad Gateway")
            if mode == "429":
                return web.json_response({"ok": False, "error_code": 429,
                                          "description": "Too Many Requests: retry later",
                                          "parameters": {"retry_after": int(value)}}, status=429)
            await asyncio.sleep(value)  # "hang": longer than the client's timeout
        return await handler(params)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.Response(body=orjson.dumps({"ok": True, "result": result}), content_type="application/json")

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    async def _m_getMe(self, p: dict) -> web.Response:
        return self._ok(BOT_USER)

    async def _m_getUpdates(self, p: dict) -> web.Response:
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            pending = [u for u in self.updates if u["update_id"] >= offset]
            left = deadline - asyncio.get_running_loop().time()
            if pending or left <= 0:
                self.updates = pending
                return self._ok(pending)
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), left)

    async def _m_sendMessage(self, p: dict) -> web.Response:
        message_id = next(self._message_ids)
        chat_id = int(p["chat_id"])
        self.sent.append({**p, "chat_id": chat_id, "message_id": message_id, "method": "sendMessage"})
        self._received.set()
        return self._ok({"message_id": message_id, "date": int(time.time()), "text": p["text"],
                         "chat": _chat(chat_id), "from": BOT_USER})

    async def _m_sendPhoto(self, p: dict) -> web.Response:
        photo = p.get("photo")
        if photo is None:
            return self._error(400, "Bad Request: there is no photo in the request")
        if not isinstance(photo, web.FileField):  # a file_id or a URL: this server has neither to give
            return self._error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        data = photo.file.read()
        if len(data) > MAX_PHOTO_BYTES:
            return self._error(400, "Bad Request: file is too big")
        size = _image_size(data)
        if size is None:
            return self._error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > MAX_PHOTO_SIDES or max(width, height) > 20 * min(width, height):
            return self._error(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption = p.get("caption") or ""
        if len(caption) > MAX_CAPTION:
            return self._error(400, "Bad Request: message caption is too long")
        message_id = next(self._message_ids)
        chat_id = int(p["chat_id"])
        self.photos.append({"chat_id": chat_id, "caption": caption, "photo": data, "size": (width, height),
                            "disable_notification": bool(p.get("disable_notification")), "message_id": message_id})
        self._received.set()
        sizes = [{"file_id": f"photo-{message_id}", "file_unique_id": f"u{message_id}", "width": width,
                  "height": height, "file_size": len(data)}]
        return self._ok({"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id),
                         "from": BOT_USER, "photo": sizes, **({"caption": caption} if caption else {})})

    async def _m_answerCallbackQuery(self, p: dict) -> web.Response:
        self.answers.append(p)
        self._received.set()
        return self._ok(True)

    async def _m_editMessageText(self, p: dict) -> web.Response:
        chat_id = int(p["chat_id"])
        self.sent.append({**p, "chat_id": chat_id, "method": "editMessageText"})
        self._received.set()
        return self._ok({"message_id": int(p["message_id"]), "date": int(time.time()), "text": p["text"],
                         "chat": {"id": chat_id, "type": "private", "title": "t"}, "from": BOT_USER})


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG (the pictures OTrade sends); None for anything that is not one."""
    if data.startswith(PNG) and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None
