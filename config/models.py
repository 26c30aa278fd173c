"""Typed configuration with validation errors that name the field, the value and the rule."""

import re
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

NS_PER_MIN = 60_000_000_000
SYMBOL = re.compile(r"^(NSE|BSE):[A-Z0-9][A-Z0-9&_.-]*$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
URL_PATH = re.compile(r"^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$")  # no dot segments, query or trailing slash
WEB_URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/-]*)?$")  # an origin, and a proxy's prefix
KITE_RATE_LIMIT = 10
PYDANTIC_SHOULD = re.compile(r"^(Input|List|Value|String|Dictionary) should")
# A field (or section) the running process reads only when it starts: a change to it is saved and
# takes effect after a restart. Every other field is re-applied live (Engine.apply_config, the
# session scheduler's retime, the order throttle, or read afresh on each use).
RESTART = {"restart": True}


class ConfigError(Exception):
    """Every problem found, one line each: ``path: value rule``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _broken(rules: list[tuple[str, str]], absolute: bool = False) -> None:
    """Raise every broken rule at once as ``(path, message)`` pairs.

    ``path`` extends the location of the validator raising it (so cross-field rules point at the field they
    are about, not at the model holding it), or replaces it when ``absolute``.
    """
    if rules:
        raise PydanticCustomError("rules", "{message}", {
            "message": "; ".join(m for _, m in rules), "rules": rules, "absolute": absolute})


def rule_errors(rules: list[tuple[str, str]]) -> None:
    """Fail every broken ``(field, message)`` rule at once, as the config's own rules do: for
    validators outside this module (a strategy's rules over its parameters)."""
    _broken(rules)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategyCatalog(Protocol):
    """Where strategies are found by name (engine.strategies: the built-ins, a folder, packages)."""

    def model(self, kind: str) -> type[BaseModel]:
        """The parameters model of strategy ``kind``; ValueError saying why there is none."""
        ...


class Bracket(Model):
    target_pct: float = Field(0.5, gt=0, le=50)
    stop_pct: float = Field(0.25, gt=0, le=50)
    trail_pct: float | None = Field(None, gt=0, le=50)
    # Kite allows 25 modifications per order: a trailing stop moves by at least this many ticks,
    # and at most once per trail_interval_s (the same rule in backtest, paper and live)
    trail_step_ticks: int = Field(1, ge=1, le=1000)
    trail_interval_s: float = Field(0.0, ge=0, le=3600)


class Instrument(Model):
    symbol: str
    tick_size: float = Field(gt=0)
    quantity: int = Field(gt=0)
    strategy: Any  # the parameters model of the strategy its kind names (see _strategy)
    bracket: Bracket = Bracket()

    @field_validator("strategy", mode="plain")
    @classmethod
    def _strategy(cls, v: Any, info: ValidationInfo) -> BaseModel:
        """Validated by the model its strategy declares, its errors placed under this field."""
        if isinstance(v, BaseModel):
            return v
        if not isinstance(v, dict):
            _broken([("", f"{_show(v)} must be an object naming its kind, e.g. {{\"kind\": \"ema_cross\"}}")])
        if "kind" not in v:
            _broken([("kind", "is required")])
        catalog = (info.context or {})["strategies"]
        try:
            model = catalog.model(v["kind"])
        except ValueError as exc:
            _broken([("kind", str(exc))])
        try:
            return model.model_validate(v)
        except ValidationError as exc:
            _broken([pair for e in exc.errors(include_url=False) for pair in _pairs(e)])

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, v: str) -> str:
        if not SYMBOL.match(v):
            _broken([("", f"{v!r} must look like EXCHANGE:SYMBOL, e.g. NSE:INFY")])
        return v


class Session(Model):
    open: str = "09:15"
    close: str = "15:30"
    square_off: str = "15:15"
    # open positions when the process stops (the value it started with)
    on_shutdown: Literal["keep", "flatten"] = Field("keep", json_schema_extra=RESTART)
    stale_feed_seconds: int = Field(30, ge=1, le=3600)  # no tick this long in session: alert, no entries
    token_check: str = "08:45"  # live: check the broker session each trading day at this time
    token_alert_minutes: int = Field(5, ge=1, le=120)  # repeat the expired-token alert this often

    @field_validator("open", "close", "square_off", "token_check")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not HHMM.match(v):
            _broken([("", f"{v!r} must be a time as HH:MM")])
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "Session":
        # Zero-padded HH:MM strings order like the times they name.
        if not self.open < self.square_off < self.close:
            _broken([("square_off", f"{self.square_off!r} must be after open ({self.open}) "
                                    f"and before close ({self.close})")])
        return self

    def ns_after_midnight(self, field: Literal["open", "close", "square_off"]) -> int:
        """``"09:15"`` -> 9 h 15 min in nanoseconds, for comparing with tick timestamps."""
        if field not in ("open", "close", "square_off"):
            raise ValueError(f"session has no time named {field!r}")
        text: str = getattr(self, field)
        return (int(text[:2]) * 60 + int(text[3:])) * NS_PER_MIN


