r"""cryptofeed v3 raw captures of Bybit websockets (``{"t": "recv", ...}`` wrapper lines).

One job: unwrap the capture records of cryptofeed's raw-data recorder and hand their Bybit
payloads to ``feeds.bybit``, with the receive time and connection-qualified symbols.

Format (real lines from ``cryptofeed_v3_BYBIT.jsonl.zst``, payload cut short)::

    {"t":"header","format":2,"exchange":"BYBIT","config":{"candles":["BTC-USDT-PERP", ...]}}
    {"t":"connect","conn":"BYBIT.ws.2","ts":1786310818.2235148,"addr":"wss://stream.bybit.com/v5/public/linear"}
    {"t":"recv","conn":"BYBIT.ws.2","ts":1786310819.965676,"data":"{\"topic\":\"publicTrade.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1786310819681,\"data\":[{\"T\":1786310819680,\"s\":\"BTCUSDT\",\"S\":\"Sell\",\"v\":\"0.004\",\"p\":\"65114.20\", ...}]}"}

Quirks:

- ``data`` is the raw websocket text (a JSON string to parse again); ``ts`` is the receive
  time in seconds (float), kept as ``local_ts`` in ns.
- One capture holds several connections (spot, linear, ...) whose symbols overlap, so symbols
  are qualified by connection: ``"linear:BTCUSDT"`` (the last path segment of the connection's
  URL from its ``connect`` record) or ``"BYBIT.ws.2:BTCUSDT"`` when the capture has no
  ``connect`` line for it. The ``connect`` lines name no symbol, so the byte pre-filter keeps them.
- Only BYBIT captures are supported (a header naming another exchange is refused); the other
  bookkeeping records (``http``, ``send``, ``disconnect``, ...) are ignored.

Name: ``CryptofeedFeed``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from feeds.bybit import BybitFeed
from feeds.common import Feed, Problem
from messages import DataFormatError, Message

__all__ = ["CryptofeedFeed"]

_META = frozenset({"header", "http", "connect", "send", "disconnect", "error", "close"})


class CryptofeedFeed(Feed):
    """Parser of cryptofeed v3 capture records (Bybit payloads)."""

    name = "cryptofeed"
    keep = b'"connect"'

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self.conn_names: dict[str, str] = {}  # connection id -> its URL's last path segment
        self.bybit = reader.feed(BybitFeed)

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A JSON object with a record type ``t`` and no Bybit ``topic`` / ``type``."""
        return type(obj) is dict and "t" in obj and "topic" not in obj and "type" not in obj

    def dump(self) -> dict:
        """The connection names seen (checkpoint state)."""
        return {"conn_names": dict(self.conn_names)}

    def load(self, extra: dict) -> None:
        """Restore the connection names of a checkpoint."""
        self.conn_names = dict(extra.get("conn_names", {}))

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one capture record."""
        reader = self.reader
        obj = reader.loads(raw)
        t = obj.get("t")
        if t is not None and type(t) is not str:
            raise Problem("bad field", f"cryptofeed record type 't' is not a string: {t!r}")
        if t == "recv":
            return self._recv(obj)
        if t == "connect":
            addr = obj.get("addr") or ""
            conn = obj.get("conn")
            if (conn is not None and type(conn) is not str) or type(addr) is not str:
                raise Problem("bad field", f"cryptofeed 'conn'/'addr' are not strings: {conn!r}, {addr!r}")
            if conn:
                self.conn_names[conn] = addr.rstrip("/").rpartition("/")[2] or conn
        elif t == "header":
            exch = obj.get("exchange")
            if exch is not None and exch != "BYBIT":
                raise DataFormatError(reader.path, reader.line_no,
                                      f"cryptofeed capture of {exch}: only BYBIT captures are supported")
        elif t not in _META:
            raise Problem("unknown message type", f"unknown cryptofeed record type {t!r}")
        reader.report.ignored_lines += 1
        return []

    def _recv(self, obj: dict) -> list[Message]:
        try:
            conn = obj["conn"]
            payload = obj["data"]
            ts = obj["ts"]
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        if type(conn) is not str:
            raise Problem("bad field", f"cryptofeed 'conn' is not a string: {conn!r}")
        if not isinstance(payload, str | bytes):
            raise Problem("bad field", "cryptofeed 'data' is not the raw websocket text")
        try:
            inner = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            self.reader.desync_unnumbered()
            raise Problem("malformed JSON", f"malformed JSON in the websocket payload ({e})") from None
        if not isinstance(inner, dict):
            raise Problem("bad line", "websocket payload is not a JSON object")
        t = ts * 1e9 if type(ts) is int or type(ts) is float else math.nan
        if not 0.0 <= t < 1e20:  # NaN, inf, negative, a bool, a string, ...
            raise Problem("bad field", f"cryptofeed 'ts' is not a receive time in seconds: {ts!r}")
        local_ts = int(t)
        return self.bybit.parse_obj(inner, local_ts, self.conn_names.get(conn, conn))
