"""Read real L2 order-book recordings into validated messages with integer-tick prices.

One job: the data layer's public face. Turn the files users have (Bybit order-book data in
every shape Bybit and recorders produce, and Binance USDⓈ-M futures recordings of the
hftbacktest collector) into one stream of typed messages, refusing bad data loudly, and start a
replay at any time cheaply. The work is done by the venue parsers of ``feeds/`` (one module per
venue, registry and "how to add a venue" in ``feeds/__init__.py``) and by ``replay_cache``.

Public names:

- ``load_messages(path_or_paths, symbol=None, on_error="raise", tick_size=None, ...)``: the
  one entry point; yields ``SnapshotMessage``, ``DeltaMessage``, ``TradeMessage`` (and
  ``BookTickerMessage`` when ``include_bbo=True``) in file order.
- ``replay(...)``: the same stream paired with one ``OrderBook`` the loader keeps.
- ``DataFormatError``: a ``ValueError`` naming the file, the 1-based line and what is wrong.
- ``LoadReport``: counts of messages and problems of one load (``on_error="skip"`` fills it).
- ``Replay``: random-access starts (``start_at(t_ms)``) from cached periodic book checkpoints,
  and ``Replay.profile``, the recording's ``DataProfile`` (trade presence, lot size, median
  trade size); ``default_cache_dir()``: where it caches (per user, never next to the data).
- ``infer_tick_size``, ``price_to_ticks``: the pure helpers of the tick-size rule.
- ``DEFAULT_SYMBOL``; the message classes of ``messages.py`` re-exported.
- CLI: ``python data_processor.py inspect FILE``, ``python data_processor.py export FILE`` and
  ``python data_processor.py record --venue okx --symbol BTC-USDT --out data/okx.jsonl`` (the
  live recorder, ``recorder.py``);
  and ``python data_processor.py cache [--clear]`` (the replay cache's size, or empty it). Errors
  are one line ``data_processor.py: error: <file>:<line>: <reason>`` and exit status 2.

File formats (detected from content, never from the file name; plain, gzip, zstd or zip), each
documented with real sample lines and its quirks in its module:

- ``feeds/bybit.py``: Bybit v5 ``orderbook.<depth>.<SYMBOL>`` / ``publicTrade.<SYMBOL>``, as
  in Bybit's daily history files ``YYYY-MM-DD_SYMBOL_ob200.data`` and websocket recordings,
  and the simplified shape ``{"type":"snapshot"|"delta","ts":...,"data":{"b":[...],"a":[...]}}``
  (no topic, no symbol: the messages get ``symbol=`` or ``DEFAULT_SYMBOL``). A real line::

    {"topic":"orderbook.500.XRPUSDT","type":"delta","ts":1733011200693,"data":{"s":"XRPUSDT","b":[["1.9531","6198"]],"a":[["1.9535","8415"]],"u":20254870,"seq":87432189790},"cts":1733011200690}

- ``feeds/cryptofeed.py``: cryptofeed v3 captures ``{"t":"recv","conn":"BYBIT.ws.2","ts":<s>,
  "data":"<raw websocket text>"}`` whose symbols are qualified by connection:
  ``"linear:BTCUSDT"`` (the last path segment of the connection's URL) or
  ``"BYBIT.ws.2:BTCUSDT"`` when the capture has no ``connect`` line for it.
- ``feeds/binance.py``: Binance USDⓈ-M futures, hftbacktest collector (``<local_ns> <json>``)::

    1721347021281597601 {"lastUpdateId":4984028384061,"E":1721347022759,"T":1721347022750,"bids":[["63943.90","46.372"]],"asks":[["63944.00","0.095"]]}

Exchange times are kept in ``ts`` (ms; Binance: the transaction time ``T``), recorder times in
``local_ts`` (ns). Prices are integer ticks (``price = ticks * tick_size``), sizes floats.

The CLI stays here: ``python data_processor.py`` is the documented entry point, and the two
commands are a thin layer over ``load_messages`` (about 200 lines), not a job of their own.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from feeds.common import DEFAULT_SYMBOL, LoadReport, infer_tick_size, price_to_ticks
from feeds.compression import as_paths
from feeds.light_book import LightBook
from feeds.reader import Reader
from messages import (
    BOOK_MESSAGE_TYPES,
    BookTickerMessage,
    DataFormatError,
    DeltaMessage,
    Message,
    SnapshotMessage,
    TradeMessage,
)
from replay_cache import (
    PROFILE_MESSAGES,
    DataProfile,
    Replay,
    cache_entries,
    cache_max_bytes,
    clear_cache,
    default_cache_dir,
)
from utils import atomic_write_bytes

__all__ = [
    "DEFAULT_SYMBOL",
    "PROFILE_MESSAGES",
    "BookTickerMessage",
    "DataFormatError",
    "DataProfile",
    "DeltaMessage",
    "LoadReport",
    "Message",
    "Replay",
    "SnapshotMessage",
    "TradeMessage",
    "default_cache_dir",
    "infer_tick_size",
    "load_messages",
    "price_to_ticks",
    "replay",
]

logger = logging.getLogger(__name__)


def load_messages(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    symbol: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    tick_size: float | Mapping[str, float] | None = None,
    *,
    include_bbo: bool = False,
    check_crossed: bool = True,
    report: LoadReport | None = None,
    book: Any = None,
    order_level: bool = False,
) -> Iterator[Message]:
    """Yield the validated messages of one recording (several files are read as one).

    Args:
        path_or_paths: a file, or the files of one recording in order (e.g. Binance
            ``btcusdt_20240718.gz`` then ``btcusdt_20240719.gz``).
        symbol: keep only this symbol; required when the data holds several (the error lists
            them). Cryptofeed captures qualify symbols by connection, e.g. ``"linear:BTCUSDT"``.
        on_error: ``"raise"`` stops at the first problem with a ``DataFormatError``;
            ``"skip"`` logs and counts every problem, drops the bad record, and drops a
            symbol's deltas after any book problem until its next snapshot.
        tick_size: one tick size for every symbol, or a mapping symbol → tick size; None
            infers it from each symbol's first snapshot (see ``infer_tick_size``).
        include_bbo: also yield Binance ``bookTicker`` as ``BookTickerMessage``.
        check_crossed: keep a light book per symbol and refuse a message that leaves it
            crossed (costs a dict update per level; ``Replay`` turns it off after its
            validated index pass).
        report: a ``LoadReport`` to fill with counts and problems; complete once the
            iteration ended (or the iterator was closed).
        book: an ``order_book.OrderBook`` (one symbol) to which the loader applies every book
            message it accepts, before yielding it; the crossing check then reads this book
            instead of keeping a second one, so a streaming replay maintains one book, not
            two. Do not apply the messages to it again. Its ``tick_size`` should be the
            symbol's (a ``UserWarning`` says when not); ``replay`` makes a matching book.
        order_level: also yield the ``OrderMessage`` of each order event of an order-level
            feed (LOBSTER, Bitstamp), before the book message it causes; other formats have
            none.

    Yields:
        ``SnapshotMessage``, ``DeltaMessage``, ``TradeMessage`` (and ``BookTickerMessage``) in
        file order; Binance diffs buffered before the REST snapshot follow the snapshot (with
        ``book=``, the book already holds them when the snapshot is yielded).

    Raises:
        DataFormatError: bad data (``on_error="raise"``) or several symbols without ``symbol=``,
            while iterating.
        FileNotFoundError: a path that is not a file (at the call).
        ValueError: an ``on_error`` other than ``"raise"``/``"skip"`` (at the call).
    """
    paths = as_paths(path_or_paths)
    reader = Reader(paths, symbol, on_error, tick_size, include_bbo, check_crossed, report, book=book,
                    order_level=order_level)
    return reader.messages()


def replay(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    symbol: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    tick_size: float | Mapping[str, float] | None = None,
    *,
    check_crossed: bool = True,
    report: LoadReport | None = None,
    order_level: bool = False,
) -> Iterator[tuple[Message, Any]]:
    """Stream one symbol's recording through one ``OrderBook``: the fastest full replay.

    The loader applies every accepted book message to the book (made with the symbol and
    its tick size) and checks crossing on it, as ``load_messages(..., book=)`` does.

    Args:
        path_or_paths: a file, or the files of one recording in order.
        symbol: the symbol (required when the data holds several).
        on_error: as in ``load_messages``.
        tick_size: as in ``load_messages``.
        check_crossed: refuse a message that leaves the book crossed.
        report: a ``LoadReport`` to fill.
        order_level: as in ``load_messages``.

    Yields:
        ``(message, book)`` for every message of ``load_messages``, in file order; ``book``
        (the same ``OrderBook`` object throughout) holds the state after the message.
        Do not apply the message to it again.

    Raises:
        DataFormatError: bad data (``on_error="raise"``) or several symbols without ``symbol=``.
        FileNotFoundError: a path that is not a file.
    """
    paths = as_paths(path_or_paths)
    reader = Reader(paths, symbol, on_error, tick_size, False, check_crossed, report, make_book=True,
                    order_level=order_level)
    return reader.messages(pairs=True)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2; no prefix matching of flags (``allow_abbrev=False``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _parse_every(text: str) -> int:
    """Parse a sampling period such as ``1s``, ``500ms``, ``1m`` into ms.

    >>> _parse_every("1s"), _parse_every("250ms"), _parse_every("2m")
    (1000, 250, 120000)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"cannot parse period {text!r} (use e.g. 500ms, 1s, 1m)")
    value = float(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[m.group(2) or "s"]
    if value <= 0:
        raise ValueError(f"period must be positive, got {text!r}")
    return int(value)


def _inspect(paths: list[Path], symbol: str | None) -> int:
    report = LoadReport()
    by_sym: dict[str, dict] = {}
    gaps_before = 0
    books: dict[str, LightBook] = {}
    was = logger.disabled
    logger.disabled = True
    try:
        reader = Reader(paths, symbol, "skip", None, include_bbo=True, report=report)
        reader.any_symbol = True
        try:
            for batch in reader.batches():
                for m in batch:
                    s = by_sym.setdefault(m.symbol, {"types": Counter(), "first": None, "last": None,
                                                     "book_n": 0, "max_bids": 0, "max_asks": 0,
                                                     "tick": m.tick_size})
                    s["types"][type(m).__name__] += 1
                    if isinstance(m, BOOK_MESSAGE_TYPES):
                        s["book_n"] += 1
                        s["first"] = m.ts if s["first"] is None else s["first"]
                        s["last"] = m.ts
                        bk = reader.states[m.symbol].book
                        books[m.symbol] = bk
                        s["max_bids"] = max(s["max_bids"], len(bk.bids))
                        s["max_asks"] = max(s["max_asks"], len(bk.asks))
        except DataFormatError as e:
            print(f"data_processor.py: error: {e}", file=sys.stderr)
            return 2
    finally:
        logger.disabled = was
    gaps_before = report.problems.get("gap", 0)
    print(f"file(s): {', '.join(map(str, paths))}")
    print(f"lines: {report.lines}  ignored: {report.ignored_lines}")
    print(f"{'symbol':<22} {'tick':>10} {'snapshot':>9} {'delta':>8} {'trade':>8} {'bbo':>8} "
          f"{'span_s':>9} {'upd/s':>8} {'max_bids':>8} {'max_asks':>8}")
    for sym, s in sorted(by_sym.items()):
        t = s["types"]
        span = ((s["last"] - s["first"]) / 1000.0) if s["first"] is not None else 0.0
        rate = s["book_n"] / span if span > 0 else float("nan")
        print(f"{sym:<22} {s['tick']:>10g} {t['SnapshotMessage']:>9} {t['DeltaMessage']:>8} "
              f"{t['TradeMessage']:>8} {t['BookTickerMessage']:>8} {span:>9.1f} {rate:>8.1f} "
              f"{s['max_bids']:>8} {s['max_asks']:>8}")
        if s["first"] is not None:
            print(f"{'':<22} time span (exchange ms): {s['first']} -> {s['last']}")
    print(f"gaps: {gaps_before}" + (f"  recorded gaps (resumed after a reconnect): {report.gaps}" if report.gaps else "")
          + (f"  checksums verified: {report.checksums}" if report.checksums else ""))
    print(f"problems: {report.n_problems}  "
          + ", ".join(f"{k}={v}" for k, v in sorted(report.problems.items())))
    for ex in report.examples[:10]:
        print(f"  {ex}")
    print(f"dropped deltas: {report.dropped_deltas}  dropped trades: {report.dropped_trades}")
    if not any(s["book_n"] or s["types"]["TradeMessage"] for s in by_sym.values()):
        # Nothing could be read: a report of zeros must not look like success (exit 1).
        print(f"data_processor.py: error: no message could be read from {', '.join(map(str, paths))} "
              f"({report.lines} lines, {report.n_problems} problems)", file=sys.stderr)
        return 1
    return 0


def _top_row(book: LightBook, depth: int, tick: float, ts: int) -> list:
    """``[ts, bid_price_1, bid_size_1, ..., ask_price_1, ...]`` in price units, NaN-padded."""
    r: list = [ts]
    for side in book.top(depth):
        for i in range(depth):
            r += [side[i][0] * tick, side[i][1]] if i < len(side) else [float("nan"), 0.0]
    return r


def _export(paths: list[Path], symbol: str | None, depth: int, out: Path, every_ms: int | None) -> int:
    if depth <= 0:
        raise ValueError(f"--depth must be positive, got {depth}")
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name!r}")
    book = LightBook()
    rows: list[list] = []
    tick = 1.0
    next_t: int | None = None
    last_ts: int | None = None

    def row(ts: int) -> list:
        return _top_row(book, depth, tick, ts)

    for m in load_messages(paths, symbol, check_crossed=False):
        if type(m) is not SnapshotMessage and type(m) is not DeltaMessage:
            continue
        if every_ms is not None and next_t is not None:
            while m.ts > next_t:  # book state after every message with ts <= next_t
                rows.append(row(next_t))
                next_t += every_ms
        if type(m) is SnapshotMessage:
            book.reset(m.bids, m.asks)
        else:
            book.update(m.bids, m.asks)
        tick = m.tick_size
        last_ts = m.ts
        if every_ms is None:
            rows.append(row(m.ts))
        elif next_t is None:
            next_t = -(-m.ts // every_ms) * every_ms  # first grid time at or after the first message
    if every_ms is not None and next_t is not None and last_ts is not None and last_ts >= next_t:
        rows.append(row(next_t))
    cols = ["ts"]
    for side in ("bid", "ask"):
        for i in range(1, depth + 1):
            cols += [f"{side}_price_{i}", f"{side}_size_{i}"]
    import pandas as pd

    df = pd.DataFrame(rows, columns=cols)
    if suffix == ".csv":
        atomic_write_bytes(out, df.to_csv(index=False).encode())
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {len(df)} rows x {len(cols)} columns to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:  # the live recorder has its own module and flags (recorder.py)
        import recorder

        return recorder.main(argv[1:], prog="data_processor.py record")
    parser = _ArgumentParser(prog="data_processor.py", description="Inspect, export or record L2 order-book recordings.")
    sub_p = parser.add_subparsers(dest="cmd", required=True)
    sub_p.add_parser("record", help="record a venue's public websocket to files this loader reads "
                                    "(see: data_processor.py record --help)")
    p_i = sub_p.add_parser("inspect", help="messages by type, symbols, time span, rate, depth, gaps, problems")
    p_i.add_argument("files", nargs="+", type=Path, help="one recording (several files are read as one)")
    p_i.add_argument("--symbol", default=None)
    p_e = sub_p.add_parser("export", help="top-N book over time as CSV or Parquet")
    p_e.add_argument("files", nargs="+", type=Path)
    p_e.add_argument("--symbol", default=None)
    p_e.add_argument("--depth", type=int, default=5)
    p_e.add_argument("--out", type=Path, required=True)
    p_e.add_argument("--every", default=None, help="sampling period, e.g. 1s or 500ms (default: every book message)")
    p_c = sub_p.add_parser("cache", help="the replay cache folder: its size, or --clear to empty it")
    p_c.add_argument("--clear", action="store_true", help="remove every cached file (rebuilt on next use)")
    p_c.add_argument("--dir", type=Path, default=None,
                     help="the cache folder (default: $RLMM_CACHE_DIR, else $XDG_CACHE_HOME/rlmm or ~/.cache/rlmm)")
    for p in (p_i, p_e, p_c):
        p.error = parser.error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "cache":
            return _cache(args.dir or default_cache_dir(), args.clear)
        paths = as_paths(args.files)
        if args.cmd == "inspect":
            return _inspect(paths, args.symbol)
        every = _parse_every(args.every) if args.every else None
        return _export(paths, args.symbol, args.depth, args.out, every)
    except (DataFormatError, FileNotFoundError, ValueError, OSError) as e:
        print(f"data_processor.py: error: {e}", file=sys.stderr)
        return 2


def _cache(folder: Path, clear: bool) -> int:
    """``cache``: print the cache folder's files and size, or empty it (``--clear``)."""
    files = cache_entries(folder)
    total = sum(p.stat().st_size for p in files)
    print(f"replay cache: {folder} ({len(files)} files, {total / 1e6:,.1f} MB; "
          f"bound {cache_max_bytes() / 1e9:,.1f} GB, $RLMM_CACHE_MAX_BYTES)")
    if clear:
        n, freed = clear_cache(folder)
        print(f"removed {n} files ({freed / 1e6:,.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
