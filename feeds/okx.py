r"""OKX v5 public websocket: order books with their CRC32 checksum and ``seqId`` chain, trades.

One job: parse OKX v5 public-channel payloads (``books``, ``books5``, ``bbo-tbt``,
``books-l2-tbt``, ``books50-l2-tbt``, ``trades``) into messages, and check the venue's own
integrity rules on them: the ``seqId`` / ``prevSeqId`` chain and the CRC32 book checksum.
A file of raw payloads, one per line, is read by ``OkxFeed`` itself; cryptofeed captures
(``feeds.cryptofeed``) and this project's recorder hand their OKX payloads to ``parse_obj``.

Format (real payloads of ``../shared/data/okx/cryptofeed_v3_OKX.jsonl.gz``, levels cut short)::

    {"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"snapshot","data":[{"asks":[["30238.8","2","0","1"],["30249.5","50","0","1"]],"bids":[["30210.4","4","0","1"]],"ts":"1652459225393","checksum":1054815633}]}
    {"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[["30249.4","0","0","0"],["30261","4","0","1"],["30310.3","19","0","1"]],"bids":[["30182.6","452","0","1"]],"ts":"1652459225464","checksum":-914047754}]}
    {"arg":{"channel":"trades","instId":"BTC-USD-220527"},"data":[{"instId":"BTC-USD-220527","tradeId":"7849","px":"30218.8","sz":"1","side":"buy","ts":"1652459199958"}]}

Quirks and rules:

- A level is ``[price, size, liquidated orders (deprecated, "0"), order count]``; size
  ``"0"`` removes the level. ``ts`` is a string of exchange ms.
- ``books`` / ``books-l2-tbt`` / ``books50-l2-tbt`` send a ``snapshot`` then ``update``\ s;
  ``books5`` and ``bbo-tbt`` send a full top-5 / top-1 book every time (no ``action``): each
  is a snapshot here.
- **Checksum**: where a book message carries ``checksum``, the book after applying it must
  give the same value: the first 25 levels of each side interleaved as
  ``bidPx:bidSz:askPx:askSz:...`` (a side with fewer levels simply stops), joined by ``:``,
  CRC32 as a signed 32-bit integer, with the price and size *texts* as OKX sent them
  (``okx_checksum``). A mismatch is a ``DataFormatError`` ("checksum") naming the line.
  ``LoadReport.checksums`` counts the verified messages (all 290 of the sample capture).
- **Sequence**: where a book message carries ``seqId`` / ``prevSeqId`` (OKX added them in
  2022; the sample capture predates them), an ``update``'s ``prevSeqId`` must equal the
  previous message's ``seqId`` (a snapshot has ``prevSeqId`` -1); otherwise a "gap". A
  message's ``update_id`` is its ``seqId``.
- A trade's ``side`` is the taker's side (``buy``: buyer-initiated).
- Subscription events (``{"event":"subscribe",...}``) and channels without book or trade data
  (``tickers``, ``candle*``, ``mark-price``, ...) are legal and ignored; any other channel is
  an "unknown message type".

Name: ``OkxFeed``.
"""

from __future__ import annotations

import zlib
from typing import Any

from sortedcontainers import SortedDict

from feeds.common import Feed, Problem
from messages import Message

__all__ = ["OkxFeed", "okx_checksum"]

BOOK_CHANNELS = frozenset({"books", "books5", "bbo-tbt", "books-l2-tbt", "books50-l2-tbt"})
"""Channels of order-book data."""
SNAPSHOT_ONLY = frozenset({"books5", "bbo-tbt"})
"""Book channels whose every push is a full (top-N) book."""
IGNORED_CHANNELS = frozenset(
    {"tickers", "mark-price", "index-tickers", "funding-rate", "open-interest", "price-limit",
     "status", "instruments", "opt-summary", "estimated-price", "liquidation-orders",
     "mark-price-candle", "index-candle", "trades-all", "adl-warning", "economic-calendar"}
)
"""Channels that are legal in a recording but carry no book or trade data (``candle*`` too)."""


