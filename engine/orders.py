"""Order vocabulary shared by the engine and every broker (Kite's names and statuses)."""

import itertools
import re
import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SL_M = "SL-M"


class Status(StrEnum):
    """Kite's order statuses, and SUBMITTED for an order Kite has not said a word about yet."""

    SUBMITTED = "SUBMITTED"
    PUT_ORDER_REQ_RECEIVED = "PUT ORDER REQ RECEIVED"
    VALIDATION_PENDING = "VALIDATION PENDING"
    OPEN_PENDING = "OPEN PENDING"
    OPEN = "OPEN"
    TRIGGER_PENDING = "TRIGGER PENDING"
    MODIFY_VALIDATION_PENDING = "MODIFY VALIDATION PENDING"
    MODIFY_PENDING = "MODIFY PENDING"
    CANCEL_PENDING = "CANCEL PENDING"
    AMO_REQ_RECEIVED = "AMO REQ RECEIVED"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


FINAL = frozenset({Status.COMPLETE, Status.CANCELLED, Status.REJECTED})


class Purpose(StrEnum):
    """Why the engine sent an order: ties broker orders back to brackets."""

    ENTRY = "entry"
    TARGET = "target"
    STOP = "stop"
    EXIT = "exit"
    REPAIR = "repair"  # undoes an excess fill (both legs of a bracket filled in a race)


@dataclass
class OrderRequest:
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    price: float | None = None
    trigger_price: float | None = None
    tag: str = ""
    product: str = "MIS"


@dataclass
class Order:
    order_id: str
    request: OrderRequest
    status: Status
    placed_ns: int
    updated_ns: int
    filled_quantity: int = 0
    average_price: float = 0.0
    status_message: str = ""
    purpose: Purpose | None = None
    history: list[tuple[int, Status]] = field(default_factory=list)
    # changes asked for that the venue has not confirmed yet (request holds what it confirmed)
    pending: dict[str, Any] = field(default_factory=dict)

    @property
    def working(self) -> bool:
        return self.status not in FINAL

    def wants(self, name: str) -> Any:
        """The request field as it will be once the pending changes are confirmed."""
        return self.pending.get(name, getattr(self.request, name))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.request)
        data.update(order_id=self.order_id, status=str(self.status), filled_quantity=self.filled_quantity,
                    average_price=self.average_price, status_message=self.status_message,
                    purpose=str(self.purpose) if self.purpose else None)
        return data


@dataclass(frozen=True)
class Fill:
    order_id: str
    symbol: str
    side: Side
    quantity: int
    price: float
    ts_ns: int


OUR_TAG = re.compile(r"ot[0-9a-f]{12}")


class TagMaker:
    """Unique order tags within Kite's 20-character limit: a per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = "ot" + secrets.token_hex(3)
        self._seq = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._seq):06x}"

    @staticmethod
    def made_by_otrade(tag: str | None) -> bool:
        """A tag of this or an earlier OTrade run (orders without one are the trader's)."""
        return bool(tag and OUR_TAG.fullmatch(tag))
