"""Message types at the bottom of the stack: what every feed becomes and every consumer reads.

One job: define the typed, validated messages that ``data_processor`` yields (and every venue
parser in ``feeds/`` produces), the error that bad input raises, and the side constants. This
module imports nothing of the project, so ``order_book``, ``market_features``, the simulated
exchange and the env can all dispatch on these classes (``isinstance`` / a class-keyed map)
instead of on class-name strings. Modelled on hftbacktest's ``types.py``.

Public names:

- ``SnapshotMessage``, ``DeltaMessage``, ``TradeMessage``, ``BookTickerMessage`` and the
  union ``Message``; ``BOOK_MESSAGE_TYPES`` (snapshot, delta).
- ``OrderMessage``: one order-level ("market-by-order") event of an order-level feed
  (LOBSTER, Bitstamp), yielded only with ``order_level=True``; its ``action`` is one of
  ``ORDER_ADD`` / ``ORDER_MODIFY`` / ``ORDER_DELETE`` / ``ORDER_EXECUTE``.
- ``DataFormatError``: a ``ValueError`` naming the file, the 1-based line and what is wrong.
- ``BID`` / ``ASK``: side constants ``+1`` / ``-1`` (``TradeMessage.side`` is the aggressor's).
- ``message_kind(msg)``: ``SNAPSHOT`` / ``DELTA`` / ``TRADE`` / ``BBO`` / ``ORDER`` for a message object.

Units: prices are integer ticks (``price = ticks * tick_size``), sizes floats in the feed's
quantity unit, exchange time ``ts`` in ms, recorder time ``local_ts`` in ns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "ASK",
    "BBO",
    "BID",
    "ORDER",
    "ORDER_ADD",
    "ORDER_DELETE",
    "ORDER_EXECUTE",
    "ORDER_MODIFY",
    "BOOK_MESSAGE_TYPES",
    "DELTA",
    "SNAPSHOT",
    "TRADE",
    "BookTickerMessage",
    "DataFormatError",
    "DeltaMessage",
    "Message",
    "OrderMessage",
    "SnapshotMessage",
    "TradeMessage",
    "message_kind",
]

BID = 1
"""Side constant of the bid (buy) side; ``TradeMessage.side == BID``: the aggressor bought."""
ASK = -1
"""Side constant of the ask (sell) side."""

SNAPSHOT, DELTA, TRADE, BBO, ORDER = 1, 2, 3, 4, 5
"""Message kinds returned by ``message_kind`` (small ints: the hot loops compare them)."""

ORDER_ADD, ORDER_MODIFY, ORDER_DELETE, ORDER_EXECUTE = 1, 2, 3, 4
"""``OrderMessage.action``: a new resting order; a size reduction that is not an execution (a
partial cancel); the removal of the order's remaining size (a cancel); an execution of
(part of) the resting order against an aggressor."""


class DataFormatError(ValueError):
    """Bad input data: names the file, the 1-based line (None if not line-bound) and the reason.

    >>> str(DataFormatError("a.jsonl", 3, "malformed JSON"))
    'a.jsonl:3: malformed JSON'
    >>> str(DataFormatError("a.jsonl", None, "empty file"))
    'a.jsonl: empty file'
    """

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"

    def __reduce__(self):  # picklable across pytest-xdist / multiprocessing workers
        return (DataFormatError, (self.path, self.line, self.reason))


@dataclass(slots=True)
class SnapshotMessage:
    """A full book: replaces both sides of the symbol's book."""

    ts: int
    """Exchange time, ms."""
    symbol: str
    """Instrument, qualified by connection for multi-venue captures (e.g. ``linear:BTCUSDT``)."""
    bids: list[tuple[int, float]]
    """(price in integer ticks, size), in the file's order."""
    asks: list[tuple[int, float]]
    """(price in integer ticks, size), in the file's order."""
    update_id: int | None
    """Bybit ``u`` / Binance ``lastUpdateId``; None where the feed has none."""
    tick_size: float
    """Price = ticks * tick_size (decided once per symbol at the loader)."""
    local_ts: int | None = None
    """Recorder receive time, ns, where the file has it."""
    seq: int | None = None
    """Bybit cross-sequence ``seq`` where present."""
    gap: bool = False
    """True for the first snapshot of a symbol after a recorded gap (a recorder's reconnect,
    ``feeds.cryptofeed``): what came before it is not continuous with what follows, so an
    episode never spans it (``event_driven_env``) and ``Replay.gap_ts`` lists it."""


