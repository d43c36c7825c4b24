r"""BitMEX ``orderBookL2`` (levels keyed by id) and ``trade`` tables.

One job: turn BitMEX realtime table messages into messages: the ``orderBookL2`` actions
``partial`` (the book), ``insert`` / ``update`` / ``delete`` (one level each, keyed by its
``id``), and ``trade`` inserts. Captures (``feeds.cryptofeed``, e.g.
``../shared/data/bitmex/cryptofeed_BITMEX.ws.1.0.gz``) hand their payloads to ``parse_obj``;
a file of raw payloads, one per line, is read by ``BitmexFeed`` itself.

Format (real payloads of ``cryptofeed_BITMEX.ws.1.0.gz``, rows cut short)::

    {"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],...,"filter":{"symbol":"XRPU21"},"data":[{"symbol":"XRPU21","id":56799989301,"side":"Sell","size":3000,"price":0.00010699}]}
    {"table":"orderBookL2","action":"update","data":[{"symbol":"UNIUSDT","id":51999982703,"side":"Sell","size":123}]}
    {"table":"orderBookL2","action":"delete","data":[{"symbol":"BCHUSD","id":40199991245,"side":"Buy"}]}
    {"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"UNIUSDT","side":"Buy","size":52,"price":17.297,"tickDirection":"PlusTick","trdMatchID":"39744121-..."}]}

Quirks and rules:

- ``update`` and ``delete`` rows name a level by ``id`` only (no price): the parser keeps
  each symbol's ``id -> price`` map from ``partial`` and ``insert``; an ``update`` /
  ``delete`` of an unknown id, or an ``insert`` of a known one, is a "gap" (the map and the
  book lost sync). This is the venue's integrity rule (BitMEX has no sequence numbers).
- Book rows of this (2021) feed carry no time: a book message takes the row ``timestamp``
  where there is one (newer feeds), else the recorder's receive time in ms (so ``ts`` of
  book messages is local time here; a file without either is refused, "no time").
  Trades carry their exchange ``timestamp``; ``side`` is the taker's.
- Prices are JSON numbers (``1.6425e-06`` among them), turned into plain decimal texts
  (``_plain``) before the tick rule reads them; sizes are integer contracts. One message may hold rows of several
  symbols: each symbol's rows become one message.
- ``quote``, ``instrument``, ``funding``, ... tables, ``info`` / ``success`` / ``error``
  records are legal and ignored; any other ``orderBookL2*`` / action is refused.

Name: ``BitmexFeed``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from feeds.coinbase import iso_ms
from feeds.common import Feed, Problem
from messages import Message

__all__ = ["BitmexFeed"]

IGNORED_TABLES = frozenset(
    {"quote", "instrument", "funding", "liquidation", "settlement", "insurance", "announcement",
     "connected", "publicNotifications", "quoteBin1m", "tradeBin1m", "tradeBin5m", "tradeBin1h",
     "tradeBin1d", "orderBook10", "chat"}
)
"""Tables legal in a recording without incremental book or trade data."""


class BitmexFeed(Feed):
    """Parser of BitMEX realtime table messages."""

    name = "bitmex"

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.ids: dict[str, dict[int, tuple[str, Any]]] = {}  # symbol -> id -> (side, price)

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A JSON object with a ``table`` and an ``action``, or the BitMEX welcome ``info``."""
        return type(obj) is dict and (("table" in obj and "action" in obj)
                                      or ("info" in obj and "docs" in obj))

    def desync(self, symbol: str) -> None:
        """The id map of ``symbol`` restarts at its next ``partial``."""
        self.ids.pop(symbol, None)

    def dump(self) -> dict:
        """The id maps (checkpoint state)."""
        return {"bitmex_ids": {s: [[i, sd, p] for i, (sd, p) in m.items()] for s, m in self.ids.items()}}

    def load(self, extra: dict) -> None:
        """Restore the id maps of ``dump``."""
        self.ids = {s: {i: (sd, p) for i, sd, p in rows} for s, rows in extra.get("bitmex_ids", {}).items()}

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one raw payload line."""
        return self.parse_obj(self.reader.loads(raw), None)

    def parse_obj(self, obj: dict, local_ts: int | None) -> list[Message]:
        """The messages of one parsed payload (``local_ts``: the recorder's ns, if any)."""
        reader = self.reader
        table = obj.get("table")
        if table is None:
            if "info" in obj or "success" in obj or "error" in obj or "subscribe" in obj:
                reader.report.ignored_lines += 1
                return []
            raise Problem("missing field", "BitMEX message without 'table'")
        rows = obj.get("data")
        if not isinstance(rows, list):
            raise Problem("bad field", "BitMEX 'data' is not a list of rows")
        if table == "orderBookL2":
            return self._book(obj.get("action"), rows, local_ts)
        if table == "trade":
            return self._trades(obj.get("action"), rows, local_ts)
        if table in IGNORED_TABLES:
            reader.report.ignored_lines += 1
            return []
        raise Problem("unknown message type", f"unknown BitMEX table {table!r}")

    def _book(self, action: Any, rows: list, local_ts: int | None) -> list[Message]:
        reader = self.reader
        if action not in ("partial", "insert", "update", "delete"):
            raise Problem("unknown message type", f"unknown BitMEX orderBookL2 action {action!r}")
        by_symbol: dict[str, list] = {}
        for r in rows:
            try:
                by_symbol.setdefault(r["symbol"], []).append(r)
            except (KeyError, TypeError):
                raise Problem("missing field", f"BitMEX book row without 'symbol': {r!r}") from None
        out: list[Message] = []
        for symbol, rs in by_symbol.items():
            if not reader.want(symbol):
                reader.report.ignored_lines += 1
                continue
            ts = self._time(rs, local_ts, symbol)
            msg = self._rows(action, symbol, rs, ts, local_ts)
            if msg is not None:
                out.append(msg)
        return out

    def _time(self, rows: list, local_ts: int | None, symbol: str) -> int:
        stamps = [r["timestamp"] for r in rows if "timestamp" in r]
        if stamps:
            try:
                return max(iso_ms(t) for t in stamps)
            except ValueError as e:
                raise Problem("bad field", str(e), symbol) from None
        if local_ts is None:
            raise Problem("no time", f"BitMEX book rows of {symbol} carry no timestamp and the file no receive time", symbol)
        return local_ts // 1_000_000

    def _rows(self, action: str, symbol: str, rows: list, ts: int, local_ts: int | None) -> Message | None:
        reader = self.reader
        b: list = []
        a: list = []
        st = reader.states.get(symbol)
        cur: dict[int, tuple[str, Any]] = {}
        if action != "partial":
            cur = self.ids.get(symbol)  # type: ignore[assignment]
            if cur is None or st is None or not st.synced:  # no partial yet (or waiting for one)
                reader.report.dropped_deltas += 1
                return None
        # The message's changes, applied to the id map only once it is accepted (None: deleted).
        new: dict[int, tuple[str, Any] | None] = {}

        try:
            for r in rows:
                side, price, size = self._row(action, symbol, r, cur, new)
                (b if side == "Buy" else a).append([price, size])
        except KeyError as e:
            raise Problem("missing field", f"BitMEX book row is missing field {e.args[0]!r}", symbol) from None
        except TypeError:
            raise Problem("bad field", "BitMEX book row is not an object", symbol) from None
        msg = reader.book_message(action == "partial", symbol, ts, b, a, None, None, local_ts, "id")
        if msg is not None:
            if action == "partial":
                self.ids[symbol] = cur = {}
            for i, v in new.items():
                if v is None:
                    cur.pop(i, None)
                else:
                    cur[i] = v
        return msg

    @staticmethod
    def _row(action: str, symbol: str, r: dict, cur: dict, new: dict) -> tuple[str, Any, Any]:
        """``(side, price, size)`` of one row; its id change recorded in ``new`` (None: deleted)."""
        i, side = r["id"], r["side"]
        if side not in ("Buy", "Sell"):
            raise Problem("bad value", f"BitMEX row side must be 'Buy' or 'Sell', got {side!r}", symbol)
        old = new[i] if i in new else cur.get(i)
        if action in ("partial", "insert"):
            if action == "insert" and old is not None:
                raise Problem("gap", f"BitMEX insert of id {i} of {symbol}, which is already in the book", symbol)
            price = _plain(r["price"])
            new[i] = (side, price)
            return side, price, r["size"]
        if old is None:
            raise Problem("gap", f"BitMEX {action} of unknown id {i} of {symbol}", symbol)
        if action == "delete":
            new[i] = None
            return side, old[1], 0
        price = old[1]
        if "price" in r:
            price = _plain(r["price"])
            new[i] = (side, price)
        return side, price, r["size"]

    def _trades(self, action: Any, rows: list, local_ts: int | None) -> list[Message]:
        reader = self.reader
        if action == "partial":  # the last trades before the subscription: history
            reader.report.ignored_lines += 1
            return []
        if action != "insert":
            raise Problem("unknown message type", f"unknown BitMEX trade action {action!r}")
        out: list[Message] = []
        for r in rows:
            try:
                symbol = r["symbol"]
                if not reader.want(symbol):
                    continue
                try:
                    ts = iso_ms(r["timestamp"])
                except ValueError as e:
                    raise Problem("bad field", str(e), symbol) from None
                msg = reader.trade(symbol, ts, _plain(r["price"]), r["size"], r["side"], r.get("trdMatchID"), local_ts)
            except KeyError as e:
                raise Problem("missing field", f"BitMEX trade is missing field {e.args[0]!r}") from None
            except TypeError:
                raise Problem("bad field", f"BitMEX trade is not an object: {r!r}") from None
            if msg is not None:
                out.append(msg)
        if not out:
            reader.report.ignored_lines += 1
        return out


def _plain(p: Any) -> Any:
    """A JSON number as a plain decimal text (no exponent); anything else unchanged.

    >>> _plain(1.6425e-06), _plain(31964), _plain(27.52)
    ('0.0000016425', '31964', '27.52')
    """
    if type(p) is float or type(p) is int:
        try:
            return format(Decimal(repr(p)), "f")
        except InvalidOperation:
            return p
    return p
