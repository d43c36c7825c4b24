"""The aggregated price-level book that the order-level feeds keep (LOBSTER, Bitstamp).

One job: sum order-level events by price into integer level sizes, remember which levels
changed since the last emitted book message, and hand them out as the ``[[price, size], ...]``
lists ``Reader.book_message`` takes. Sizes are integers in the feed's own unit (shares,
satoshis) so that sums of adds and removes are exact; ``scale`` turns them into the
messages' float sizes.

Names (internal to the data layer): ``LevelBook``; ``pack_ints`` / ``unpack_ints`` (compact
checkpoint state).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import numpy as np
from sortedcontainers import SortedDict

from messages import BID

__all__ = ["LevelBook", "pack_ints", "unpack_ints"]


class LevelBook:
    """Bid and ask levels (price ticks -> integer size) with a set of changed levels.

    >>> b = LevelBook(0.01, 1.0)
    >>> b.add(BID, 10000, 5), b.add(-1, 10002, 3), b.add(BID, 10000, -7)
    (0, 0, 1)
    >>> b.best_bid(), b.best_ask(), b.clamped
    (None, 10002, 1)
    >>> b.take_changes()
    ([[100.0, 0.0]], [[100.02, 3.0]])
    """

    __slots__ = ("bids", "asks", "tick", "scale", "_decimals", "changed_b", "changed_a", "clamped")

    def __init__(self, tick: float, scale: float) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.tick = tick
        self.scale = scale
        self._decimals = max(0, -Decimal(repr(tick)).normalize().as_tuple().exponent)
        self.changed_b: set[int] = set()
        self.changed_a: set[int] = set()
        self.clamped = 0  # removals larger than the level (volume the feed never saw added)

    def side(self, side: int) -> SortedDict:
        """The levels of ``side`` (``BID`` or ``ASK``)."""
        return self.bids if side == BID else self.asks

    def add(self, side: int, price: int, delta: int) -> int:
        """Change the level by ``delta``; a level never goes below 0 (returns 1 when clamped)."""
        lv = self.bids if side == BID else self.asks
        v = lv.get(price, 0) + delta
        clamped = 0
        if v < 0:
            clamped = 1
            self.clamped += 1
            v = 0
        if v == 0:
            lv.pop(price, None)
        else:
            lv[price] = v
        (self.changed_b if side == BID else self.changed_a).add(price)
        return clamped

    def set(self, side: int, price: int, size: int) -> None:
        """Set the level to ``size`` (0 removes it)."""
        lv = self.bids if side == BID else self.asks
        if size <= 0:
            if lv.pop(price, None) is None:
                return
        elif lv.get(price) == size:
            return
        else:
            lv[price] = size
        (self.changed_b if side == BID else self.changed_a).add(price)

    def best_bid(self) -> int | None:
        """Best bid price (ticks), None when empty. O(log n)."""
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self) -> int | None:
        """Best ask price (ticks), None when empty. O(log n)."""
        return self.asks.peekitem(0)[0] if self.asks else None

    def crossed(self) -> bool:
        """Whether best bid >= best ask."""
        return bool(self.bids) and bool(self.asks) and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]

    def top(self, n: int) -> tuple[tuple, tuple]:
        """The best ``n`` levels of each side as ``((price, size), ...)``, best first."""
        nb = len(self.bids)
        bids = tuple((p, self.bids[p]) for p in reversed(self.bids.keys()[max(nb - n, 0):]))
        asks = tuple((p, self.asks[p]) for p in self.asks.keys()[:n])
        return bids, asks

    def price_of(self, ticks: int) -> float:
        """The price of ``ticks`` as the double of its exact decimal (see ``_out``).

        >>> LevelBook(0.01, 1.0).price_of(22395)
        223.95
        """
        return round(ticks * self.tick, self._decimals)

    def _out(self, lv: SortedDict, prices: Any) -> list[list[float]]:
        # price = ticks x tick, rounded to the tick's decimals: the double whose shortest text is
        # the exact decimal price (22395 x 0.01 is 223.95000000000002 unrounded, which the
        # loader's exact tick-grid check refuses)
        tick, scale, nd = self.tick, self.scale, self._decimals
        return [[round(p * tick, nd), lv.get(p, 0) * scale] for p in sorted(prices)]

    def take_changes(self) -> tuple[list, list]:
        """The changed levels as ``[[price, size], ...]`` per side (size 0: removed); forgets them."""
        b = self._out(self.bids, self.changed_b)
        a = self._out(self.asks, self.changed_a)
        self.changed_b = set()
        self.changed_a = set()
        return b, a

    def all_levels(self) -> tuple[list, list]:
        """Every level as ``[[price, size], ...]`` per side; forgets the changes."""
        self.changed_b = set()
        self.changed_a = set()
        return self._out(self.bids, self.bids.keys()), self._out(self.asks, self.asks.keys())

    def dump(self) -> list:
        """The levels, packed (``pack_ints``) for a ``Replay`` checkpoint."""
        return [pack_ints(x for kv in self.bids.items() for x in kv),
                pack_ints(x for kv in self.asks.items() for x in kv)]

    def load(self, d: list) -> None:
        """Restore ``dump()``."""
        b, a = unpack_ints(d[0]), unpack_ints(d[1])
        self.bids = SortedDict(zip(b[0::2], b[1::2], strict=True))
        self.asks = SortedDict(zip(a[0::2], a[1::2], strict=True))


def pack_ints(values: Any) -> str:
    """Integers as one base64 text of int64s.

    A checkpoint then holds one string, not thousands of JSON numbers (a ``Replay`` of the
    Bitstamp day keeps 1,440 checkpoints in memory).

    >>> unpack_ints(pack_ints([1, -2, 3 << 40]))
    [1, -2, 3298534883328]
    """
    return base64.b64encode(np.fromiter(values, np.int64).tobytes()).decode("ascii")


def unpack_ints(text: str) -> list[int]:
    """The integers of ``pack_ints``."""
    return np.frombuffer(base64.b64decode(text), np.int64).tolist()
