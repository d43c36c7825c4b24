"""Independent strict replays of two venue formats: the "no wrong book" oracle of ``tests/test_fuzz.py``.

One job: read a recording the slow, obvious way (``json`` + ``Decimal`` + plain dicts; nothing
from ``feeds/``) by the project's documented rules (docs/data.md, the module docstrings of
``feeds/bybit.py``, ``feeds/binance.py`` and ``feeds/reader.py``) and give the full book of one
symbol after each of its book messages, or refuse the input. Where the project accepts an
input, the strict replay of its format must accept it too and agree book by book.

Names:

- ``Refused``: the strict replay refuses the input.
- ``strict_bybit(data, symbol)``: Bybit v5 history files and websocket recordings.
- ``strict_binance(data, symbol)``: the hftbacktest collector's Binance USDⓈ-M lines.

Both return ``[(type, ts, update_id, bids, asks, tick)]`` (``type`` ``"snapshot"`` or
``"delta"``, ``bids``/``asks`` dicts price in ticks -> size, ``tick`` a ``Decimal``): the shape of
``test_fuzz.project_books``.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zipfile
from decimal import Decimal, InvalidOperation

_PLAIN = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)\Z")  # ASCII digits, at most one '.'
_BYBIT_IGNORED = {"tickers", "kline", "liquidation", "allLiquidation", "insurance", "lt", "adlAlert", "priceLimit",
            "kline_lt", "tickers_lt", "orderbook.rpi"}


class Refused(Exception):
    """The strict replay refuses the input."""


def _num(text) -> Decimal:
    if type(text) is not str or not _PLAIN.match(text):
        raise Refused(f"not a decimal string: {text!r}")
    return Decimal(text)


def _tick_of(prices: list[Decimal], texts: list[str]) -> Decimal:
    """The documented rule: ``d`` = most decimals; gcd of the prices in 10**-d with >= 20 distinct prices."""
    d = max((len(t) - t.index(".") - 1) if "." in t else 0 for t in texts)
    scale = Decimal(10) ** d
    ints = {int(p * scale) for p in prices}
    g = 1
    if len(ints) >= 20:
        g = 0
        for i in ints:
            g = math.gcd(g, i)
    return Decimal(g) / scale


def _levels(raw, tick: Decimal) -> list[tuple[int, float]]:
    if not isinstance(raw, list):
        raise Refused("levels not a list")
    out = []
    for lv in raw:
        if not isinstance(lv, list) or len(lv) != 2:
            raise Refused("level not a pair")
        p, s = _num(lv[0]), _num(lv[1])
        ticks = p / tick
        if p <= 0 or ticks != ticks.to_integral_value() or ticks >= 2**53:
            raise Refused(f"price {lv[0]!r} not on the grid / too large")
        q = float(s)
        if q == math.inf or (q == 0.0 and s != 0):
            raise Refused(f"size {lv[1]!r} not representable")
        out.append((int(ticks), q))
    return out


def _loads(raw: bytes):
    """``raw`` as JSON (``Refused`` for anything ``json`` refuses, and for NaN/Infinity)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(Refused(c)))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise Refused(f"not JSON: {e}") from None


def _decompress(data: bytes) -> bytes:
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = [m for m in zf.infolist() if not m.is_dir()]
                if len(names) != 1:
                    raise Refused("zip members")
                return zf.read(names[0])
        import zstandard

        obj = zstandard.ZstdDecompressor().decompressobj()
        out = obj.decompress(data)
        if not obj.eof or obj.unused_data:
            raise Refused("zstd incomplete or trailing data")
        return out
    except Refused:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder complaint is a refusal here
        raise Refused(f"container: {e}") from None


# ------------------------------------------------------------------ Bybit


