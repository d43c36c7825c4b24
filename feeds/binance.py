"""Binance USDⓈ-M futures recordings of the hftbacktest collector (``<local_ns> <json>`` lines).

One job: parse the collector's depth diffs, REST snapshots, trades and book tickers into
messages, synchronising the diff stream to its REST snapshot by Binance's rule.

Format (real lines of ``btcusdt_20240718.gz``, levels cut short)::

    1721347020984480942 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1721347022504,"T":1721347022504,"s":"BTCUSDT","U":4984028367545,"u":4984028370730,"pu":4984028367494,"b":[["62109.60","0.006"]],"a":[]}}
    1721347021281597601 {"lastUpdateId":4984028384061,"E":1721347022759,"T":1721347022750,"bids":[["63943.90","46.372"]],"asks":[["63944.00","0.095"]]}

Quirks:

- Each line starts with the recorder's receive time in ns (kept as ``local_ts``); the
  exchange time kept as ``ts`` is the transaction time ``T`` (ms).
- The book starts from a REST snapshot (no ``stream``/``data``; no symbol either: it belongs
  to the symbol of the stream messages around it, and the byte pre-filter keeps it; snapshots
  read before any stream message wait, in order, for the first diff to name it). Diffs
  before it are buffered (at most ``MAX_BUFFERED_DIFFS``); per Binance, diffs with
  ``u < lastUpdateId`` are dropped, the first one applied must have
  ``U <= lastUpdateId <= u``, and each later one's ``pu`` must equal the previous ``u``.
  A diff message's ``update_id`` is its ``u``, its ``seq`` its ``U``.
- A trade's ``m`` (buyer is the maker) means a seller-initiated trade.
- ``bookTicker`` lines (two thirds of a recording) are ignored unparsed unless
  ``include_bbo=True``; other events (mark price, aggTrade, klines, ...) and request acks are
  legal and ignored.

Name: ``BinanceFeed``.
"""

from __future__ import annotations

import re
from typing import Any

from feeds.common import (
    DEFAULT_SYMBOL,
    BadLevels,
    Feed,
    Problem,
    SymState,
    diagnose_levels,
    levels,
)
from messages import BookTickerMessage, DataFormatError, Message

__all__ = ["BinanceFeed"]

MAX_BUFFERED_DIFFS = 100_000
"""Diffs held per symbol while waiting for the REST snapshot (more: the recording is refused)."""

_LINE = re.compile(rb"^\d+ \{")
# Events that are legal in a recording but carry no book or trade data.
IGNORED_EVENTS = frozenset(
    {"markPriceUpdate", "aggTrade", "kline", "forceOrder", "24hrTicker", "24hrMiniTicker",
     "compositeIndex", "contractInfo", "assetIndexUpdate", "continuous_kline"}
)


def _symbol(s: Any) -> str:
    """A symbol field, checked to be a string (``Problem`` otherwise)."""
    if type(s) is not str:
        raise Problem("bad field", f"symbol 's' is not a string: {s!r}")
    return s


