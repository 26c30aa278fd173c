"""Telegram transport on python-telegram-bot v22, polling inside our own event loop.

The API root is configurable (``TELEGRAM_API_BASE``), so a local Bot API server stands in for
Telegram in tests. PTB's AIORateLimiter enforces the global and per-group limits; the per-chat
limit (about one message a second) is enforced here for pushed notifications, and a long answer
that Telegram slows down (429) is finished by the chat's outbox rather than cut short. Only new messages
run commands (an edit is answered, never run), a command naming another bot (``/halt@otherbot``)
is left to it, and every text sent passes the redactor. A picture (/chart, /equity, the end-of-day
report's) is uploaded as a photo with its one-line caption.
"""

import asyncio
import logging
import re
import time
from collections.abc import Callable

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.commands import Caller, Commands, Reply, resolve
from bot.notifier import Message, Outbox, as_seconds
from engine.charts import Picture
from engine.services.logs import add_secret, redact

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024  # a photo's caption
PRIVATE_INTERVAL = 1.0  # seconds between messages to one chat
GROUP_INTERVAL = 3.0  # 20 a minute in groups
ADDRESSED = re.compile(r"\s*(/\w+)@(\w+)")  # /command@botname


def addressed(text: str, username: str) -> str | None:
    """The text with our ``@username`` dropped from its command; None when it names another bot."""
    match = ADDRESSED.match(text)
    if match is None:
        return text
    if match[2].lower() != username.lower():
        return None
    return match[1] + text[match.end():]


def split(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut at line breaks where possible so each part fits Telegram's limit."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut if cut > 0 else limit
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n")
    parts.append(text)
    return parts


def _markup(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in reply.buttons]])


def retriable(exc: BaseException) -> bool:
    return isinstance(exc, NetworkError | TimedOut | RetryAfter)  # TimedOut and RetryAfter: kept explicit


def retry_after(exc: BaseException) -> float | None:
    return as_seconds(exc.retry_after) if isinstance(exc, RetryAfter) else None


