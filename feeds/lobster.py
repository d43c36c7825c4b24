"""LOBSTER (NASDAQ) order-level files: the message file, checked against its orderbook file.

One job: turn LOBSTER's message rows into messages (the aggregated book as a snapshot and
deltas, trades, and with ``order_level=True`` the order events), and check and correct the
book against the orderbook file that comes with it.

Format (no header; real rows of ``AMZN_2012-06-21_34200000_57600000_{message,orderbook}_1.csv``
inside ``LOBSTER_SampleFile_AMZN_2012-06-21_1.zip``)::

    message:   34200.18960767,1,11885113,21,2238100,1
               34200.190226476,4,11885113,21,2238100,1
    orderbook: 2239500,100,2238100,21
               2239500,100,2237500,100

- message columns: time (seconds after midnight, Eastern time, ns precision), type (1 submit,
  2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 6 cross trade,
  7 trading halt), order id, size (shares), price (USD x 10000), direction (1 buy order,
  -1 sell order; for an execution the side of the *resting* order: -1 is a buyer-initiated
  trade);
- orderbook row ``i`` (``4 x LEVEL`` columns: ask price, ask size, bid price, bid size per
  level) is the book after message ``i``; an empty level is written with price
  ±9999999999 and size 0.

Where the data comes from: the zip itself (``load_messages("LOBSTER_..._1.zip")``: the zip
holds the message file, the orderbook file and a ReadMe; the message file is the data, the
orderbook file its companion), a plain message CSV (the orderbook CSV beside it is found by
name), or a ``Replay`` cache copy. Symbol and date come from the file name
(``TICKER_YYYY-MM-DD_...``); ``ts`` is exchange ms since the epoch (UTC), computed with the
America/New_York offset of that date.

Quirks, and what the reader does about them:

- **The message file only holds the events inside the requested levels** (LOBSTER's ReadMe:
  "indicators for the type of event causing an update of the limit order book in the
  requested price range"): with the free level-1 samples, orders submitted or cancelled deeper
  than the best level never appear, and orders resting before 09:30 are not in the file
  either. Book built from the messages alone is therefore right at the top only while the
  top level stays; when a level below it is revealed (the best level is consumed or
  cancelled), the messages cannot know its size. The orderbook file says it: after every
  message the reader compares its best ``LEVEL`` levels of each side with the orderbook row
  and, where they differ, **corrects the book to the row** (levels better than the row's best
  are removed, the row's levels set). ``LoadReport.checks`` counts ``"rows"``, ``"rows
  equal"`` (agreement before any correction), ``"rows corrected: level revealed"`` (the row's
  best price on each differing side moved outward from the previous row's, bid down or ask
  up: a level the message file never described came to the top) and ``"rows corrected: unexplained"`` (anything else; 0 on both
  sample days). Without an orderbook file the book is the messages' alone (a warning says so).
- Removals larger than the level (volume the file never added) are clamped at 0 and counted
  (``"level clamped"``).
- Hidden executions at sub-tick (midpoint) prices cannot be a ``TradeMessage`` (integer
  ticks): they are dropped and counted (``"sub-tick hidden trades dropped"``; 63 AMZN, 50 GOOG).
- Executions name the resting order: a visible execution (4) removes size from the book and
  is a trade whose aggressor is the other side; hidden executions (5) and cross trades (6) are
  trades that do not touch the visible book; a halt (7) is counted (``"halts"``) and
  otherwise ignored.
- ``OrderMessage.remaining`` is None: the level-1 message file does not follow every order,
  so the order's resting size is not known.

Name: ``LobsterFeed``.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from feeds.common import Feed, Problem, SymState
from feeds.compression import compression, open_companion
from feeds.mbo import LevelBook
from messages import (
    ASK,
    BID,
    ORDER_ADD,
    ORDER_DELETE,
    ORDER_EXECUTE,
    ORDER_MODIFY,
    DataFormatError,
    Message,
    OrderMessage,
)

__all__ = ["LobsterFeed", "lobster_name"]

TICK = 0.01
"""NASDAQ's tick for stocks above $1 (``tick_size=`` overrides it)."""
_PRICE_SCALE = 10_000  # LOBSTER prices are USD x 10000
_EMPTY = 9_999_999_999  # price of an empty level in the orderbook file
_ROW = re.compile(rb"^\d+(\.\d+)?,[1-7],-?\d+,-?\d+,-?\d+,-?1\r?\n?$")
_NAME = re.compile(r"([A-Za-z][A-Za-z0-9.]*)_(\d{4}-\d{2}-\d{2})")
_ET = ZoneInfo("America/New_York")


def lobster_name(name: str) -> tuple[str, int]:
    """Symbol and the epoch ms of that day's Eastern-time midnight, from a LOBSTER file name.

    >>> lobster_name("LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")
    ('AMZN', 1340251200000)
    >>> lobster_name("data.csv")
    ('LOBSTER', 0)
    """
    m = _NAME.search(name)
    if m is None:
        return "LOBSTER", 0
    day = _dt.date.fromisoformat(m.group(2))
    midnight = _dt.datetime(day.year, day.month, day.day, tzinfo=_ET)
    return m.group(1), int(midnight.timestamp() * 1000)


