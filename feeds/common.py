"""What every venue parser shares: tick rule, level conversion, per-symbol state, problems, report.

One job: the venue-independent pieces a parser in ``feeds/`` builds its messages with, so a
venue module holds only its format. Names (internal to the data layer except where
``data_processor`` re-exports them):

- ``Feed``: the base class of a venue parser (the interface ``feeds.reader.Reader`` drives;
  see ``feeds/__init__.py`` for how to add a venue).
- ``infer_tick_size``, ``price_to_ticks`` (public via ``data_processor``): the tick-size rule;
  ``inverse_tick``: ``1 / tick`` in decimal.
- ``levels(raw, inv, cache)``: ``[[price, size], ...]`` -> ``[(ticks, size), ...]``, raising
  ``BadLevels`` on any defect; ``diagnose_levels`` words the defect; ``new_price`` converts
  and checks one price text (the compiled ``_speedups.levels`` calls it back).
- ``SymState``: per-symbol loader state (tick, update-id continuity, sync, light book).
- ``Problem``: one bad record (kind, reason, symbol); ``SeveralSymbols``: a second symbol
  appeared while ``symbol=None``; ``crossed_reason``: the crossing problem's text.
- ``LoadReport`` (public via ``data_processor``), ``DEFAULT_SYMBOL``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

import order_book as _order_book
from feeds.light_book import LightBook
from messages import Message

if TYPE_CHECKING:
    from feeds.reader import Reader

__all__ = [
    "DEFAULT_SYMBOL", "NO_ASK", "NO_BID", "BadLevels", "Feed", "LoadReport", "Problem",
    "SeveralSymbols", "SymState", "crossed_reason", "diagnose_levels", "infer_tick_size",
    "inverse_tick", "levels", "new_price", "price_to_ticks",
]

DEFAULT_SYMBOL = "UNKNOWN"
"""Symbol given to messages of the simplified shape (no topic, no ``s``) when ``symbol=`` is None."""

INF = math.inf
GRID_TOL = 1e-6  # a price further than this (in ticks) from an integer is off the tick grid
_CACHE_LIMIT = 65_536  # distinct price texts kept per symbol before the cache is cleared
_MIN_LEVELS_FOR_GCD = 20  # fewer distinct snapshot prices: the tick is 10**-decimals, not the gcd
NO_BID = -1  # best bid of an empty bid side in the crossing test (tick prices are > 0)
NO_ASK = 1 << 62  # best ask of an empty ask side


# --------------------------------------------------------------------------------------------
# Report and problems
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """Counts of one ``load_messages`` run; filled when passed as ``report=``.

    ``problems`` counts each problem kind (e.g. ``"gap"``, ``"malformed JSON"``);
    ``examples`` keeps the first ``max_examples`` problems as ``"path:line: reason"`` strings.
    """

    messages: Counter = field(default_factory=Counter)
    """Messages yielded, by type name (``snapshot``, ``delta``, ``trade``, ``bbo``)."""
    problems: Counter = field(default_factory=Counter)
    """Problems found (skip mode), by kind."""
    examples: list[str] = field(default_factory=list)
    """The first problems in full, ``path:line: reason``."""
    dropped_deltas: int = 0
    """Deltas not applied because their symbol's book waits for a snapshot after a problem."""
    dropped_trades: int = 0
    """Trades before their symbol's tick size was known (no snapshot yet, no ``tick_size=``)."""
    ignored_lines: int = 0
    """Legal lines without book/trade data (tickers, klines, acks, other symbols' filtered topics)."""
    lines: int = 0
    """Non-blank lines read."""
    symbols: set = field(default_factory=set)
    """Symbols with book or trade messages."""
    checks: Counter = field(default_factory=Counter)
    """Order-level feeds' checks against the file's own truth, by name (e.g. Bitstamp's
    ``"snapshots equal"`` / ``"snapshots compared"``, LOBSTER's ``"rows equal"`` / ``"rows"``,
    unknown orders, reconciliations); see ``feeds/bitstamp.py`` and ``feeds/lobster.py``."""
    max_examples: int = 50
    """How many problems to keep in ``examples``."""

    @property
    def n_problems(self) -> int:
        """Total number of problems."""
        return sum(self.problems.values())

    def summary(self) -> str:
        """One-paragraph human summary."""
        msgs = ", ".join(f"{k}={v}" for k, v in sorted(self.messages.items())) or "none"
        probs = ", ".join(f"{k}={v}" for k, v in sorted(self.problems.items())) or "none"
        return (
            f"{self.lines} lines; messages: {msgs}; problems: {probs}; "
            f"dropped deltas (waiting for snapshot): {self.dropped_deltas}; "
            f"dropped trades (tick size unknown): {self.dropped_trades}; "
            f"ignored lines: {self.ignored_lines}"
        )


