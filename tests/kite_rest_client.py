"""A Kite REST client against the strict local Kite server, and a plain order to send with it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.brokers.kite.rest import KiteREST
from tests.kite_server import API_KEY, FakeKite

ORDER = {"tradingsymbol": "INFY", "exchange": "NSE", "transaction_type": "BUY", "order_type": "LIMIT",
         "quantity": 10, "product": "MIS", "price": 1074.3, "validity": "DAY"}


def order(tag: str, **extra) -> dict:
    return {**ORDER, "tag": tag, **extra}


@asynccontextmanager
async def rest_on(server: FakeKite) -> AsyncIterator[tuple[FakeKite, KiteREST]]:
    """``server`` started, and a client of it (1 s timeout); both stopped after."""
    base = await server.start()
    client = KiteREST(API_KEY, server.access_token, base, timeout=1.0)
    try:
        yield server, client
    finally:
        await client.close()
        await server.stop()