# What live trading can hold the session times to (issue 20). NSE's normal market is 09:15–15:30 IST;
# the quarter hour before it is the pre-open call auction. Zerodha squares off open intraday (MIS)
# positions itself from about 15:20 (shared/kite/README.md, "Indian market rules"): its rule, not NSE's.
NSE_OPEN = "09:15"
NSE_CLOSE = "15:30"
ZERODHA_MIS_SQUARE_OFF = "15:20"


def live_session_problems(session: Session) -> list[str]:
    """Why the exchange or Zerodha would defeat these session times in live trading, one line each
    (``path: value rule``, as ConfigError's); empty when nothing would. Not a validator: paper,
    rehearsals and backtests take any hours, and a special session (Muhurat trading) takes the
    calendar's hours, not these."""
    problems = []
    if session.open < NSE_OPEN:
        problems.append(f"session.open: {session.open!r} must be {NSE_OPEN} or later for live trading: NSE's normal "
                        f"market opens at {NSE_OPEN}, and before it is the pre-open call auction (09:00–09:15), "
                        "not continuous trading (the exchange's rule)")
    if session.square_off >= ZERODHA_MIS_SQUARE_OFF:
        problems.append(f"session.square_off: {session.square_off!r} must be before {ZERODHA_MIS_SQUARE_OFF} for "
                        f"live trading: from about {ZERODHA_MIS_SQUARE_OFF} Zerodha squares off open intraday (MIS) "
                        "positions itself, at ₹50 + GST an order (Zerodha's rule, not the exchange's: NSE trades "
                        f"to {NSE_CLOSE})")
    if session.close > NSE_CLOSE:
        problems.append(f"session.close: {session.close!r} must be {NSE_CLOSE} or earlier for live trading: NSE's "
                        "normal market closes then, and an intraday order is not taken after it (the exchange's "
                        "rule)")
    return problems


Level = Literal["on", "silent", "off"]


class Notify(Model):
    """Per event type: ``on``, ``silent`` (delivered without sound) or ``off``."""

    order_placed: Level = "silent"
    fill: Level = "on"
    rejected: Level = "on"
    trade_closed: Level = "on"
    alert: Level = "on"
    session: Level = "silent"
    report: Level = "on"


class Bot(Model):
    allowed_chats: list[int] = []
    admins: list[int] = []  # who may send control commands in a group (a private chat's own user always may)
    confirm_seconds: int = Field(30, ge=5, le=600)
    coalesce_ms: int = Field(1000, ge=0, le=60_000)
    notify: Notify = Notify()


class Server(Model):
    host: str = "127.0.0.1"  # this machine only; "0.0.0.0" for a host that checks health from outside
    port: int = Field(8080, ge=1, le=65535)  # $PORT wins when set
    login_callback: str | None = None  # live: the path Kite's login redirect lands on; null = /token by hand
    # the monitoring page: where a browser reaches this server (a tunnel's, Tailscale's or a TLS proxy's
    # address; null = http://127.0.0.1:<port>), and how long a /web link (and the session it opens) lasts
    web_url: str | None = None
    web_link_hours: float = Field(4.0, gt=0, le=168)

    @field_validator("login_callback")
    @classmethod
    def _callback_path(cls, v: str | None) -> str | None:
        if v is not None and not URL_PATH.match(v):
            _broken([("", f"{v!r} must be an absolute path of letters, digits and -_.~ segments, "
                          "e.g. '/kite/callback'")])
        if v == "/healthz":
            _broken([("", f"{v!r} must not be the health check's path")])
        if v is not None and (v + "/").startswith("/web/"):
            _broken([("", f"{v!r} must not be under /web, the monitoring page's")])
        return v

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, v: str | None) -> str | None:
        if v is not None and not WEB_URL.match(v):
            _broken([("", f"{v!r} must be an http:// or https:// address without a query, e.g. "
                          "'https://otrade.example.ts.net' or 'http://127.0.0.1:8080'")])
        return v.rstrip("/") if v is not None else v


class Paper(Model):
    slippage_ticks: int = Field(0, ge=0)
    # the paper feed is made once, at start
    feed: Literal["synthetic", "replay"] = Field("synthetic", json_schema_extra=RESTART)
    seed: int = Field(7, json_schema_extra=RESTART)
    replay_file: str | None = Field(None, json_schema_extra=RESTART)
    # replay pace; 0 = as fast as possible (the replay feed relies on it)
    speed: float = Field(1.0, ge=0, json_schema_extra=RESTART)
    tick_interval_ms: int = Field(250, ge=1, json_schema_extra=RESTART)

    @model_validator(mode="after")
    def _replay_needs_file(self) -> "Paper":
        if self.feed == "replay" and not self.replay_file:
            _broken([("replay_file", f"{orjson.dumps(self.replay_file).decode()} must name a tick file "
                                     "when feed is 'replay'")])
        return self


