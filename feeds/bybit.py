"""Bybit v5 order book and trades: daily history files, websocket recordings, simplified shape.

One job: parse Bybit v5 ``orderbook.<depth>.<SYMBOL>`` and ``publicTrade.<SYMBOL>`` records
into messages; the cryptofeed wrapper (``feeds.cryptofeed``) hands its Bybit payloads here too.

Format (real lines from ``2024-12-01_XRPUSDT_ob500.data`` and
``cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl``, levels cut short)::

    {"topic":"orderbook.500.XRPUSDT","type":"snapshot","ts":1733011200691,"data":{"s":"XRPUSDT","b":[["1.9531","6203"],["1.9530","2409"]],"a":[["1.9532","5"]],"u":20254869,"seq":87432189776},"cts":1733011200688}
    {"topic":"orderbook.500.XRPUSDT","type":"delta","ts":1733011200693,"data":{"s":"XRPUSDT","b":[["1.9531","6198"]],"a":[["1.9535","8415"]],"u":20254870,"seq":87432189790},"cts":1733011200690}
    {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[{"T":1786310819680,"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","i":"a9188a0a-82bc-50de-be60-03eedbe3cdd7"}]}

Quirks:

- ``ts`` is the exchange's ms time of the message (kept as ``ts``); a trade's own time is
  ``T``. A book message's ``u`` is consecutive per stream (``u == previous + 1``, else a gap);
  size ``"0"`` removes a level; a ``snapshot`` (also sent again after a reconnect or a service
  restart) replaces the book. Trades come as ``type":"snapshot"`` lists of several trades.
- The symbol is ``data.s``, or the topic's last segment when ``s`` is missing.
- The simplified shape ``{"type":"snapshot"|"delta","ts":...,"data":{"b":[...],"a":[...]}}``
  (no topic, no symbol) gets ``symbol=`` or ``DEFAULT_SYMBOL``.
- Subscription acks (``success`` / ``op``) and topics without book or trade data (tickers,
  klines, liquidations, ...) are legal and ignored.

Name: ``BybitFeed`` (its ``messages`` is the fused hot loop of Bybit v5 files).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

import order_book as _order_book
from feeds.common import (
    DEFAULT_SYMBOL,
    INF,
    MAX_LINE_BYTES,
    BadLevels,
    Feed,
    Problem,
    SeveralSymbols,
    SymState,
    crossed_reason,
    new_price,
)
from feeds.compression import DamagedFile, open_binary
from messages import DeltaMessage, Message

__all__ = ["BybitFeed"]

# Topics that are legal in a recording but carry no book or trade data.
IGNORED_TOPICS = frozenset(
    {"tickers", "kline", "liquidation", "allLiquidation", "insurance", "lt", "adlAlert",
     "priceLimit", "kline_lt", "tickers_lt", "orderbook.rpi"}
)


class BybitFeed(Feed):
    """Parser of Bybit v5 records (the fallback format: any JSON object line)."""

    name = "bybit"
    need = b'"topic"'  # lines of the simplified shape name no symbol: never pre-filtered

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        # topic -> (symbol, state, data "s") of book streams seen and wanted: the lines the
        # fused loop of ``messages`` may handle.
        self.fast: dict[str, tuple[str, SymState, str]] = {}

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """Any JSON object (registered last: the other formats are recognised first)."""
        return type(obj) is dict

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one line."""
        return self.parse_obj(self.reader.loads(raw))

    def parse_obj(self, obj: dict, local_ts: int | None = None, prefix: str | None = None) -> list:
        """The messages of one parsed record.

        Args:
            obj: the record.
            local_ts: the recorder's receive time (ns), where the wrapper has it.
            prefix: qualifies the symbols (``"linear"`` -> ``"linear:BTCUSDT"``), for
                captures of several connections.
        """
        topic = obj.get("topic")
        if topic is None:
            if "success" in obj or "op" in obj:
                self.reader.report.ignored_lines += 1
                return []
            if "type" not in obj or "data" not in obj:
                missing = [k for k in ("type", "ts", "data") if k not in obj]
                raise Problem("missing field", f"missing field(s) {missing}")
            return self._book(obj, None, local_ts, prefix)
        if not isinstance(topic, str):
            raise Problem("bad field", f"'topic' is not a string: {topic!r}")
        kind, _, rest = topic.partition(".")
        if kind == "orderbook":
            return self._book(obj, rest.rpartition(".")[2], local_ts, prefix)
        if kind == "publicTrade":
            return self._trades(obj, rest, local_ts, prefix)
        if kind in IGNORED_TOPICS or topic in IGNORED_TOPICS:
            self.reader.report.ignored_lines += 1
            return []
        raise Problem("unknown message type", f"unknown message type (topic {topic!r})")

    @staticmethod
    def _qualify(name: str, prefix: str | None) -> str:
        return name if prefix is None else f"{prefix}:{name}"

    def _book(self, obj: dict, topic_sym: str | None, local_ts: int | None, prefix: str | None) -> list:
        reader = self.reader
        try:
            typ = obj["type"]
            ts = obj["ts"]
            data = obj["data"]
            b = data["b"]
            a = data["a"]
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        except TypeError:
            raise Problem("bad field", "'data' is not an object") from None
        if typ == "snapshot":
            is_snap = True
        elif typ == "delta":
            is_snap = False
        else:
            raise Problem("unknown message type", f"unknown message type {typ!r}")
        name = data.get("s") or topic_sym
        if name is not None and type(name) is not str:
            raise Problem("bad field", f"symbol 's' is not a string: {name!r}")
        symbol = (reader.symbol or DEFAULT_SYMBOL) if name is None else self._qualify(name, prefix)
        if not reader.want(symbol):
            reader.report.ignored_lines += 1
            return []
        if type(ts) is not int:
            raise Problem("bad field", f"'ts' is not an integer: {ts!r}", symbol)
        u = data.get("u")
        if u is not None and type(u) is not int:
            raise Problem("bad field", f"'u' is not an integer: {u!r}", symbol)
        seq = data.get("seq")
        if seq is not None and type(seq) is not int:
            raise Problem("bad field", f"'seq' is not an integer: {seq!r}", symbol)
        msg = reader.book_message(is_snap, symbol, ts, b, a, u, seq, local_ts, "u", numbers=False)
        if msg is None:
            return []
        if prefix is None and topic_sym is not None and name == topic_sym:  # plain Bybit v5: fast loop
            self.fast[obj["topic"]] = (symbol, reader.states[symbol], name)
        return [msg]

    def _trades(self, obj: dict, topic_sym: str, local_ts: int | None, prefix: str | None) -> list:
        reader = self.reader
        data = obj.get("data")
        if not isinstance(data, list):
            raise Problem("missing field" if data is None else "bad field",
                          "publicTrade 'data' is not a list of trades")
        out = []
        for tr in data:
            try:
                name = tr.get("s") or topic_sym
                if type(name) is not str:
                    raise Problem("bad field", f"trade symbol 's' is not a string: {name!r}")
                symbol = self._qualify(name, prefix)
                if not reader.want(symbol):
                    reader.report.ignored_lines += 1
                    return []
                msg = reader.trade(symbol, tr["T"], tr["p"], tr["v"], tr["S"], tr.get("i"), local_ts,
                                   numbers=False)
            except KeyError as e:
                raise Problem("missing field", f"trade is missing field {e.args[0]!r}") from None
            except AttributeError:
                raise Problem("bad field", f"trade is not an object: {tr!r}") from None
            if msg is not None:
                out.append(msg)
        return out

    def messages(self, fi: int, pairs: bool) -> Iterator[Any]:  # noqa: C901 - one fused hot loop on purpose
        """Every message of Bybit v5 file ``fi``, through one fused loop.

        A delta line of a book stream already seen (``fast``), synchronised, with the next
        update id, a timestamp not going back and clean levels is converted, applied and
        yielded here without further calls; any other line, and any line where one of those
        checks fails, goes through the general path (``Reader.general``), which does every
        check again and words the problem. This loop changes no state before all its checks
        passed.
        """
        reader = self.reader
        rep = reader.report
        handler = self.parse
        from_obj = self.parse_obj
        flt, keep, need = reader.filter, self.keep, self.need
        general = reader.general
        fast = self.fast
        loads = orjson.loads
        json_error = orjson.JSONDecodeError
        new_px = new_price
        inf = INF
        sp = _order_book.SPEEDUPS
        conv = sp.levels if sp is not None else None
        delta_cls = DeltaMessage
        check = reader.check_crossed
        xb = reader.ext_book
        apply = xb.apply if xb is not None else None
        n_lines = n_deltas = 0
        limit = MAX_LINE_BYTES
        with open_binary(reader.paths[fi], reader.path) as fh:
            # no byte offsets here: only Replay's checkpoints need them, and Replay reads
            # through batches()
            line_no = reader.start_pos(fh, fi)[1]
            try:
                for raw in fh:
                    line_no += 1
                    if len(raw) > limit:
                        reader.line_no = line_no
                        reader.check_length(raw)
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
                            seq = data.get("seq")
                            if (st.synced and type(ts) is int and ts >= st.last_ts and type(u) is int
                                    and lu is not None and u == lu + 1 and (s == name or s is None)
                                    and (type(seq) is int or seq is None)):
                                pc = st.pcache
                                inv = st.inv
                                # feeds.common.levels for both sides: compiled, or inlined here
                                bids = conv(data.get("b"), inv, pc, new_px, False) if conv is not None else None
                                asks = conv(data.get("a"), inv, pc, new_px, False) if bids is not None else None
                                if asks is None:
                                    get = pc.get
                                    bids = []
                                    asks = []
                                    try:
                                        append = bids.append
                                        # the number grammar of feeds.common.levels
                                        # (numbers=False: decimal strings only), inlined
                                        lvs = data["b"]
                                        if type(lvs) is not list:
                                            raise BadLevels  # a dict or string iterates into "levels"
                                        for lv in lvs:
                                            if type(lv) is not list:
                                                raise BadLevels  # "12" unpacks into "1", "2"
                                            p, q = lv
                                            if not (type(q) is str and q.isascii() and q.replace(".", "", 1).isdigit()):
                                                raise BadLevels
                                            x = float(q)
                                            if not 0.0 < x < inf and (x or q.strip("0.")):
                                                raise BadLevels
                                            append((get(p) or new_px(p, inv, pc, False), x))
                                        append = asks.append
                                        lvs = data["a"]
                                        if type(lvs) is not list:
                                            raise BadLevels  # a dict or string iterates into "levels"
                                        for lv in lvs:
                                            if type(lv) is not list:
                                                raise BadLevels  # "12" unpacks into "1", "2"
                                            p, q = lv
                                            if not (type(q) is str and q.isascii() and q.replace(".", "", 1).isdigit()):
                                                raise BadLevels
                                            x = float(q)
                                            if not 0.0 < x < inf and (x or q.strip("0.")):
                                                raise BadLevels
                                            append((get(p) or new_px(p, inv, pc, False), x))
                                    except (BadLevels, KeyError, TypeError, ValueError, OverflowError):
                                        bids = None  # the general path words it
                                if bids is not None:
                                    msg = delta_cls(ts, symbol, bids, asks, u, st.tick, None, seq)
                                    n_lines += 1
                                    if xb is not None:
                                        apply(msg)
                                        # OrderBook.crossed: O(1), reads the ends of the
                                        # sorted key lists
                                        if check and xb.crossed and reader.recheck(xb, symbol, line_no):
                                            continue
                                    elif check:
                                        book = st.book
                                        book.update(bids, asks)
                                        if book.crossed():
                                            reader.line_no = line_no
                                            reader.problem("crossed", crossed_reason(symbol, book.bb, book.ba), symbol)
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
                    reader.line_no = line_no
                    if type(obj) is dict:
                        out = general(raw, from_obj, obj)
                    else:
                        out = general(raw, handler, raw)
                    if out:
                        yield from reader.emit(out, pairs)
                        xb = reader.ext_book  # made at the first snapshot with make_book
                        apply = xb.apply if xb is not None else None
            except SeveralSymbols:
                raise reader.several_error() from None
            except DamagedFile as e:
                raise reader.damaged(e, line_no) from None
            finally:
                if n_deltas:
                    rep.messages["delta"] += n_deltas
                rep.lines += n_lines
                reader.line_no = line_no
