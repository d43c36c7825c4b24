"""The data layer's venue parsers: one module per venue, one registry, format detection.

One job: know which file formats exist and recognise a file's format from its first line
(content only, never the file name). The public entry points stay in ``data_processor``
(``load_messages``, ``replay``, ``Replay``, ...); everything in this package is internal to
the data layer.

Layout::

    data_processor.py     public entry points (load_messages, replay), re-exports, CLI
    replay_cache.py       Replay: cached checkpoints + the DataProfile of a recording
    feeds/__init__.py     this registry (FEEDS) and detect_feed
    feeds/reader.py       Reader: the venue-independent loop (files, byte pre-filter, symbol
                          filter, per-symbol book rules, trades, problems raise/skip, books)
    feeds/common.py       Feed (the parser interface), tick rule, level conversion, SymState,
                          Problem, LoadReport
    feeds/light_book.py   LightBook: the loader's own crossing-check book (why: measured there)
    feeds/compression.py  magic-byte sniffing, opening gzip/zstd/zip, decompressed copies
    feeds/bybit.py        Bybit v5 (history files, websocket recordings); the fused hot loop
    feeds/binance.py      Binance USDⓈ-M, hftbacktest collector (REST snapshot + diff sync)
    feeds/okx.py          OKX v5 books (CRC32 checksum, seqId chain) and trades
    feeds/coinbase.py     Coinbase Advanced Trade (l2_data, market_trades) and Exchange level2/matches
    feeds/bitmex.py       BitMEX orderBookL2 (levels keyed by id) and trades
    feeds/cryptofeed.py   capture wrappers (cryptofeed v3 JSONL = recorder.py's files, cryptofeed
                          v1 text): receive times, venue dispatch, recorded gaps
    feeds/lobster.py      LOBSTER (NASDAQ) order-level message files, checked against their
                          orderbook file
    feeds/bitstamp.py     Bitstamp order-level day logs (live_orders, trades, top-20 books)
    feeds/mbo.py          LevelBook: the aggregated book the order-level feeds keep

A venue module documents its format with real sample lines and its quirks, and defines one
``feeds.common.Feed`` subclass. The ``Reader`` makes one instance per read (shared by the
files of one recording, so state such as buffered diffs carries across files) and calls:

- ``detect(first_line, obj)`` (static): is a file whose first non-blank line is this in my
  format? (``obj``: the line parsed as JSON, or ``UNPARSED``);
- ``parse(raw) -> list[Message]``: one line's messages, built with the reader's shared services
  (``reader.loads``, ``reader.want(symbol)``, ``reader.book_message(...)`` which applies the
  common book rules, ``reader.trade(...)``), raising ``feeds.common.Problem`` for a bad record;
- optional hooks: ``keep`` / ``need`` / ``drop()`` (byte pre-filter), ``messages(fi, pairs)``
  (a fused per-file loop; default: ``parse`` per line), ``finish()`` (end of input),
  ``desync(symbol)`` / ``waiting(symbol)`` (buffers), ``dump()`` / ``load(extra)`` (parser
  state stored in ``Replay`` checkpoints).

How to add a venue:

1. Write ``feeds/<venue>.py``: the module docstring with two or three real lines of the format
   and its quirks (time fields: exchange ms go to ``ts``, recorder ns to ``local_ts``; how
   update ids chain; how a snapshot arrives), and ``class <Venue>Feed(Feed)`` with ``name``,
   ``detect`` and ``parse``. Book messages go through ``reader.book_message`` (it checks time
   order, ``u`` continuity where ``u`` is given, level values, the tick grid and crossing; a
   venue with another continuity rule checks it before, as ``feeds.binance`` does); trades go
   through ``reader.trade``. Prices and sizes follow the feeds' number grammar
   (``feeds.common.parse_size``): pass ``numbers=False`` where the venue sends decimal strings
   only (Bybit, Binance), so a JSON number there is refused; check identifier fields (symbol,
   event type) to be strings before using them.
2. Register it: add the class to ``FEEDS`` below, before ``BybitFeed`` (the fallback that
   takes any JSON object line).
3. Add tests with small hand-made files (every problem it can raise, named by line) and, where
   a real recording exists in ``../shared/data``, a test on it (``tests/test_data_processor.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from feeds.binance import BinanceFeed
from feeds.bitmex import BitmexFeed
from feeds.bitstamp import BitstampFeed
from feeds.bybit import BybitFeed
from feeds.coinbase import CoinbaseFeed
from feeds.common import Feed
from feeds.cryptofeed import CryptofeedFeed, CryptofeedV1Feed
from feeds.lobster import LobsterFeed
from feeds.okx import OkxFeed
from messages import DataFormatError

__all__ = ["FEEDS", "UNPARSED", "detect_feed"]

FEEDS: tuple[type[Feed], ...] = (BinanceFeed, CryptofeedV1Feed, CryptofeedFeed, OkxFeed, CoinbaseFeed,
                                 BitmexFeed, LobsterFeed, BitstampFeed, BybitFeed)
"""The registered formats, in detection order (the first whose ``detect`` is true wins)."""

UNPARSED: Any = object()
"""``detect``'s ``obj`` for a first line that is not JSON."""


def detect_feed(path: Path, first: bytes, line_no: int) -> type[Feed]:
    """The parser class of a file, from its first non-blank line.

    Args:
        path: the file (for the error).
        first: its first non-blank line.
        line_no: that line's 1-based number (for the error).

    Returns:
        The first class of ``FEEDS`` that recognises the line.

    Raises:
        DataFormatError: no registered format recognises it (malformed JSON, not an object).

    >>> detect_feed(Path("f"), b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot"}', 1).name
    'bybit'
    >>> detect_feed(Path("f"), b'1721347020984480942 {"stream":"btcusdt@depth@0ms"}', 1).name
    'binance'
    >>> detect_feed(Path("f"), b'[1, 2]', 3)
    Traceback (most recent call last):
    ...
    messages.DataFormatError: f:3: line is not a JSON object but list
    """
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        obj = UNPARSED
    for cls in FEEDS:
        if cls.detect(first, obj):
            return cls
    if obj is UNPARSED:
        raise DataFormatError(path, line_no, "malformed JSON (cannot detect the file format)")
    raise DataFormatError(path, line_no, f"line is not a JSON object but {type(obj).__name__}")
