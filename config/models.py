"""Typed configuration with validation errors that name the field, the value and the rule."""

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

NS_PER_MIN = 60_000_000_000
SYMBOL = re.compile(r"^(NSE|BSE):[A-Z0-9][A-Z0-9&_.-]*$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
KITE_RATE_LIMIT = 10


class ConfigError(Exception):
    """Every problem found, one line each: ``path: value rule``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _rule(path: str, message: str) -> PydanticCustomError:
    # Cross-field rules point at the field they are about, not at the model holding it.
    return PydanticCustomError("rule", "{message}", {"message": message, "path": path})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmaCross(Model):
    kind: Literal["ema_cross"]
    fast: int = Field(9, ge=1)
    slow: int = Field(21, ge=2)
    allow_short: bool = False

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "EmaCross":
        if self.fast >= self.slow:
            raise _rule("fast", f"{self.fast} must be smaller than slow ({self.slow})")
        return self


class Orb(Model):
    kind: Literal["orb"]
    minutes: int = Field(15, ge=1, le=360)
    allow_short: bool = False


class VwapReversion(Model):
    kind: Literal["vwap_reversion"]
    window: int = Field(100, ge=2, le=4096)
    k: float = Field(2.0, gt=0)
    allow_short: bool = False


Strategy = Annotated[EmaCross | Orb | VwapReversion, Field(discriminator="kind")]


class Bracket(Model):
    target_pct: float = Field(0.5, gt=0, le=50)
    stop_pct: float = Field(0.25, gt=0, le=50)
    trail_pct: float | None = Field(None, gt=0, le=50)


class Instrument(Model):
    symbol: str
    tick_size: float = Field(gt=0)
    quantity: int = Field(gt=0)
    strategy: Strategy
    bracket: Bracket = Bracket()

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, v: str) -> str:
        if not SYMBOL.match(v):
            raise PydanticCustomError("rule", "{message}",
                                      {"message": f"{v!r} must look like EXCHANGE:SYMBOL, e.g. NSE:INFY"})
        return v


class Session(Model):
    open: str = "09:15"
    close: str = "15:30"
    square_off: str = "15:15"
    on_shutdown: Literal["keep", "flatten"] = "keep"  # open positions when the process stops

    @field_validator("open", "close", "square_off")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not isinstance(v, str) or not HHMM.match(v):
            raise PydanticCustomError("rule", "{message}", {"message": f"{v!r} must be a time as HH:MM"})
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "Session":
        if not self.open < self.square_off < self.close:
            raise _rule("square_off", f"{self.square_off!r} must be after open ({self.open}) "
                                      f"and before close ({self.close})")
        return self

    def ns_after_midnight(self, field: str) -> int:
        hours, minutes = getattr(self, field).split(":")
        return (int(hours) * 60 + int(minutes)) * NS_PER_MIN


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
    admins: list[int] = []  # when given, only these users may send control commands
    confirm_seconds: int = Field(30, ge=5, le=600)
    coalesce_ms: int = Field(1000, ge=0, le=60_000)
    notify: Notify = Notify()


class Server(Model):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)  # $PORT wins when set


class Paper(Model):
    slippage_ticks: int = Field(0, ge=0)
    feed: Literal["synthetic", "replay"] = "synthetic"
    seed: int = 7
    replay_file: str | None = None
    speed: float = Field(1.0, ge=0)  # replay pace; 0 = as fast as possible
    tick_interval_ms: int = Field(250, ge=1)

    @model_validator(mode="after")
    def _replay_needs_file(self) -> "Paper":
        if self.feed == "replay" and not self.replay_file:
            raise _rule("replay_file", "null must name a tick file when feed is 'replay'")
        return self


class Risk(Model):
    max_daily_loss: float = Field(5000, gt=0)
    max_trades_per_day: int = Field(20, ge=1)
    max_orders_per_second: int = Field(10, ge=1)
    max_quantity: int = Field(1000, ge=1)

    @field_validator("max_orders_per_second")
    @classmethod
    def _kite_limit(cls, v: int) -> int:
        if v > KITE_RATE_LIMIT:
            raise PydanticCustomError("rule", "{message}", {
                "message": f"{v} must be at most {KITE_RATE_LIMIT} "
                           "(Kite's retail limit without a registered algo id)"})
        return v


class Costs(Model):
    brokerage_pct: float = Field(0.03, ge=0)
    brokerage_cap: float = Field(20.0, ge=0)
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
    server: Server = Server()

    @model_validator(mode="after")
    def _cross_rules(self) -> "Config":
        seen: dict[str, int] = {}
        for k, ins in enumerate(self.instruments):
            if ins.symbol in seen:
                raise _rule(f"instruments[{k}].symbol",
                            f"{ins.symbol!r} is already instruments[{seen[ins.symbol]}]")
            seen[ins.symbol] = k
            if ins.quantity > self.risk.max_quantity:
                raise _rule(f"instruments[{k}].quantity",
                            f"{ins.quantity} must be at most risk.max_quantity ({self.risk.max_quantity})")
        return self


def _path(loc: tuple[Any, ...], ctx: dict[str, Any] | None) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item in ("ema_cross", "orb", "vwap_reversion") and parts and parts[-1].endswith("strategy"):
            continue  # the union's tag, not a field
        else:
            parts.append(str(item))
    extra = (ctx or {}).get("path")
    if extra:
        parts.append(extra)
    return ".".join(parts)


def _message(err: dict[str, Any]) -> str:
    path = _path(err["loc"], err.get("ctx"))
    if err["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    if err["type"] == "missing":
        return f"{path}: is required"
    if err["type"] == "rule":
        return f"{path}: {err['msg']}"
    value = err.get("input")
    scalar = isinstance(value, str | int | float | bool | None)
    shown = orjson.dumps(value).decode() if scalar else type(value).__name__
    msg = err["msg"]
    if msg.startswith("Input should"):
        msg = "must" + msg[len("Input should"):]
    return f"{path}: {shown} {msg}"


def validate(data: Any) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_message(e) for e in exc.errors(include_url=False)]) from None


def parse(raw: bytes) -> Config:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON: {exc}"]) from None
    return validate(data)
