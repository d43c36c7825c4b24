"""Read real L2 order-book recordings into validated messages with integer-tick prices.

One job: turn the files users have (Bybit order-book data in every shape Bybit and recorders
produce, and Binance USDⓈ-M futures recordings of the hftbacktest collector) into one stream of
typed messages, refusing bad data loudly, and start a replay at any time cheaply.

Public names:

- ``load_messages(path_or_paths, symbol=None, on_error="raise", tick_size=None, ...)``: the
  one entry point; yields ``SnapshotMessage``, ``DeltaMessage``, ``TradeMessage`` (and
  ``BookTickerMessage`` when ``include_bbo=True``) in file order.
- ``DataFormatError``: a ``ValueError`` naming the file, the 1-based line and what is wrong.
- ``LoadReport``: counts of messages and problems of one load (``on_error="skip"`` fills it).
- ``Replay``: random-access starts (``start_at(t_ms)``) from cached periodic book checkpoints;
  ``default_cache_dir()``: where it caches them by default (per user, never next to the data).
- ``infer_tick_size``, ``price_to_ticks``: the pure helpers of the tick-size rule.
- CLI: ``python data_processor.py inspect FILE`` and ``python data_processor.py export FILE``.

File formats (detected from content, never from the file name; plain, gzip, zstd or zip):

Bybit v5 order book / trades, as in Bybit's daily history files ``YYYY-MM-DD_SYMBOL_ob200.data``
and raw websocket recordings (real lines from ``2024-12-01_XRPUSDT_ob500.data`` and
``cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl``, levels cut short here)::

    {"topic":"orderbook.500.XRPUSDT","type":"snapshot","ts":1733011200691,"data":{"s":"XRPUSDT","b":[["1.9531","6203"],["1.9530","2409"]],"a":[["1.9532","5"]],"u":20254869,"seq":87432189776},"cts":1733011200688}
    {"topic":"orderbook.500.XRPUSDT","type":"delta","ts":1733011200693,"data":{"s":"XRPUSDT","b":[["1.9531","6198"]],"a":[["1.9535","8415"]],"u":20254870,"seq":87432189790},"cts":1733011200690}
    {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[{"T":1786310819680,"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","i":"a9188a0a-82bc-50de-be60-03eedbe3cdd7"}]}

The simplified shape ``{"type":"snapshot"|"delta","ts":...,"data":{"b":[...],"a":[...]}}``
(no topic, no symbol: the messages get ``symbol=`` or ``DEFAULT_SYMBOL``), and the cryptofeed v3
capture wrapper ``{"t":"recv","conn":"BYBIT.ws.2","ts":<s>,"data":"<raw websocket text>"}``
whose symbols are qualified by connection: ``"linear:BTCUSDT"`` (the last path segment of the
connection's URL) or ``"BYBIT.ws.2:BTCUSDT"`` when the capture has no ``connect`` line for it.

Binance USDⓈ-M futures, hftbacktest collector (``<local_ns> <json>``; real lines, cut short)::

    1721347020984480942 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1721347022504,"T":1721347022504,"s":"BTCUSDT","U":4984028367545,"u":4984028370730,"pu":4984028367494,"b":[["62109.60","0.006"]],"a":[]}}
    1721347021281597601 {"lastUpdateId":4984028384061,"E":1721347022759,"T":1721347022750,"bids":[["63943.90","46.372"]],"asks":[["63944.00","0.095"]]}

Exchange times are kept in ``ts`` (ms; Binance: the transaction time ``T``), recorder times in
``local_ts`` (ns). Prices are integer ticks (``price = ticks * tick_size``), sizes floats.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import heapq
import io
import itertools
import logging
import math
import os
import re
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import orjson

import order_book as _order_book
from messages import (
    BOOK_MESSAGE_TYPES,
    BookTickerMessage,
    DataFormatError,
    DeltaMessage,
    Message,
    SnapshotMessage,
    TradeMessage,
)
from utils import atomic_open, atomic_write_bytes, atomic_write_json

__all__ = [
    "DEFAULT_SYMBOL",
    "BookTickerMessage",
    "DataFormatError",
    "DeltaMessage",
    "LoadReport",
    "Message",
    "Replay",
    "SnapshotMessage",
    "TradeMessage",
    "default_cache_dir",
    "infer_tick_size",
    "load_messages",
    "price_to_ticks",
    "replay",
]

logger = logging.getLogger(__name__)

DEFAULT_SYMBOL = "UNKNOWN"
"""Symbol given to messages of the simplified shape (no topic, no ``s``) when ``symbol=`` is None."""

_INF = math.inf
_CACHE_LIMIT = 65_536  # distinct price texts kept per symbol before the cache is cleared
_GRID_TOL = 1e-6  # a price further than this (in ticks) from an integer is off the tick grid
_MIN_LEVELS_FOR_GCD = 20  # fewer distinct snapshot prices: the tick is 10**-decimals, not the gcd
_MAX_BUFFERED_DIFFS = 100_000  # Binance diffs held while waiting for the REST snapshot
_CACHE_VERSION = 1
_NO_BID = -1  # best bid of an empty bid side in the crossing test (tick prices are > 0)
_NO_ASK = 1 << 62  # best ask of an empty ask side

# Bybit topics / Binance events that are legal in a recording but carry no book or trade data.
_IGNORED_BYBIT_TOPICS = frozenset(
    {"tickers", "kline", "liquidation", "allLiquidation", "insurance", "lt", "adlAlert",
     "priceLimit", "kline_lt", "tickers_lt", "orderbook.rpi"}
)
_IGNORED_BINANCE_EVENTS = frozenset(
    {"markPriceUpdate", "aggTrade", "kline", "forceOrder", "24hrTicker", "24hrMiniTicker",
     "compositeIndex", "contractInfo", "assetIndexUpdate", "continuous_kline"}
)
_CRYPTOFEED_META = frozenset({"header", "http", "connect", "send", "disconnect", "error", "close"})


# --------------------------------------------------------------------------------------------
# Report (the message types and DataFormatError live in messages.py; re-exported here)
# --------------------------------------------------------------------------------------------


_BOOK_TYPES = BOOK_MESSAGE_TYPES


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


class _Problem(Exception):
    """Internal: one bad record; ``kind`` groups the report, ``symbol`` desyncs that book."""

    def __init__(self, kind: str, reason: str, symbol: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.symbol = symbol


# --------------------------------------------------------------------------------------------
# Pure helpers: tick size and price conversion
# --------------------------------------------------------------------------------------------


def _decimals(text: str) -> int:
    """Number of digits after the decimal point of a price string (no exponent support needed)."""
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


def _inverse_tick(tick_size: float) -> float:
    """1 / tick_size computed in decimal so that ``price * inv`` lands on integers exactly."""
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
    x = float(price) * _inverse_tick(tick_size)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"price {price!r} is not a finite positive number")
    r = round(x)
    if abs(x - r) > _GRID_TOL:
        raise ValueError(f"price {price!r} is off the tick grid (tick size {tick_size})")
    return r


def _levels(raw: Any, inv: float, cache: dict) -> list[tuple[int, float]]:
    """Fast path: ``[[price, size], ...]`` → ``[(ticks, size), ...]``; ``_Bad`` on any defect.

    The compiled ``_speedups.levels`` runs first when built; it returns ``None`` for anything
    it does not handle exactly like this loop, which then decides. Prices repeat (a book lives
    near the mid), so each distinct price text is converted and checked (finite, positive, on
    the tick grid) once and then looked up in ``cache``; every size must be finite and >= 0
    (the chained comparison also refuses NaN). One plain loop: cheaper than several C-level
    passes on short delta lists (docs/CONTRACTS.md). The slow ``_diagnose_levels`` only words
    errors.
    """
    sp = _order_book.SPEEDUPS
    if sp is not None:  # the same loop compiled; None: this loop decides (and words any defect)
        out = sp.levels(raw, inv, cache, _new_price)
        if out is not None:
            return out
    if not raw:
        if raw is None or isinstance(raw, list):
            return []
        raise _Bad
    get = cache.get
    out: list[tuple[int, float]] = []
    append = out.append
    try:
        for p, s in raw:
            s = float(s)
            if not 0.0 <= s < _INF:  # negative, NaN, inf
                raise _Bad
            append((get(p) or _new_price(p, inv, cache), s))
    except (TypeError, ValueError, OverflowError):
        raise _Bad from None
    return out


def _new_price(p: Any, inv: float, cache: dict) -> int:
    """Convert and check one price text not yet in ``cache`` (``_Bad`` on a defect)."""
    x = float(p) * inv
    r = round(x)
    if not (abs(x - r) <= _GRID_TOL and r > 0):
        raise _Bad
    if len(cache) >= _CACHE_LIMIT:  # bounded: memory stays flat
        cache.clear()
    cache[p] = r
    return r


class _Bad(Exception):
    """Internal: the fast level conversion found a defect."""


def _diagnose_levels(raw: Any, inv: float, tick_size: float, side: str) -> str:
    """Word the first defect of a level list (slow path of ``_levels``)."""
    if not isinstance(raw, list):
        return f"'{side}' is not a list of [price, size] levels"
    for i, level in enumerate(raw):
        if not isinstance(level, list | tuple) or len(level) != 2:
            return f"'{side}' level {i} is not a [price, size] pair: {level!r}"
        p, s = level
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
        if abs(x - round(x)) > _GRID_TOL:
            return f"price {p!r} in '{side}' is off the tick grid (tick size {tick_size})"
    return f"invalid levels in '{side}'"


# --------------------------------------------------------------------------------------------
# A light book for the crossing check and the checkpoints (dicts + lazily recomputed best)
# --------------------------------------------------------------------------------------------


class _LightBook:
    """Price→size dicts per side with the best prices tracked; best recomputed only on removal."""

    __slots__ = ("bids", "asks", "bb", "ba")

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.bb: int | None = None
        self.ba: int | None = None

    def reset(self, bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> None:
        # dict() first: a repeated price keeps its last size, as OrderBook does
        self.bids = {p: s for p, s in dict(bids).items() if s > 0.0}
        self.asks = {p: s for p, s in dict(asks).items() if s > 0.0}
        self.bb = max(self.bids) if self.bids else None
        self.ba = min(self.asks) if self.asks else None

    def update(self, bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> None:
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
        return self.bb is not None and self.ba is not None and self.bb >= self.ba

    def top(self, n: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Best ``n`` levels per side, best first."""
        bids = [(p, self.bids[p]) for p in heapq.nlargest(n, self.bids)]
        asks = [(p, self.asks[p]) for p in heapq.nsmallest(n, self.asks)]
        return bids, asks


