"""Who may see the page: the holder of a signed, expiring link from ``/web`` in the chat, and the
browser session that link opened, until the link's own expiry.

Tokens are ``kind.expiry.nonce.mac``: an HMAC-SHA256 over the rest under a key from
``OTRADE_WEB_KEY`` (links then outlive a restart) or made at start (a restart ends every link).
A link and a session are different kinds, so neither passes for the other.
"""

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable

from engine.services.logs import add_secret

log = logging.getLogger(__name__)
KEY_VAR = "OTRADE_WEB_KEY"
MIN_KEY = 32  # characters: a shorter key could be guessed from links seen
LINK, SESSION = "l", "s"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Access:
    def __init__(self, key: bytes, ttl_s: float, now: Callable[[], float] = time.time) -> None:
        self._key = key
        self.ttl_s = ttl_s
        self.now = now  # the wall clock: a link lasts real hours, whatever clock the engine runs on

    @classmethod
    def from_environment(cls, ttl_s: float) -> "Access":
        key = os.environ.get(KEY_VAR, "")
        if key and len(key) < MIN_KEY:
            log.error("%s is shorter than %d characters: the page's links are signed with a key made at start "
                      "instead (they end at a restart)", KEY_VAR, MIN_KEY)
            key = ""
        add_secret(key)
        return cls(key.encode() if key else secrets.token_bytes(32), ttl_s)

    def _sign(self, kind: str, expiry: int, nonce: str) -> str:
        body = f"{kind}.{expiry}.{nonce}"
        return f"{body}.{_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())}"

    def _expiry(self, token: str, kind: str) -> int | None:
        """The token's expiry when it is of ``kind``, signed with our key and not expired; else None."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != kind or not parts[1].isdigit():
            return None
        expiry = int(parts[1])
        if not hmac.compare_digest(self._sign(kind, expiry, parts[2]), token) or expiry <= self.now():
            return None
        return expiry

    def link(self) -> tuple[str, int]:
        """A new link token and when it expires (epoch seconds)."""
        expiry = int(self.now() + self.ttl_s)
        return self._sign(LINK, expiry, secrets.token_urlsafe(9)), expiry

    def open(self, link: str) -> tuple[str, int] | None:
        """The session a valid link opens (token, expiry: the link's), or None for a tampered or expired one."""
        expiry = self._expiry(link, LINK)
        if expiry is None:
            return None
        return self._sign(SESSION, expiry, secrets.token_urlsafe(9)), expiry

    def session(self, token: str) -> int | None:
        """A valid session's expiry, else None."""
        return self._expiry(token, SESSION)
