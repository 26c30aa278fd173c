"""The one-tap daily login: Kite redirects the trader's browser to OTrade's own callback path.

Anyone can reach that path, so it acts only on a login the trader started: the link /login hands
out carries a one-time, short-lived nonce in Kite's ``redirect_params``, which Kite appends to the
redirect after a successful login. A nonce is spent by the first request that shows it.
"""

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from engine.services.logs import add_secret

NONCE_PARAM = "otrade"  # our key in redirect_params; Kite's own are request_token, action, type, status
NONCE_TTL_S = 600.0


@dataclass(frozen=True)
class Renewal:
    """How a token exchange went, in words fit for a chat or a web page: never a token or the secret."""

    ok: bool
    text: str


class Refused(Exception):
    """A callback OTrade will not act on: the HTTP status and a reason safe to show the browser."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class LoginLinks:
    """Login links that each carry a fresh nonce, and the check of the redirect that brings one back."""

    def __init__(self, login_url: Callable[[], str], ttl_s: float = NONCE_TTL_S,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._login_url = login_url
        self._ttl_s = ttl_s
        self._now = now
        self._expiry: dict[str, float] = {}  # nonce -> monotonic deadline

    def issue(self) -> str:
        """Kite's login URL with a new nonce in redirect_params (Kite url-decodes and appends it)."""
        now = self._now()
        self._expiry = {n: t for n, t in self._expiry.items() if t > now}
        nonce = secrets.token_urlsafe(24)
        self._expiry[nonce] = now + self._ttl_s
        return f"{self._login_url()}&{urlencode({'redirect_params': urlencode({NONCE_PARAM: nonce})})}"

    def redeem(self, query: Mapping[str, str]) -> str:
        """The request token of a successful login this process started, or ``Refused`` with why.

        The nonce is checked and spent first, so a redirect URL that leaked (browser history, a
        screenshot) can never be replayed, whatever else it carries.
        """
        given = query.get(NONCE_PARAM, "").encode()
        if not given:
            raise Refused(403, "this address did not come from an OTrade /login link")
        # Compare in constant time against each live nonce rather than by dict lookup.
        nonce = next((n for n in self._expiry if hmac.compare_digest(n.encode(), given)), None)
        if nonce is None:
            raise Refused(403, "this login link is unknown or was already used; send /login for a new one")
        if self._expiry.pop(nonce) <= self._now():
            raise Refused(403, f"this login link expired (links last {self._ttl_s / 60:.0f} minutes); "
                               "send /login for a new one")
        status = query.get("status", "")
        if status != "success":
            raise Refused(400, f"Kite reports the login as {status[:40] or 'unfinished'!r}, not 'success'; "
                               "send /login to try again")
        token = query.get("request_token", "")
        if not token:
            raise Refused(400, "Kite's redirect carries no request_token; send /login to try again")
        return token


@dataclass(frozen=True)
class LoginCallback:
    """What the web server needs to take Kite's redirect: where, which links, and the shared renewal."""

    path: str
    links: LoginLinks
    renew: Callable[[str], Awaitable[Renewal]]  # the same exchange-and-alert /token uses

    async def answer(self, query: Mapping[str, str]) -> tuple[int, str]:
        """HTTP status and the sentence for the browser."""
        add_secret(query.get("request_token", ""))
        try:
            request_token = self.links.redeem(query)
        except Refused as exc:
            return exc.status, f"Kite login refused: {exc.reason}"
        outcome = await self.renew(request_token)
        return (200 if outcome.ok else 502), outcome.text