def strict_bybit(data: bytes, symbol: str) -> list[tuple]:  # noqa: C901 - the whole strict replay in one readable function
    """Books of ``symbol`` after each of its book messages: ``[(type, ts, u, bids, asks, tick)]``.

    Rules (docs/data.md, feeds/bybit.py): lines without the symbol's text that name a topic are
    skipped unread (the documented pre-filter); a book line needs ``type`` snapshot/delta, an
    integer ``ts`` that never goes back, an integer ``u`` following the previous one, levels of
    decimal strings on the tick grid (the tick inferred from the first snapshot); deltas before
    the first snapshot, and a crossed book after any message, are refused. Trades of the symbol
    are checked by the same number grammar.
    """
    if data[:2] == b"\x1f\x8b" or data[:4] in (b"\x28\xb5\x2f\xfd", b"PK\x03\x04"):
        data = _decompress(data)
    sym_bytes = symbol.encode()
    out: list[tuple] = []
    tick = None
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    last_ts = last_u = None
    for raw in io.BytesIO(data):  # lines end at b"\n" only, as in the project (not at b"\r")
        if sym_bytes not in raw and b'"topic"' in raw:
            continue  # the byte pre-filter
        if not raw.strip():
            continue
        obj = _loads(raw)
        if type(obj) is not dict:
            raise Refused("not an object")
        topic = obj.get("topic")
        if topic is None:
            if "success" in obj or "op" in obj:
                continue
            topic_sym = None
        elif type(topic) is not str:
            raise Refused("topic not a string")
        else:
            head, _, rest = topic.partition(".")
            if head == "publicTrade":
                _strict_trades(obj, rest, symbol, tick)
                continue
            if head != "orderbook":
                if head in _BYBIT_IGNORED or topic in _BYBIT_IGNORED:
                    continue
                raise Refused(f"unknown topic {topic!r}")
            topic_sym = rest.rpartition(".")[2]
        for k in ("type", "ts", "data"):
            if k not in obj:
                raise Refused(f"missing {k}")
        typ, ts, d = obj["type"], obj["ts"], obj["data"]
        if type(d) is not dict or "b" not in d or "a" not in d:
            raise Refused("data")
        if typ not in ("snapshot", "delta"):
            raise Refused("type")
        name = d.get("s") or topic_sym
        if name is not None and type(name) is not str:
            raise Refused("symbol type")
        if (name if name is not None else symbol) != symbol:
            continue
        u, seq = d.get("u"), d.get("seq")
        if type(ts) is not int or (u is not None and type(u) is not int) or (seq is not None and type(seq) is not int):
            raise Refused("ts/u/seq type")
        if tick is None:
            if typ != "snapshot":
                raise Refused("delta before snapshot")
            try:
                texts = [lv[0] for lv in d["b"]] + [lv[0] for lv in d["a"]]
                tick = _tick_of([_num(t) for t in texts], texts)
            except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError, InvalidOperation) as e:
                raise Refused(f"tick: {e}") from None
            if tick <= 0:
                raise Refused("tick")
        if last_ts is not None and ts < last_ts:
            raise Refused("time backwards")
        if typ == "delta" and u is not None and last_u is not None and u != last_u + 1:
            raise Refused("gap")
        b, a = _levels(d["b"], tick), _levels(d["a"], tick)
        if typ == "snapshot":
            bids, asks = {}, {}
        for book, lv in ((bids, b), (asks, a)):
            for p, q in lv:
                if q == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        if bids and asks and max(bids) >= min(asks):
            raise Refused("crossed")
        last_ts, last_u = ts, u
        out.append((typ, ts, u, dict(bids), dict(asks), tick))
    return out


def _strict_trades(obj: dict, topic_sym: str, symbol: str, tick) -> None:
    d = obj.get("data")
    if type(d) is not list:
        raise Refused("trades not a list")
    for tr in d:
        if type(tr) is not dict:
            raise Refused("trade not an object")
        name = tr.get("s") or topic_sym
        if type(name) is not str:
            raise Refused("trade symbol")
        if name != symbol:
            return
        for k in ("T", "p", "v", "S"):
            if k not in tr:
                raise Refused(f"trade {k}")
        if tr["S"] not in ("Buy", "Sell") or type(tr["T"]) is not int:
            raise Refused("trade side/time")
        if tick is None:
            continue  # dropped: tick size unknown before the first snapshot
        _levels([[tr["p"], tr["v"]]], tick)
        if Decimal(tr["v"]) == 0:
            raise Refused("trade size 0")


# ------------------------------------------------------------------ Binance USDⓈ-M (hftbacktest collector)