class Risk(Model):
    max_daily_loss: float = Field(5000, gt=0)
    max_trades_per_day: int = Field(20, ge=1)
    max_orders_per_second: int = Field(10, ge=1)
    max_quantity: int = Field(1000, ge=1)
    # live: Kite turns market orders into limits at a protection price, which a fast move can leave
    # behind; an exit (or a triggered stop) that has not filled for this long is re-priced at market
    exit_reprice_seconds: float = Field(5.0, gt=0)
    # live: whatever happens (refusals, re-arming, repairs), at most this many orders are placed for
    # one instrument's position in any minute
    max_orders_per_position_minute: int = Field(12, ge=3, le=100, json_schema_extra=RESTART)
    # live: a place call whose answer was lost is looked for in Kite's order book this long (longer
    # than the book's lag) before it is taken as never placed
    order_lookup_seconds: float = Field(15.0, ge=2, le=300, json_schema_extra=RESTART)

    @field_validator("max_orders_per_second")
    @classmethod
    def _kite_limit(cls, v: int) -> int:
        if v > KITE_RATE_LIMIT:
            _broken([("", f"{v} must be at most {KITE_RATE_LIMIT} (Kite's retail limit without a registered algo id)")])
        return v


class Costs(Model):
    """Indian intraday equity charges, Zerodha-like; percentages unless the name says otherwise."""

    brokerage_pct: float = Field(0.03, ge=0)
    brokerage_cap: float = Field(20.0, ge=0)  # rupees per executed order
    stt_sell_pct: float = Field(0.025, ge=0)
    exchange_pct: float = Field(0.00297, ge=0)
    sebi_per_crore: float = Field(10.0, ge=0)
    gst_pct: float = Field(18.0, ge=0)
    stamp_buy_pct: float = Field(0.003, ge=0)


class Config(Model):
    instruments: list[Instrument] = Field(min_length=1)
    session: Session = Session()
    paper: Paper = Paper()
    risk: Risk = Risk()
    costs: Costs = Costs()
    bot: Bot = Bot()
    server: Server = Field(Server(), json_schema_extra=RESTART)  # served from the start

    # Cross-section rules are field validators, not a model validator: pydantic skips model validators as soon
    # as any field fails, and a typo in `costs` must not hide a duplicate symbol.
    @field_validator("instruments")
    @classmethod
    def _unique_symbols(cls, instruments: list[Instrument]) -> list[Instrument]:
        seen: dict[str, int] = {}
        rules = []
        for k, ins in enumerate(instruments):
            if ins.symbol in seen:
                rules.append((f"[{k}].symbol", f"{ins.symbol!r} is already instruments[{seen[ins.symbol]}]"))
            seen.setdefault(ins.symbol, k)
        _broken(rules)
        return instruments

    @field_validator("risk")
    @classmethod
    def _quantities_within_limit(cls, risk: Risk, info: ValidationInfo) -> Risk:
        # Fields validate in order, so valid instruments are already in info.data.
        _broken([(f"instruments[{k}].quantity", f"{ins.quantity} must be at most risk.max_quantity "
                                                f"({risk.max_quantity})")
                 for k, ins in enumerate(info.data.get("instruments", ())) if ins.quantity > risk.max_quantity],
                absolute=True)
        return risk


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
    return out


def _join(base: str, rel: str) -> str:
    if not rel:
        return base
    return f"{base}{rel}" if rel.startswith("[") or not base else f"{base}.{rel}"


def _show(value: Any) -> str:
    # JSON spelling (null, true, "text"): the reader is editing a JSON file; big objects by their type only.
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        return type(value).__name__
    return text if len(text) <= 40 or isinstance(value, str) else type(value).__name__


def _pairs(err: Any) -> list[tuple[str, str]]:
    """One validation error as (path, what is wrong with it) pairs."""
    path = _path(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "rules":
        base = "" if ctx["absolute"] else path
        return [(_join(base, rel), msg) for rel, msg in ctx["rules"]]
    if kind == "extra_forbidden":
        return [(path, "unknown field")]
    if kind == "missing":
        return [(path, "is required")]
    msg = PYDANTIC_SHOULD.sub("must", err["msg"], count=1).replace(" after validation", "")
    return [(path, f"{_show(err.get('input'))} {msg}")]


def _messages(err: Any) -> list[str]:
    return [f"{path or 'config'}: {msg}" for path, msg in _pairs(err)]


def validate(data: Any, strategies: StrategyCatalog) -> Config:
    """A Config from parsed JSON, or ConfigError listing every problem. Strategy kinds are looked up
    in ``strategies`` (``engine.strategies``' catalogs: the config sits below the strategies, which
    declare their parameters with its models, so it is handed where to find them)."""
    try:
        return Config.model_validate(data, context={"strategies": strategies})
    except ValidationError as exc:
        raise ConfigError([m for e in exc.errors(include_url=False) for m in _messages(e)]) from None


def parse(raw: bytes, strategies: StrategyCatalog) -> Config:
    """A Config from the bytes of a JSON file, or ConfigError (bad JSON: with its line and column)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    return validate(data, strategies)