class LobsterFeed(Feed):
    """Parser of LOBSTER message files (with the orderbook file as the check and correction)."""

    name = "lobster"
    order_level = True
    lines_name_symbol = False

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.path: Path | None = None
        self.symbol = "LOBSTER"
        self.day_ms = 0
        self.book: LevelBook | None = None
        self.companion: BinaryIO | None = None
        self.companion_line = 0  # rows of the orderbook file read
        self.started = False  # the first book message (a snapshot) went out
        self.prev_top: tuple[int | None, int | None] = (None, None)  # the previous row's best bid/ask

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A message row: ``time,type,id,size,price,direction`` (6 numbers)."""
        return _ROW.match(first_line) is not None

    def dump(self) -> dict:
        """Book levels, orderbook-file position and start flag (checkpoint state)."""
        return {"lobster": {"book": self.book.dump() if self.book is not None else None,
                            "companion_line": self.companion_line, "started": self.started,
                            "prev_top": list(self.prev_top)}}

    def load(self, extra: dict) -> None:
        """Restore ``dump``."""
        d = extra.get("lobster")
        if d is None:
            return
        self._saved = d

    # -- per file ------------------------------------------------------------------------
    def _open(self) -> None:
        reader = self.reader
        path = reader.path
        if self.companion is not None:
            self.companion.close()
        self.path = path
        # the zip's message member names ticker and day; a Replay cache copy
        # (<source name>.<key>.plain) keeps the source's name
        name = path.name
        if compression(path) == "zip":
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if "_message_" in n), name)
        self.symbol, self.day_ms = lobster_name(name)
        if self.symbol == "LOBSTER":
            self.symbol, self.day_ms = lobster_name(path.name)
        tick = reader._tick_for(self.symbol) or TICK
        if self.book is None:
            self.book = LevelBook(tick, 1.0)
        self.companion = open_companion(path, "orderbook")
        self.companion_line = 0
        saved = getattr(self, "_saved", None)
        if saved is not None:  # a Replay checkpoint
            self._saved = None
            if saved["book"] is not None:
                self.book.load(saved["book"])
            self.started = saved["started"]
            self.prev_top = tuple(saved["prev_top"])
            if self.companion is not None:
                for _ in range(saved["companion_line"]):
                    self.companion.readline()
                self.companion_line = saved["companion_line"]
        if self.companion is None:
            warnings.warn(f"{path}: no LOBSTER orderbook file found beside the message file; the book "
                          "is built from the messages alone (deeper levels stay unknown)", stacklevel=2)

    def _row(self, line_no: int) -> list[int] | None:
        """The orderbook row of message line ``line_no`` (None without an orderbook file)."""
        fh = self.companion
        if fh is None:
            return None
        raw = b""
        while self.companion_line < line_no:
            raw = fh.readline()
            if not raw:
                raise DataFormatError(self.path or "", line_no, "the LOBSTER orderbook file has fewer rows than the message file")
            self.companion_line += 1
        try:
            vals = [int(x) for x in raw.split(b",")]
        except ValueError:
            raise DataFormatError(f"{self.path} (orderbook file)", line_no, f"orderbook row is not integers: {raw[:80]!r}") from None
        if not vals or len(vals) % 4:
            raise DataFormatError(f"{self.path} (orderbook file)", line_no,
                                  f"orderbook row must have 4 x LEVEL columns, got {len(vals)}")
        return vals

    # -- rows ----------------------------------------------------------------------------
    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one message row (order event, trade, book message)."""
        reader = self.reader
        if reader.path is not self.path:
            self._open()
        t, typ, oid, size, price, d = self._fields(raw)
        row = self._row(reader.line_no)
        sym = self.symbol
        if not reader.want(sym):
            reader.report.ignored_lines += 1
            return []
        if typ == 7:
            reader.report.checks["halts"] += 1
            if row is not None and self.started:
                self._check(row)
            return []
        return self._event(row, t, typ, oid, size, price, d)

    @staticmethod
    def _fields(raw: bytes) -> tuple[float, int, int, int, int, int]:
        """The six fields of a message row, checked."""
        f = raw.split(b",")
        if len(f) != 6:
            raise Problem("bad line", f"LOBSTER message row must have 6 comma-separated fields, got {len(f)}")
        try:
            t = float(f[0])
            typ, oid, size, price, d = int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5])
        except ValueError:
            raise Problem("bad value", f"LOBSTER message row has a non-numeric field: {raw.strip()[:80]!r}") from None
        if typ not in (1, 2, 3, 4, 5, 6, 7):
            raise Problem("bad value", f"unknown LOBSTER event type {typ}")
        if d not in (1, -1):
            raise Problem("bad value", f"LOBSTER direction must be 1 or -1, got {d}")
        if not (t >= 0.0 and t < 86_400.0):
            raise Problem("bad value", f"LOBSTER time must be seconds after midnight, got {t!r}")
        if typ != 7 and (size <= 0 or price <= 0):
            raise Problem("bad value", f"LOBSTER size and price must be positive, got size {size} price {price}")
        return t, typ, oid, size, price, d

    def _event(self, row: list[int] | None, t: float, typ: int, oid: int, size: int, price: int,
               d: int) -> list[Message]:
        """The messages of one book event (types 1-6)."""
        reader = self.reader
        sym = self.symbol
        ts = self.day_ms + int(t * 1000)
        book = self.book
        tick_units = round(book.tick * _PRICE_SCALE)
        if price % tick_units and typ in (5, 6):  # a hidden midpoint execution at a sub-tick price
            reader.report.checks["sub-tick hidden trades dropped"] += 1
            typ = 0
        elif price % tick_units:
            raise Problem("bad value", f"price {price / _PRICE_SCALE} is off the tick grid (tick size {book.tick})")
        px = price // tick_units
        side = BID if d == 1 else ASK
        if sym not in reader.states:
            reader.states[sym] = SymState(book.tick)
            reader.report.symbols.add(sym)
        out: list[Message] = []
        if typ == 0:
            pass
        elif typ in (5, 6):  # hidden execution / cross: a trade, the visible book unchanged
            tr = reader.trade(sym, ts, book.price_of(px), float(size), d == -1, oid, None)
            if tr is not None:
                out.append(tr)
        else:
            action = {1: ORDER_ADD, 2: ORDER_MODIFY, 3: ORDER_DELETE, 4: ORDER_EXECUTE}[typ]
            if reader.order_level:
                out.append(OrderMessage(ts, sym, action, oid, side, px, float(size), None, book.tick))
            if typ == 4:
                tr = reader.trade(sym, ts, book.price_of(px), float(size), d == -1, oid, None)
                if tr is not None:
                    out.append(tr)
            if book.add(side, px, size if typ == 1 else -size):
                reader.report.checks["level clamped"] += 1
        if row is not None:
            self._check(row)
        bk = self._book_message(ts)
        if bk is not None:
            out.append(bk)
        return out

    def _check(self, row: list[int]) -> None:
        """Compare the book's best levels with the orderbook row; correct it where they differ."""
        checks = self.reader.report.checks
        book = self.book
        n = len(row) // 4
        tu = round(book.tick * _PRICE_SCALE)
        fa = [(row[4 * i] // tu, row[4 * i + 1]) for i in range(n) if abs(row[4 * i]) != _EMPTY and row[4 * i + 1] > 0]
        fb = [(row[4 * i + 2] // tu, row[4 * i + 3]) for i in range(n) if abs(row[4 * i + 2]) != _EMPTY and row[4 * i + 3] > 0]
        ours_b, ours_a = book.top(n)
        checks["rows"] += 1
        top = (fb[0][0] if fb else None, fa[0][0] if fa else None)
        if tuple(fb) == ours_b and tuple(fa) == ours_a:
            checks["rows equal"] += 1
        else:
            pb, pa = self.prev_top
            # the differing side's best moved outward (its old best was consumed or cancelled),
            # or there was none: a level below the old best came to the top
            revealed = ((tuple(fb) == ours_b or pb is None or (top[0] is not None and top[0] < pb))
                        and (tuple(fa) == ours_a or pa is None or (top[1] is not None and top[1] > pa)))
            checks["rows corrected: level revealed" if revealed else "rows corrected: unexplained"] += 1
            self._correct(BID, fb, len(fb) < n)
            self._correct(ASK, fa, len(fa) < n)
        self.prev_top = top

    def _correct(self, side: int, file_levels: list[tuple[int, int]], to_end: bool) -> None:
        """Make the book's levels in the row's range equal the row's."""
        book = self.book
        lv = book.side(side)
        if not file_levels:
            rng = list(lv.keys())
        elif side == BID:
            lo = None if to_end else file_levels[-1][0]
            rng = [p for p in lv.irange(lo, None)]
        else:
            hi = None if to_end else file_levels[-1][0]
            rng = [p for p in lv.irange(None, hi)]
        want = dict(file_levels)
        for p in rng:
            if p not in want:
                book.set(side, p, 0)
        for p, s in file_levels:
            book.set(side, p, s)

    def _book_message(self, ts: int) -> Message | None:
        """The snapshot (first) or delta of the book changes since the last one."""
        reader = self.reader
        if not self.started:
            b, a = self.book.all_levels()
            self.started = True
            return reader.book_message(True, self.symbol, ts, b, a, None, None, None, "u")
        b, a = self.book.take_changes()
        if not b and not a:
            return None
        return reader.book_message(False, self.symbol, ts, b, a, None, None, None, "u")

    def finish(self) -> list[Message]:
        """Close the orderbook file."""
        if self.companion is not None:
            self.companion.close()
            self.companion = None
        return []