def okx_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's CRC32 book checksum of the best-first level texts (signed 32-bit).

    Args:
        bids: ``(price text, size text)`` of the bid side, best (highest) first.
        asks: the same for the ask side, best (lowest) first.

    Returns:
        The checksum OKX sends with the book (CRC32 of the first 25 levels of each side,
        interleaved ``bid:ask``, as a signed 32-bit integer).

    >>> okx_checksum([("3366.1", "7")], [("3366.8", "9")])  # crc32("3366.1:7:3366.8:9")
    -2058547290
    >>> okx_checksum([("1", "2"), ("0.5", "1")], [])
    -431454583
    """
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class _TextBook:
    """The price/size texts of one instrument's book, keyed by ticks (for the checksum)."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # -ticks -> (price text, size text): best first
        self.asks: SortedDict = SortedDict()  # ticks -> (price text, size text)

    def apply(self, raw: list, ticks: list[tuple[int, float]], side: SortedDict, sign: int) -> None:
        for lv, (t, size) in zip(raw, ticks, strict=True):
            if size == 0.0:
                side.pop(sign * t, None)
            else:
                side[sign * t] = (lv[0], lv[1])

    def checksum(self) -> int:
        return okx_checksum(list(self.bids.values()[:25]), list(self.asks.values()[:25]))