class Problem(Exception):
    """One bad record; ``kind`` groups the report, ``symbol`` desyncs that book."""

    def __init__(self, kind: str, reason: str, symbol: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.symbol = symbol


class SeveralSymbols(Exception):
    """A second symbol appeared while ``symbol=None`` (the reader words the error)."""


class BadLevels(Exception):
    """The fast level conversion found a defect (``diagnose_levels`` words it)."""


def crossed_reason(symbol: str, bb: int | None, ba: int | None) -> str:
    """The text of the ``"crossed"`` problem."""
    return f"book of {symbol} is crossed after this message: best bid {bb} >= best ask {ba} (ticks)"


# --------------------------------------------------------------------------------------------
# Pure helpers: tick size and price conversion
# --------------------------------------------------------------------------------------------


def _decimals(text: str) -> int:
    """Number of digits after the decimal point of a price string (no exponent support needed).

    >>> _decimals("65114.20"), _decimals("7")
    (2, 0)
    """
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


def infer_tick_size(prices: Iterable[str | float]) -> float:
    """Infer a tick size from the prices of one snapshot.

    Rule: let ``d`` be the most decimals any price is written with; the tick is the greatest
    common divisor of all prices in units of ``10**-d``. With fewer than 20 distinct prices the
    gcd is not trusted and the tick is ``10**-d``.

    Args:
        prices: price strings as written in the file (numbers are formatted with ``repr``).

    Returns:
        The tick size as a float (e.g. ``0.1``).

    Raises:
        ValueError: no price, or a price that is not a positive decimal number.

    >>> infer_tick_size(["1.9531", "1.9530"])
    0.0001
    >>> infer_tick_size([f"{65000 + i / 10:.2f}" for i in range(0, 60, 3)])  # 0.3 steps, 2 decimals
    0.1
    >>> infer_tick_size(["100.5", "101"])
    0.1
    """
    texts = [p if isinstance(p, str) else repr(float(p)) for p in prices]
    if not texts:
        raise ValueError("cannot infer a tick size from a snapshot without prices")
    d = max(_decimals(t) for t in texts)
    scale = Decimal(10) ** d
    ints = set()
    for t in texts:
        try:
            v = Decimal(t)
        except InvalidOperation:
            raise ValueError(f"price {t!r} is not a number") from None
        if not v.is_finite() or v <= 0:
            raise ValueError(f"price {t!r} is not a positive number")
        ints.add(int(v * scale))
    g = 1
    if len(ints) >= _MIN_LEVELS_FOR_GCD:
        g = 0
        for i in ints:
            g = math.gcd(g, i)
    return float(Decimal(g) / scale)


def inverse_tick(tick_size: float) -> float:
    """1 / tick_size computed in decimal so that ``price * inv`` lands on integers exactly.

    >>> inverse_tick(0.1), inverse_tick(0.0001)
    (10.0, 10000.0)
    """
    return float(1 / Decimal(repr(float(tick_size))))


def price_to_ticks(price: str | float, tick_size: float) -> int:
    """Convert one price to integer ticks, refusing prices off the tick grid.

    Args:
        price: the price as written in the file.
        tick_size: the symbol's tick size.

    Returns:
        ``round(price / tick_size)``.

    Raises:
        ValueError: not a finite positive number, or off the tick grid.

    >>> price_to_ticks("65114.20", 0.1)
    651142
    >>> price_to_ticks("65114.25", 0.1)
    Traceback (most recent call last):
    ...
    ValueError: price '65114.25' is off the tick grid (tick size 0.1)
    """
    x = float(price) * inverse_tick(tick_size)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"price {price!r} is not a finite positive number")
    r = round(x)
    if abs(x - r) > GRID_TOL:
        raise ValueError(f"price {price!r} is off the tick grid (tick size {tick_size})")
    return r


