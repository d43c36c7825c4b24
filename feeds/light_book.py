"""The loader's own minimal book: two price -> size dicts with the best prices tracked.

One job: let the loader check crossing (and ``Replay`` take its checkpoints, the CLI its
top-of-book rows) when the caller gave it no ``order_book.OrderBook`` (``load_messages``
without ``book=``).

Why a second book exists (measured, ``benchmarks/bench_replay.py``, same run, compiled loops):
``load_messages`` with this book ("loader l/s") against the same load keeping an ``OrderBook``
("replay l/s"), lines per second (issue 11 measurement, 2 h synthetic input)::

    input                      LightBook   OrderBook   OrderBook cost
    bybit linear ws, 4 sym       122,270     109,829      -10 %
    bybit linear ws, split       180,617     161,954      -10 %
    binance btcusdt 0808         279,536     276,393       -1 %
    synthetic ETHUSDT 2h         239,611     225,505       -6 %

An ``OrderBook`` keeps its keys sorted (``SortedDict``: a new or removed price touches the
sorted key list); the crossing check only needs the two best prices, which plain dicts give in
O(1) per level, recomputing a side's best (``max`` / ``min``) only when the best level itself is
removed. Where a caller keeps an ``OrderBook`` anyway, ``load_messages(book=...)`` /
``replay()`` check crossing on that book and this one is not built at all.

Name: ``LightBook`` (internal to the data layer).
"""

from __future__ import annotations

import heapq

__all__ = ["LightBook"]


class LightBook:
    """Price→size dicts per side with the best prices tracked; best recomputed only on removal.

    Example:
        >>> b = LightBook()
        >>> b.reset([(100, 1.0), (99, 2.0)], [(101, 1.0)])
        >>> b.update([(100, 0.0)], [(101, 0.0), (102, 3.0)])
        >>> b.bb, b.ba, b.crossed(), b.top(1)
        (99, 102, False, ([(99, 2.0)], [(102, 3.0)]))
    """

    __slots__ = ("bids", "asks", "bb", "ba")

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.bb: int | None = None
        self.ba: int | None = None

    def reset(self, bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> None:
        """Replace both sides (a snapshot); size 0 levels are not stored."""
        # dict() first: a repeated price keeps its last size, as OrderBook does
        self.bids = {p: s for p, s in dict(bids).items() if s > 0.0}
        self.asks = {p: s for p, s in dict(asks).items() if s > 0.0}
        self.bb = max(self.bids) if self.bids else None
        self.ba = min(self.asks) if self.asks else None

    def update(self, bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> None:
        """Apply a delta: size 0 removes a level, any other size sets it."""
        if bids:
            d = self.bids
            bb = self.bb
            stale = False
            for p, s in bids:
                if s > 0.0:
                    d[p] = s
                    if bb is None or p > bb:
                        bb = p
                elif d.pop(p, None) is not None and p == bb:
                    stale = True
            self.bb = (max(d) if d else None) if stale else bb
        if asks:
            d = self.asks
            ba = self.ba
            stale = False
            for p, s in asks:
                if s > 0.0:
                    d[p] = s
                    if ba is None or p < ba:
                        ba = p
                elif d.pop(p, None) is not None and p == ba:
                    stale = True
            self.ba = (min(d) if d else None) if stale else ba

    def crossed(self) -> bool:
        """Whether the best bid is at or above the best ask."""
        return self.bb is not None and self.ba is not None and self.bb >= self.ba

    def top(self, n: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Best ``n`` levels per side, best first."""
        bids = [(p, self.bids[p]) for p in heapq.nlargest(n, self.bids)]
        asks = [(p, self.asks[p]) for p in heapq.nsmallest(n, self.asks)]
        return bids, asks
