"""Who may drive the bot: strangers get nothing, members of an allowed chat may look, admins may act.

A private chat's id is its user's id, so the one user of an allowed private chat is its admin; in a
group only the users in ``bot.admins`` are. The console's user owns the process.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from config.models import Bot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    chat_id: int
    user_id: int


CONSOLE = Caller(0, 0)  # the local terminal: whoever has it owns the process


# ``config`` gives the live bot settings; it is read only for chats (the console needs no config).
def allowed(config: Callable[[], Bot], caller: Caller) -> bool:
    """May this chat talk to the bot at all? Refusals here are logged by the caller, never answered."""
    return caller == CONSOLE or caller.chat_id in config().allowed_chats


def admin_refusal(config: Callable[[], Bot], caller: Caller, name: str) -> str | None:
    """Why ``caller`` may not run the admin command ``/name`` (logged), or None when they may."""
    if caller == CONSOLE or caller.chat_id == caller.user_id:
        return None
    bot = config()
    if caller.user_id in bot.admins:
        return None
    log.warning("refused /%s from user %s in chat %s (%s)", name, caller.user_id, caller.chat_id,
                "not in bot.admins" if bot.admins else "a group, and bot.admins is empty")
    if bot.admins:
        return f"/{name} is for admins only."
    return (f"/{name} needs an admin, and in a group only the users in bot.admins are; none are set. "
            f"Add them from your private chat with the bot (/set bot.admins [{caller.user_id}] adds you) "
            "or under bot.admins in the config file.")