def levels(raw: Any, inv: float, cache: dict) -> list[tuple[int, float]]:
    """Fast path: ``[[price, size], ...]`` → ``[(ticks, size), ...]``; ``BadLevels`` on any defect.

    The compiled ``_speedups.levels`` runs first when built; it returns ``None`` for anything
    it does not handle exactly like this loop, which then decides. Prices repeat (a book lives
    near the mid), so each distinct price text is converted and checked (finite, positive, on
    the tick grid) once and then looked up in ``cache``; every size must be finite and >= 0
    (the chained comparison also refuses NaN). One plain loop: cheaper than several C-level
    passes on short delta lists (docs/CONTRACTS.md). The slow ``diagnose_levels`` only words
    errors.

    >>> levels([["100.5", "2"], ["100.0", "0"]], 10.0, {})
    [(1005, 2.0), (1000, 0.0)]
    """
    sp = _order_book.SPEEDUPS
    if sp is not None:  # the same loop compiled; None: this loop decides (and words any defect)
        out = sp.levels(raw, inv, cache, new_price)
        if out is not None:
            return out
    if not raw:
        if raw is None or isinstance(raw, list):
            return []
        raise BadLevels
    get = cache.get
    out: list[tuple[int, float]] = []
    append = out.append
    try:
        for p, s in raw:
            s = float(s)
            if not 0.0 <= s < INF:  # negative, NaN, inf
                raise BadLevels
            append((get(p) or new_price(p, inv, cache), s))
    except (TypeError, ValueError, OverflowError):
        raise BadLevels from None
    return out


def new_price(p: Any, inv: float, cache: dict) -> int:
    """Convert and check one price text not yet in ``cache`` (``BadLevels`` on a defect)."""
    x = float(p) * inv
    r = round(x)
    if not (abs(x - r) <= GRID_TOL and r > 0):
        raise BadLevels
    if len(cache) >= _CACHE_LIMIT:  # bounded: memory stays flat
        cache.clear()
    cache[p] = r
    return r


def diagnose_levels(raw: Any, inv: float, tick_size: float, side: str) -> str:
    """Word the first defect of a level list (slow path of ``levels``).

    >>> diagnose_levels([["100.05", "1"]], 10.0, 0.1, "b")
    "price '100.05' in 'b' is off the tick grid (tick size 0.1)"
    """
    if not isinstance(raw, list):
        return f"'{side}' is not a list of [price, size] levels"
    for i, level in enumerate(raw):
        if not isinstance(level, list | tuple) or len(level) != 2:
            return f"'{side}' level {i} is not a [price, size] pair: {level!r}"
        reason = _level_defect(level[0], level[1], inv, tick_size, side)
        if reason is not None:
            return reason
    return f"invalid levels in '{side}'"


def _level_defect(p: Any, s: Any, inv: float, tick_size: float, side: str) -> str | None:
    """The defect of one ``[price, size]`` level, or None."""
    try:
        x = float(p) * inv
    except (TypeError, ValueError):
        return f"non-numeric price {p!r} in '{side}'"
    try:
        q = float(s)
    except (TypeError, ValueError):
        return f"non-numeric size {s!r} in '{side}'"
    if math.isnan(x):
        return f"NaN price {p!r} in '{side}'"
    if math.isnan(q):
        return f"NaN size {s!r} in '{side}'"
    if not math.isfinite(x) or x <= 0:
        return f"negative, zero or infinite price {p!r} in '{side}'"
    if q < 0 or not math.isfinite(q):
        return f"negative or infinite size {s!r} in '{side}'"
    if abs(x - round(x)) > GRID_TOL:
        return f"price {p!r} in '{side}' is off the tick grid (tick size {tick_size})"
    return None


# --------------------------------------------------------------------------------------------
# Per-symbol state
# --------------------------------------------------------------------------------------------