class BinanceFeed(Feed):
    """Parser of the hftbacktest collector's Binance USDⓈ-M lines."""

    name = "binance"
    keep = b'"lastUpdateId"'

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.symbol: str | None = None  # the symbol of the last stream message (REST snapshots name none)
        # symbol -> (path, line_no, local_ts, data) of the diffs seen before its REST snapshot
        self.pending: dict[str, list] = {}
        # REST snapshots seen before any message naming their symbol, in file order (every one
        # is a book message: a second one must not silently replace the first)
        self.deferred: list[tuple] = []

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A line ``<digits> {...``."""
        return _LINE.match(first_line) is not None

    def drop(self) -> bytes | None:
        """``bookTicker`` lines, unless ``include_bbo``."""
        return None if self.reader.include_bbo else b'"e":"bookTicker"'

    def dump(self) -> dict:
        """The current stream symbol (checkpoint state)."""
        return {"binance_symbol": self.symbol}

    def load(self, extra: dict) -> None:
        """Restore the stream symbol of a checkpoint."""
        self.symbol = extra.get("binance_symbol")

    def desync(self, symbol: str) -> None:
        """Drop the diffs buffered for ``symbol``."""
        self.pending.pop(symbol, None)

    def waiting(self, symbol: str) -> bool:
        """Whether diffs of ``symbol`` wait for their REST snapshot."""
        return bool(self.pending.get(symbol))

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one line."""
        reader = self.reader
        sp = raw.find(b" ")
        head = raw[:sp] if sp > 0 else b""
        local_ts = int(head) if head.isdigit() else None  # ASCII digits only (int() takes "1_0", "+1")
        if local_ts is None:
            raise Problem("bad line", "line is not '<local_ns> <json>'")
        obj = reader.loads(raw[sp + 1:])
        data = obj.get("data")
        if data is None:
            if "lastUpdateId" in obj:
                return self._snapshot(obj, local_ts)
            if "result" in obj or "id" in obj:
                reader.report.ignored_lines += 1
                return []
            raise Problem("missing field", "missing field 'data' (neither a stream message nor a REST snapshot)")
        if not isinstance(data, dict):
            raise Problem("bad field", "'data' is not an object")
        e = data.get("e")
        if e is not None and type(e) is not str:
            raise Problem("bad field", f"event type 'e' is not a string: {e!r}")
        if e == "depthUpdate":
            return self._diff(data, local_ts)
        if e == "trade":
            return self._trade(data, local_ts)
        if e == "bookTicker":
            return self._bbo(data, local_ts)
        if e in IGNORED_EVENTS:
            reader.report.ignored_lines += 1
            return []
        if e is None:
            raise Problem("missing field", "missing field 'e' (event type)")
        raise Problem("unknown message type", f"unknown message type (event {e!r})")

    def _trade(self, data: dict, local_ts: int) -> list[Message]:
        reader = self.reader
        try:
            symbol = _symbol(data["s"])
            self.symbol = symbol
            if not reader.want(symbol):
                reader.report.ignored_lines += 1
                return []
            m = data["m"]
            if type(m) is not bool:
                raise Problem("bad field", f"trade 'm' (buyer is maker) is not true/false: {m!r}", symbol)
            msg = reader.trade(symbol, data["T"], data["p"], data["q"], not m, data.get("t"), local_ts,
                               numbers=False)
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        return [msg] if msg is not None else []

    def _diff(self, d: dict, local_ts: int) -> list[Message]:
        reader = self.reader
        try:
            symbol = _symbol(d["s"])
            ts, first, last, prev = d["T"], d["U"], d["u"], d["pu"]
            d["b"], d["a"]  # noqa: B018 - presence check; used by _apply
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        self.symbol = symbol
        if not reader.want(symbol):
            reader.report.ignored_lines += 1
            return []
        if self.deferred:
            out = self._run_deferred()
            return out + self._diff(d, local_ts)
        for name, v in (("T", ts), ("U", first), ("u", last), ("pu", prev)):
            if type(v) is not int:
                raise Problem("bad field", f"'{name}' is not an integer: {v!r}", symbol)
        st = reader.states.get(symbol)
        # No REST snapshot applied yet (the state may exist already: a trade before the
        # snapshot creates it when tick_size= is given): buffer the diff, the snapshot's
        # first covering diff may be among them.
        if st is None or st.lid is None:
            pend = self.pending.setdefault(symbol, [])
            pend.append((reader.path, reader.line_no, local_ts, d))
            if len(pend) > MAX_BUFFERED_DIFFS:
                raise DataFormatError(pend[0][0], pend[0][1],
                                      f"{MAX_BUFFERED_DIFFS} depth diffs of {symbol} without a REST snapshot")
            return []
        if not st.synced and not st.need_first:  # desynced after a problem: wait for a snapshot
            reader.report.dropped_deltas += 1
            return []
        return self._apply(st, symbol, d, local_ts)

    def _apply(self, st: SymState, symbol: str, d: dict, local_ts: int | None) -> list[Message]:
        """Apply one diff by Binance's continuity rule (``U``/``u``/``pu``)."""
        first, last, prev = d["U"], d["u"], d["pu"]
        if st.need_first:
            lid = st.lid
            if last < lid:  # older than the snapshot: Binance says drop it
                return []
            if not first <= lid <= last:
                raise Problem("gap", f"first diff after the snapshot of {symbol} does not cover lastUpdateId {lid}: U={first} u={last}", symbol)
            st.need_first = False
            st.last_u = prev  # accepted as continuous by Binance's rule
        elif prev != st.last_u:
            raise Problem("gap", f"gap in update ids of {symbol}: pu={prev} but the previous diff had u={st.last_u}", symbol)
        msg = self.reader.book_message(False, symbol, d["T"], d["b"], d["a"], None, first, local_ts, "u",
                                       numbers=False)
        if msg is None:
            return []
        msg.update_id = last
        st.last_u = last
        st.has_u = True
        return [msg]

    def _run_deferred(self) -> list[Message]:
        """Process the REST snapshots that came before any message naming their symbol."""
        reader = self.reader
        deferred, self.deferred = self.deferred, []
        here = reader.path, reader.line_no
        out: list[Message] = []
        try:
            for path, line_no, obj, local_ts in deferred:
                reader.path, reader.line_no = path, line_no
                try:
                    out.extend(self._snapshot(obj, local_ts))
                except Problem as p:
                    reader.problem(p.kind, p.reason, p.symbol)
        finally:
            reader.path, reader.line_no = here
        return out

    def _snapshot(self, obj: dict, local_ts: int) -> list[Message]:
        reader = self.reader
        try:
            lid, ts, b, a = obj["lastUpdateId"], obj["T"], obj["bids"], obj["asks"]
        except KeyError as e:
            raise Problem("missing field", f"REST snapshot is missing field {e.args[0]!r}") from None
        # The snapshot names no symbol: it is the symbol of the stream around it. Before any
        # stream message of a wanted symbol, wait for the first diff; never take symbol= on
        # trust, or a file of another symbol gives that symbol's book under the asked name.
        symbol = self.symbol
        if symbol is None:
            self.deferred.append((reader.path, reader.line_no, obj, local_ts))
            return []
        if not reader.want(symbol):
            reader.report.ignored_lines += 1
            return []
        if type(lid) is not int or type(ts) is not int:
            raise Problem("bad field", "REST snapshot 'lastUpdateId'/'T' are not integers", symbol)
        st = reader.states.get(symbol)
        pending = self.pending.pop(symbol, [])
        if st is None:
            st = reader.new_state(symbol, b, a)
        st.last_u = None
        msg = reader.book_message(True, symbol, ts, b, a, lid, None, local_ts, "lastUpdateId", numbers=False)
        if msg is None:
            return []
        st.lid = lid
        st.need_first = True
        out: list[Message] = [msg]
        path, line_no = reader.path, reader.line_no
        for pth, ln, lts, d in pending:
            reader.path, reader.line_no = pth, ln
            try:
                out.extend(self._apply(st, symbol, d, lts))
            except Problem as p:
                reader.problem(p.kind, p.reason, p.symbol)
                break
        reader.path, reader.line_no = path, line_no
        return out

    def _bbo(self, d: dict, local_ts: int) -> list[Message]:
        reader = self.reader
        if not reader.include_bbo:
            reader.report.ignored_lines += 1
            return []
        try:
            symbol, u, ts = _symbol(d["s"]), d["u"], d["T"]
            bp, bs, ap, as_ = d["b"], d["B"], d["a"], d["A"]
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        if not reader.want(symbol):
            reader.report.ignored_lines += 1
            return []
        st = reader.states.get(symbol)
        if st is None or st.lid is None:
            reader.report.ignored_lines += 1  # no tick size before the REST snapshot
            return []
        if type(u) is not int or type(ts) is not int:
            raise Problem("bad field", "bookTicker 'u'/'T' are not integers", symbol)
        try:
            (bpt, bsz), (apt, asz) = levels([[bp, bs], [ap, as_]], st.inv, st.pcache, False)
        except BadLevels:
            raise Problem("bad value", diagnose_levels([[bp, bs], [ap, as_]], st.inv, st.tick, "bookTicker",
                                                       False)) from None
        reader.report.messages["bbo"] += 1
        return [BookTickerMessage(ts, symbol, u, bpt, bsz, apt, asz, st.tick, local_ts)]

    def finish(self) -> list[Message]:
        """A REST snapshot with no diff after it; diffs that never got their snapshot (problems)."""
        reader = self.reader
        out: list[Message] = []
        if self.deferred:  # REST snapshots and no diff after them
            self.symbol = DEFAULT_SYMBOL
            out = self._run_deferred()
        for symbol, pend in list(self.pending.items()):
            if pend:
                del self.pending[symbol]
                reader.path = pend[0][0]
                reader.problem("no snapshot", f"{len(pend)} depth diffs of {symbol} but no REST snapshot to start from", None, line=pend[0][1])
        return out
