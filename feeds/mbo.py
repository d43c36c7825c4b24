"""The aggregated price-level book that the order-level feeds keep (LOBSTER, Bitstamp).

One job: sum order-level events by price into integer level sizes, remember which levels
changed since the last emitted book message, and hand them out as the ``[[price, size], ...]``
lists ``Reader.book_message`` takes. Sizes are integers in the feed's own unit (shares,
satoshis) so that sums of adds and removes are exact; ``scale`` turns them into the
messages' float sizes.

Name (internal to the data layer): ``LevelBook``.
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedDict

from messages import BID

__all__ = ["LevelBook"]


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

    __slots__ = ("bids", "asks", "tick", "scale", "changed_b", "changed_a", "clamped")

    def __init__(self, tick: float, scale: float) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.tick = tick
        self.scale = scale
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

    def _out(self, lv: SortedDict, prices: Any) -> list[list[float]]:
        tick, scale = self.tick, self.scale
        return [[p * tick, lv.get(p, 0) * scale] for p in sorted(prices)]

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
        """The levels as plain lists (a ``Replay`` checkpoint)."""
        return [list(self.bids.items()), list(self.asks.items())]

    def load(self, d: list) -> None:
        """Restore ``dump()``."""
        self.bids = SortedDict((int(p), int(s)) for p, s in d[0])
        self.asks = SortedDict((int(p), int(s)) for p, s in d[1])