class SymState:
    """Per-symbol loader state: tick, continuity, the light book, REST-snapshot sync.

    ``lid`` and ``need_first`` serve venues whose snapshot comes from a REST request next to
    the diff stream (Binance): the applied snapshot's ``lastUpdateId`` and whether the first
    diff covering it is still due.
    """

    __slots__ = ("tick", "inv", "last_u", "last_ts", "synced", "book", "has_u",
                 "lid", "need_first", "pcache")

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.inv = inverse_tick(tick)
        self.pcache: dict = {}  # price text -> validated ticks
        self.last_u: int | None = None
        self.last_ts: int | None = None
        self.synced = False  # a snapshot was applied and no problem since
        self.book = LightBook()
        self.has_u = True  # the last book message carried an update id
        self.lid: int | None = None  # REST snapshot venues: lastUpdateId of the applied snapshot
        self.need_first = False  # REST snapshot venues: the first diff after it is still due

    def dump(self) -> dict:
        """The state as plain JSON values (a ``Replay`` checkpoint; the book is stored apart)."""
        return {"tick": self.tick, "last_u": self.last_u, "last_ts": self.last_ts,
                "synced": self.synced, "has_u": self.has_u, "lid": self.lid,
                "need_first": self.need_first}

    @classmethod
    def load(cls, d: dict, bids: list, asks: list) -> SymState:
        """The state of ``dump()`` with its light book holding ``bids`` / ``asks``."""
        st = cls(d["tick"])
        st.last_u, st.last_ts, st.synced = d["last_u"], d["last_ts"], d["synced"]
        st.has_u, st.lid, st.need_first = d["has_u"], d["lid"], d["need_first"]
        st.book.reset(bids, asks)
        return st


# --------------------------------------------------------------------------------------------
# The venue parser interface
# --------------------------------------------------------------------------------------------


class Feed:
    """Base class of a venue parser: one instance per ``Reader``, shared by its files.

    A subclass sets ``name`` (and ``keep`` / ``need`` for the reader's byte pre-filter),
    implements ``detect`` and ``parse``, and overrides the hooks its format needs. ``parse``
    turns one line into messages with the reader's shared services (``reader.loads``,
    ``reader.want``, ``reader.book_message``, ``reader.trade``) and raises ``Problem`` for a bad
    record; the reader reports it (raise or skip) and goes on.
    """

    name: ClassVar[str] = ""
    """Short format name (``"bybit"``)."""
    keep: ClassVar[bytes | None] = None
    """Lines holding these bytes are parsed even without the filtered symbol's text (records
    that name no symbol but carry state: a connection name, a REST snapshot)."""
    lines_name_symbol: ClassVar[bool] = True
    """Whether a line holds its symbol's text (else the byte pre-filter is off: LOBSTER, Bitstamp)."""
    order_level: ClassVar[bool] = False
    """The format carries order-level events (``OrderMessage`` with ``order_level=True``)."""
    need: ClassVar[bytes | None] = None
    """Lines without these bytes are parsed even without the symbol's text (a shape that names
    no symbol at all)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """Whether a file whose first non-blank line is ``first_line`` is in this format.

        Args:
            first_line: the raw line.
            obj: the line parsed as JSON, or ``feeds.UNPARSED`` where it is not JSON.
        """
        raise NotImplementedError

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one non-blank line (``Problem`` for a bad record)."""
        raise NotImplementedError

    def drop(self) -> bytes | None:
        """Complete lines holding these bytes are counted as ignored without parsing."""
        return None

    def messages(self, fi: int, pairs: bool) -> Iterator[Any]:
        """Every message of file ``fi`` (``load_messages``); default: the per-line path."""
        return self.reader.general_messages(fi, self, pairs)

    def finish(self) -> list[Message]:
        """Messages (and problems) due at the end of the input; default none."""
        return []

    def desync(self, symbol: str) -> None:
        """A problem desynchronised ``symbol``: drop what the parser buffers for it."""

    def waiting(self, symbol: str) -> bool:
        """Whether messages of ``symbol`` are buffered (no ``Replay`` checkpoint then)."""
        return False

    def dump(self) -> dict:
        """Parser state a ``Replay`` checkpoint must restore (plain JSON values)."""
        return {}

    def load(self, extra: dict) -> None:
        """Restore the state of ``dump`` (keys absent: the initial state)."""