_BINANCE_LINE = re.compile(rb"[0-9]+ \{")  # the file's first non-blank line: "<local_ns> {"
_BINANCE_IGNORED = {"markPriceUpdate", "aggTrade", "kline", "forceOrder", "24hrTicker", "24hrMiniTicker",
                    "compositeIndex", "contractInfo", "assetIndexUpdate", "continuous_kline"}
_MAX_LINE = 16 << 20  # docs: a longer line is refused before it is parsed
_DIFF_KEYS = ("s", "T", "U", "u", "pu", "b", "a")


def strict_binance(data: bytes, symbol: str) -> list[tuple]:
    """Books of ``symbol`` after its REST snapshot and each applied diff: ``[(type, T, id, bids, asks, tick)]``.

    Rules (feeds/binance.py, feeds/reader.py, Binance's "how to manage a local order book"):

    - the file: lines end at ``\\n``; its first non-blank line is ``<ASCII digits> {``; every line
      read is ``<ASCII digits> <JSON object>``; blank lines are skipped;
    - the byte pre-filter: a complete line holding ``"e":"bookTicker"`` is ignored unread, and so
      is a line without the symbol's text unless it holds ``"lastUpdateId"`` (a REST snapshot);
    - a REST snapshot ``{"lastUpdateId","T","bids","asks"}`` names no symbol: it belongs to the
      symbol of the last stream message (depth diff or trade) read before it; before any, to
      the symbol of the next depth diff (and with none, to no symbol: ignored);
    - depth diffs need ``s`` (a string), integer ``T``/``U``/``u``/``pu`` and ``b``/``a``; before the
      symbol's snapshot they are buffered; after it, one with ``u < lastUpdateId`` is dropped
      unread, the first one applied must have ``U <= lastUpdateId <= u`` and each later one
      ``pu`` equal to the previous ``u``; buffered diffs that never get a snapshot are refused;
    - a book message (snapshot: id ``lastUpdateId``; diff: id ``u``) never goes back in ``T``, has
      levels of decimal strings on the tick grid (the tick inferred from the first snapshot), and
      leaves the book uncrossed;
    - trades (``e`` = ``trade``) need ``s``, a boolean ``m``, an integer ``T`` and, once the tick is
      known, a price on the grid and a nonzero size of the number grammar; other events of the
      documented list, ``bookTicker`` and request acks (``result``/``id``) are ignored; any other
      event is refused.
    """
    if data[:2] == b"\x1f\x8b" or data[:4] in (b"\x28\xb5\x2f\xfd", b"PK\x03\x04"):
        data = _decompress(data)
    lines = io.BytesIO(data).readlines()  # split at b"\n" only
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise Refused("empty file")
    if not _BINANCE_LINE.match(first):
        raise Refused("first line is not '<local_ns> {...'")
    replay = _BinanceReplay(symbol)
    sym_bytes = symbol.encode()
    for raw in lines:
        if len(raw) > _MAX_LINE:
            raise Refused("line too long")
        if b'"e":"bookTicker"' in raw and raw.endswith(b"\n"):
            continue
        if sym_bytes not in raw and b'"lastUpdateId"' not in raw:
            continue
        if raw.strip():
            replay.line(raw)
    if replay.pending:
        raise Refused("depth diffs but no REST snapshot")
    return replay.out