class OkxFeed(Feed):
    """Parser of OKX v5 public payloads (a file of raw payloads, or inside a capture)."""

    name = "okx"

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.books: dict[str, _TextBook] = {}  # symbol -> level texts (checksum)
        self.seq: dict[str, int] = {}  # symbol -> last seqId

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A JSON object with an ``arg`` object naming a ``channel``."""
        return type(obj) is dict and type(obj.get("arg")) is dict and "channel" in obj["arg"]

    def desync(self, symbol: str) -> None:
        """A problem or a recorded gap: the level texts and the chain restart at a snapshot."""
        self.books.pop(symbol, None)
        self.seq.pop(symbol, None)

    def dump(self) -> dict:
        """The level texts and last ``seqId`` of each instrument (checkpoint state)."""
        return {"okx": {s: [list(b.bids.items()), list(b.asks.items()), self.seq.get(s)]
                        for s, b in self.books.items()}}

    def load(self, extra: dict) -> None:
        """Restore the state of ``dump``."""
        for s, (bids, asks, seq) in extra.get("okx", {}).items():
            b = self.books[s] = _TextBook()
            b.bids.update((k, tuple(v)) for k, v in bids)
            b.asks.update((k, tuple(v)) for k, v in asks)
            if seq is not None:
                self.seq[s] = seq

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one raw payload line."""
        return self.parse_obj(self.reader.loads(raw), None)

    def parse_obj(self, obj: dict, local_ts: int | None) -> list[Message]:
        """The messages of one parsed payload (``local_ts``: the recorder's ns, if any)."""
        reader = self.reader
        arg = obj.get("arg")
        if "event" in obj or not isinstance(arg, dict):
            if "event" in obj:  # subscribe / unsubscribe / error / notice acks
                reader.report.ignored_lines += 1
                return []
            raise Problem("missing field", "OKX payload without 'arg' or 'event'")
        channel = arg.get("channel")
        if channel in BOOK_CHANNELS:
            return self._book(obj, channel, arg, local_ts)
        if channel == "trades":
            return self._trades(obj, local_ts)
        if channel in IGNORED_CHANNELS or (isinstance(channel, str) and channel.startswith("candle")):
            reader.report.ignored_lines += 1
            return []
        raise Problem("unknown message type", f"unknown OKX channel {channel!r}")

    def _book(self, obj: dict, channel: str, arg: dict, local_ts: int | None) -> list[Message]:
        reader = self.reader
        symbol = arg.get("instId")
        if not isinstance(symbol, str):
            raise Problem("missing field", "OKX book message without 'arg.instId'")
        if not reader.want(symbol):
            reader.report.ignored_lines += 1
            return []
        action = obj.get("action")
        if channel in SNAPSHOT_ONLY and action is None:
            action = "snapshot"
        if action not in ("snapshot", "update"):
            raise Problem("unknown message type", f"unknown OKX book action {action!r}", symbol)
        data = obj.get("data")
        if not isinstance(data, list) or not data:
            raise Problem("bad field", "OKX book 'data' is not a non-empty list", symbol)
        out: list[Message] = []
        for d in data:
            msg = self._one(d, symbol, action == "snapshot", local_ts)
            if msg is not None:
                out.append(msg)
        return out

    def _one(self, d: Any, symbol: str, is_snap: bool, local_ts: int | None) -> Message | None:
        reader = self.reader
        try:
            b, a, ts_text = d["bids"], d["asks"], d["ts"]
        except KeyError as e:
            raise Problem("missing field", f"OKX book data is missing field {e.args[0]!r}", symbol) from None
        except TypeError:
            raise Problem("bad field", "OKX book data is not an object", symbol) from None
        try:
            ts = int(ts_text)
        except (TypeError, ValueError):
            raise Problem("bad field", f"OKX 'ts' is not an integer: {ts_text!r}", symbol) from None
        seq, prev = d.get("seqId"), d.get("prevSeqId")
        for name, v in (("seqId", seq), ("prevSeqId", prev)):
            if v is not None and type(v) is not int:
                raise Problem("bad field", f"OKX '{name}' is not an integer: {v!r}", symbol)
        if not is_snap and prev is not None:
            last = self.seq.get(symbol)
            st = reader.states.get(symbol)
            if last is not None and st is not None and st.synced and prev != last:
                raise Problem("gap", f"gap in the OKX sequence of {symbol}: prevSeqId={prev} but the previous message had seqId={last}", symbol)
        try:
            b2 = [lv[:2] for lv in b]
            a2 = [lv[:2] for lv in a]
        except TypeError:
            raise Problem("bad field", "OKX 'bids'/'asks' are not lists of levels", symbol) from None
        msg = reader.book_message(is_snap, symbol, ts, b2, a2, None, None, local_ts, "seqId")
        if msg is None:
            return None
        if seq is not None:
            msg.update_id = seq
            self.seq[symbol] = seq
            reader.states[symbol].has_u = True
        book = self.books.get(symbol)
        if is_snap or book is None:
            book = self.books[symbol] = _TextBook()
        book.apply(b2, msg.bids, book.bids, -1)
        book.apply(a2, msg.asks, book.asks, 1)
        want = d.get("checksum")
        if want is not None:
            if type(want) is not int:
                raise Problem("bad field", f"OKX 'checksum' is not an integer: {want!r}", symbol)
            got = book.checksum()
            if got != want:
                raise Problem("checksum", f"OKX checksum mismatch for {symbol}: the message says {want}, "
                              f"the book after it gives {got} (a lost or altered update)", symbol)
            self.reader.report.checksums += 1
        return msg

    def _trades(self, obj: dict, local_ts: int | None) -> list[Message]:
        reader = self.reader
        data = obj.get("data")
        if not isinstance(data, list):
            raise Problem("bad field", "OKX trades 'data' is not a list")
        out: list[Message] = []
        for tr in data:
            try:
                symbol = tr.get("instId") or obj["arg"].get("instId")
                if not reader.want(symbol):
                    reader.report.ignored_lines += 1
                    return []
                side = tr["side"]
                ts_text = tr["ts"]
                msg = reader.trade(symbol, int(ts_text), tr["px"], tr["sz"],
                                   {"buy": "Buy", "sell": "Sell"}.get(side, side), tr.get("tradeId"), local_ts)
            except KeyError as e:
                raise Problem("missing field", f"OKX trade is missing field {e.args[0]!r}") from None
            except (TypeError, ValueError, AttributeError):
                raise Problem("bad field", f"OKX trade is not an object with an integer 'ts': {tr!r}") from None
            if msg is not None:
                out.append(msg)
        return out
