"""Bitstamp order-level day logs (``<local ms> <event> <json>`` lines of the Pusher feed).

One job: turn Bitstamp's order events into messages (the aggregated book as a snapshot and
deltas, trades, and with ``order_level=True`` the order events), checked and corrected
against the top-20 books of the same log.

Format (real lines of ``bitstamp/2015-05-01.log.bz2``, the book cut short)::

    1430438404518 order_created {"price": "236.47", "amount": "2.00000000", "datetime": "1430438404", "id": 65595247, "order_type": 0}
    1430438404635 order_changed {"price": "236.47", "amount": "1.78855669", "datetime": "1430438404", "id": 65595247, "order_type": 0}
    1430438404637 order_deleted {"price": "236.47", "amount": "0.00000000", "datetime": "1430438340", "id": 65595187, "order_type": 1}
    1430438404645 trade {"price": 236.47, "amount": 0.21144331, "id": 8111041}
    1430438405885 order_book {"bids": [["236.47", "1.78855669"], ...], "asks": [["236.64", "3.79520000"], ...]}

- The first number is the recorder's receive time in ms: the only event time the log has
  (``datetime`` is the order's creation second), so it is both ``ts`` and ``local_ts``.
- ``order_type`` 0 is a bid, 1 an ask. ``order_changed`` gives the order's *remaining*
  amount: on Bitstamp (2015, no order amendment) a decrease is a partial execution.
  ``order_deleted`` with amount 0 is an order executed in full; with its remaining amount it
  is a cancel. An aggressive limit order appears as ``order_created`` at its limit price (the
  book is then crossed until the executions arrive).
- ``trade`` carries numbers, not strings, and no side.
- ``order_book``: the top 20 levels per side, about every 3 s (a separate channel).

Quirks, and what the reader does about them:

- **No initial order-level snapshot**: the book is seeded from the first ``order_book`` (a
  ``SnapshotMessage``; orders seen before it are tracked, so those deeper than its 20 levels
  are added). The channel sometimes delivers an order's change before its creation (the
  creation then adds the order's size as of its latest change: ``checks["created after its
  change"]``). Orders placed before the recording began are unknown: a delete or change of an
  unknown id is counted (``LoadReport.checks["unknown order deleted"]`` / ``["unknown order
  changed"]``), not fatal; a cancel removes its amount from the level, an unknown full
  execution cannot (its size is not in the line), nor can a first change; the next top-20
  book corrects what that leaves.
- **Crossing while an aggressive order executes**: book changes are held back while the
  aggregated book is crossed and go out as one ``DeltaMessage`` once it is not, so the emitted
  book is never crossed (``checks["held while crossed"]`` counts the events held).
- **Checking and correcting**: at every ``order_book`` line (while not crossed) the
  aggregated top 20 is compared with it: ``checks["snapshots compared"]``, ``["snapshots
  equal"]``; a book that equals one of the aggregated books of the previous 50 events counts
  as ``["snapshots lagged"]`` (the book channel runs behind the order channel) and is left
  alone; any other difference is ``["snapshots corrected"]``: the levels in the snapshot's
  range are set to it (as a delta). A book that arrives while the aggregated book is crossed
  is not compared (``["snapshots while crossed"]``) but corrects it the same way.
- **Lossy trade feed** (273 jumps in the trade ids): trades are passed on as they are; the
  order events, not the trades, drive the book. A trade's side is the opposite of the side
  of the last order executed at its price, else it is a buy at or above the mid, a sell below
  (``checks["trade side from mid"]``).

Symbol ``BTCUSD`` (the log does not name it), tick 0.01 USD, sizes in BTC (kept as integer
satoshis inside, so that sums are exact).

Name: ``BitstampFeed``.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from feeds.common import Feed, Problem, SymState
from feeds.mbo import LevelBook, pack_ints, unpack_ints
from messages import (
    ASK,
    BID,
    ORDER_ADD,
    ORDER_DELETE,
    ORDER_EXECUTE,
    ORDER_MODIFY,
    Message,
    OrderMessage,
)

__all__ = ["BitstampFeed"]

SYMBOL = "BTCUSD"
TICK = 0.01
_SAT = 100_000_000  # satoshis per BTC
_LAG_STATES = 50  # aggregated books remembered for the lagged-snapshot test
_LINE = re.compile(rb"^\d+ (order_created|order_changed|order_deleted|trade|order_book) \{")
_ORDER_EVENTS = {b"order_created": 0, b"order_changed": 1, b"order_deleted": 2}


def _sats(text: Any) -> int:
    """An amount (text or number) as integer satoshis (``ValueError`` when not >= 0 and finite).

    >>> _sats("1.78855669"), _sats(1.7885566900000001)
    (178855669, 178855669)
    """
    v = float(text)
    if not 0.0 <= v < 1e12:
        raise ValueError(text)
    return round(v * _SAT)


class BitstampFeed(Feed):
    """Parser of Bitstamp order-level logs (order events, trades, top-20 books)."""

    name = "bitstamp"
    order_level = True
    lines_name_symbol = False

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        # id -> [side, price ticks, remaining sats, ghost]; a ghost (1) is an order seen only
        # through a change (placed before the recording, or its creation not yet arrived)
        self.orders: dict[int, list[int]] = {}
        self.book: LevelBook | None = None  # None until the first order_book (the seed)
        self.tick = TICK
        self.recent: deque = deque(maxlen=_LAG_STATES)
        self.last_exec: tuple[int, int] | None = None  # (price, side) of the last execution
        self.held = False  # book changes held back while crossed

    @staticmethod
    def detect(first_line: bytes, obj: Any) -> bool:
        """A line ``<digits> <event> {...`` with a Bitstamp event name."""
        return _LINE.match(first_line) is not None

    def waiting(self, symbol: str) -> bool:
        """Book changes are held back while the book is crossed (no checkpoint then)."""
        return self.held

    def dump(self) -> dict:
        """Orders, levels, the last execution (checkpoint state)."""
        return {"bitstamp": {"orders": pack_ints(x for k, v in self.orders.items() for x in (k, *v)),
                             "book": self.book.dump() if self.book is not None else None,
                             "last_exec": list(self.last_exec) if self.last_exec else None}}

    def load(self, extra: dict) -> None:
        """Restore ``dump``."""
        d = extra.get("bitstamp")
        if d is None:
            return
        flat = unpack_ints(d["orders"])
        self.orders = {flat[i]: flat[i + 1:i + 5] for i in range(0, len(flat), 5)}
        if d["book"] is not None:
            self.tick = self.reader._tick_for(SYMBOL) or TICK
            self.book = LevelBook(self.tick, 1.0 / _SAT)
            self.book.load(d["book"])
        self.last_exec = tuple(d["last_exec"]) if d["last_exec"] else None

    # -- lines -----------------------------------------------------------------------------
    def parse(self, raw: bytes) -> list[Message]:
        """The messages of one line."""
        reader = self.reader
        sp1 = raw.find(b" ")
        sp2 = raw.find(b" ", sp1 + 1)
        try:
            ms = int(raw[:sp1])
        except ValueError:
            ms = -1
        if sp1 <= 0 or sp2 <= 0 or ms < 0:
            raise Problem("bad line", "line is not '<local ms> <event> <json>'")
        ev = raw[sp1 + 1:sp2]
        obj = reader.loads(raw[sp2 + 1:])
        if not reader.want(SYMBOL):
            reader.report.ignored_lines += 1
            return []
        kind = _ORDER_EVENTS.get(ev)
        if kind is not None:
            return self._order(kind, obj, ms)
        if ev == b"trade":
            return self._trade(obj, ms)
        if ev == b"order_book":
            return self._snapshot(obj, ms)
        raise Problem("unknown message type", f"unknown Bitstamp event {ev.decode(errors='replace')!r}")

    def _ticks(self, text: Any) -> int:
        try:
            x = float(text) / self.tick
            r = round(x)
        except (TypeError, ValueError, OverflowError):
            raise Problem("bad value", f"non-numeric price {text!r}") from None
        if not (r > 0 and abs(x - r) <= 1e-6):
            raise Problem("bad value", f"price {text!r} is not a positive price on the tick grid (tick size {self.tick})")
        return r

    def _order(self, kind: int, obj: dict, ms: int) -> list[Message]:
        reader = self.reader
        try:
            oid, otype, ptext, atext = obj["id"], obj["order_type"], obj["price"], obj["amount"]
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        if otype not in (0, 1):
            raise Problem("bad value", f"order_type must be 0 (bid) or 1 (ask), got {otype!r}")
        if type(oid) is not int:
            raise Problem("bad field", f"order id is not an integer: {oid!r}")
        side = BID if otype == 0 else ASK
        px = self._ticks(ptext)
        try:
            amt = _sats(atext)
        except (TypeError, ValueError, OverflowError):
            raise Problem("bad value", f"amount must be a non-negative number, got {atext!r}") from None
        ev = self._effect(kind, oid, side, px, amt)
        if ev is None:
            return []
        action, px, size, delta, rem = ev
        if action == ORDER_EXECUTE:
            self.last_exec = (px, side)
        book = self.book
        if book is None:  # before the seed: tracked only
            return []
        checks = reader.report.checks
        out: list[Message] = []
        if reader.order_level:
            out.append(OrderMessage(ms, SYMBOL, action, oid, side, px, size / _SAT, rem / _SAT,
                                    self.tick, ms * 1_000_000))
        if book.add(side, px, delta):
            checks["level clamped"] += 1
        if book.crossed():
            checks["held while crossed"] += 1
            self.held = True
            return out
        self.held = False
        msg = self._delta(ms)
        if msg is not None:
            out.append(msg)
        self.recent.append(book.top(20))
        return out

    def _effect(self, kind: int, oid: int, side: int, px: int, amt: int) -> tuple | None:
        """What an order event does, updating the tracked orders.

        Returns:
            ``(action, price, size moved, level change, remaining)`` (sizes in satoshis), or
            None: the event cannot change the book.
        """
        checks = self.reader.report.checks
        book = self.book
        known = self.orders.get(oid)
        if kind == 0:
            if known is not None and not known[3]:
                raise Problem("bad value", f"order {oid} created twice")
            if known is not None:  # its change came first (the feed reordered them)
                checks["created after its change"] += 1
                amt = known[2]
            self.orders[oid] = [side, px, amt, 0]
            action, size, delta, rem = ORDER_ADD, amt, amt, amt
        elif kind == 1:
            if known is None or known[3]:
                # placed before the recording (its volume is in the seeded level) or changed
                # before its creation arrives: tracked as a ghost, never counted in a level
                checks["unknown order changed"] += known is None
                self.orders[oid] = [side, px, amt, 1]
                return None
            old = known[2]
            known[2] = amt
            px = known[1]
            action = ORDER_EXECUTE if amt < old else ORDER_MODIFY
            size, delta, rem = abs(old - amt), amt - old, amt
        else:
            if known is not None and known[3]:
                del self.orders[oid]
                known = None
            if known is None:
                checks["unknown order deleted"] += 1
                if amt == 0 or book is None:
                    return None
                action, size, delta, rem = ORDER_DELETE, amt, -amt, 0
            else:
                del self.orders[oid]
                px = known[1]
                action = ORDER_EXECUTE if amt == 0 else ORDER_DELETE
                size, delta, rem = known[2], -known[2], 0
        return action, px, size, delta, rem

    def _delta(self, ms: int) -> Message | None:
        b, a = self.book.take_changes()
        if not b and not a:
            return None
        return self.reader.book_message(False, SYMBOL, ms, b, a, None, None, ms * 1_000_000, "u")

    def _trade(self, obj: dict, ms: int) -> list[Message]:
        reader = self.reader
        try:
            p, v, tid = obj["price"], obj["amount"], obj.get("id")
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        if self.book is None:
            reader.report.dropped_trades += 1
            return []
        px = self._ticks(p)
        if self.last_exec is not None and self.last_exec[0] == px:
            buy = self.last_exec[1] == ASK
        else:
            reader.report.checks["trade side from mid"] += 1
            bb, ba = self.book.best_bid(), self.book.best_ask()
            buy = bb is None or ba is None or 2 * px >= bb + ba
        try:
            q = round(float(v) * _SAT) / _SAT
        except (TypeError, ValueError, OverflowError):
            raise Problem("bad value", f"trade amount must be a number, got {v!r}") from None
        msg = reader.trade(SYMBOL, ms, self.book.price_of(px), q, buy, tid, ms * 1_000_000)
        return [msg] if msg is not None else []

    def _snapshot(self, obj: dict, ms: int) -> list[Message]:
        try:
            bids, asks = obj["bids"], obj["asks"]
            fb = tuple((self._ticks(p), _sats(s)) for p, s in bids)
            fa = tuple((self._ticks(p), _sats(s)) for p, s in asks)
        except KeyError as e:
            raise Problem("missing field", f"missing field {e.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError):
            raise Problem("bad value", "order_book levels must be [price, amount] pairs of numbers") from None
        if self.book is None:
            return self._seed(fb, fa, ms)
        return self._compare(fb, fa, ms)

    def _seed(self, fb: tuple, fa: tuple, ms: int) -> list[Message]:
        """The first top-20 book: the book's seed (a snapshot)."""
        reader = self.reader
        self.tick = reader._tick_for(SYMBOL) or TICK
        book = self.book = LevelBook(self.tick, 1.0 / _SAT)
        for p, s in fb:
            book.set(BID, p, s)
        for p, s in fa:
            book.set(ASK, p, s)
        lo_b = fb[-1][0] if fb else None
        hi_a = fa[-1][0] if fa else None
        for side, px, amt, ghost in self.orders.values():  # known orders beyond the 20 levels
            if ghost:
                continue
            if side == BID and lo_b is not None and px < lo_b:
                book.add(BID, px, amt)
            elif side == ASK and hi_a is not None and px > hi_a:
                book.add(ASK, px, amt)
        if SYMBOL not in reader.states:
            reader.states[SYMBOL] = SymState(self.tick)
            reader.report.symbols.add(SYMBOL)
        b, a = book.all_levels()
        self.recent.append(book.top(20))
        msg = reader.book_message(True, SYMBOL, ms, b, a, None, None, ms * 1_000_000, "u")
        return [msg] if msg is not None else []

    def _compare(self, fb: tuple, fa: tuple, ms: int) -> list[Message]:
        """A later top-20 book: compare, and correct the book where it differs (not lagged)."""
        checks = self.reader.report.checks
        book = self.book
        file_top = (fb, fa)
        if self.held:  # not compared (an execution is under way); corrected
            checks["snapshots while crossed"] += 1
        else:
            checks["snapshots compared"] += 1
            if book.top(20) == file_top:
                checks["snapshots equal"] += 1
                return []
            if file_top in self.recent:
                checks["snapshots lagged"] += 1
                return []
            checks["snapshots corrected"] += 1
        for side, lv in ((BID, fb), (ASK, fa)):
            levels = book.side(side)
            if lv:
                edge = lv[-1][0]
                rng = list(levels.irange(edge, None) if side == BID else levels.irange(None, edge))
            else:
                rng = list(levels.keys())
            want = dict(lv)
            for p in rng:
                if p not in want:
                    book.set(side, p, 0)
            for p, s in lv:
                book.set(side, p, s)
        if book.crossed():  # cannot happen: both bests are now the (uncrossed) snapshot's
            self.held = True
            return []
        self.held = False
        msg = self._delta(ms)
        self.recent.append(book.top(20))
        return [msg] if msg is not None else []