class TelegramTransport:
    def __init__(self, token: str, api_base: str, commands: Commands, chats: Callable[[], list[int]],
                 timeout: float = 10.0, poll_timeout: float = 10.0) -> None:
        self.commands = commands
        self._chats = chats
        self._poll_timeout = poll_timeout
        base = api_base.rstrip("/")
        self.app = (Application.builder().token(token)
                    .base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
                    .rate_limiter(AIORateLimiter(max_retries=0))
                    .connect_timeout(timeout).read_timeout(timeout).write_timeout(timeout).pool_timeout(timeout)
                    .get_updates_read_timeout(poll_timeout + timeout)
                    .build())
        add_secret(token)
        # PTB's filters pass edited messages too: commands run from new messages only.
        self.app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT, self._on_text))
        self.app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT, self._on_edit))
        self.app.add_handler(CallbackQueryHandler(self._on_button))
        self._outboxes: dict[int, Outbox] = {}
        self._tasks: list[asyncio.Task] = []
        self.connected = False

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.bot.set_my_commands([BotCommand(name, text[:256]) for name, text in self.commands.menu()])
        await self.app.start()
        await self.app.updater.start_polling(timeout=int(self._poll_timeout), error_callback=self._poll_error)
        self.connected = True
        log.info("telegram: polling as @%s", self.app.bot.username)

    async def stop(self) -> None:
        if self.app.updater and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        for task in self._tasks:
            task.cancel()

    def _poll_error(self, error: Exception) -> None:
        self.connected = False
        log.warning("telegram: polling failed (%s); retrying", type(error).__name__)

    async def _send(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None,
                    silent: bool = False) -> None:
        """Redacted, cut to Telegram's limit; the buttons go with the last part."""
        parts = split(redact(text))
        for k, part in enumerate(parts):
            await self.app.bot.send_message(chat_id, part, reply_markup=markup if k == len(parts) - 1 else None,
                                            disable_notification=silent)

    async def _photo(self, chat_id: int, picture: Picture, silent: bool = False) -> None:
        """The PNG as a photo, uploaded, with its caption (redacted, cut to Telegram's limit)."""
        await self.app.bot.send_photo(chat_id, picture.png, caption=redact(picture.caption)[:MAX_CAPTION],
                                      disable_notification=silent)

    async def _answer_photo(self, chat_id: int, picture: Picture) -> None:
        """A command's picture; when Telegram says to wait, the chat's outbox sends it as told."""
        try:
            await self._photo(chat_id, picture)
        except RetryAfter:
            log.info("telegram: asked to wait while answering chat %s with a picture; queued", chat_id)
            self._outbox(chat_id).put(Message(picture.caption, critical=True, picture=picture))

    async def _reply(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """A command's answer, every part of it: when Telegram says to wait (a long /logs in parts),
        the parts not sent go to the chat's outbox, which waits as told and paces them, so the
        handler, and the commands behind it, never wait (a part that was queued loses its buttons)."""
        parts = split(redact(text))
        for k, part in enumerate(parts):
            try:
                await self.app.bot.send_message(chat_id, part, reply_markup=markup if k == len(parts) - 1 else None)
            except RetryAfter:
                log.info("telegram: asked to wait while answering chat %s; %d part(s) queued", chat_id,
                         len(parts) - k)
                for rest in parts[k:]:
                    self._outbox(chat_id).put(Message(rest, critical=True))  # asked for: never shed
                return

    def _command(self, update: Update) -> tuple[Caller, str] | None:
        """Who sent which text, for a message meant for us."""
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or message.text is None or chat is None or user is None:
            return None
        text = addressed(message.text, self.app.bot.username)
        if text is None:
            log.debug("left a command for another bot from user %s in chat %s", user.id, chat.id)
            return None
        return Caller(chat.id, user.id), text

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.connected = True
        if (got := self._command(update)) and (reply := await resolve(self.commands.handle_text(*got))):
            if reply.picture is not None:
                await self._answer_photo(got[0].chat_id, reply.picture)
            else:
                await self._reply(got[0].chat_id, reply.text, _markup(reply))

    async def _on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (got := self._command(update)) and (reply := self.commands.handle_edit(*got)):
            await self._reply(got[0].chat_id, reply.text)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or update.effective_chat is None:
            return
        reply = await resolve(self.commands.handle_button(Caller(update.effective_chat.id, query.from_user.id),
                                                          query.data or ""))
        if reply is None:
            return
        if reply.toast:
            await query.answer(redact(reply.text)[:200])  # Telegram's limit for a callback answer
            return
        await query.answer()
        if query.message is not None:
            await query.edit_message_text(split(redact(reply.text))[0], reply_markup=_markup(reply))
        else:
            await self._reply(update.effective_chat.id, reply.text, _markup(reply))

    def put(self, message: Message) -> None:
        """Queue a notification for every allowed chat; each chat has its own outbox and pace."""
        for chat_id in self._chats():
            self._outbox(chat_id).put(message)

    def _outbox(self, chat_id: int) -> Outbox:
        outbox = self._outboxes.get(chat_id)
        if outbox is None:
            outbox = self._outboxes[chat_id] = Outbox(self._sender(chat_id), retriable, retry_after=retry_after)
            self._tasks.append(asyncio.create_task(outbox.run(), name=f"telegram-outbox-{chat_id}"))
        return outbox

    def pending(self) -> int:
        return sum(len(o) for o in self._outboxes.values())

    def _sender(self, chat_id: int):
        gap = GROUP_INTERVAL if chat_id < 0 else PRIVATE_INTERVAL
        last = 0.0

        async def send(message: Message) -> None:
            nonlocal last
            wait = last + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if message.picture is not None:
                await self._photo(chat_id, message.picture, message.silent)
            else:
                await self._send(chat_id, message.text, silent=message.silent)
            last = time.monotonic()

        return send
