"""What every venue parser shares: tick rule, level conversion, per-symbol state, problems, report.

One job: the venue-independent pieces a parser in ``feeds/`` builds its messages with, so a
venue module holds only its format. Names (internal to the data layer except where
``data_processor`` re-exports them):

- ``Feed``: the base class of a venue parser (the interface ``feeds.reader.Reader`` drives;
  see ``feeds/__init__.py`` for how to add a venue).
- ``infer_tick_size``, ``price_to_ticks`` (public via ``data_processor``): the tick-size rule;
  ``inverse_tick``: ``1 / tick`` in decimal.
- ``levels(raw, inv, cache, numbers=True)``: ``[[price, size], ...]`` -> ``[(ticks, size), ...]``,
  raising ``BadLevels`` on any defect; ``diagnose_levels`` words the defect; ``new_price``
  converts and checks one price text (the compiled ``_speedups.levels`` calls it back).
- The feeds' number grammar: ``is_plain_decimal``, ``parse_size`` (a decimal string, or a JSON
  number where the venue sends them; never ``true``, ``"1_00.1"``, ``" +1 "``, other digits or
  an underflow to 0); ``MAX_TICKS``: prices above it are refused (docs/reliability.md).
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
    "DEFAULT_SYMBOL", "MAX_LINE_BYTES", "NO_ASK", "NO_BID", "BadLevels", "Feed", "LoadReport", "Problem",
    "MAX_TICKS", "SeveralSymbols", "SymState", "crossed_reason", "diagnose_levels", "infer_tick_size",
    "inverse_tick", "is_plain_decimal", "levels", "new_price", "parse_size", "price_to_ticks",
]

DEFAULT_SYMBOL = "UNKNOWN"
"""Symbol given to messages of the simplified shape (no topic, no ``s``) when ``symbol=`` is None."""

INF = math.inf
GRID_TOL = 1e-6  # a price further than this (in ticks) from an integer is off the tick grid
_CACHE_LIMIT = 65_536  # distinct price texts kept per symbol before the cache is cleared
_MIN_LEVELS_FOR_GCD = 20  # fewer distinct snapshot prices: the tick is 10**-decimals, not the gcd
MAX_LINE_BYTES = 16 << 20
"""Longest line (bytes) the reader parses: 20 times the longest line of the real recordings (the
790 KB REST instrument list of the cryptofeed Bybit capture; book lines are at most 42 KB, a
Binance REST snapshot); parsing a line takes ~25 times its size in memory."""
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
    checksums: int = 0
    """Book messages whose venue checksum was verified against the replayed book (OKX)."""
    gaps: int = 0
    """Books resumed after a recorded gap (a capture's ``disconnect`` / reconnect records): the
    snapshots flagged ``SnapshotMessage.gap``, one per symbol and gap."""
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
            + (f"; checksums verified: {self.checksums}" if self.checksums else "")
            + (f"; recorded gaps (reconnects): {self.gaps}" if self.gaps else "")
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
        ValueError: no price, a price that is not a positive decimal number, or a tick size
            that underflows a double (a price written with over ~320 decimals).

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
    tick = float(Decimal(g) / scale)
    if tick == 0.0:  # a price written with ~330 decimals: the tick underflows a double
        raise ValueError(f"the tick size of prices written with {d} decimals underflows a double")
    return tick


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
        ValueError: not a number of the feeds' grammar (``parse_size``), not positive, above
            ``MAX_TICKS`` ticks, or off the tick grid.

    >>> price_to_ticks("65114.20", 0.1)
    651142
    >>> price_to_ticks("65114.25", 0.1)
    Traceback (most recent call last):
    ...
    ValueError: price '65114.25' is off the tick grid (tick size 0.1)
    """
    try:
        return new_price(price, inverse_tick(tick_size), {})
    except BadLevels:
        reason = _level_defect(price, "1", inverse_tick(tick_size), tick_size, "price")
        if reason is not None and "off the tick grid" in reason:
            raise ValueError(f"price {price!r} is off the tick grid (tick size {tick_size})") from None
        raise ValueError(f"price {price!r} is not a finite positive number on the grammar of the feeds"
                         f" ({reason})") from None


def is_plain_decimal(text: str) -> bool:
    """Whether ``text`` is a plain decimal: ASCII digits with at most one ``.``.

    No sign, exponent, blank, underscore or other script's digits: the only string form of a
    number the feeds send.

    >>> [is_plain_decimal(t) for t in ("65114.20", "7", ".5", "1_00.1", " +1 ", "1e-4", "\u0661", ".")]
    [True, True, True, False, False, False, False, False]
    """
    return text.isascii() and text.replace(".", "", 1).isdigit()


def parse_size(s: Any, numbers: bool = True) -> float:
    """One size of the feed as a float, by the feeds' number grammar (``BadLevels`` otherwise).

    Grammar: a plain decimal string (``is_plain_decimal``), or, where the venue sends them
    (``numbers=True``), a JSON number (``int``/``float``, never ``true``/``false``). The value
    must be finite, and a text that is not all zeros must not underflow to ``0.0`` (``"1e-400"``
    is refused by the grammar, ``"0.000...001"`` with 400 zeros by the underflow rule).

    >>> parse_size("0.004"), parse_size(3)
    (0.004, 3.0)
    >>> parse_size(True)
    Traceback (most recent call last):
    ...
    feeds.common.BadLevels
    """
    t = type(s)
    if t is str:
        if not (s.isascii() and s.replace(".", "", 1).isdigit()):
            raise BadLevels
        q = float(s)
        if q == 0.0 and s.strip("0."):  # a nonzero text below the smallest double
            raise BadLevels
    elif numbers and (t is float or t is int):
        try:
            q = float(s)
        except OverflowError:
            raise BadLevels from None
    else:
        raise BadLevels
    if not 0.0 <= q < INF:  # negative, NaN, inf
        raise BadLevels
    return q


def levels(raw: Any, inv: float, cache: dict, numbers: bool = True) -> list[tuple[int, float]]:
    """Fast path: ``[[price, size], ...]`` → ``[(ticks, size), ...]``; ``BadLevels`` on any defect.

    The compiled ``_speedups.levels`` runs first when built; it returns ``None`` for anything
    it does not handle exactly like this loop, which then decides. Prices repeat (a book lives
    near the mid), so each distinct price text is converted and checked (grammar, positive,
    exactly on the tick grid, below ``MAX_TICKS``) once by ``new_price`` and then looked up in
    ``cache``; every size follows the grammar of ``parse_size`` (inlined here: it is the hot
    loop). ``numbers=False``: only decimal strings (Bybit, Binance send nothing else). One plain
    loop: cheaper than several C-level passes on short delta lists (docs/CONTRACTS.md). The slow
    ``diagnose_levels`` only words errors.

    >>> levels([["100.5", "2"], ["100.0", "0"]], 10.0, {})
    [(1005, 2.0), (1000, 0.0)]
    """
    sp = _order_book.SPEEDUPS
    if sp is not None:  # the same loop compiled; None: this loop decides (and words any defect)
        out = sp.levels(raw, inv, cache, new_price, numbers)
        if out is not None:
            return out
    if type(raw) is not list and type(raw) is not tuple:
        if raw is None and numbers:  # a venue sending JSON numbers may send null for an empty side
            return []
        raise BadLevels  # a dict or a string would iterate (keys, characters) into "levels"
    get = cache.get
    out: list[tuple[int, float]] = []
    append = out.append
    try:
        if not numbers:  # strings only: the cache holds only string keys, no type test on prices
            for lv in raw:
                if type(lv) is not list and type(lv) is not tuple:
                    raise BadLevels  # "12" would unpack into price "1", size "2"
                p, s = lv
                if not (type(s) is str and s.isascii() and s.replace(".", "", 1).isdigit()):
                    raise BadLevels
                q = float(s)
                if not 0.0 < q < INF and (q or s.strip("0.")):  # inf, or a nonzero text underflowing to 0
                    raise BadLevels
                append((get(p) or new_price(p, inv, cache, False), q))
            return out
        for lv in raw:
            if type(lv) is not list and type(lv) is not tuple:
                raise BadLevels
            p, s = lv
            q = parse_size(s, True)
            if type(p) is not str and type(p) is not float and type(p) is not int:
                raise BadLevels  # a bool would find the cached int 1
            append((get(p) or new_price(p, inv, cache, True), q))
    except (TypeError, ValueError, OverflowError):
        raise BadLevels from None
    return out


MAX_TICKS = 1 << 53
"""Largest price in ticks: every tick count up to it, and ``ticks * 2**k``, is exact in a double
(a price of ``1e20`` with a 0.1 tick is refused, not stored inexactly)."""


def new_price(p: Any, inv: float, cache: dict, numbers: bool = True) -> int:
    """Convert and check one price not yet in ``cache`` (``BadLevels`` on a defect).

    The price must follow the grammar of ``parse_size``, be positive, below ``MAX_TICKS`` and on
    the tick grid: within ``GRID_TOL`` in floating point and, where ``inv`` is an integer (ticks
    of ``10**-d``, ``0.5``, ``0.25``, ... ), exactly in decimal arithmetic.
    """
    t = type(p)
    if t is str:
        if not (p.isascii() and p.replace(".", "", 1).isdigit()):
            raise BadLevels
        exact: Decimal | None = Decimal(p)
    elif numbers and (t is float or t is int):
        exact = Decimal(repr(p)) if t is float else Decimal(p)  # the JSON text's value
    else:
        raise BadLevels
    x = float(p) * inv
    if not 0.0 < x < MAX_TICKS:
        raise BadLevels
    r = round(x)
    if not (abs(x - r) <= GRID_TOL and r > 0):
        raise BadLevels
    if inv.is_integer() and exact * int(inv) != r:  # exact decimal check (no 1e-6 slack)
        raise BadLevels
    if len(cache) >= _CACHE_LIMIT:  # bounded: memory stays flat
        cache.clear()
    cache[p] = r
    return r


def diagnose_levels(raw: Any, inv: float, tick_size: float, side: str, numbers: bool = True) -> str:
    """Word the first defect of a level list (slow path of ``levels``).

    >>> diagnose_levels([["100.05", "1"]], 10.0, 0.1, "b")
    "price '100.05' in 'b' is off the tick grid (tick size 0.1)"
    """
    if not isinstance(raw, list):
        return f"'{side}' is not a list of [price, size] levels"
    for i, level in enumerate(raw):
        if not isinstance(level, list | tuple) or len(level) != 2:
            return f"'{side}' level {i} is not a [price, size] pair: {level!r}"
        reason = _level_defect(level[0], level[1], inv, tick_size, side, numbers)
        if reason is not None:
            return reason
    return f"invalid levels in '{side}'"


def _level_defect(p: Any, s: Any, inv: float, tick_size: float, side: str,
                  numbers: bool = True) -> str | None:
    """The defect of one ``[price, size]`` level, or None."""
    grammar = "a decimal string" + (" or a JSON number" if numbers else "")
    for what, v in (("price", p), ("size", s)):
        t = type(v)
        if t is str:
            if v[:1] == "-" and is_plain_decimal(v[1:]):
                return f"negative {what} {v!r} in '{side}'"
            if not is_plain_decimal(v):
                return f"{what} {v!r} in '{side}' is not {grammar} (digits and one '.')"
        elif not (numbers and (t is float or t is int)):
            return f"{what} {v!r} in '{side}' is not {grammar}"
    try:
        x = float(p) * inv
        q = float(s)
    except OverflowError:
        return f"number {p!r} or {s!r} in '{side}' is too large"
    if q == 0.0 and type(s) is str and s.strip("0."):
        return f"size {s!r} in '{side}' is too small for a double (underflows to 0)"
    if not math.isfinite(x) or x <= 0:
        return f"zero or too large price {p!r} in '{side}'"
    if not math.isfinite(q):
        return f"too large size {s!r} in '{side}'"
    if x >= MAX_TICKS:
        return f"price {p!r} in '{side}' is {x:.3g} ticks, above {MAX_TICKS} (not exact in a double)"
    if abs(x - round(x)) > GRID_TOL or (inv.is_integer() and _exact(p) * int(inv) != round(x)):
        return f"price {p!r} in '{side}' is off the tick grid (tick size {tick_size})"
    return None


def _exact(v: Any) -> Decimal:
    """The decimal value of a number of the grammar as written."""
    return Decimal(repr(v)) if type(v) is float else Decimal(v)


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
