r"""Coinbase level-2 books and trades: Advanced Trade (``l2_data`` / ``market_trades``) and Exchange/Pro.

One job: parse Coinbase websocket payloads into messages: the Advanced Trade channels
``level2`` (messages carry ``"channel":"l2_data"``) and ``market_trades``, and the older
Coinbase Exchange (Pro) ``level2`` (``snapshot`` / ``l2update``) and ``matches`` channels.
A file of raw payloads, one per line, is read by ``CoinbaseFeed`` itself; cryptofeed captures
(``feeds.cryptofeed``, e.g. ``../shared/data/coinbase/cryptofeed_COINBASE.ws.28.0.gz``) and this
project's recorder hand their payloads to ``parse_obj``.

Format. Coinbase Exchange, real payloads of ``cryptofeed_COINBASE.ws.28.0.gz`` (levels cut)::

    {"type":"snapshot","product_id":"BAND-GBP","asks":[["14.8024","12.77"],["14.8069","12.49"]],"bids":[["14.7550","10.00"]]}
    {"type":"l2update","product_id":"SKL-USD","changes":[["buy","0.7902","468.0"]],"time":"2021-04-17T16:44:07.849205Z"}
    {"type":"match","trade_id":881614,"maker_order_id":"...","taker_order_id":"...","side":"sell","size":"0.04","price":"14.7775","product_id":"BAND-GBP","sequence":333938810,"time":"2021-04-17T16:43:40.244075Z"}

Advanced Trade (the shape of Coinbase's documentation; no public recording of it is in
``../shared/data``, so the tests build these lines by hand)::

    {"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.73","new_quantity":"0.06317902"}]}]}
    {"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:32:51.1Z","sequence_num":1,"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD","price":"21921.74","size":"0.1","side":"SELL","time":"2023-02-09T20:32:51.0Z"}]}]}

Quirks and rules:

- Times are ISO-8601 UTC texts (``time``; Advanced Trade: the envelope's ``timestamp``),
  kept as ``ts`` in ms. A size ``"0"`` removes a level.
- An Exchange ``snapshot`` carries no time: it is held until the product's next ``l2update``
  and takes that update's time (the book it describes is the one just before it); one left
  at the end of the input takes the recorder's receive time (or is reported "no time").
- Sequence numbers: Advanced Trade numbers every message of a connection (``sequence_num``,
  all channels together): each must be the previous + 1, else a "gap" (every product of the
  connection waits for its next snapshot). The Exchange ``level2`` channel has no sequence
  numbers (continuity cannot be verified there); its ``matches`` ``sequence`` counts the
  product's full order feed, so it is not checked either.
- Trade side: ``side`` is the *maker's* side on both APIs (Coinbase: "the side field
  indicates the maker order side"), so ``"sell"`` / ``"SELL"`` is a buyer-initiated trade.
  ``last_match`` (the last trade before the subscription) and Advanced Trade
  ``market_trades`` snapshots (recent history) are not new trades and are ignored.
- ``subscriptions``, ``heartbeat(s)``, ``ticker``, ``status``, the ``full`` channel's order
  events and the like are legal and ignored; any other type or channel is an "unknown
  message type".

Name: ``CoinbaseFeed``.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from feeds.common import Feed, Problem
from messages import Message

__all__ = ["CoinbaseFeed", "iso_ms"]

IGNORED_TYPES = frozenset(
    {"subscriptions", "heartbeat", "ticker", "last_match", "status", "received", "open",
     "done", "change", "activate", "error"}
)
"""Coinbase Exchange message types legal in a recording without book or trade data."""
IGNORED_CHANNELS = frozenset(
    {"subscriptions", "heartbeats", "ticker", "ticker_batch", "candles", "status", "user",
     "futures_balance_summary"}
)
"""Advanced Trade channels legal in a recording without book or trade data."""

_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds (times repeat a lot)


def iso_ms(text: Any) -> int:
    """Epoch ms of a Coinbase ISO-8601 UTC time (any number of fraction digits).

    Raises:
        ValueError: not such a time.

    >>> iso_ms("2021-04-17T16:44:07.849205Z")
    1618677847849
    >>> iso_ms("2023-02-09T20:32:50.714964855Z"), iso_ms("1970-01-01T00:00:00Z")
    (1675974770714, 0)
    """
    if not isinstance(text, str) or len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    head = text[:19]
    sec = _SECONDS.get(head)
    if sec is None:
        sec = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        _SECONDS[head] = sec
    frac = text[20:-1] if text[19] == "." else ""
    if text[19] not in ".Z" or not (frac.isdigit() or frac == ""):
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    return sec * 1000 + int((frac + "000")[:3])


def _ms(text: Any, symbol: str | None) -> int:
    try:
        return iso_ms(text)
    except ValueError as e:
        raise Problem("bad field", str(e), symbol) from None


class CoinbaseFeed(Feed):
    """Parser of Coinbase Advanced Trade and Exchange (Pro) payloads."""

    name = "coinbase"

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        # product -> (path, line_no, bids, asks, local_ts) of an Exchange snapshot waiting for a time
        self.deferred: dict[str, tuple] = {}
        self.seq: dict[Any, int] = {}  # connection -> last Advanced Trade sequence_num
        self.products: dict[Any, set[str]] = {}  # connection -> its products with book data

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """An Advanced Trade envelope (``channel`` + ``events``) or an Exchange ``type`` + ``product_id`` / subscriptions."""
        if type(obj) is not dict:
            return False
        if "channel" in obj and "events" in obj:
            return True
        return "type" in obj and ("product_id" in obj or obj.get("type") == "subscriptions") and "topic" not in obj

    def desync(self, symbol: str) -> None:
        """Drop a held snapshot of ``symbol``."""
        self.deferred.pop(symbol, None)

    def gap(self, conn: Any) -> None:
        """A recorded gap on ``conn``: its sequence numbering restarts."""
        self.seq.pop(conn, None)

    def waiting(self, symbol: str) -> bool:
        """Whether a snapshot of ``symbol`` waits for its time."""
        return symbol in self.deferred

    def dump(self) -> dict:
        """The Advanced Trade sequence numbers (checkpoint state; held snapshots block checkpoints)."""
        return {"coinbase_seq": [[k, v] for k, v in self.seq.items()]}

    def load(self, extra: dict) -> None:
        """Restore the state of ``dump``."""
        self.seq = {k: v for k, v in extra.get("coinbase_seq", [])}

    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one raw payload line."""
        return self.parse_obj(self.reader.loads(raw), None)

    def parse_obj(self, obj: dict, local_ts: int | None, conn: Any = None) -> list[Message]:
        """The messages of one parsed payload.

        Args:
            obj: the payload.
            local_ts: the recorder's receive time (ns), where the wrapper has it.
            conn: the connection it came on (Advanced Trade sequence numbers are per connection).
        """
        if "channel" in obj:
            return self._advanced(obj, local_ts, conn)
        typ = obj.get("type")
        if typ == "l2update":
            return self._l2update(obj, local_ts)
        if typ == "snapshot":
            return self._snapshot(obj, local_ts)
        if typ == "match":
            return self._match(obj, local_ts)
        if typ in IGNORED_TYPES:
            self.reader.report.ignored_lines += 1
            return []
        if typ is None:
            raise Problem("missing field", "Coinbase message without 'type' or 'channel'")
        raise Problem("unknown message type", f"unknown Coinbase message type {typ!r}")

    # -- Coinbase Exchange (Pro) -----------------------------------------------------------
    def _product(self, obj: dict) -> str | None:
        symbol = obj.get("product_id")
        if not isinstance(symbol, str):
            raise Problem("missing field", "Coinbase message without 'product_id'")
        if not self.reader.want(symbol):
            self.reader.report.ignored_lines += 1
            return None
        return symbol

    def _snapshot(self, obj: dict, local_ts: int | None) -> list[Message]:
        symbol = self._product(obj)
        if symbol is None:
            return []
        b, a = obj.get("bids"), obj.get("asks")
        if not isinstance(b, list) or not isinstance(a, list):
            raise Problem("missing field", "Coinbase snapshot without 'bids'/'asks' lists", symbol)
        reader = self.reader
        self.deferred[symbol] = (reader.path, reader.line_no, b, a, local_ts)
        return []

    def _release(self, symbol: str, ts: int | None) -> list[Message]:
        """The held snapshot of ``symbol`` with time ``ts`` (its own line named in errors)."""
        path, line_no, b, a, local_ts = self.deferred.pop(symbol)
        reader = self.reader
        if ts is None:
            if local_ts is None:
                reader.path, reader.line_no, here = path, line_no, (reader.path, reader.line_no)
                try:
                    reader.problem("no time", f"Coinbase snapshot of {symbol} has no time and no update follows it", symbol)
                finally:
                    reader.path, reader.line_no = here
                return []
            ts = local_ts // 1_000_000
        here = reader.path, reader.line_no
        reader.path, reader.line_no = path, line_no
        try:
            msg = reader.book_message(True, symbol, ts, b, a, None, None, local_ts, "sequence")
        except Problem as p:
            reader.problem(p.kind, p.reason, p.symbol)
            return []
        finally:
            reader.path, reader.line_no = here
        return [msg] if msg is not None else []

    def _l2update(self, obj: dict, local_ts: int | None) -> list[Message]:
        symbol = self._product(obj)
        if symbol is None:
            return []
        ts = _ms(obj.get("time"), symbol)
        changes = obj.get("changes")
        if not isinstance(changes, list):
            raise Problem("missing field", "Coinbase l2update without a 'changes' list", symbol)
        b: list = []
        a: list = []
        for ch in changes:
            if not isinstance(ch, list) or len(ch) != 3:
                raise Problem("bad field", f"Coinbase change is not [side, price, size]: {ch!r}", symbol)
            side = ch[0]
            if side == "buy":
                b.append(ch[1:])
            elif side == "sell":
                a.append(ch[1:])
            else:
                raise Problem("bad value", f"Coinbase change side must be 'buy' or 'sell', got {side!r}", symbol)
        out = self._release(symbol, ts) if symbol in self.deferred else []
        msg = self.reader.book_message(False, symbol, ts, b, a, None, None, local_ts, "sequence")
        if msg is not None:
            out.append(msg)
        return out

    def _match(self, obj: dict, local_ts: int | None) -> list[Message]:
        symbol = self._product(obj)
        if symbol is None:
            return []
        try:
            maker = obj["side"]
            msg = self.reader.trade(symbol, _ms(obj["time"], symbol), obj["price"], obj["size"],
                                    _taker(maker), obj.get("trade_id"), local_ts)
        except KeyError as e:
            raise Problem("missing field", f"Coinbase match is missing field {e.args[0]!r}") from None
        return [msg] if msg is not None else []

    # -- Advanced Trade ------------------------------------------------------------------
    def _advanced(self, obj: dict, local_ts: int | None, conn: Any) -> list[Message]:
        reader = self.reader
        channel = obj.get("channel")
        seq = obj.get("sequence_num")
        if seq is not None:
            if type(seq) is not int:
                raise Problem("bad field", f"Coinbase 'sequence_num' is not an integer: {seq!r}")
            last = self.seq.get(conn)
            self.seq[conn] = seq
            if last is not None and seq != last + 1:
                if reader.skip:  # every product of the connection waits for its next snapshot
                    for s in self.products.get(conn, ()):
                        st = reader.states.get(s)
                        if st is not None:
                            st.synced = False
                raise Problem("gap", f"gap in the Coinbase sequence_num of the connection: {seq} after {last} (expected {last + 1})")
        if channel == "l2_data":
            return self._l2_data(obj, local_ts, conn)
        if channel == "market_trades":
            return self._market_trades(obj, local_ts)
        if channel in IGNORED_CHANNELS:
            reader.report.ignored_lines += 1
            return []
        raise Problem("unknown message type", f"unknown Coinbase channel {channel!r}")

    def _events(self, obj: dict) -> list:
        events = obj.get("events")
        if not isinstance(events, list):
            raise Problem("missing field", "Coinbase message without an 'events' list")
        return events

    def _l2_data(self, obj: dict, local_ts: int | None, conn: Any) -> list[Message]:
        reader = self.reader
        ts = _ms(obj.get("timestamp"), None)
        out: list[Message] = []
        for ev in self._events(obj):
            if not isinstance(ev, dict):
                raise Problem("bad field", f"Coinbase event is not an object: {ev!r}")
            symbol = self._product(ev)
            if symbol is None:
                continue
            typ = ev.get("type")
            if typ not in ("snapshot", "update"):
                raise Problem("unknown message type", f"unknown Coinbase l2_data event type {typ!r}", symbol)
            ups = ev.get("updates")
            if not isinstance(ups, list):
                raise Problem("missing field", "Coinbase l2_data event without an 'updates' list", symbol)
            b: list = []
            a: list = []
            try:
                for u in ups:
                    side = u["side"]
                    lv = [u["price_level"], u["new_quantity"]]
                    if side == "bid":
                        b.append(lv)
                    elif side == "offer":
                        a.append(lv)
                    else:
                        raise Problem("bad value", f"Coinbase update side must be 'bid' or 'offer', got {side!r}", symbol)
            except KeyError as e:
                raise Problem("missing field", f"Coinbase level update is missing field {e.args[0]!r}", symbol) from None
            except TypeError:
                raise Problem("bad field", "Coinbase level update is not an object", symbol) from None
            msg = reader.book_message(typ == "snapshot", symbol, ts, b, a, None, obj.get("sequence_num"), local_ts, "sequence_num")
            if msg is not None:
                self.products.setdefault(conn, set()).add(symbol)
                out.append(msg)
        return out

    def _market_trades(self, obj: dict, local_ts: int | None) -> list[Message]:
        reader = self.reader
        out: list[Message] = []
        for ev in self._events(obj):
            if not isinstance(ev, dict) or not isinstance(ev.get("trades"), list):
                raise Problem("bad field", "Coinbase market_trades event without a 'trades' list")
            if ev.get("type") == "snapshot":  # recent history at subscription, not new trades
                continue
            for tr in ev["trades"]:
                try:
                    symbol = self._product(tr)
                    if symbol is None:
                        continue
                    msg = reader.trade(symbol, _ms(tr["time"], symbol), tr["price"], tr["size"],
                                       _taker(tr["side"]), tr.get("trade_id"), local_ts)
                except KeyError as e:
                    raise Problem("missing field", f"Coinbase trade is missing field {e.args[0]!r}") from None
                except AttributeError:
                    raise Problem("bad field", f"Coinbase trade is not an object: {tr!r}") from None
                if msg is not None:
                    out.append(msg)
        if not out:
            reader.report.ignored_lines += 1
        return out

    def finish(self) -> list[Message]:
        """Snapshots never followed by an update take their receive time."""
        out: list[Message] = []
        for symbol in list(self.deferred):
            out.extend(self._release(symbol, None))
        return out


def _taker(maker_side: Any) -> str:
    """The aggressor of a Coinbase trade from the maker's side (``"sell"`` maker: a buy)."""
    s = maker_side.lower() if isinstance(maker_side, str) else maker_side
    if s == "sell":
        return "Buy"
    if s == "buy":
        return "Sell"
    raise Problem("bad value", f"Coinbase trade side must be 'buy' or 'sell', got {maker_side!r}")
