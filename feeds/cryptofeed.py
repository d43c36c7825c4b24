r"""Captures of raw websocket traffic: cryptofeed's v3 JSONL and v1 text formats (and this project's recorder).

One job: unwrap capture records (receive time, connection, raw payload), hand each payload to
its venue's parser (``feeds.bybit``, ``feeds.okx``, ``feeds.coinbase``, ``feeds.bitmex``,
``feeds.binance``), and turn recorded disconnects into gaps.

Format v3 (cryptofeed ``v3`` branch; also what ``recorder.py`` writes), real lines from
``cryptofeed_v3_OKX.jsonl.gz`` and ``cryptofeed_v3_BYBIT.jsonl.zst`` (payloads cut short)::

    {"t":"header","format":2,"exchange":"OKX","config":{"l2_book":["BTC-USD-22K27","UNI-USD-PERP","BTC-USDT"], ...},"recorded":1652458996.256593,"converted_from":1}
    {"t":"connect","conn":"OKX.ws.1","ts":1652459224.5300605,"addr":"wss://ws.okx.com:8443/ws/v5/public"}
    {"t":"recv","conn":"BYBIT.ws.2","ts":1786310819.965676,"data":"{\"topic\":\"publicTrade.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1786310819681,\"data\":[...]}"}

Format v1 (cryptofeed master ``sample_data``), real lines of ``cryptofeed_COINBASE.ws.28.0.gz``::

    wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298
    wss://ws-feed.pro.coinbase.com <- 1618677817.020616: {"type":"subscribe","product_ids":["SKL-USD", ...],"channels":["level2"]}
    1618677847.8464699: {"type":"l2update","product_id":"SKL-GBP","changes":[["sell","0.5767","0.0"]],"time":"2021-04-17T16:44:07.859760Z"}

Rules:

- ``data`` (v3) / the text after ``<seconds>: `` (v1) is the raw websocket payload; the
  receive time in seconds is kept as ``local_ts`` in ns.
- The venue: the v3 ``header``'s ``exchange`` (``BYBIT``, ``OKX``, ``COINBASE``, ``BITMEX``,
  ``BINANCE_FUTURES``; another is refused), the v1 connection URL's host, or, without either,
  the payload's shape. A Binance USDⓈ-M REST depth snapshot is a v3 ``http`` record whose
  ``url`` holds ``/depth`` (its ``symbol=`` names the book); other ``http`` records
  (instrument lists) are ignored.
- Symbols: Bybit's are qualified by connection, ``"linear:BTCUSDT"`` (the last path segment
  of the connection URL; a capture holds spot and linear connections with the same names)
  or ``"BYBIT.ws.2:BTCUSDT"`` without a ``connect`` line; the other venues' instrument names
  are unique (``BTC-USDT``, ``BTC-USD``, ``XBTUSD``, ``BTCUSDT``) and kept as they are.
- **Gaps**: a ``disconnect`` record (v3), or a second ``connect`` of a connection that
  already carried book data, means messages were lost: every book of that connection waits
  for its next snapshot (deltas until then are dropped and counted), and that next snapshot
  comes with ``SnapshotMessage.gap = True`` (``LoadReport.gaps`` counts these resumptions; a
  disconnect at the very end of a recording resumes nothing and is not counted). So a gap
  is never replayed as continuous: the env ends an episode there and never starts one across
  it (``event_driven_env``), and ``Replay.gap_ts`` lists the resumptions.
- ``send``, ``error``, ``close`` and other bookkeeping records are ignored. With ``symbol=``,
  v3 ``recv`` lines not holding the symbol's text are skipped unparsed (the bookkeeping
  records never are: a gap record names no symbol); in Coinbase captures (one sequence
  number per connection), captures without a header and v1 captures every line is parsed.

Names: ``CryptofeedFeed`` (v3), ``CryptofeedV1Feed`` (v1).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from feeds.binance import BinanceFeed
from feeds.bitmex import BitmexFeed
from feeds.bybit import BybitFeed
from feeds.coinbase import CoinbaseFeed
from feeds.common import Feed, Problem
from feeds.compression import open_binary
from feeds.okx import OkxFeed
from messages import DataFormatError, Message, SnapshotMessage

__all__ = ["EXCHANGES", "CryptofeedFeed", "CryptofeedV1Feed"]

logger = logging.getLogger("data_processor")

EXCHANGES: dict[str, str] = {
    "BYBIT": "bybit", "OKX": "okx", "OKEX": "okx", "COINBASE": "coinbase", "BITMEX": "bitmex",
    "BINANCE_FUTURES": "binance",
}
"""Capture ``exchange`` names -> the venue parser that reads their payloads."""

_META = frozenset({"header", "http", "connect", "send", "disconnect", "error", "close"})
_V1 = re.compile(rb"^(?:wss?://\S+ <->? [0-9.]+|[0-9]+\.[0-9]+: [\[{])")


class _Capture(Feed):
    """What both capture formats share: venue dispatch, connections, gaps."""

    keep = b""  # every line is parsed (v1; v3 narrows it per file, see CryptofeedFeed.keep)

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.venue: str | None = None  # from the header / URL; None: by payload shape
        self.conn_names: dict[str, str] = {}  # connection id -> its URL's last path segment
        self.sym_conn: dict[str, str] = {}  # symbol -> the connection its book came on
        self.gap_pending: set[str] = set()  # symbols whose next snapshot follows a gap
        self.subs = {"bybit": reader.feed(BybitFeed), "okx": reader.feed(OkxFeed),
                     "coinbase": reader.feed(CoinbaseFeed), "bitmex": reader.feed(BitmexFeed),
                     "binance": reader.feed(BinanceFeed)}

    def dump(self) -> dict:
        """Connections, their symbols and pending gaps (checkpoint state)."""
        return {"conn_names": dict(self.conn_names), "sym_conn": dict(self.sym_conn),
                "gap_pending": sorted(self.gap_pending), "capture_venue": self.venue}

    def load(self, extra: dict) -> None:
        """Restore the state of ``dump``."""
        self.conn_names = dict(extra.get("conn_names", {}))
        self.sym_conn = dict(extra.get("sym_conn", {}))
        self.gap_pending = set(extra.get("gap_pending", []))
        self.venue = extra.get("capture_venue")

    def waiting(self, symbol: str) -> bool:
        """A gap's resumption must start a checkpoint of its own (no checkpoint while pending)."""
        return symbol in self.gap_pending

    @staticmethod
    def _shape(inner: dict) -> str:
        if OkxFeed.detect(b"", inner) or ("event" in inner and "arg" in inner):
            return "okx"
        if CoinbaseFeed.detect(b"", inner):
            return "coinbase"
        if BitmexFeed.detect(b"", inner):
            return "bitmex"
        if "stream" in inner:
            return "binance"
        return "bybit"

    def payload(self, conn: str, payload: Any, local_ts: int | None) -> list[Message]:
        """The messages of one raw websocket payload received on ``conn``."""
        if not isinstance(payload, str | bytes):
            raise Problem("bad field", "the capture's payload is not the raw websocket text")
        try:
            inner = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            self.reader.desync_unnumbered()
            raise Problem("malformed JSON", f"malformed JSON in the websocket payload ({e})") from None
        if not isinstance(inner, dict):
            raise Problem("bad line", "websocket payload is not a JSON object")
        venue = self.venue or self._shape(inner)
        if venue == "bybit":
            out = self.subs["bybit"].parse_obj(inner, local_ts, self.conn_names.get(conn, conn))
        elif venue == "coinbase":
            out = self.subs["coinbase"].parse_obj(inner, local_ts, conn)
        elif venue == "binance":
            if local_ts is None:
                raise Problem("missing field", "a Binance payload needs the capture's receive time")
            raw = payload.encode() if isinstance(payload, str) else payload
            out = self.subs["binance"].parse(b"%d %s" % (local_ts, raw))
        else:
            out = self.subs[venue].parse_obj(inner, local_ts)
        return self._mark(out, conn)

    def _mark(self, out: list[Message], conn: str) -> list[Message]:
        for m in out:
            s = m.symbol
            if self.sym_conn.get(s) != conn:
                self.sym_conn[s] = conn
            if type(m) is SnapshotMessage and s in self.gap_pending:
                m.gap = True
                self.gap_pending.discard(s)
                self.reader.report.gaps += 1
        return out

    def gap(self, conn: str, what: str) -> None:
        """A recorded gap on ``conn``: its books wait for their next snapshot (flagged ``gap``)."""
        reader = self.reader
        symbols = [s for s, c in self.sym_conn.items() if c == conn and s not in self.gap_pending]
        self.subs["coinbase"].gap(conn)
        if not symbols:
            return
        for s in symbols:
            st = reader.states.get(s)
            if st is not None:
                st.synced = False
                st.last_u = None
                st.lid = None  # Binance: the next REST snapshot starts the sync again
                st.need_first = False
            for f in reader.feeds.values():
                f.desync(s)
            self.gap_pending.add(s)
        logger.info("%s", DataFormatError(reader.path, reader.line_no,
                                          f"recorded gap ({what} of {conn}): {', '.join(sorted(symbols))} wait for a new snapshot"))


