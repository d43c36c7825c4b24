"""The venue-independent reading loop: files, pre-filter, validation, problems, books.

One job: drive the venue parsers of ``feeds/`` over the files of one recording and hold what
every venue shares: the symbol filter, the per-symbol state and its book-message rules
(timestamps, update-id gaps, snapshot before deltas, level conversion, crossing), trade
conversion, problem reporting (raise or skip) and the optional caller's ``OrderBook``.

Names (internal to the data layer; ``data_processor.load_messages`` / ``replay`` and
``replay_cache.Replay`` build a ``Reader``):

- ``Reader``: ``messages()`` (every message, one by one, or ``(message, book)`` pairs) and
  ``batches()`` (the messages of each line, with the line's file position for checkpoints).
- ``scan_symbols(paths, tick_size)``: every symbol of a recording (the several-symbols error).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from feeds import detect_feed
from feeds.bybit import BybitFeed
from feeds.common import (
    MAX_LINE_BYTES,
    NO_ASK,
    NO_BID,
    BadLevels,
    Feed,
    LoadReport,
    Problem,
    SeveralSymbols,
    SymState,
    crossed_reason,
    diagnose_levels,
    infer_tick_size,
    levels,
    new_price,
    parse_size,
)
from feeds.compression import DamagedFile, open_binary
from messages import DataFormatError, DeltaMessage, Message, SnapshotMessage, TradeMessage

__all__ = ["Reader", "scan_symbols"]

# The data layer logs under one name, "data_processor" (not __name__): the name users and
# tests configure (caplog.at_level(logger="data_processor")) stays what it was before the split.
logger = logging.getLogger("data_processor")


class Reader:
    """Reads files line by line through their venue parsers, validating as it goes."""

    def __init__(
        self,
        paths: list[Path],
        symbol: str | None,
        on_error: str,
        tick_size: float | Mapping[str, float] | None,
        include_bbo: bool = False,
        check_crossed: bool = True,
        report: LoadReport | None = None,
        start: tuple[int, int, int] | None = None,
        states: dict[str, SymState] | None = None,
        extra: dict | None = None,
        book: Any = None,
        make_book: bool = False,
        names: list[Path] | None = None,
        order_level: bool = False,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        # The caller's OrderBook (load_messages(book=...)) or, with make_book, one made at the
        # symbol's first snapshot (replay()): every accepted book message is applied to it and
        # the crossing check reads it instead of the light book.
        self.ext_book = book
        self.make_book = make_book
        # Order-level feeds (LOBSTER, Bitstamp) also yield their OrderMessages.
        self.order_level = order_level
        self._tick_warned = False
        self.paths = paths
        self.symbol = symbol
        self.skip = on_error == "skip"
        self.tick_size = tick_size
        self.include_bbo = include_bbo
        self.check_crossed = check_crossed
        self.report = report if report is not None else LoadReport()
        self.start = start
        self.states: dict[str, SymState] = states if states is not None else {}
        self.extra: dict = dict(extra or {})  # parser state of a checkpoint (Feed.dump)
        self.feeds: dict[type[Feed], Feed] = {}  # one parser per venue, shared by the files
        self.seen_symbols: list[str] = []
        self.any_symbol = False  # inspect: all symbols, no several-symbols check
        # Position of the line being processed (for checkpoints): file index, byte offset
        # after the line, 1-based line number.
        self.file_idx = 0
        self.offset = 0
        self.line_no = 0
        # the files as errors name them: the user's files where ``paths`` are decompressed
        # copies in the cache (Replay)
        self.shown = list(names) if names is not None else list(paths)
        self.path: Path = self.shown[0]
        self.filter = symbol.rpartition(":")[2].encode() if symbol else None

    # -- parsers ---------------------------------------------------------------------------
    def feed(self, cls: type[Feed]) -> Feed:
        """This reader's parser of venue ``cls`` (made, with the checkpoint's state, once)."""
        f = self.feeds.get(cls)
        if f is None:
            f = self.feeds[cls] = cls(self)
            f.load(self.extra)
        return f

    def extra_state(self) -> dict:
        """The parsers' state for a checkpoint (``Feed.dump`` of each)."""
        out = dict(self.extra)
        for f in self.feeds.values():
            out.update(f.dump())
        return out

    def waiting(self, symbol: str) -> bool:
        """Whether a parser buffers messages of ``symbol``."""
        return any(f.waiting(symbol) for f in self.feeds.values())

    # -- problems ------------------------------------------------------------------------
    def problem(self, kind: str, reason: str, symbol: str | None = None,
                line: int | None = -1) -> None:
        """Raise (``on_error="raise"``) or count and log one problem at the current line."""
        line_no = self.line_no if line == -1 else line
        if not self.skip:
            raise DataFormatError(self.path, line_no, reason)
        rep = self.report
        rep.problems[kind] += 1
        if len(rep.examples) < rep.max_examples:
            rep.examples.append(str(DataFormatError(self.path, line_no, reason)))
        logger.warning("%s", DataFormatError(self.path, line_no, reason))
        if symbol is not None:
            st = self.states.get(symbol)
            if st is not None:
                st.synced = False
            for f in self.feeds.values():
                f.desync(symbol)

    def _tick_for(self, symbol: str) -> float | None:
        ts = self.tick_size
        if ts is None:
            return None
        if isinstance(ts, Mapping):
            v = ts.get(symbol, ts.get(symbol.rpartition(":")[2]))
            return None if v is None else float(v)
        return float(ts)

    def want(self, symbol: str) -> bool:
        """Symbol filter and the several-symbols check (symbol=None)."""
        if self.symbol is not None:
            return symbol == self.symbol
        if symbol in self.seen_symbols or self.any_symbol:
            return True
        self.seen_symbols.append(symbol)
        if len(self.seen_symbols) > 1:
            raise SeveralSymbols
        return True

    def several_error(self) -> DataFormatError:
        """The several-symbols error, listing them."""
        names = scan_symbols(self.paths, self.tick_size)
        return DataFormatError(self.path, self.line_no,
                               f"the data holds several symbols ({', '.join(names)}); pass symbol= one of them")

    # -- batches: the messages of each line, with file positions (Replay) --------------------
    def batches(self) -> Iterator[list[Message]]:
        """Yield the messages of each line (possibly empty lists are not yielded)."""
        try:
            yield from self._batches()
        except SeveralSymbols:
            raise self.several_error() from None
        if self.skip:
            self._finish_log()

    def _finish_log(self) -> None:
        level = logging.WARNING if self.report.n_problems else logging.INFO
        logger.log(level, "%s: %s", ", ".join(map(str, self.paths)), self.report.summary())

    def _batches(self) -> Iterator[list[Message]]:
        start_file = self.start[0] if self.start else 0
        for fi in range(start_file, len(self.paths)):
            feed = self._open_file(fi)
            if feed is not None:
                yield from self.file_batches(fi, feed)
        out = self._finish()
        if out:
            yield out

    def _finish(self) -> list[Message]:
        out: list[Message] = []
        for f in list(self.feeds.values()):
            out.extend(f.finish())
        return out

    def _open_file(self, fi: int) -> Feed | None:
        """Make file ``fi`` current; its parser, or None (reported) for an empty file."""
        self.file_idx, self.path = fi, self.shown[fi]
        cls = self._file_format(self.paths[fi])
        if cls is None:
            self.problem("empty file", "empty file", line=None)
            return None
        return self.feed(cls)

    def _file_format(self, path: Path) -> type[Feed] | None:
        shown = self.path
        i = 0
        with open_binary(path, shown) as fh:
            try:
                for i, raw in enumerate(fh, 1):
                    if raw.strip():
                        self.line_no = i
                        self.check_length(raw)
                        try:
                            return detect_feed(shown, raw, i)
                        except DataFormatError as e:
                            if raw[-1:] != b"\n":
                                raise DataFormatError(shown, i, "truncated last line (no trailing newline, unparsable)") from None
                            if self.skip:
                                return BybitFeed  # the line is reported again by the main loop
                            raise e
            except DamagedFile as e:
                raise self.damaged(e, i) from None
        return None

    def damaged(self, e: DamagedFile, line_no: int) -> DamagedFile:
        """``e`` naming the current file and the last line read before the damage."""
        read = f"lines 1-{line_no} were read before it" if line_no else "no complete line was read before it"
        return DamagedFile(self.path, None, f"{e.reason}; {read}")

    def check_length(self, raw: bytes) -> None:
        """Refuse a line longer than ``MAX_LINE_BYTES`` (before it is parsed)."""
        if len(raw) > MAX_LINE_BYTES:
            raise DataFormatError(self.path, self.line_no,
                                  f"line of {len(raw):,} bytes is longer than the {MAX_LINE_BYTES:,} bytes "
                                  "a record may have (not a line-per-record file, or a damaged one?)")

    def start_pos(self, fh: BinaryIO, fi: int) -> tuple[int, int]:
        """(byte offset, line number) to start file ``fi`` at (a checkpoint's, or the top)."""
        if self.start and fi == self.start[0]:
            _, offset, line_no = self.start
            fh.seek(offset)
            return offset, line_no
        return 0, 0

    def general(self, raw: bytes, parse: Callable[[Any], list], arg: Any) -> list[Message]:
        """One line through the complete (slow) path: ``parse(arg)``, problems reported."""
        try:
            return parse(arg)
        except Problem as p:
            if raw[-1:] != b"\n" and p.kind in ("malformed JSON", "bad line"):
                self.problem("truncated last line",
                             "truncated last line (no trailing newline, unparsable)")
            else:
                self.problem(p.kind, p.reason, p.symbol)
            return []

    def file_batches(self, fi: int, feed: Feed) -> Iterator[list[Message]]:
        """The messages of each line of file ``fi`` (general path, every format).

        The byte pre-filter: with ``symbol=``, a line without the symbol's text is counted as
        ignored unparsed unless it holds ``feed.keep`` or lacks ``feed.need``; a complete line
        holding ``feed.drop()`` is too.
        """
        rep = self.report
        handler = feed.parse
        flt, keep, need = self.filter, feed.keep, feed.need
        if not feed.lines_name_symbol:  # one symbol per file, never written in a line
            flt = None
        drop = feed.drop()
        general = self.general
        limit = MAX_LINE_BYTES
        with open_binary(self.paths[fi], self.path) as fh:
            offset, line_no = self.start_pos(fh, fi)
            try:  # around the loop: only reading ``fh`` raises DamagedFile
                for raw in fh:
                    line_no += 1
                    offset += len(raw)
                    self.line_no = line_no
                    self.offset = offset
                    if len(raw) > limit:
                        self.check_length(raw)
                    if drop is not None and drop in raw and raw[-1:] == b"\n":
                        rep.ignored_lines += 1
                        rep.lines += 1
                        continue
                    if (flt is not None and flt not in raw and (keep is None or keep not in raw)
                            and (need is None or need in raw)):
                        if raw.strip():
                            rep.ignored_lines += 1
                            rep.lines += 1
                        continue
                    if not raw.strip():
                        continue
                    rep.lines += 1
                    out = general(raw, handler, raw)
                    if out:
                        yield out
            except DamagedFile as e:
                raise self.damaged(e, line_no) from None

    # -- messages: one by one (load_messages, replay) ----------------------------------------
    def messages(self, pairs: bool = False) -> Iterator[Any]:
        """Every message, one by one (``load_messages``); ``(message, book)`` with ``pairs``.

        Each file's messages come from its parser's ``messages``: the general per-line path
        (``general_messages``), or a venue's fused loop (Bybit v5, ``BybitFeed.messages``).
        The per-file generators are chained in C (``itertools.chain``), so no generator layer
        sits above them.
        """
        return itertools.chain.from_iterable(self._parts(pairs))

    def _parts(self, pairs: bool) -> Iterator[Iterator[Any]]:
        start_file = self.start[0] if self.start else 0
        for fi in range(start_file, len(self.paths)):
            feed = self._open_file(fi)
            if feed is not None:
                yield feed.messages(fi, pairs)
        yield self._tail(pairs)

    def emit(self, out: list[Message], pairs: bool) -> Iterator[Any]:
        """The messages of one line of the general path (as pairs with the book)."""
        if not pairs:
            yield from out
            return
        xb = self.ext_book
        if xb is None:  # a trade before the first snapshot (tick_size= given)
            from order_book import OrderBook

            xb = self.ext_book = OrderBook(out[0].symbol, out[0].tick_size)
        if len(out) > 1 and type(out[0]) is SnapshotMessage:
            # A line that releases a snapshot and the diffs buffered for it (Binance's REST
            # sync, feeds/binance.py) applied them all before its first message is yielded:
            # replay them from the snapshot, so the book paired with each message holds the
            # state after that message (replay()'s contract), not after the whole line.
            xb.n_applied -= sum(type(m) is SnapshotMessage or type(m) is DeltaMessage for m in out)
            for m in out:
                if type(m) is SnapshotMessage or type(m) is DeltaMessage:
                    xb.apply(m)
                yield m, xb
            return
        for m in out:
            yield m, xb

    def general_messages(self, fi: int, feed: Feed, pairs: bool) -> Iterator[Any]:
        """Every message of file ``fi`` through the general per-line path."""
        try:
            for out in self.file_batches(fi, feed):
                yield from self.emit(out, pairs)
        except SeveralSymbols:
            raise self.several_error() from None

    def _tail(self, pairs: bool) -> Iterator[Any]:
        out = self._finish()
        if out:
            yield from self.emit(out, pairs)
        if self.skip:
            self._finish_log()

    def recheck(self, xb: Any, symbol: str, line_no: int) -> bool:
        """Exact crossing test of the caller's book (after ``crossed`` said so); True: reported."""
        bb = xb.best_bid()
        ba = xb.best_ask()
        bid = bb[0] if bb is not None else NO_BID
        ask = ba[0] if ba is not None else NO_ASK
        if bid < ask:
            return False
        self.line_no = line_no
        self.problem("crossed", crossed_reason(symbol, bid, ask), symbol)
        return True

    # -- shared services of the parsers ----------------------------------------------------
    def loads(self, raw: bytes) -> dict:
        """``raw`` parsed as a JSON object (``Problem`` otherwise)."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            self.desync_unnumbered()
            raise Problem("malformed JSON", f"malformed JSON ({e})") from None
        if not isinstance(obj, dict):
            raise Problem("bad line", f"line is not a JSON object but {type(obj).__name__}")
        return obj

    def desync_unnumbered(self) -> None:
        """A lost line may have been a book message: books without update ids cannot tell."""
        if self.skip:
            for st in self.states.values():
                if not st.has_u:
                    st.synced = False

    def new_state(self, symbol: str, b: Any, a: Any) -> SymState:
        """State of a symbol's first snapshot: ``tick_size=`` or the tick inferred from it."""
        tick = self._tick_for(symbol)
        if tick is None:
            try:
                tick = infer_tick_size([lv[0] for lv in (b or [])] + [lv[0] for lv in (a or [])])
            except (ValueError, TypeError, IndexError, KeyError) as e:
                raise Problem("bad value", f"cannot infer the tick size of {symbol} from its first snapshot: {e}", symbol) from None
        st = self.states[symbol] = SymState(tick)
        self.report.symbols.add(symbol)
        return st

    def book_message(self, is_snap: bool, symbol: str, ts: int, b: Any, a: Any, u: int | None,
                     seq: int | None, local_ts: int | None, u_name: str, *,
                     numbers: bool = True) -> Message | None:
        """Validate, convert and apply one book message against its symbol's state.

        The rules every venue shares: a delta needs an earlier snapshot (else counted as
        dropped), time never goes back, update ids ``u`` (where given) follow each other, levels
        are clean and on the tick grid, and the book is not crossed afterwards. ``numbers``:
        whether the venue may send prices and sizes as JSON numbers (else decimal strings
        only; ``feeds.common.parse_size``).

        Returns:
            The message, or None (a dropped delta).
        """
        st = self.states.get(symbol)
        if st is None:
            if not is_snap:
                self.problem("delta before snapshot", f"delta before any snapshot of {symbol}")
                self.report.dropped_deltas += 1
                return None
            st = self.new_state(symbol, b, a)
        if st.last_ts is not None and ts < st.last_ts:
            raise Problem("time backwards",
                          f"timestamp goes backwards for {symbol}: {ts} < {st.last_ts}", symbol)
        if not is_snap:
            if not st.synced:
                self.report.dropped_deltas += 1
                return None
            if u is not None and st.last_u is not None and u != st.last_u + 1:
                raise Problem("gap", f"gap in update ids of {symbol}: {u_name}={u} after {st.last_u} (expected {st.last_u + 1})", symbol)
        inv = st.inv
        try:
            bids = levels(b, inv, st.pcache, numbers)
            asks = levels(a, inv, st.pcache, numbers)
        except BadLevels:
            reason = diagnose_levels(b, inv, st.tick, "b", numbers)
            if reason == "invalid levels in 'b'":
                reason = diagnose_levels(a, inv, st.tick, "a", numbers)
            raise Problem("bad value", reason, symbol) from None
        if is_snap:
            msg: Message = SnapshotMessage(ts, symbol, bids, asks, u, st.tick, local_ts, seq)
        else:
            msg = DeltaMessage(ts, symbol, bids, asks, u, st.tick, local_ts, seq)
        xb = self.ext_book
        if xb is None and self.make_book:
            from order_book import OrderBook

            xb = self.ext_book = OrderBook(symbol, st.tick)
        if xb is not None:
            self._apply_ext(xb, msg, st)
        else:
            self._apply_light(is_snap, msg, st)
        self.report.messages["snapshot" if is_snap else "delta"] += 1
        st.synced = True
        st.last_u = u
        st.has_u = u is not None
        st.last_ts = ts
        return msg

    def _apply_light(self, is_snap: bool, msg: Message, st: SymState) -> None:
        """Update the symbol's light book (crossing check, checkpoints) and check crossing."""
        book = st.book
        if is_snap and (self.check_crossed or not st.synced):
            book.reset(msg.bids, msg.asks)
        if self.check_crossed:
            if not is_snap:
                book.update(msg.bids, msg.asks)
            if book.crossed():
                raise Problem("crossed", crossed_reason(msg.symbol, book.bb, book.ba), msg.symbol)

    def _apply_ext(self, xb: Any, msg: Message, st: SymState) -> None:
        """Apply a book message to the caller's OrderBook and check crossing."""
        if not self._tick_warned and xb.tick_size != st.tick:
            self._tick_warned = True
            warnings.warn(f"book= has tick_size {xb.tick_size} but {msg.symbol} has tick size {st.tick}: "
                          "tick queries are right, price-unit queries are not (use replay())", stacklevel=4)
        xb.apply(msg)
        if not self.check_crossed:
            return
        bb = xb.best_bid()
        ba = xb.best_ask()
        bid = bb[0] if bb is not None else NO_BID
        ask = ba[0] if ba is not None else NO_ASK
        if bid >= ask:
            raise Problem("crossed", crossed_reason(msg.symbol, bid, ask), msg.symbol)

    def trade(self, symbol: str, ts: Any, p: Any, v: Any, side_text: Any, tid: Any,
              local_ts: int | None, *, numbers: bool = True) -> TradeMessage | None:
        """Validate and convert one trade (None: dropped, its symbol's tick size is unknown).

        ``side_text``: ``"Buy"``/``True`` for a buyer-initiated trade, ``"Sell"``/``False``
        for a seller-initiated one. Price and size follow the feeds' number grammar
        (``feeds.common.parse_size``; ``numbers``: JSON numbers allowed).
        """
        if side_text == "Buy" or side_text is True:
            side = 1
        elif side_text == "Sell" or side_text is False:
            side = -1
        else:
            raise Problem("bad value", f"trade side must be 'Buy' or 'Sell', got {side_text!r}")
        if type(ts) is not int:
            raise Problem("bad field", f"trade time is not an integer: {ts!r}")
        st = self.states.get(symbol)
        if st is None:
            tick = self._tick_for(symbol)
            if tick is None:
                self.report.dropped_trades += 1
                return None
            st = self.states[symbol] = SymState(tick)
        try:
            q = parse_size(v, numbers)
            r = (st.pcache.get(p) if type(p) is str else None) or new_price(p, st.inv, st.pcache, numbers)
        except BadLevels:
            raise Problem("bad value", diagnose_levels([[p, v]], st.inv, st.tick, "trade", numbers)) from None
        if q == 0.0:
            raise Problem("bad value", f"trade size is zero: {v!r}")
        self.report.messages["trade"] += 1
        return TradeMessage(ts, symbol, r, q, side, st.tick, None if tid is None else str(tid), local_ts)


class _SymbolScan(Reader):
    """A reader that collects every symbol instead of filtering (``scan_symbols``)."""

    def __init__(self, path: Path, tick_size: Any, names: list[str]) -> None:
        super().__init__([path], None, "skip", tick_size, check_crossed=False)
        self.names = names

    def want(self, symbol: str) -> bool:
        if symbol not in self.names:
            self.names.append(symbol)
        return False


def scan_symbols(paths: list[Path], tick_size: Any) -> list[str]:
    """All symbols with book or trade messages (error path of the several-symbols check)."""
    names: list[str] = []
    for p in paths:
        r = _SymbolScan(p, tick_size, names)
        logger.disabled, was = True, logger.disabled
        try:
            for _ in r.batches():
                pass
        finally:
            logger.disabled = was
    return sorted(names)