class _BinanceReplay:
    """The state of ``strict_binance`` (one symbol)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.stream_symbol = None  # the symbol of the last depth diff or trade read
        self.deferred: list[dict] = []  # REST snapshots read before any stream message
        self.pending: list[dict] = []  # diffs read before the symbol's first snapshot
        self.tick = None
        self.lid = None  # lastUpdateId of the last snapshot applied
        self.need_first = False
        self.last_u = self.last_ts = None
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.out: list[tuple] = []

    def line(self, raw: bytes) -> None:
        head, sp, text = raw.partition(b" ")
        if not sp or not head.isdigit():  # bytes.isdigit: ASCII digits only
            raise Refused("line is not '<local_ns> <json>'")
        obj = _loads(text)
        if type(obj) is not dict:
            raise Refused("not an object")
        d = obj.get("data")
        if d is None:
            if "lastUpdateId" in obj:
                self.rest_snapshot(obj)
            elif "result" not in obj and "id" not in obj:
                raise Refused("neither a stream message nor a REST snapshot")
            return
        if type(d) is not dict:
            raise Refused("data not an object")
        e = d.get("e")
        if e == "depthUpdate":
            self.diff(d)
        elif e == "trade":
            self.trade(d)
        elif not (type(e) is str and (e == "bookTicker" or e in _BINANCE_IGNORED)):
            raise Refused(f"event {e!r}")

    def rest_snapshot(self, obj: dict) -> None:
        for k in ("lastUpdateId", "T", "bids", "asks"):
            if k not in obj:
                raise Refused(f"snapshot without {k}")
        if self.stream_symbol is None:
            self.deferred.append(obj)
        elif self.stream_symbol == self.symbol:
            self.apply_snapshot(obj)

    def apply_snapshot(self, obj: dict) -> None:
        lid, ts, b, a = obj["lastUpdateId"], obj["T"], obj["bids"], obj["asks"]
        if type(lid) is not int or type(ts) is not int:
            raise Refused("lastUpdateId/T not integers")
        if self.tick is None:
            try:
                texts = [lv[0] for lv in b] + [lv[0] for lv in a]
                self.tick = _tick_of([_num(t) for t in texts], texts)
            except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError, InvalidOperation) as e:
                raise Refused(f"tick: {e}") from None
            if self.tick <= 0:
                raise Refused("tick")
        self.book_message("snapshot", ts, b, a, lid)
        self.lid, self.need_first, self.last_u = lid, True, None
        pending, self.pending = self.pending, []
        for d in pending:
            self.apply_diff(d)

    def diff(self, d: dict) -> None:
        for k in _DIFF_KEYS:
            if k not in d:
                raise Refused(f"diff without {k}")
        if type(d["s"]) is not str:
            raise Refused("symbol not a string")
        self.stream_symbol = d["s"]
        if d["s"] != self.symbol:
            return
        deferred, self.deferred = self.deferred, []
        for obj in deferred:
            self.apply_snapshot(obj)
        if any(type(d[k]) is not int for k in ("T", "U", "u", "pu")):
            raise Refused("T/U/u/pu not integers")
        if self.lid is None:
            self.pending.append(d)
        else:
            self.apply_diff(d)

    def apply_diff(self, d: dict) -> None:
        if self.need_first:
            if d["u"] < self.lid:
                return  # older than the snapshot: dropped unread (Binance's rule)
            if not d["U"] <= self.lid <= d["u"]:
                raise Refused("first diff does not cover lastUpdateId")
            self.need_first = False
        elif d["pu"] != self.last_u:
            raise Refused("pu gap")
        self.book_message("delta", d["T"], d["b"], d["a"], d["u"])
        self.last_u = d["u"]

    def book_message(self, typ: str, ts: int, b, a, update_id: int) -> None:
        if self.last_ts is not None and ts < self.last_ts:
            raise Refused("time backwards")
        bl, al = _levels(b, self.tick), _levels(a, self.tick)
        if typ == "snapshot":
            self.bids, self.asks = {}, {}
        for book, lv in ((self.bids, bl), (self.asks, al)):
            for p, q in lv:
                if q == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            raise Refused("crossed")
        self.last_ts = ts
        self.out.append((typ, ts, update_id, dict(self.bids), dict(self.asks), self.tick))

    def trade(self, d: dict) -> None:
        if "s" not in d:
            raise Refused("trade without s")
        if type(d["s"]) is not str:
            raise Refused("trade symbol not a string")
        self.stream_symbol = d["s"]
        if d["s"] != self.symbol:
            return
        for k in ("m", "T", "p", "q"):
            if k not in d:
                raise Refused(f"trade without {k}")
        if type(d["m"]) is not bool or type(d["T"]) is not int:
            raise Refused("trade m/T")
        if self.tick is None:
            return  # dropped: tick size unknown before the first snapshot
        _levels([[d["p"], d["q"]]], self.tick)
        if Decimal(d["q"]) == 0:
            raise Refused("trade size 0")