class CryptofeedFeed(_Capture):
    """Parser of cryptofeed v3 capture records (and ``recorder.py``'s files)."""

    name = "cryptofeed"
    need = b'"t":"recv"'  # bookkeeping records (header, connect, disconnect, http) are always parsed

    @property
    def keep(self) -> bytes | None:  # type: ignore[override]
        """The byte pre-filter's ``keep`` for the current file.

        ``None``: ``recv`` lines of other symbols are skipped unparsed; ``b""`` (Coinbase
        captures, whose every message carries the connection's ``sequence_num``, and captures
        without a header naming the exchange): every line is parsed.
        """
        fi = self.reader.file_idx
        if self._keep_of[0] != fi:
            self._keep_of = (fi, b"" if self._file_venue(fi) in (None, "coinbase") else None)
        return self._keep_of[1]

    _keep_of: tuple[int, bytes | None] = (-1, b"")

    def _file_venue(self, fi: int) -> str | None:
        """The venue named by the header of file ``fi`` (its first non-blank line), or None."""
        with open_binary(self.reader.paths[fi]) as fh:
            for raw in fh:
                if raw.strip():
                    try:
                        obj = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        return None
                    return EXCHANGES.get(obj.get("exchange")) if isinstance(obj, dict) and obj.get("t") == "header" else None
        return None

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A JSON object with a record type ``t`` and no Bybit ``topic`` / ``type``."""
        return type(obj) is dict and "t" in obj and "topic" not in obj and "type" not in obj

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one capture record."""
        reader = self.reader
        obj = reader.loads(raw)
        t = obj.get("t")
        if t == "recv":
            try:
                conn, payload, ts = obj["conn"], obj["data"], obj["ts"]
            except KeyError as e:
                raise Problem("missing field", f"missing field {e.args[0]!r}") from None
            local_ts = int(ts * 1e9) if isinstance(ts, int | float) else None
            return self.payload(conn, payload, local_ts)
        if t == "connect":
            conn = obj.get("conn")
            if conn:
                self.gap(conn, "reconnect")
                addr = obj.get("addr") or ""
                self.conn_names[conn] = addr.rstrip("/").rpartition("/")[2] or conn
        elif t == "disconnect":
            conn = obj.get("conn")
            if conn:
                self.gap(conn, "disconnect" + (f": {obj['reason']}" if obj.get("reason") else ""))
        elif t == "header":
            self._header(obj)
        elif t == "http":
            if self.venue == "binance" and "/depth" in str(obj.get("url")):
                return self._rest_snapshot(obj)
        elif t not in _META:
            raise Problem("unknown message type", f"unknown cryptofeed record type {t!r}")
        reader.report.ignored_lines += 1
        return []


    def _header(self, obj: dict) -> None:
        reader = self.reader
        exch = obj.get("exchange")
        if exch is not None:
            venue = EXCHANGES.get(exch)
            if venue is None:
                raise DataFormatError(reader.path, reader.line_no,
                                      f"cryptofeed capture of {exch}: supported exchanges are {', '.join(EXCHANGES)}")
            self.venue = venue
        conns = obj.get("connections")  # recorder.py: the connections open at a rotated file's top
        if isinstance(conns, dict):
            for conn, addr in conns.items():
                self.conn_names.setdefault(conn, str(addr).rstrip("/").rpartition("/")[2] or conn)

    def _rest_snapshot(self, obj: dict) -> list[Message]:
        ts = obj.get("ts")
        data = obj.get("data")
        if not isinstance(ts, int | float) or not isinstance(data, str):
            raise Problem("bad field", "Binance REST snapshot record without a numeric 'ts' and a text 'data'")
        m = re.search(r"[?&]symbol=([A-Za-z0-9_]+)", str(obj.get("url")))
        if m:  # the URL names the snapshot's symbol (several symbols may share the stream)
            self.subs["binance"].symbol = m.group(1).upper()
        return self._mark(self.subs["binance"].parse(b"%d %s" % (int(ts * 1e9), data.encode())), str(obj.get("conn")))


