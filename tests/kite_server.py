"""A local Kite Connect v3 server (aiohttp) on 127.0.0.1 for the real client: the REST envelope,
order book and the binary WebSocket ticker, with faults on demand."""

import asyncio
import hashlib
import itertools
from datetime import datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from engine.brokers.kite.ticker_codec import Tick, encode_frame

API_KEY, API_SECRET = "kitekey123", "kitesecret456"
INSTRUMENTS_CSV = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange\n"
    "408065,1594,INFY,INFOSYS,0,,0,0.1,1,EQ,NSE,NSE\n"
    "779521,3045,SBIN,STATE BANK OF INDIA,0,,0,0.05,1,EQ,NSE,NSE\n")
STATIC_IP_REFUSAL = "Order placement is allowed only from the static IP registered for this app."
MP_REFUSAL = ("Market orders without market protection are not allowed via API. "
              "Please set market protection or use a Limit order.")


class FakeKite:
    def __init__(self) -> None:
        self.access_token = "tok-day-1"
        self.orders: dict[str, list[dict[str, Any]]] = {}  # order id -> history rows
        self.place_calls = 0
        # for the next place calls: "500-after", "hang-after", "429", "500-before", "static-ip"
        self.faults: list[str] = []
        self.reject_reason = ""  # when set, placed orders (of reject_types, if any) are REJECTED with it
        self.reject_types: set[str] = set()
        self.cancel_refusal = ""  # when set, cancels are refused with it
        self.hang_s = 3.0
        self._ids = itertools.count(250_000_000_000_001)
        self.sockets: list[web.WebSocketResponse] = []
        self.subscribed: set[int] = set()
        self.modes: dict[int, str] = {}
        self.requests: list[str] = []
        self.modifies: list[dict[str, str]] = []  # the form of every modify call
        self.net_positions: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> str:
        app = web.Application()
        r = app.router
        r.add_post("/session/token", self.session_token)
        r.add_get("/user/profile", self.profile)
        r.add_get("/orders", self.list_orders)
        r.add_get("/orders/{order_id}", self.history)
        r.add_post("/orders/{variety}", self.place)
        r.add_put("/orders/{variety}/{order_id}", self.modify)
        r.add_delete("/orders/{variety}/{order_id}", self.cancel)
        r.add_get("/trades", self.trades)
        r.add_get("/portfolio/positions", self.positions)
        r.add_get("/quote/ltp", self.ltp)
        r.add_get("/instruments/{exchange}", self.instruments)
        r.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self.base

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self.runner:
            await self.runner.cleanup()

    # --- envelope ------------------------------------------------------------------------------
    @staticmethod
    def ok(data: Any) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "success", "data": data}), content_type="application/json")

    @staticmethod
    def error(status: int, error_type: str, message: str) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "error", "message": message, "error_type": error_type,
                                               "data": None}), status=status, content_type="application/json")

    def authorised(self, request: web.Request) -> bool:
        return (request.headers.get("X-Kite-Version") == "3"
                and request.headers.get("Authorization") == f"token {API_KEY}:{self.access_token}")

    def refuse(self) -> web.Response:
        return self.error(403, "TokenException", "Incorrect `api_key` or `access_token`.")

    # --- REST ----------------------------------------------------------------------------------
    async def session_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = hashlib.sha256(f"{API_KEY}{form['request_token']}{API_SECRET}".encode()).hexdigest()
        if form.get("api_key") != API_KEY or form.get("checksum") != expected:
            return self.error(403, "TokenException", "Token is invalid or has expired.")
        self.access_token = f"tok-{form['request_token']}"
        return self.ok({"user_id": "AB1234", "access_token": self.access_token, "public_token": "pub"})

    async def profile(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return self.ok({"user_id": "AB1234", "user_name": "Test Trader", "exchanges": ["NSE", "BSE"]})

    async def place(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        self.place_calls += 1
        fault = self.faults.pop(0) if self.faults else ""
        if fault == "429":
            return self.error(429, "NetworkException", "Too many requests")
        if fault == "static-ip":
            return self.error(403, "PermissionException", STATIC_IP_REFUSAL)
        if fault == "500-before":
            return self.error(502, "", "Bad gateway")
        form = dict(await request.post())
        if form.get("order_type") in ("MARKET", "SL-M") and form.get("market_protection") in (None, "", "0"):
            return self.error(400, "InputException", MP_REFUSAL)
        order_id = str(next(self._ids))
        rejected = self.reject_reason and (not self.reject_types or form.get("order_type") in self.reject_types)
        status, message = ("REJECTED", self.reject_reason) if rejected else (
            "TRIGGER PENDING" if form.get("order_type") in ("SL", "SL-M") else "OPEN", "")
        row = {"order_id": order_id, "status": status, "status_message": message, "tag": form.get("tag"),
               "tradingsymbol": form.get("tradingsymbol"), "exchange": form.get("exchange"),
               "transaction_type": form.get("transaction_type"), "order_type": form.get("order_type"),
               "quantity": int(form.get("quantity", 0)), "price": float(form.get("price") or 0),
               "trigger_price": float(form.get("trigger_price") or 0), "filled_quantity": 0,
               "pending_quantity": int(form.get("quantity", 0)), "average_price": 0,
               "variety": request.match_info["variety"], "product": form.get("product"),
               "exchange_timestamp": datetime.now().isoformat(sep=" ", timespec="seconds")}
        self.orders[order_id] = [row]
        if fault == "500-after":
            return self.error(503, "", "Service unavailable")
        if fault == "hang-after":
            await asyncio.sleep(self.hang_s)
        return self.ok({"order_id": order_id})

    async def modify(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        order_id = request.match_info["order_id"]
        if order_id not in self.orders:
            return self.error(400, "InputException", "Invalid order_id")
        form = dict(await request.post())
        self.modifies.append(form)
        row = {**self.orders[order_id][-1], **{k: float(v) for k, v in form.items() if k.endswith("price")}}
        if "order_type" in form:
            if form["order_type"] in ("MARKET", "SL-M") and form.get("market_protection") in (None, "", "0"):
                return self.error(400, "InputException", MP_REFUSAL)
            row["order_type"] = form["order_type"]
        if "quantity" in form:
            row["quantity"] = int(form["quantity"])
            row["pending_quantity"] = row["quantity"] - row["filled_quantity"]
        self.orders[order_id].append(row)
        return self.ok({"order_id": order_id})

    async def cancel(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        order_id = request.match_info["order_id"]
        last = self.orders.get(order_id, [{}])[-1]
        if self.cancel_refusal:
            return self.error(400, "OrderException", self.cancel_refusal)
        if last.get("status") not in ("OPEN", "TRIGGER PENDING"):
            return self.error(400, "OrderException", f"Order cannot be cancelled as it is {last.get('status')}")
        self.orders[order_id].append({**last, "status": "CANCELLED"})
        return self.ok({"order_id": order_id})

    async def list_orders(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return self.ok([rows[-1] for rows in self.orders.values()])

    async def history(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return self.ok(self.orders.get(request.match_info["order_id"], []))

    async def trades(self, request: web.Request) -> web.Response:
        return self.ok([]) if self.authorised(request) else self.refuse()

    async def positions(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return self.ok({"net": self.net_positions, "day": self.net_positions})

    async def ltp(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        prices = {"NSE:INFY": (408065, 1074.35), "NSE:SBIN": (779521, 801.1)}
        return self.ok({i: {"instrument_token": prices[i][0], "last_price": prices[i][1]}
                        for i in request.query.getall("i") if i in prices})

    async def instruments(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return self.refuse()
        return web.Response(text=INSTRUMENTS_CSV, content_type="text/csv")

    # --- WebSocket ticker ----------------------------------------------------------------------
    async def ws(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("api_key") != API_KEY or request.query.get("access_token") != self.access_token:
            return web.Response(status=403, text="Forbidden")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = orjson.loads(msg.data)
                self.requests.append(req["a"])
                if req["a"] == "subscribe":
                    self.subscribed.update(req["v"])
                elif req["a"] == "mode":
                    mode, tokens = req["v"]
                    self.subscribed.update(tokens)
                    self.modes.update(dict.fromkeys(tokens, mode))
        finally:
            self.sockets.remove(ws)
        return ws

    async def complete(self, order_id: str, price: float) -> None:
        """The exchange fills an order: the book changes and the ticker says so (like a postback)."""
        last = self.orders[order_id][-1]
        await self.fill(order_id, last["quantity"] - last["filled_quantity"], price)

    async def fill(self, order_id: str, qty: int, price: float) -> None:
        """The exchange fills ``qty`` more of an order at ``price`` (COMPLETE once nothing is pending)."""
        last = self.orders[order_id][-1]
        filled = last["filled_quantity"] + qty
        average = (last["average_price"] * last["filled_quantity"] + price * qty) / filled
        pending = last["quantity"] - filled
        row = {**last, "status": "COMPLETE" if pending == 0 else last["status"], "filled_quantity": filled,
               "pending_quantity": pending, "average_price": round(average, 2)}
        self.orders[order_id].append(row)
        await self.push_raw(orjson.dumps({"type": "order", "data": row}).decode())

    async def trigger(self, order_id: str) -> None:
        """A stop's trigger price is reached: the order is OPEN at the exchange, not yet filled."""
        row = {**self.orders[order_id][-1], "status": "OPEN"}
        self.orders[order_id].append(row)
        await self.push_raw(orjson.dumps({"type": "order", "data": row}).decode())

    async def cancel_rest(self, order_id: str, message: str = "") -> None:
        """The exchange (or the trader, outside OTrade) cancels what is left of an order."""
        row = {**self.orders[order_id][-1], "status": "CANCELLED", "status_message": message}
        self.orders[order_id].append(row)
        await self.push_raw(orjson.dumps({"type": "order", "data": row}).decode())

    def seed_order(self, **row: Any) -> str:
        """An order already in the book before the client starts (an earlier run's, or the trader's)."""
        order_id = str(next(self._ids))
        self.orders[order_id] = [{"order_id": order_id, "exchange": "NSE", "filled_quantity": 0, "price": 0.0,
                                  "trigger_price": 0.0, "average_price": 0, "status_message": "", **row}]
        return order_id

    def working(self) -> dict[str, dict]:
        return {k: v[-1] for k, v in self.orders.items() if v[-1]["status"] in ("OPEN", "TRIGGER PENDING")}

    async def push(self, ticks: list[Tick]) -> None:
        frame = encode_frame(ticks)
        for ws in list(self.sockets):
            await ws.send_bytes(frame)

    async def push_raw(self, data: bytes | str) -> None:
        for ws in list(self.sockets):
            await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