# --------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZIP_MAGIC = b"PK\x03\x04"


def _compression(path: Path) -> str:
    """``"plain"``, ``"gzip"``, ``"zstd"`` or ``"zip"``, from the file's magic bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    return "plain"


def _open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes, whatever its compression."""
    kind = _compression(path)
    if kind == "gzip":
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    if kind == "zstd":
        import zstandard

        fh = open(path, "rb")  # noqa: SIM115 - closed with the returned reader
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    if kind == "zip":
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) != 1:
            names = ", ".join(m.filename for m in members) or "none"
            zf.close()
            raise DataFormatError(path, None, f"zip archive must hold exactly one data file, found: {names}")
        return io.BufferedReader(zf.open(members[0]), buffer_size=1 << 20)  # type: ignore[arg-type]
    return open(path, "rb", buffering=1 << 20)  # noqa: SIM115


def _as_paths(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("no input file given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    return paths


_LINE_BINANCE = re.compile(rb"^\d+ \{")


def _detect_format(path: Path, first: bytes, line_no: int) -> str:
    """``"binance"``, ``"cryptofeed"`` or ``"bybit"`` from the first non-blank line."""
    if _LINE_BINANCE.match(first):
        return "binance"
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise DataFormatError(path, line_no, "malformed JSON (cannot detect the file format)") from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, line_no, f"line is not a JSON object but {type(obj).__name__}")
    if "t" in obj and "topic" not in obj and "type" not in obj:
        return "cryptofeed"
    return "bybit"


# --------------------------------------------------------------------------------------------
# The reader: one pass over one or several files, validating as it goes
# --------------------------------------------------------------------------------------------


class _SymState:
    """Per-symbol loader state: tick, continuity, the light book, Binance sync."""

    __slots__ = ("tick", "inv", "last_u", "last_ts", "synced", "book", "has_u",
                 "lid", "need_first", "pcache")

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.inv = _inverse_tick(tick)
        self.pcache: dict = {}  # price text -> validated ticks
        self.last_u: int | None = None
        self.last_ts: int | None = None
        self.synced = False  # a snapshot was applied and no problem since
        self.book = _LightBook()
        self.has_u = True  # the last book message carried an update id
        self.lid: int | None = None  # Binance: lastUpdateId of the applied REST snapshot
        self.need_first = False  # Binance: the first diff after the snapshot is still due

    def dump(self) -> dict:
        return {"tick": self.tick, "last_u": self.last_u, "last_ts": self.last_ts,
                "synced": self.synced, "has_u": self.has_u, "lid": self.lid,
                "need_first": self.need_first}

    @classmethod
    def load(cls, d: dict, bids: list, asks: list) -> _SymState:
        st = cls(d["tick"])
        st.last_u, st.last_ts, st.synced = d["last_u"], d["last_ts"], d["synced"]
        st.has_u, st.lid, st.need_first = d["has_u"], d["lid"], d["need_first"]
        st.book.reset(bids, asks)
        return st


class _Reader:
    """Reads files line by line and yields, per line, the list of messages it produced."""

    def __init__(
        self,
        paths: list[Path],
        symbol: str | None,
        on_error: str,
        tick_size: float | Mapping[str, float] | None,
        include_bbo: bool = False,
        check_crossed: bool = True,
        report: LoadReport | None = None,
        start: tuple[int, int, int] | None = None,
        states: dict[str, _SymState] | None = None,
        extra: dict | None = None,
        book: Any = None,
        make_book: bool = False,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        # The caller's OrderBook (load_messages(book=...)) or, with make_book, one made at the
        # symbol's first snapshot (replay()): every accepted book message is applied to it and
        # the crossing check reads it instead of the light book.
        self.ext_book = book
        self.make_book = make_book
        self._tick_warned = False
        # Bybit topic -> (symbol, state, data "s") of book streams seen and wanted: the lines
        # the fused fast loop of ``messages`` may handle.
        self._fast: dict[str, tuple[str, _SymState, str]] = {}
        self.paths = paths
        self.symbol = symbol
        self.skip = on_error == "skip"
        self.tick_size = tick_size
        self.include_bbo = include_bbo
        self.check_crossed = check_crossed
        self.report = report if report is not None else LoadReport()
        self.start = start
        self.states: dict[str, _SymState] = states if states is not None else {}
        extra = extra or {}
        self.conn_names: dict[str, str] = dict(extra.get("conn_names", {}))
        self.binance_symbol: str | None = extra.get("binance_symbol")
        self.seen_symbols: list[str] = []
        # Binance: (line_no, local_ts, data) diffs seen before the symbol's REST snapshot
        self.pending: dict[str, list] = {}
        self.deferred: tuple | None = None  # Binance REST snapshot seen before its symbol
        self.any_symbol = False  # inspect: all symbols, no several-symbols check
        # Position of the line being processed (for checkpoints): file index, byte offset
        # after the line, 1-based line number.
        self.file_idx = 0
        self.offset = 0
        self.line_no = 0
        self.path: Path = paths[0]
        self._filter = symbol.rpartition(":")[2].encode() if symbol else None

    # -- problems ------------------------------------------------------------------------
    def _problem(self, kind: str, reason: str, symbol: str | None = None,
                 line: int | None = -1) -> None:
        line_no = self.line_no if line == -1 else line
        if not self.skip:
            raise DataFormatError(self.path, line_no, reason)
        rep = self.report
        rep.problems[kind] += 1
        if len(rep.examples) < rep.max_examples:
            rep.examples.append(str(DataFormatError(self.path, line_no, reason)))
        logger.warning("%s", DataFormatError(self.path, line_no, reason))
        if symbol is not None:
            st = self.states.get(symbol)
            if st is not None:
                st.synced = False
            self.pending.pop(symbol, None)

    def _tick_for(self, symbol: str) -> float | None:
        ts = self.tick_size
        if ts is None:
            return None
        if isinstance(ts, Mapping):
            v = ts.get(symbol, ts.get(symbol.rpartition(":")[2]))
            return None if v is None else float(v)
        return float(ts)

    def _want(self, symbol: str) -> bool:
        """Symbol filter and the several-symbols check (symbol=None)."""
        if self.symbol is not None:
            return symbol == self.symbol
        if symbol in self.seen_symbols or self.any_symbol:
            return True
        self.seen_symbols.append(symbol)
        if len(self.seen_symbols) > 1:
            raise _Several
        return True

    # -- main loop -------------------------------------------------------------------------
    def batches(self) -> Iterator[list[Message]]:
        """Yield the messages of each line (possibly empty lists are not yielded)."""
        try:
            yield from self._batches()
        except _Several:
            raise self._several_error() from None
        if self.skip:
            self._finish_log()

    def _finish_log(self) -> None:
        level = logging.WARNING if self.report.n_problems else logging.INFO
        logger.log(level, "%s: %s", ", ".join(map(str, self.paths)), self.report.summary())

    def _batches(self) -> Iterator[list[Message]]:
        start_file = self.start[0] if self.start else 0
        for fi in range(start_file, len(self.paths)):
            fmt = self._open_file(fi)
            if fmt is not None:
                yield from self._file_batches(fi, fmt)
        out = self._finish_binance()
        if out:
            yield out

    def _open_file(self, fi: int) -> str | None:
        """Make file ``fi`` current; its format, or None (reported) for an empty file."""
        path = self.paths[fi]
        self.file_idx, self.path = fi, path
        fmt = self._file_format(path)
        if fmt is None:
            self._problem("empty file", "empty file", line=None)
        return fmt

    def _skip_filter(self, fmt: str) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(symbol text, keep, need) of the byte pre-filter.

        A line without the symbol's text is skipped unless it holds ``keep`` (cryptofeed
        connection names, the Binance REST snapshot: they name no symbol) or lacks ``need``
        (Bybit lines without a topic, the simplified shape, name no symbol either).
        """
        keep = {"cryptofeed": b'"connect"', "binance": b'"lastUpdateId"'}.get(fmt)
        need = b'"topic"' if fmt == "bybit" else None
        return self._filter, keep, need

    def _start_pos(self, fh: BinaryIO, fi: int) -> tuple[int, int]:
        """(byte offset, line number) to start file ``fi`` at (a checkpoint's, or the top)."""
        if self.start and fi == self.start[0]:
            _, offset, line_no = self.start
            fh.seek(offset)
            return offset, line_no
        return 0, 0

    def _general(self, raw: bytes, handler: Any, obj: Any = None) -> list[Message]:
        """One line through the complete (slow) path: its messages, problems reported."""
        try:
            if obj is None:
                return handler(raw)
            return self._bybit_obj(obj, None, None)
        except _Problem as p:
            if raw[-1:] != b"\n" and p.kind in ("malformed JSON", "bad line"):
                self._problem("truncated last line",
                              "truncated last line (no trailing newline, unparsable)")
            else:
                self._problem(p.kind, p.reason, p.symbol)
            return []

    def _file_batches(self, fi: int, fmt: str) -> Iterator[list[Message]]:
        """The messages of each line of file ``fi`` (general path, every format)."""
        rep = self.report
        handler = {"bybit": self._line_bybit, "binance": self._line_binance,
                   "cryptofeed": self._line_cryptofeed}[fmt]
        flt, keep, need = self._skip_filter(fmt)
        # Binance bookTicker lines are two thirds of a recording and are ignored unless
        # include_bbo: a complete line naming the event is counted as ignored without parsing
        # (like the symbol pre-filter; a truncated last line still goes through the checks).
        drop = b'"e":"bookTicker"' if fmt == "binance" and not self.include_bbo else None
        general = self._general
        with _open_binary(self.paths[fi]) as fh:
            offset, line_no = self._start_pos(fh, fi)
            for raw in fh:
                line_no += 1
                offset += len(raw)
                self.line_no = line_no
                self.offset = offset
                if drop is not None and drop in raw and raw[-1:] == b"\n":
                    rep.ignored_lines += 1
                    rep.lines += 1
                    continue
                if (flt is not None and flt not in raw and (keep is None or keep not in raw)
                        and (need is None or need in raw)):
                    if raw.strip():
                        rep.ignored_lines += 1
                        rep.lines += 1
                    continue
                if not raw.strip():
                    continue
                rep.lines += 1
                out = general(raw, handler)
                if out:
                    yield out

    def messages(self, pairs: bool = False) -> Iterator[Any]:
        """Every message, one by one (``load_messages``); ``(message, book)`` with ``pairs``.

        One fused loop for Bybit v5 files (``_bybit_fast``): a delta line of a book stream
        already seen (``_fast``), synchronised, with the next update id, a timestamp not going
        back and clean levels is converted, applied and yielded there without further calls;
        any other line, and any line where one of those checks fails, goes through the general
        path, which does every check again and words the problem. The fast loop changes no
        state before all its checks passed. The per-file generators are chained in C
        (``itertools.chain``), so no generator layer sits above them.
        """
        return itertools.chain.from_iterable(self._parts(pairs))

    def _parts(self, pairs: bool) -> Iterator[Iterator[Any]]:
        start_file = self.start[0] if self.start else 0
        for fi in range(start_file, len(self.paths)):
            fmt = self._open_file(fi)
            if fmt == "bybit":
                yield self._bybit_fast(fi, pairs)
            elif fmt is not None:
                yield self._general_messages(fi, fmt, pairs)
        yield self._tail(pairs)

    def _several_error(self) -> DataFormatError:
        names = _scan_symbols(self.paths, self.tick_size)
        return DataFormatError(self.path, self.line_no,
                               f"the data holds several symbols ({', '.join(names)}); pass symbol= one of them")

    def _emit(self, out: list[Message], pairs: bool) -> Iterator[Any]:
        """The messages of one line of the general path (as pairs with the book)."""
        if not pairs:
            yield from out
            return
        xb = self.ext_book
        if xb is None:  # a trade before the first snapshot (tick_size= given)
            from order_book import OrderBook

            xb = self.ext_book = OrderBook(out[0].symbol, out[0].tick_size)
        for m in out:
            yield m, xb

    def _general_messages(self, fi: int, fmt: str, pairs: bool) -> Iterator[Any]:
        try:
            for out in self._file_batches(fi, fmt):
                yield from self._emit(out, pairs)
        except _Several:
            raise self._several_error() from None

    def _tail(self, pairs: bool) -> Iterator[Any]:
        out = self._finish_binance()
        if out:
            yield from self._emit(out, pairs)
        if self.skip:
            self._finish_log()

    def _bybit_fast(self, fi: int, pairs: bool) -> Iterator[Any]:  # noqa: C901 - one fused hot loop on purpose
        """The fused loop of ``messages`` over one Bybit v5 file (see there)."""
        rep = self.report
        handler = self._line_bybit
        flt, keep, need = self._skip_filter("bybit")
        general = self._general
        fast = self._fast
        loads = orjson.loads
        json_error = orjson.JSONDecodeError
        new_price = _new_price
        inf = _INF
        sp = _order_book.SPEEDUPS
        conv = sp.levels if sp is not None else None
        delta_cls = DeltaMessage
        check = self.check_crossed
        xb = self.ext_book
        apply = xb.apply if xb is not None else None
        n_lines = n_deltas = 0
        with _open_binary(self.paths[fi]) as fh:
            # no byte offsets here: only Replay's checkpoints need them, and Replay reads
            # through batches()
            line_no = self._start_pos(fh, fi)[1]
            try:
                for raw in fh:
                    line_no += 1
                    if (flt is not None and flt not in raw and (keep is None or keep not in raw)
                            and (need is None or need in raw)):
                        if raw.strip():
                            rep.ignored_lines += 1
                            n_lines += 1
                        continue
                    try:
                        obj = loads(raw)
                    except json_error:
                        obj = None
                    if type(obj) is dict:
                        topic = obj.get("topic")
                        ent = fast.get(topic) if type(topic) is str else None
                        data = obj.get("data") if ent is not None else None
                        if type(data) is dict and obj.get("type") == "delta":
                            symbol, st, name = ent
                            ts = obj.get("ts")
                            u = data.get("u")
                            lu = st.last_u
                            s = data.get("s")
                            if (st.synced and type(ts) is int and ts >= st.last_ts and type(u) is int
                                    and lu is not None and u == lu + 1 and (s == name or s is None)):
                                pc = st.pcache
                                inv = st.inv
                                # _levels for both sides: compiled, or inlined here
                                bids = conv(data.get("b"), inv, pc, new_price) if conv is not None else None
                                asks = conv(data.get("a"), inv, pc, new_price) if bids is not None else None
                                if asks is None:
                                    get = pc.get
                                    bids = []
                                    asks = []
                                    try:
                                        append = bids.append
                                        for p, q in data["b"]:
                                            q = float(q)
                                            if not 0.0 <= q < inf:  # negative, NaN, inf
                                                raise _Bad
                                            p = get(p) or new_price(p, inv, pc)
                                            append((p, q))
                                        append = asks.append
                                        for p, q in data["a"]:
                                            q = float(q)
                                            if not 0.0 <= q < inf:
                                                raise _Bad
                                            p = get(p) or new_price(p, inv, pc)
                                            append((p, q))
                                    except (_Bad, KeyError, TypeError, ValueError, OverflowError):
                                        bids = None  # the general path words it
                                if bids is not None:
                                    msg = delta_cls(ts, symbol, bids, asks, u, st.tick, None, data.get("seq"))
                                    n_lines += 1
                                    if xb is not None:
                                        apply(msg)
                                        # OrderBook.crossed: O(1), reads the ends of the
                                        # sorted key lists
                                        if check and xb.crossed and self._recheck(xb, st, symbol, line_no):
                                            continue
                                    elif check:
                                        book = st.book
                                        book.update(bids, asks)
                                        if book.crossed():
                                            self.line_no = line_no
                                            self._problem("crossed", _crossed_reason(symbol, book.bb, book.ba), symbol)
                                            continue
                                    st.last_u = u
                                    st.last_ts = ts
                                    n_deltas += 1
                                    if pairs:
                                        yield msg, xb
                                    else:
                                        yield msg
                                    continue
                    # every other line: the complete path
                    if not raw.strip():
                        continue
                    n_lines += 1
                    self.line_no = line_no
                    out = general(raw, handler, obj if type(obj) is dict else None)
                    if out:
                        yield from self._emit(out, pairs)
                        xb = self.ext_book  # made at the first snapshot with make_book
                        apply = xb.apply if xb is not None else None
            except _Several:
                raise self._several_error() from None
            finally:
                if n_deltas:
                    rep.messages["delta"] += n_deltas
                rep.lines += n_lines
                self.line_no = line_no

    def _recheck(self, xb: Any, st: _SymState, symbol: str, line_no: int) -> bool:
        """Exact crossing test of the caller's book (after ``crossed`` said so); True: reported."""
        bb = xb.best_bid()
        ba = xb.best_ask()
        bid = bb[0] if bb is not None else _NO_BID
        ask = ba[0] if ba is not None else _NO_ASK
        if bid < ask:
            return False
        self.line_no = line_no
        self._problem("crossed", _crossed_reason(symbol, bid, ask), symbol)
        return True

    def _file_format(self, path: Path) -> str | None:
        with _open_binary(path) as fh:
            for i, raw in enumerate(fh, 1):
                if raw.strip():
                    self.line_no = i
                    try:
                        return _detect_format(path, raw, i)
                    except DataFormatError as e:
                        if raw[-1:] != b"\n":
                            raise DataFormatError(path, i, "truncated last line (no trailing newline, unparsable)") from None
                        if self.skip:
                            return "bybit"  # the line is reported again by the main loop
                        raise e
        return None

    def _loads(self, raw: bytes) -> dict:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            self._desync_unnumbered()
            raise _Problem("malformed JSON", f"malformed JSON ({e})") from None
        if not isinstance(obj, dict):
            raise _Problem("bad line", f"line is not a JSON object but {type(obj).__name__}")
        return obj

    def _desync_unnumbered(self) -> None:
        """A lost line may have been a book message: books without update ids cannot tell."""
        if self.skip:
            for st in self.states.values():
                if not st.has_u:
                    st.synced = False

    # -- Bybit -----------------------------------------------------------------------------
    def _line_bybit(self, raw: bytes, local_ts: int | None = None, conn: str | None = None) -> list:
        obj = self._loads(raw)
        return self._bybit_obj(obj, local_ts, conn)

    def _bybit_obj(self, obj: dict, local_ts: int | None, conn: str | None) -> list:
        topic = obj.get("topic")
        if topic is None:
            if "success" in obj or "op" in obj:
                self.report.ignored_lines += 1
                return []
            if "type" not in obj or "data" not in obj:
                missing = [k for k in ("type", "ts", "data") if k not in obj]
                raise _Problem("missing field", f"missing field(s) {missing}")
            return self._bybit_book(obj, None, local_ts, conn)
        if not isinstance(topic, str):
            raise _Problem("bad field", f"'topic' is not a string: {topic!r}")
        kind, _, rest = topic.partition(".")
        if kind == "orderbook":
            return self._bybit_book(obj, rest.rpartition(".")[2], local_ts, conn)
        if kind == "publicTrade":
            return self._bybit_trades(obj, rest, local_ts, conn)
        if kind in _IGNORED_BYBIT_TOPICS or topic in _IGNORED_BYBIT_TOPICS:
            self.report.ignored_lines += 1
            return []
        raise _Problem("unknown message type", f"unknown message type (topic {topic!r})")

    def _qualify(self, name: str, conn: str | None) -> str:
        if conn is None:
            return name
        return f"{self.conn_names.get(conn, conn)}:{name}"

    def _bybit_book(self, obj: dict, topic_sym: str | None, local_ts: int | None, conn: str | None) -> list:
        try:
            typ = obj["type"]
            ts = obj["ts"]
            data = obj["data"]
            b = data["b"]
            a = data["a"]
        except KeyError as e:
            raise _Problem("missing field", f"missing field {e.args[0]!r}") from None
        except TypeError:
            raise _Problem("bad field", "'data' is not an object") from None
        if typ == "snapshot":
            is_snap = True
        elif typ == "delta":
            is_snap = False
        else:
            raise _Problem("unknown message type", f"unknown message type {typ!r}")
        name = data.get("s") or topic_sym
        if name is None:
            symbol = self.symbol or DEFAULT_SYMBOL
        else:
            symbol = self._qualify(name, conn)
        if not self._want(symbol):
            self.report.ignored_lines += 1
            return []
        if type(ts) is not int:
            raise _Problem("bad field", f"'ts' is not an integer: {ts!r}", symbol)
        u = data.get("u")
        if u is not None and type(u) is not int:
            raise _Problem("bad field", f"'u' is not an integer: {u!r}", symbol)
        msg = self._book(is_snap, symbol, ts, b, a, u, data.get("seq"), local_ts, "u")
        if msg is None:
            return []
        if conn is None and topic_sym is not None and name == topic_sym:  # plain Bybit v5: fast loop
            self._fast[obj["topic"]] = (symbol, self.states[symbol], name)
        return [msg]

    def _new_state(self, symbol: str, b: Any, a: Any) -> _SymState:
        """State of a symbol's first snapshot: ``tick_size=`` or the tick inferred from it."""
        tick = self._tick_for(symbol)
        if tick is None:
            try:
                tick = infer_tick_size([lv[0] for lv in (b or [])] + [lv[0] for lv in (a or [])])
            except (ValueError, TypeError, IndexError, KeyError) as e:
                raise _Problem("bad value", f"cannot infer the tick size of {symbol} from its first snapshot: {e}", symbol) from None
        st = self.states[symbol] = _SymState(tick)
        self.report.symbols.add(symbol)
        return st

    def _book(self, is_snap: bool, symbol: str, ts: int, b: Any, a: Any, u: int | None,
              seq: int | None, local_ts: int | None, u_name: str) -> Message | None:
        """Validate and convert one book message against its symbol's state (Bybit rules)."""
        st = self.states.get(symbol)
        if st is None:
            if not is_snap:
                self._problem("delta before snapshot", f"delta before any snapshot of {symbol}")
                self.report.dropped_deltas += 1
                return None
            st = self._new_state(symbol, b, a)
        if st.last_ts is not None and ts < st.last_ts:
            raise _Problem("time backwards",
                           f"timestamp goes backwards for {symbol}: {ts} < {st.last_ts}", symbol)
        if not is_snap:
            if not st.synced:
                self.report.dropped_deltas += 1
                return None
            if u is not None and st.last_u is not None and u != st.last_u + 1:
                raise _Problem("gap", f"gap in update ids of {symbol}: {u_name}={u} after {st.last_u} (expected {st.last_u + 1})", symbol)
        inv = st.inv
        try:
            bids = _levels(b, inv, st.pcache)
            asks = _levels(a, inv, st.pcache)
        except _Bad:
            reason = _diagnose_levels(b, inv, st.tick, "b")
            if reason == "invalid levels in 'b'":
                reason = _diagnose_levels(a, inv, st.tick, "a")
            raise _Problem("bad value", reason, symbol) from None
        if is_snap:
            msg: Message = SnapshotMessage(ts, symbol, bids, asks, u, st.tick, local_ts, seq)
        else:
            msg = DeltaMessage(ts, symbol, bids, asks, u, st.tick, local_ts, seq)
        xb = self.ext_book
        if xb is None and self.make_book:
            from order_book import OrderBook

            xb = self.ext_book = OrderBook(symbol, st.tick)
        if xb is not None:
            self._apply_ext(xb, msg, st)
        else:
            self._apply_light(is_snap, msg, st)
        self.report.messages["snapshot" if is_snap else "delta"] += 1
        st.synced = True
        st.last_u = u
        st.has_u = u is not None
        st.last_ts = ts
        return msg

    def _apply_light(self, is_snap: bool, msg: Message, st: _SymState) -> None:
        """Update the symbol's light book (crossing check, checkpoints) and check crossing."""
        book = st.book
        if is_snap and (self.check_crossed or not st.synced):
            book.reset(msg.bids, msg.asks)
        if self.check_crossed:
            if not is_snap:
                book.update(msg.bids, msg.asks)
            if book.crossed():
                raise _Problem("crossed", _crossed_reason(msg.symbol, book.bb, book.ba), msg.symbol)

    def _apply_ext(self, xb: Any, msg: Message, st: _SymState) -> None:
        """Apply a book message to the caller's OrderBook and check crossing."""
        if not self._tick_warned and xb.tick_size != st.tick:
            self._tick_warned = True
            warnings.warn(f"book= has tick_size {xb.tick_size} but {msg.symbol} has tick size {st.tick}: "
                          "tick queries are right, price-unit queries are not (use replay())", stacklevel=4)
        xb.apply(msg)
        if not self.check_crossed:
            return
        bb = xb.best_bid()
        ba = xb.best_ask()
        bid = bb[0] if bb is not None else _NO_BID
        ask = ba[0] if ba is not None else _NO_ASK
        if bid >= ask:
            raise _Problem("crossed", _crossed_reason(msg.symbol, bid, ask), msg.symbol)

    def _bybit_trades(self, obj: dict, topic_sym: str, local_ts: int | None, conn: str | None) -> list:
        data = obj.get("data")
        if not isinstance(data, list):
            raise _Problem("missing field" if data is None else "bad field",
                           "publicTrade 'data' is not a list of trades")
        out = []
        for tr in data:
            try:
                name = tr.get("s") or topic_sym
                symbol = self._qualify(name, conn)
                if not self._want(symbol):
                    self.report.ignored_lines += 1
                    return []
                msg = self._trade(symbol, tr["T"], tr["p"], tr["v"], tr["S"], tr.get("i"), local_ts)
            except KeyError as e:
                raise _Problem("missing field", f"trade is missing field {e.args[0]!r}") from None
            except AttributeError:
                raise _Problem("bad field", f"trade is not an object: {tr!r}") from None
            if msg is not None:
                out.append(msg)
        return out

    def _trade(self, symbol: str, ts: Any, p: Any, v: Any, side_text: Any, tid: Any,
               local_ts: int | None) -> TradeMessage | None:
        if side_text == "Buy" or side_text is True:
            side = 1
        elif side_text == "Sell" or side_text is False:
            side = -1
        else:
            raise _Problem("bad value", f"trade side must be 'Buy' or 'Sell', got {side_text!r}")
        if type(ts) is not int:
            raise _Problem("bad field", f"trade time is not an integer: {ts!r}")
        st = self.states.get(symbol)
        if st is None:
            tick = self._tick_for(symbol)
            if tick is None:
                self.report.dropped_trades += 1
                return None
            st = self.states[symbol] = _SymState(tick)
        try:
            x = float(p) * st.inv
            q = float(v)
            r = round(x)
        except (TypeError, ValueError, OverflowError):
            raise _Problem("bad value", _diagnose_levels([[p, v]], st.inv, st.tick, "trade")) from None
        if abs(x - r) > _GRID_TOL or r <= 0 or not (0.0 < q < _INF):
            if q == 0.0 and r > 0 and abs(x - r) <= _GRID_TOL:
                raise _Problem("bad value", f"trade size is zero: {v!r}")
            raise _Problem("bad value", _diagnose_levels([[p, v]], st.inv, st.tick, "trade"))
        self.report.messages["trade"] += 1
        return TradeMessage(ts, symbol, r, q, side, st.tick, None if tid is None else str(tid), local_ts)

    # -- cryptofeed v3 wrapper (Bybit payloads) ----------------------------------------------
    def _line_cryptofeed(self, raw: bytes) -> list:
        obj = self._loads(raw)
        t = obj.get("t")
        if t == "recv":
            try:
                conn = obj["conn"]
                payload = obj["data"]
                ts = obj["ts"]
            except KeyError as e:
                raise _Problem("missing field", f"missing field {e.args[0]!r}") from None
            if not isinstance(payload, str | bytes):
                raise _Problem("bad field", "cryptofeed 'data' is not the raw websocket text")
            try:
                inner = orjson.loads(payload)
            except orjson.JSONDecodeError as e:
                self._desync_unnumbered()
                raise _Problem("malformed JSON", f"malformed JSON in the websocket payload ({e})") from None
            if not isinstance(inner, dict):
                raise _Problem("bad line", "websocket payload is not a JSON object")
            local_ts = int(ts * 1e9) if isinstance(ts, int | float) else None
            return self._bybit_obj(inner, local_ts, conn)
        if t == "connect":
            addr = obj.get("addr") or ""
            conn = obj.get("conn")
            if conn:
                self.conn_names[conn] = addr.rstrip("/").rpartition("/")[2] or conn
            self.report.ignored_lines += 1
            return []
        if t == "header":
            exch = obj.get("exchange")
            if exch is not None and exch != "BYBIT":
                raise DataFormatError(self.path, self.line_no,
                                      f"cryptofeed capture of {exch}: only BYBIT captures are supported")
            self.report.ignored_lines += 1
            return []
        if t in _CRYPTOFEED_META:
            self.report.ignored_lines += 1
            return []
        raise _Problem("unknown message type", f"unknown cryptofeed record type {t!r}")

    # -- Binance USDⓈ-M (hftbacktest collector) -------------------------------------------------
    def _line_binance(self, raw: bytes) -> list:
        sp = raw.find(b" ")
        try:
            local_ts = int(raw[:sp]) if sp > 0 else None
        except ValueError:
            local_ts = None
        if local_ts is None:
            raise _Problem("bad line", "line is not '<local_ns> <json>'")
        obj = self._loads(raw[sp + 1:])
        data = obj.get("data")
        if data is None:
            if "lastUpdateId" in obj:
                return self._binance_snapshot(obj, local_ts)
            if "result" in obj or "id" in obj:
                self.report.ignored_lines += 1
                return []
            raise _Problem("missing field", "missing field 'data' (neither a stream message nor a REST snapshot)")
        if not isinstance(data, dict):
            raise _Problem("bad field", "'data' is not an object")
        e = data.get("e")
        if e == "depthUpdate":
            return self._binance_diff(data, local_ts)
        if e == "trade":
            try:
                name = data["s"]
                symbol = name
                self.binance_symbol = name
                if not self._want(symbol):
                    self.report.ignored_lines += 1
                    return []
                m = data["m"]
                msg = self._trade(symbol, data["T"], data["p"], data["q"],
                                  (not m) if isinstance(m, bool) else m, data.get("t"), local_ts)
            except KeyError as e:
                raise _Problem("missing field", f"missing field {e.args[0]!r}") from None
            return [msg] if msg is not None else []
        if e == "bookTicker":
            return self._binance_bbo(data, local_ts)
        if e in _IGNORED_BINANCE_EVENTS:
            self.report.ignored_lines += 1
            return []
        if e is None:
            raise _Problem("missing field", "missing field 'e' (event type)")
        raise _Problem("unknown message type", f"unknown message type (event {e!r})")

    def _binance_diff(self, d: dict, local_ts: int) -> list:
        try:
            symbol = d["s"]
            ts, first, last, prev = d["T"], d["U"], d["u"], d["pu"]
            d["b"], d["a"]  # noqa: B018 - presence check; used by _binance_apply
        except KeyError as e:
            raise _Problem("missing field", f"missing field {e.args[0]!r}") from None
        self.binance_symbol = symbol
        if not self._want(symbol):
            self.report.ignored_lines += 1
            return []
        if self.deferred is not None:
            out = self._run_deferred()
            return out + self._binance_diff(d, local_ts)
        for name, v in (("T", ts), ("U", first), ("u", last), ("pu", prev)):
            if type(v) is not int:
                raise _Problem("bad field", f"'{name}' is not an integer: {v!r}", symbol)
        st = self.states.get(symbol)
        # No REST snapshot applied yet (the state may exist already: a trade before the
        # snapshot creates it when tick_size= is given): buffer the diff, the snapshot's
        # first covering diff may be among them.
        if st is None or st.lid is None:
            pend = self.pending.setdefault(symbol, [])
            pend.append((self.path, self.line_no, local_ts, d))
            if len(pend) > _MAX_BUFFERED_DIFFS:
                raise DataFormatError(pend[0][0], pend[0][1],
                                      f"{_MAX_BUFFERED_DIFFS} depth diffs of {symbol} without a REST snapshot")
            return []
        if not st.synced and not st.need_first:  # desynced after a problem: wait for a snapshot
            self.report.dropped_deltas += 1
            return []
        return self._binance_apply(st, symbol, d, local_ts)

    def _binance_apply(self, st: _SymState, symbol: str, d: dict, local_ts: int | None) -> list:
        first, last, prev = d["U"], d["u"], d["pu"]
        if st.need_first:
            lid = st.lid
            if last < lid:  # older than the snapshot: Binance says drop it
                return []
            if not first <= lid <= last:
                raise _Problem("gap", f"first diff after the snapshot of {symbol} does not cover lastUpdateId {lid}: U={first} u={last}", symbol)
            st.need_first = False
            st.last_u = prev  # accepted as continuous by Binance's rule
        elif prev != st.last_u:
            raise _Problem("gap", f"gap in update ids of {symbol}: pu={prev} but the previous diff had u={st.last_u}", symbol)
        msg = self._book(False, symbol, d["T"], d["b"], d["a"], None, first, local_ts, "u")
        if msg is None:
            return []
        msg.update_id = last
        st.last_u = last
        st.has_u = True
        return [msg]

    def _run_deferred(self) -> list:
        """Process a REST snapshot that came before any message naming its symbol."""
        path, line_no, obj, local_ts = self.deferred
        self.deferred = None
        here = self.path, self.line_no
        self.path, self.line_no = path, line_no
        try:
            return self._binance_snapshot(obj, local_ts)
        except _Problem as p:
            self._problem(p.kind, p.reason, p.symbol)
            return []
        finally:
            self.path, self.line_no = here

    def _binance_snapshot(self, obj: dict, local_ts: int) -> list:
        try:
            lid, ts, b, a = obj["lastUpdateId"], obj["T"], obj["bids"], obj["asks"]
        except KeyError as e:
            raise _Problem("missing field", f"REST snapshot is missing field {e.args[0]!r}") from None
        symbol = self.binance_symbol or self.symbol
        if symbol is None:  # no stream message yet names the symbol: wait for the first diff
            self.deferred = (self.path, self.line_no, obj, local_ts)
            return []
        if not self._want(symbol):
            self.report.ignored_lines += 1
            return []
        if type(lid) is not int or type(ts) is not int:
            raise _Problem("bad field", "REST snapshot 'lastUpdateId'/'T' are not integers", symbol)
        st = self.states.get(symbol)
        pending = self.pending.pop(symbol, [])
        if st is None:
            st = self._new_state(symbol, b, a)
        st.last_u = None
        msg = self._book(True, symbol, ts, b, a, lid, None, local_ts, "lastUpdateId")
        if msg is None:
            return []
        st.lid = lid
        st.need_first = True
        out: list = [msg]
        path, line_no = self.path, self.line_no
        for pth, ln, lts, d in pending:
            self.path, self.line_no = pth, ln
            try:
                out.extend(self._binance_apply(st, symbol, d, lts))
            except _Problem as p:
                self._problem(p.kind, p.reason, p.symbol)
                break
        self.path, self.line_no = path, line_no
        return out

    def _binance_bbo(self, d: dict, local_ts: int) -> list:
        if not self.include_bbo:
            self.report.ignored_lines += 1
            return []
        try:
            symbol, u, ts = d["s"], d["u"], d["T"]
            bp, bs, ap, as_ = d["b"], d["B"], d["a"], d["A"]
        except KeyError as e:
            raise _Problem("missing field", f"missing field {e.args[0]!r}") from None
        if not self._want(symbol):
            self.report.ignored_lines += 1
            return []
        st = self.states.get(symbol)
        if st is None or st.lid is None:
            self.report.ignored_lines += 1  # no tick size before the REST snapshot
            return []
        try:
            (bpt, bsz), (apt, asz) = _levels([[bp, bs], [ap, as_]], st.inv, st.pcache)
        except _Bad:
            raise _Problem("bad value", _diagnose_levels([[bp, bs], [ap, as_]], st.inv, st.tick, "bookTicker")) from None
        self.report.messages["bbo"] += 1
        return [BookTickerMessage(ts, symbol, u, bpt, bsz, apt, asz, st.tick, local_ts)]

    def _finish_binance(self) -> list:
        out = []
        if self.deferred is not None:  # a REST snapshot and no diff after it
            self.binance_symbol = DEFAULT_SYMBOL
            out = self._run_deferred()
        for symbol, pend in list(self.pending.items()):
            if pend:
                del self.pending[symbol]
                self.path = pend[0][0]
                self._problem("no snapshot", f"{len(pend)} depth diffs of {symbol} but no REST snapshot to start from", None, line=pend[0][1])
        return out


def _crossed_reason(symbol: str, bb: int | None, ba: int | None) -> str:
    return f"book of {symbol} is crossed after this message: best bid {bb} >= best ask {ba} (ticks)"


class _Several(Exception):
    """Internal: a second symbol appeared while ``symbol=None``."""


def _scan_symbols(paths: list[Path], tick_size: Any) -> list[str]:
    """All symbols with book or trade messages (error path of the several-symbols check)."""
    names: list[str] = []
    for p in paths:
        r = _Reader([p], None, "skip", tick_size, check_crossed=False)
        r._want = lambda s, names=names: (names.append(s) if s not in names else None) or False  # type: ignore[method-assign]
        logging.getLogger(__name__).disabled, was = True, logger.disabled
        try:
            for _ in r.batches():
                pass
        finally:
            logger.disabled = was
    return sorted(names)


def load_messages(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    symbol: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    tick_size: float | Mapping[str, float] | None = None,
    *,
    include_bbo: bool = False,
    check_crossed: bool = True,
    report: LoadReport | None = None,
    book: Any = None,
) -> Iterator[Message]:
    """Yield the validated messages of one recording (several files are read as one).

    Args:
        path_or_paths: a file, or the files of one recording in order (e.g. Binance
            ``btcusdt_20240718.gz`` then ``btcusdt_20240719.gz``).
        symbol: keep only this symbol; required when the data holds several (the error lists
            them). Cryptofeed captures qualify symbols by connection, e.g. ``"linear:BTCUSDT"``.
        on_error: ``"raise"`` stops at the first problem with a ``DataFormatError``;
            ``"skip"`` logs and counts every problem, drops the bad record, and drops a
            symbol's deltas after any book problem until its next snapshot.
        tick_size: one tick size for every symbol, or a mapping symbol → tick size; None
            infers it from each symbol's first snapshot (see ``infer_tick_size``).
        include_bbo: also yield Binance ``bookTicker`` as ``BookTickerMessage``.
        check_crossed: keep a light book per symbol and refuse a message that leaves it
            crossed (costs a dict update per level; ``Replay`` turns it off after its
            validated index pass).
        report: a ``LoadReport`` to fill with counts and problems; complete once the
            iteration ended (or the iterator was closed).
        book: an ``order_book.OrderBook`` (one symbol) to which the loader applies every book
            message it accepts, before yielding it; the crossing check then reads this book
            instead of keeping a second one, so a streaming replay maintains one book, not
            two. Do not apply the messages to it again. Its ``tick_size`` should be the
            symbol's (a ``UserWarning`` says when not); ``replay`` makes a matching book.

    Yields:
        ``SnapshotMessage``, ``DeltaMessage``, ``TradeMessage`` (and ``BookTickerMessage``) in
        file order; Binance diffs buffered before the REST snapshot follow the snapshot (with
        ``book=``, the book already holds them when the snapshot is yielded).

    Raises:
        DataFormatError: bad data (``on_error="raise"``) or several symbols without ``symbol=``,
            while iterating.
        FileNotFoundError: a path that is not a file (at the call).
        ValueError: an ``on_error`` other than ``"raise"``/``"skip"`` (at the call).
    """
    paths = _as_paths(path_or_paths)
    reader = _Reader(paths, symbol, on_error, tick_size, include_bbo, check_crossed, report, book=book)
    return reader.messages()


def replay(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    symbol: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    tick_size: float | Mapping[str, float] | None = None,
    *,
    check_crossed: bool = True,
    report: LoadReport | None = None,
) -> Iterator[tuple[Message, Any]]:
    """Stream one symbol's recording through one ``OrderBook``: the fastest full replay.

    The loader applies every accepted book message to the book (made with the symbol and
    its tick size) and checks crossing on it, as ``load_messages(..., book=)`` does.

    Args:
        path_or_paths: a file, or the files of one recording in order.
        symbol: the symbol (required when the data holds several).
        on_error: as in ``load_messages``.
        tick_size: as in ``load_messages``.
        check_crossed: refuse a message that leaves the book crossed.
        report: a ``LoadReport`` to fill.

    Yields:
        ``(message, book)`` for every message of ``load_messages``, in file order; ``book``
        (the same ``OrderBook`` object throughout) holds the state after the message.
        Do not apply the message to it again.

    Raises:
        DataFormatError: bad data (``on_error="raise"``) or several symbols without ``symbol=``.
        FileNotFoundError: a path that is not a file.
    """
    paths = _as_paths(path_or_paths)
    reader = _Reader(paths, symbol, on_error, tick_size, False, check_crossed, report, make_book=True)
    return reader.messages(pairs=True)


# --------------------------------------------------------------------------------------------
# Random access: cached checkpoints
# --------------------------------------------------------------------------------------------


def _fingerprint(path: Path) -> dict:
    """Size, mtime (ns) and a SHA-256 of the first and last 64 KiB of a file."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 16))
        if st.st_size > 1 << 17:
            fh.seek(-(1 << 16), os.SEEK_END)
        h.update(fh.read(1 << 16))
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "head_tail_sha256": h.hexdigest()}


def default_cache_dir() -> Path:
    """The per-user cache folder of ``Replay`` (checkpoints, decompressed copies).

    ``$RLMM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rlmm``, else ``~/.cache/rlmm``; never a
    folder next to the data (which may be read-only or shared). Entries are keyed by the
    sources' absolute paths and settings, and checked against their fingerprints (size, mtime,
    head/tail hash), so one folder serves every recording.

    >>> import os
    >>> old = os.environ.get("RLMM_CACHE_DIR"); os.environ["RLMM_CACHE_DIR"] = "/tmp/c"
    >>> str(default_cache_dir())
    '/tmp/c'
    >>> _ = os.environ.pop("RLMM_CACHE_DIR") if old is None else os.environ.update(RLMM_CACHE_DIR=old)
    """
    env = os.environ.get("RLMM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlmm"


def _plain_copy(src: Path, cache_dir: Path, fp: dict) -> Path:
    """Decompress ``src`` once into the cache (atomic: temp file + fsync + rename)."""
    key = hashlib.sha256(orjson.dumps(fp)).hexdigest()[:16]
    dst = cache_dir / f"{src.name}.{key}.plain"
    if dst.is_file():
        return dst
    with atomic_open(dst) as out, _open_binary(src) as fh:  # streamed, never whole in memory
        while chunk := fh.read(1 << 22):
            out.write(chunk)
    return dst


class Replay:
    """Start a replay of one symbol at any time, from cached periodic book checkpoints.

    The first use of a recording runs one validating pass (``on_error`` rules, crossing
    check included) and stores, every ``checkpoint_interval_ms`` of exchange time and at
    every snapshot, the book and the loader state together with the byte position of the
    next line. ``start_at(t)`` restores the last checkpoint at or before ``t``, replays
    forward to ``t`` and returns the book plus an iterator over the rest.

    Cache: in ``cache_dir``, by default the per-user ``default_cache_dir()``
    (``$RLMM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlmm`` or ``~/.cache/rlmm``; nothing is
    written next to the data, which may be read-only): ``<name>.<key>.replay.json`` (metadata, positions, loader states) and
    ``.replay.npz`` (the checkpoint books), written atomically. The key covers the absolute
    paths, symbol, tick size, interval and ``on_error``; each source's size, mtime and a
    SHA-256 of its first and last 64 KiB are stored inside and compared on every open, so a
    changed file rebuilds the cache. Compressed sources (gzip/zstd/zip) are decompressed
    once into the cache directory (``<name>.<hash>.plain``) so that positions can be seeks.

    Attributes:
        symbol: the replayed symbol.
        tick_size: its tick size.
        start_ts: exchange ms of the first book message.
        end_ts: exchange ms of the last book message.
        checkpoint_ts: exchange ms of each checkpoint (snapshots included).
        snapshot_ts: exchange ms of each snapshot.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        symbol: str | None = None,
        *,
        tick_size: float | Mapping[str, float] | None = None,
        checkpoint_interval_ms: int = 60_000,
        cache_dir: str | os.PathLike | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        if checkpoint_interval_ms <= 0:
            raise ValueError(f"checkpoint_interval_ms must be positive, got {checkpoint_interval_ms}")
        self.sources = _as_paths(path_or_paths)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.interval = int(checkpoint_interval_ms)
        self.on_error = on_error
        self._tick_arg = tick_size
        fps = [_fingerprint(p) for p in self.sources]
        key_src = orjson.dumps({"v": _CACHE_VERSION, "paths": [f["path"] for f in fps],
                                "symbol": symbol, "tick": tick_size if not isinstance(tick_size, Mapping) else dict(tick_size),
                                "interval": self.interval, "on_error": on_error})
        key = hashlib.sha256(key_src).hexdigest()[:16]
        stem = self.cache_dir / f"{self.sources[0].name}.{key}"
        self._json_path = stem.with_name(stem.name + ".replay.json")
        self._npz_path = stem.with_name(stem.name + ".replay.npz")
        meta = self._load_cache(fps)
        if meta is None:
            meta = self._build(fps, symbol)
        self._meta = meta
        self.symbol: str = meta["symbol"]
        self.tick_size: float = meta["tick_size"]
        self.start_ts: int = meta["start_ts"]
        self.end_ts: int = meta["end_ts"]
        self.checkpoint_ts: list[int] = [c["ts"] for c in meta["checkpoints"]]
        self.snapshot_ts: list[int] = meta["snapshot_ts"]
        self.plain = [Path(p) for p in meta["plain"]]
        with np.load(self._npz_path) as z:
            self._px = z["px"]
            self._sz = z["sz"]
            self._bounds = z["bounds"]

    # -- cache -----------------------------------------------------------------------------
    def _load_cache(self, fps: list[dict]) -> dict | None:
        try:
            meta = orjson.loads(self._json_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if meta.get("version") != _CACHE_VERSION or meta.get("sources") != fps:
            logger.info("replay cache %s is stale; rebuilding", self._json_path)
            return None
        if not self._npz_path.is_file() or not all(Path(p).is_file() for p in meta["plain"]):
            return None
        return meta

    def _build(self, fps: list[dict], symbol: str | None) -> dict:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        plain = []
        for src, fp in zip(self.sources, fps, strict=True):
            plain.append(src if _compression(src) == "plain" else _plain_copy(src, self.cache_dir, fp))
        report = LoadReport()
        reader = _Reader(plain, symbol, self.on_error, self._tick_arg, report=report)
        checkpoints: list[dict] = []
        px_parts: list[np.ndarray] = []
        sz_parts: list[np.ndarray] = []
        bounds = [0]
        snapshot_ts: list[int] = []
        start_ts = end_ts = None
        next_cp = None
        sym = symbol
        for batch in reader.batches():
            last_book = None
            snap = False
            for m in batch:
                if type(m) is SnapshotMessage:
                    snapshot_ts.append(m.ts)
                    snap = True
                elif type(m) is not DeltaMessage:
                    continue
                last_book = m
                if start_ts is None:
                    start_ts = m.ts
            if last_book is None:
                continue
            sym = last_book.symbol
            ts = end_ts = last_book.ts
            st = reader.states[sym]
            if not st.synced or st.need_first or reader.pending.get(sym):
                continue
            if snap or next_cp is None or ts >= next_cp:
                next_cp = (ts // self.interval + 1) * self.interval
                bk = st.book
                bp = np.fromiter(bk.bids.keys(), np.int64, len(bk.bids))
                ap = np.fromiter(bk.asks.keys(), np.int64, len(bk.asks))
                px_parts += [bp, ap]
                sz_parts += [np.fromiter(bk.bids.values(), np.float64, len(bk.bids)),
                             np.fromiter(bk.asks.values(), np.float64, len(bk.asks))]
                bounds += [bounds[-1] + len(bp), bounds[-1] + len(bp) + len(ap)]
                checkpoints.append({"ts": ts, "file": reader.file_idx, "offset": reader.offset,
                                    "line": reader.line_no, "state": st.dump(),
                                    "conn_names": dict(reader.conn_names),
                                    "binance_symbol": reader.binance_symbol})
        if start_ts is None or sym is None:
            raise DataFormatError(self.sources[0], None, f"no book messages{' for ' + symbol if symbol else ''}")
        meta = {
            "version": _CACHE_VERSION, "sources": fps, "plain": [str(p) for p in plain],
            "symbol": sym, "tick_size": reader.states[sym].tick, "start_ts": start_ts,
            "end_ts": end_ts, "interval_ms": self.interval, "snapshot_ts": snapshot_ts,
            "checkpoints": checkpoints, "report": report.summary(),
        }
        buf = io.BytesIO()
        np.savez(buf, px=np.concatenate(px_parts) if px_parts else np.zeros(0, np.int64),
                 sz=np.concatenate(sz_parts) if sz_parts else np.zeros(0),
                 bounds=np.asarray(bounds, np.int64))
        atomic_write_bytes(self._npz_path, buf.getvalue())
        atomic_write_json(self._json_path, meta)  # written last: its presence marks a complete cache
        logger.info("built replay cache %s: %d checkpoints", self._json_path, len(checkpoints))
        return meta

    def _checkpoint_levels(self, i: int) -> tuple[list, list]:
        b0, b1, b2 = self._bounds[2 * i], self._bounds[2 * i + 1], self._bounds[2 * i + 2]
        bids = list(zip(self._px[b0:b1].tolist(), self._sz[b0:b1].tolist(), strict=True))
        asks = list(zip(self._px[b1:b2].tolist(), self._sz[b1:b2].tolist(), strict=True))
        return bids, asks

    # -- replay ----------------------------------------------------------------------------
    def messages_from(self, checkpoint: int | None) -> tuple[list | None, Iterator[Message]]:
        """Book levels of a checkpoint (None: from the top) and the messages after it."""
        if checkpoint is None:
            reader = _Reader(self.plain, self.symbol, self.on_error, self._tick_arg, check_crossed=False)
            levels = None
        else:
            cp = self._meta["checkpoints"][checkpoint]
            bids, asks = self._checkpoint_levels(checkpoint)
            st = _SymState.load(cp["state"], [], [])
            reader = _Reader(self.plain, self.symbol, self.on_error, self._tick_arg,
                             check_crossed=False, start=(cp["file"], cp["offset"], cp["line"]),
                             states={self.symbol: st},
                             extra={"conn_names": cp["conn_names"], "binance_symbol": cp["binance_symbol"]})
            reader.seen_symbols = [self.symbol]
            levels = [bids, asks, cp["ts"]]
        return levels, (m for batch in reader.batches() for m in batch)

    def start_at(self, t_ms: int) -> tuple[Any, Iterator[Message]]:
        """Book after every book message with ``ts <= t_ms``, and the messages with ``ts > t_ms``.

        Args:
            t_ms: exchange time, ms.

        Returns:
            ``(OrderBook, iterator)``: the iterator yields every message (book and trade)
            with ``ts > t_ms`` in file order; apply its book messages to the book.
        """
        from order_book import OrderBook

        i = bisect.bisect_right(self.checkpoint_ts, t_ms) - 1
        levels, it = self.messages_from(i if i >= 0 else None)
        book = OrderBook(self.symbol, self.tick_size)
        if levels is not None:
            book.apply(SnapshotMessage(levels[2], self.symbol, levels[0], levels[1], None, self.tick_size))
        ahead: list[Message] = []
        for m in it:
            if type(m) is SnapshotMessage or type(m) is DeltaMessage:
                if m.ts <= t_ms:
                    book.apply(m)
                    continue
                ahead.append(m)
                break
            if m.ts > t_ms:
                ahead.append(m)

        def rest() -> Iterator[Message]:
            yield from ahead
            for m in it:
                if m.ts > t_ms:
                    yield m

        return book, rest()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _parse_every(text: str) -> int:
    """Parse a sampling period such as ``1s``, ``500ms``, ``1m`` into ms.

    >>> _parse_every("1s"), _parse_every("250ms"), _parse_every("2m")
    (1000, 250, 120000)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"cannot parse period {text!r} (use e.g. 500ms, 1s, 1m)")
    value = float(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[m.group(2) or "s"]
    if value <= 0:
        raise ValueError(f"period must be positive, got {text!r}")
    return int(value)


def _inspect(paths: list[Path], symbol: str | None) -> int:
    report = LoadReport()
    by_sym: dict[str, dict] = {}
    gaps_before = 0
    books: dict[str, _LightBook] = {}
    was = logger.disabled
    logger.disabled = True
    try:
        reader = _Reader(paths, symbol, "skip", None, include_bbo=True, report=report)
        reader.any_symbol = True
        try:
            for batch in reader.batches():
                for m in batch:
                    s = by_sym.setdefault(m.symbol, {"types": Counter(), "first": None, "last": None,
                                                     "book_n": 0, "max_bids": 0, "max_asks": 0,
                                                     "tick": m.tick_size})
                    s["types"][type(m).__name__] += 1
                    if isinstance(m, _BOOK_TYPES):
                        s["book_n"] += 1
                        s["first"] = m.ts if s["first"] is None else s["first"]
                        s["last"] = m.ts
                        bk = reader.states[m.symbol].book
                        books[m.symbol] = bk
                        s["max_bids"] = max(s["max_bids"], len(bk.bids))
                        s["max_asks"] = max(s["max_asks"], len(bk.asks))
        except DataFormatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    finally:
        logger.disabled = was
    gaps_before = report.problems.get("gap", 0)
    print(f"file(s): {', '.join(map(str, paths))}")
    print(f"lines: {report.lines}  ignored: {report.ignored_lines}")
    print(f"{'symbol':<22} {'tick':>10} {'snapshot':>9} {'delta':>8} {'trade':>8} {'bbo':>8} "
          f"{'span_s':>9} {'upd/s':>8} {'max_bids':>8} {'max_asks':>8}")
    for sym, s in sorted(by_sym.items()):
        t = s["types"]
        span = ((s["last"] - s["first"]) / 1000.0) if s["first"] is not None else 0.0
        rate = s["book_n"] / span if span > 0 else float("nan")
        print(f"{sym:<22} {s['tick']:>10g} {t['SnapshotMessage']:>9} {t['DeltaMessage']:>8} "
              f"{t['TradeMessage']:>8} {t['BookTickerMessage']:>8} {span:>9.1f} {rate:>8.1f} "
              f"{s['max_bids']:>8} {s['max_asks']:>8}")
        if s["first"] is not None:
            print(f"{'':<22} time span (exchange ms): {s['first']} -> {s['last']}")
    print(f"gaps: {gaps_before}")
    print(f"problems: {report.n_problems}  "
          + ", ".join(f"{k}={v}" for k, v in sorted(report.problems.items())))
    for ex in report.examples[:10]:
        print(f"  {ex}")
    print(f"dropped deltas: {report.dropped_deltas}  dropped trades: {report.dropped_trades}")
    return 0


def _top_row(book: _LightBook, depth: int, tick: float, ts: int) -> list:
    """``[ts, bid_price_1, bid_size_1, ..., ask_price_1, ...]`` in price units, NaN-padded."""
    r: list = [ts]
    for side in book.top(depth):
        for i in range(depth):
            r += [side[i][0] * tick, side[i][1]] if i < len(side) else [float("nan"), 0.0]
    return r


def _export(paths: list[Path], symbol: str | None, depth: int, out: Path, every_ms: int | None) -> int:
    if depth <= 0:
        raise ValueError(f"--depth must be positive, got {depth}")
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name!r}")
    book = _LightBook()
    rows: list[list] = []
    tick = 1.0
    next_t: int | None = None
    last_ts: int | None = None

    def row(ts: int) -> list:
        return _top_row(book, depth, tick, ts)

    for m in load_messages(paths, symbol, check_crossed=False):
        if type(m) is not SnapshotMessage and type(m) is not DeltaMessage:
            continue
        if every_ms is not None and next_t is not None:
            while m.ts > next_t:  # book state after every message with ts <= next_t
                rows.append(row(next_t))
                next_t += every_ms
        if type(m) is SnapshotMessage:
            book.reset(m.bids, m.asks)
        else:
            book.update(m.bids, m.asks)
        tick = m.tick_size
        last_ts = m.ts
        if every_ms is None:
            rows.append(row(m.ts))
        elif next_t is None:
            next_t = -(-m.ts // every_ms) * every_ms  # first grid time at or after the first message
    if every_ms is not None and next_t is not None and last_ts is not None and last_ts >= next_t:
        rows.append(row(next_t))
    cols = ["ts"]
    for side in ("bid", "ask"):
        for i in range(1, depth + 1):
            cols += [f"{side}_price_{i}", f"{side}_size_{i}"]
    import pandas as pd

    df = pd.DataFrame(rows, columns=cols)
    if suffix == ".csv":
        atomic_write_bytes(out, df.to_csv(index=False).encode())
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {len(df)} rows x {len(cols)} columns to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _ArgumentParser(prog="data_processor.py", description="Inspect or export L2 order-book recordings.")
    sub_p = parser.add_subparsers(dest="cmd", required=True)
    p_i = sub_p.add_parser("inspect", help="messages by type, symbols, time span, rate, depth, gaps, problems")
    p_i.add_argument("files", nargs="+", type=Path, help="one recording (several files are read as one)")
    p_i.add_argument("--symbol", default=None)
    p_e = sub_p.add_parser("export", help="top-N book over time as CSV or Parquet")
    p_e.add_argument("files", nargs="+", type=Path)
    p_e.add_argument("--symbol", default=None)
    p_e.add_argument("--depth", type=int, default=5)
    p_e.add_argument("--out", type=Path, required=True)
    p_e.add_argument("--every", default=None, help="sampling period, e.g. 1s or 500ms (default: every book message)")
    for p in (p_i, p_e):
        p.error = parser.error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = _as_paths(args.files)
        if args.cmd == "inspect":
            return _inspect(paths, args.symbol)
        every = _parse_every(args.every) if args.every else None
        return _export(paths, args.symbol, args.depth, args.out, every)
    except (DataFormatError, FileNotFoundError, ValueError, OSError) as e:
        print(f"data_processor.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