class CryptofeedV1Feed(_Capture):
    """Parser of cryptofeed v1 text captures (``<seconds>: <payload>``, ``<url> <-> <seconds>``)."""

    name = "cryptofeed_v1"

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.url: str = "ws"  # the current connection (its URL)

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A ``<url> <-> <seconds>`` / ``<url> <- <seconds>: ...`` / ``<seconds>: {...`` line."""
        return _V1.match(first_line) is not None

    def dump(self) -> dict:
        """The base state and the current connection URL."""
        return {**super().dump(), "v1_url": self.url}

    def load(self, extra: dict) -> None:
        """Restore the state of ``dump``."""
        super().load(extra)
        self.url = extra.get("v1_url", "ws")

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one line."""
        head, sep, rest = raw.partition(b": ")
        if sep and head[:1].isdigit():
            try:
                sec, _, frac = head.decode().partition(".")
                local_ts = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
            except ValueError:
                raise Problem("bad line", "line is not '<seconds>: <payload>'") from None
            return self.payload(self.url, rest.strip(), local_ts)
        parts = raw.split()
        if len(parts) >= 3 and parts[1] == b"<->":  # a connect
            url = parts[0].decode(errors="replace")
            self.gap(url, "reconnect")
            self.url = url
            host = url.partition("://")[2].split("/")[0].lower()
            for key, venue in (("coinbase", "coinbase"), ("bitmex", "bitmex"), ("okx", "okx"),
                               ("okex", "okx"), ("bybit", "bybit"), ("binance", "binance")):
                if key in host:
                    self.venue = venue
                    break
        elif not (len(parts) >= 3 and parts[1] == b"<-"):  # not a sent message either
            raise Problem("bad line", "line is not a cryptofeed v1 record ('<seconds>: <payload>', '<url> <-> <seconds>', '<url> <- <seconds>: <payload>')")
        self.reader.report.ignored_lines += 1
        return []