@dataclass(slots=True)
class DeltaMessage:
    """One exchange diff: sets the size of each listed level; size 0.0 removes the level."""

    ts: int
    """Exchange time, ms."""
    symbol: str
    """Instrument (see ``SnapshotMessage.symbol``)."""
    bids: list[tuple[int, float]]
    """(price in integer ticks, new size)."""
    asks: list[tuple[int, float]]
    """(price in integer ticks, new size)."""
    update_id: int | None
    """Bybit ``u`` / Binance final update id ``u``; None where the feed has none."""
    tick_size: float
    """Price = ticks * tick_size."""
    local_ts: int | None = None
    """Recorder receive time, ns, where the file has it."""
    seq: int | None = None
    """Bybit ``seq`` where present; Binance first update id ``U``."""


@dataclass(slots=True)
class TradeMessage:
    """One public trade."""

    ts: int
    """Exchange trade time, ms (Bybit ``T``, Binance ``T``)."""
    symbol: str
    """Instrument (see ``SnapshotMessage.symbol``)."""
    price: int
    """Trade price in integer ticks."""
    size: float
    """Traded quantity."""
    side: int
    """+1 buyer-initiated (the aggressor bought), -1 seller-initiated."""
    tick_size: float
    """Price = ticks * tick_size."""
    trade_id: str | None = None
    """Exchange trade id as text."""
    local_ts: int | None = None
    """Recorder receive time, ns, where the file has it."""


@dataclass(slots=True)
class BookTickerMessage:
    """Binance ``bookTicker``: the exchange's own best bid/offer (only with ``include_bbo=True``)."""

    ts: int
    """Exchange transaction time ``T``, ms."""
    symbol: str
    """Instrument."""
    update_id: int
    """The book update id ``u`` this BBO belongs to (comparable with ``DeltaMessage.update_id``)."""
    bid_price: int
    """Best bid, integer ticks."""
    bid_size: float
    """Best bid size."""
    ask_price: int
    """Best ask, integer ticks."""
    ask_size: float
    """Best ask size."""
    tick_size: float
    """Price = ticks * tick_size."""
    local_ts: int | None = None
    """Recorder receive time, ns."""


@dataclass(slots=True)
class OrderMessage:
    """One order-level event (order-level feeds with ``order_level=True`` only).

    The aggregated book message of the same event (a ``DeltaMessage``) follows it, so a
    consumer that ignores order messages sees the ordinary L2 stream.
    """

    ts: int
    """Exchange time, ms (Bitstamp: the recorder's receive time; the feed has no event time)."""
    symbol: str
    """Instrument."""
    action: int
    """``ORDER_ADD``, ``ORDER_MODIFY``, ``ORDER_DELETE`` or ``ORDER_EXECUTE``."""
    order_id: int
    """The venue's order id (an order placed before the recording began has an id never added)."""
    side: int
    """Side of the resting order: ``BID`` (+1) or ``ASK`` (-1)."""
    price: int
    """The order's price, integer ticks."""
    size: float
    """Size the event adds (``ORDER_ADD``), removes (modify, delete) or executes."""
    remaining: float
    """The order's resting size after the event (0 after a delete or a full execution)."""
    tick_size: float
    """Price = ticks * tick_size."""
    local_ts: int | None = None
    """Recorder receive time, ns, where the file has it."""


Message = SnapshotMessage | DeltaMessage | TradeMessage | BookTickerMessage | OrderMessage

BOOK_MESSAGE_TYPES: tuple[type, ...] = (SnapshotMessage, DeltaMessage)
"""The message classes that change a book."""

KIND_OF_CLASS: dict[type, int] = {
    SnapshotMessage: SNAPSHOT, DeltaMessage: DELTA, TradeMessage: TRADE, BookTickerMessage: BBO,
    OrderMessage: ORDER,
}
"""Message class -> kind: the one class-keyed map consumers use in hot loops (``KIND_OF_CLASS[type(m)]``)."""


def message_kind(msg: object) -> int:
    """Kind of a message object (``SNAPSHOT``, ``DELTA``, ``TRADE``, ``BBO`` or ``ORDER``).

    Raises:
        TypeError: ``msg`` is not one of this module's message classes.

    >>> message_kind(TradeMessage(ts=1, symbol="X", price=100, size=1.0, side=BID, tick_size=0.1)) == TRADE
    True
    """
    kind = KIND_OF_CLASS.get(type(msg))
    if kind is None:
        for cls, k in KIND_OF_CLASS.items():   # subclasses of the message classes
            if isinstance(msg, cls):
                return k
        raise TypeError(f"not a market message: {type(msg).__module__}.{type(msg).__qualname__} "
                        f"(expected one of {[c.__name__ for c in KIND_OF_CLASS]})")
    return kind
