"""Random access into a recording: cached periodic book checkpoints, and its data profile.

One job: index a recording once (one validating pass) so that a replay can start at any time
cheaply, and keep what that pass learns about the data (``DataProfile``) with the index.

Public names (re-exported by ``data_processor``, where users import them from):

- ``Replay``: ``start_at(t_ms)`` from cached checkpoints; ``Replay.profile``.
- ``DataProfile``: trade presence, lot size, median trade size and tick size of a recording's
  first ``PROFILE_MESSAGES`` messages; ``PROFILE_MESSAGES``.
- ``default_cache_dir()``: where ``Replay`` caches by default (per user, never beside the data).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import io
import logging
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import orjson

from feeds.common import LoadReport, SymState
from feeds.compression import as_paths, compression, plain_copy
from feeds.light_book import LightBook
from feeds.reader import Reader
from messages import DataFormatError, DeltaMessage, Message, SnapshotMessage, TradeMessage
from order_book import OrderBook
from utils import atomic_write_bytes, atomic_write_json

__all__ = ["PROFILE_MESSAGES", "DataProfile", "Replay", "default_cache_dir"]

logger = logging.getLogger("data_processor")  # the data layer logs under one name (feeds/reader.py)

_CACHE_VERSION = 2  # 2: the DataProfile is stored; parser state of checkpoints under "extra"


# --------------------------------------------------------------------------------------------
# Data profile: what the first messages say about sizes and trades
# --------------------------------------------------------------------------------------------

PROFILE_MESSAGES = 50_000
"""Messages of the (symbol-filtered) stream that ``DataProfile`` looks at."""
_PROFILE_SAMPLE = 5_000  # trade sizes and level sizes each that decide the lot size
_PROFILE_LEVELS = 50  # levels per side of a book message gathered for the level sizes


@dataclass(frozen=True)
class DataProfile:
    """Trade presence and size scales of a recording, from its first ``PROFILE_MESSAGES`` messages.

    Computed by ``Replay`` in its one validating pass and stored in its cache, so that a
    consumer (the env's order and lot sizes) does not read the recording a second time.
    """

    has_trades: bool
    """Whether any trade is among the first messages."""
    lot_size: float
    """``10 ** -d``: ``d`` the most decimals (at most 8) of the first 5,000 trade sizes and the
    first 5,000 positive level sizes (first 50 levels per side of each book message, gathered
    while fewer than 5,000 are)."""
    median_trade_size: float
    """Median trade size of the first messages; without trades 0.1 x the median level size;
    with neither, ``lot_size``."""
    tick_size: float
    """The symbol's tick size."""
    n_messages_scanned: int
    """How many messages were looked at (fewer than ``PROFILE_MESSAGES`` for a short file)."""


def _decimals_of(x: float) -> int:
    """Decimal places of a float as printed by ``repr`` (sizes in feeds are short decimals).

    >>> _decimals_of(0.001), _decimals_of(12.0), _decimals_of(1.5e-05)
    (3, 0, 6)
    """
    s = repr(float(x))
    if "e-" in s:
        mant, exp = s.split("e-")
        return int(exp) + (len(mant.split(".")[1]) if "." in mant else 0)
    if "." not in s:
        return 0
    frac = s.split(".")[1].rstrip("0")
    return len(frac)


class _ProfileScan:
    """Accumulates a ``DataProfile`` from messages fed in stream order (the first ``n`` count).

    >>> scan = _ProfileScan()
    >>> scan.add([TradeMessage(1, "X", 10, 0.5, 1, 0.1), TradeMessage(2, "X", 10, 0.25, -1, 0.1)])
    >>> scan.result(0.1)
    DataProfile(has_trades=True, lot_size=0.01, median_trade_size=0.375, tick_size=0.1, n_messages_scanned=2)
    """

    __slots__ = ("n", "seen", "trade_sizes", "level_sizes")

    def __init__(self, n: int = PROFILE_MESSAGES) -> None:
        self.n = n
        self.seen = 0
        self.trade_sizes: list[float] = []
        self.level_sizes: list[float] = []

    def add(self, batch: list[Message]) -> None:
        """Look at the messages of one line (those after the first ``n`` are not counted)."""
        if self.seen >= self.n:
            return
        for msg in batch[: self.n - self.seen]:
            self.seen += 1
            if type(msg) is TradeMessage:
                self.trade_sizes.append(msg.size)
            elif len(self.level_sizes) < _PROFILE_SAMPLE:
                self.level_sizes.extend(s for _, s in msg.bids[:_PROFILE_LEVELS] if s > 0)
                self.level_sizes.extend(s for _, s in msg.asks[:_PROFILE_LEVELS] if s > 0)

    def result(self, tick_size: float) -> DataProfile:
        """The profile of the messages seen."""
        trades, levels = self.trade_sizes, self.level_sizes
        sample = trades[:_PROFILE_SAMPLE] + levels[:_PROFILE_SAMPLE]
        decimals = max((_decimals_of(s) for s in sample), default=0)
        lot = 10.0 ** -min(decimals, 8)
        if trades:
            median = float(statistics.median(trades))
        elif levels:
            median = 0.1 * float(statistics.median(levels))
        else:
            median = lot
        return DataProfile(bool(trades), lot, median, float(tick_size), self.seen)


# --------------------------------------------------------------------------------------------
# Cache location and source fingerprints
# --------------------------------------------------------------------------------------------


def _fingerprint(path: Path) -> dict:
    """Size, mtime (ns) and a SHA-256 of the first and last 64 KiB of a file."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 16))
        if st.st_size > 1 << 17:
            fh.seek(-(1 << 16), os.SEEK_END)
        h.update(fh.read(1 << 16))
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "head_tail_sha256": h.hexdigest()}


def default_cache_dir() -> Path:
    """The per-user cache folder of ``Replay`` (checkpoints, decompressed copies).

    ``$RLMM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rlmm``, else ``~/.cache/rlmm``; never a
    folder next to the data (which may be read-only or shared). Entries are keyed by the
    sources' absolute paths and settings, and checked against their fingerprints (size, mtime,
    head/tail hash), so one folder serves every recording.

    >>> import os
    >>> old = os.environ.get("RLMM_CACHE_DIR"); os.environ["RLMM_CACHE_DIR"] = "/tmp/c"
    >>> str(default_cache_dir())
    '/tmp/c'
    >>> _ = os.environ.pop("RLMM_CACHE_DIR") if old is None else os.environ.update(RLMM_CACHE_DIR=old)
    """
    env = os.environ.get("RLMM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlmm"


# --------------------------------------------------------------------------------------------
# The index pass
# --------------------------------------------------------------------------------------------


class _Index:
    """The checkpoints taken during one validating pass (``Replay._build``)."""

    def __init__(self, interval: int, symbol: str | None) -> None:
        self.interval = interval
        self.symbol = symbol
        self.checkpoints: list[dict] = []
        self.px_parts: list[np.ndarray] = []
        self.sz_parts: list[np.ndarray] = []
        self.bounds = [0]
        self.snapshot_ts: list[int] = []
        self.start_ts: int | None = None
        self.end_ts: int | None = None
        self.next_cp: int | None = None

    def add(self, batch: list[Message], reader: Reader) -> None:
        """The messages of one line; a checkpoint after it at a snapshot or an interval's end."""
        last_book = None
        snap = False
        for m in batch:
            if type(m) is SnapshotMessage:
                self.snapshot_ts.append(m.ts)
                snap = True
            elif type(m) is not DeltaMessage:
                continue
            last_book = m
            if self.start_ts is None:
                self.start_ts = m.ts
        if last_book is None:
            return
        sym = self.symbol = last_book.symbol
        ts = self.end_ts = last_book.ts
        st = reader.states[sym]
        if not st.synced or st.need_first or reader.waiting(sym):
            return
        if snap or self.next_cp is None or ts >= self.next_cp:
            self.next_cp = (ts // self.interval + 1) * self.interval
            self._take(st, ts, reader)

    def _take(self, st: SymState, ts: int, reader: Reader) -> None:
        bk: LightBook = st.book
        bp = np.fromiter(bk.bids.keys(), np.int64, len(bk.bids))
        ap = np.fromiter(bk.asks.keys(), np.int64, len(bk.asks))
        self.px_parts += [bp, ap]
        self.sz_parts += [np.fromiter(bk.bids.values(), np.float64, len(bk.bids)),
                          np.fromiter(bk.asks.values(), np.float64, len(bk.asks))]
        b = self.bounds
        b += [b[-1] + len(bp), b[-1] + len(bp) + len(ap)]
        self.checkpoints.append({"ts": ts, "file": reader.file_idx, "offset": reader.offset,
                                 "line": reader.line_no, "state": st.dump(),
                                 "extra": reader.extra_state()})

    def npz_bytes(self) -> bytes:
        """The checkpoint books as one ``.npz`` (prices, sizes, per-side bounds)."""
        buf = io.BytesIO()
        np.savez(buf, px=np.concatenate(self.px_parts) if self.px_parts else np.zeros(0, np.int64),
                 sz=np.concatenate(self.sz_parts) if self.sz_parts else np.zeros(0),
                 bounds=np.asarray(self.bounds, np.int64))
        return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------


def _feed_of(path: Path) -> type:
    """The parser class of a (plain) file, from its first non-blank line."""
    from feeds import detect_feed

    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if raw.strip():
                return detect_feed(path, raw, i)
    raise DataFormatError(path, None, "empty file")


class Replay:
    """Start a replay of one symbol at any time, from cached periodic book checkpoints.

    The first use of a recording runs one validating pass (``on_error`` rules, crossing
    check included) and stores, every ``checkpoint_interval_ms`` of exchange time and at
    every snapshot, the book and the loader state together with the byte position of the
    next line. ``start_at(t)`` restores the last checkpoint at or before ``t``, replays
    forward to ``t`` and returns the book plus an iterator over the rest.

    Cache: in ``cache_dir``, by default the per-user ``default_cache_dir()``
    (``$RLMM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlmm`` or ``~/.cache/rlmm``; nothing is
    written next to the data, which may be read-only): ``<name>.<key>.replay.json`` (metadata,
    positions, loader states, the data profile) and ``.replay.npz`` (the checkpoint books),
    written atomically. The key covers the absolute paths, symbol, tick size, interval and
    ``on_error``; each source's size, mtime and a SHA-256 of its first and last 64 KiB are
    stored inside and compared on every open, so a changed file rebuilds the cache. Compressed
    sources (gzip/zstd/zip) are decompressed once into the cache directory
    (``<name>.<hash>.plain``) so that positions can be seeks.

    Attributes:
        symbol: the replayed symbol.
        tick_size: its tick size.
        start_ts: exchange ms of the first book message.
        end_ts: exchange ms of the last book message.
        checkpoint_ts: exchange ms of each checkpoint (snapshots included).
        snapshot_ts: exchange ms of each snapshot.
        order_level: whether replays yield the ``OrderMessage`` s of an order-level feed
            (the ``order_level=`` argument).
        feed_order_level: whether the recording is in an order-level format (LOBSTER,
            Bitstamp), i.e. whether ``order_level=True`` yields order messages.
        profile: the ``DataProfile`` of the replayed stream (its first ``PROFILE_MESSAGES``
            messages, as ``load_messages`` yields them), computed in the same validating pass
            and cached with the checkpoints.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        symbol: str | None = None,
        *,
        tick_size: float | Mapping[str, float] | None = None,
        checkpoint_interval_ms: int = 60_000,
        cache_dir: str | os.PathLike | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        order_level: bool = False,
    ) -> None:
        if checkpoint_interval_ms <= 0:
            raise ValueError(f"checkpoint_interval_ms must be positive, got {checkpoint_interval_ms}")
        self.sources = as_paths(path_or_paths)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.interval = int(checkpoint_interval_ms)
        self.on_error = on_error
        self._tick_arg = tick_size
        fps = [_fingerprint(p) for p in self.sources]
        key_src = orjson.dumps({"v": _CACHE_VERSION, "paths": [f["path"] for f in fps],
                                "symbol": symbol, "tick": tick_size if not isinstance(tick_size, Mapping) else dict(tick_size),
                                "interval": self.interval, "on_error": on_error})
        key = hashlib.sha256(key_src).hexdigest()[:16]
        stem = self.cache_dir / f"{self.sources[0].name}.{key}"
        self._json_path = stem.with_name(stem.name + ".replay.json")
        self._npz_path = stem.with_name(stem.name + ".replay.npz")
        meta = self._load_cache(fps)
        if meta is None:
            meta = self._build(fps, symbol)
        self._meta = meta
        self.symbol: str = meta["symbol"]
        self.tick_size: float = meta["tick_size"]
        self.start_ts: int = meta["start_ts"]
        self.end_ts: int = meta["end_ts"]
        self.checkpoint_ts: list[int] = [c["ts"] for c in meta["checkpoints"]]
        self.snapshot_ts: list[int] = meta["snapshot_ts"]
        self.plain = [Path(p) for p in meta["plain"]]
        self.order_level = order_level
        self.feed_order_level: bool = _feed_of(self.plain[0]).order_level
        self.profile: DataProfile = DataProfile(**meta["profile"])
        with np.load(self._npz_path) as z:
            self._px = z["px"]
            self._sz = z["sz"]
            self._bounds = z["bounds"]

    # -- cache -----------------------------------------------------------------------------
    def _load_cache(self, fps: list[dict]) -> dict | None:
        try:
            meta = orjson.loads(self._json_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if meta.get("version") != _CACHE_VERSION or meta.get("sources") != fps:
            logger.info("replay cache %s is stale; rebuilding", self._json_path)
            return None
        if not self._npz_path.is_file() or not all(Path(p).is_file() for p in meta["plain"]):
            return None
        return meta

    def _build(self, fps: list[dict], symbol: str | None) -> dict:
        """The validating pass: checkpoints and profile, written to the cache."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        plain = []
        for src, fp in zip(self.sources, fps, strict=True):
            plain.append(src if compression(src) == "plain" else plain_copy(src, self.cache_dir, fp))
        report = LoadReport()
        reader = Reader(plain, symbol, self.on_error, self._tick_arg, report=report)
        index = _Index(self.interval, symbol)
        scan = _ProfileScan()
        for batch in reader.batches():
            scan.add(batch)
            index.add(batch, reader)
        sym = index.symbol
        if index.start_ts is None or sym is None:
            raise DataFormatError(self.sources[0], None, f"no book messages{' for ' + symbol if symbol else ''}")
        tick = reader.states[sym].tick
        meta = {
            "version": _CACHE_VERSION, "sources": fps, "plain": [str(p) for p in plain],
            "symbol": sym, "tick_size": tick, "start_ts": index.start_ts,
            "end_ts": index.end_ts, "interval_ms": self.interval, "snapshot_ts": index.snapshot_ts,
            "checkpoints": index.checkpoints, "report": report.summary(),
            "profile": dataclasses.asdict(scan.result(tick)),
        }
        atomic_write_bytes(self._npz_path, index.npz_bytes())
        atomic_write_json(self._json_path, meta)  # written last: its presence marks a complete cache
        logger.info("built replay cache %s: %d checkpoints", self._json_path, len(index.checkpoints))
        return meta

    def _checkpoint_levels(self, i: int) -> tuple[list, list]:
        b0, b1, b2 = self._bounds[2 * i], self._bounds[2 * i + 1], self._bounds[2 * i + 2]
        bids = list(zip(self._px[b0:b1].tolist(), self._sz[b0:b1].tolist(), strict=True))
        asks = list(zip(self._px[b1:b2].tolist(), self._sz[b1:b2].tolist(), strict=True))
        return bids, asks

    # -- replay ----------------------------------------------------------------------------
    def messages_from(self, checkpoint: int | None) -> tuple[list | None, Iterator[Message]]:
        """Book levels of a checkpoint (None: from the top) and the messages after it."""
        if checkpoint is None:
            reader = Reader(self.plain, self.symbol, self.on_error, self._tick_arg, check_crossed=False,
                            order_level=self.order_level)
            levels = None
        else:
            cp = self._meta["checkpoints"][checkpoint]
            bids, asks = self._checkpoint_levels(checkpoint)
            st = SymState.load(cp["state"], [], [])
            reader = Reader(self.plain, self.symbol, self.on_error, self._tick_arg,
                            check_crossed=False, start=(cp["file"], cp["offset"], cp["line"]),
                            states={self.symbol: st}, extra=cp["extra"], order_level=self.order_level)
            reader.seen_symbols = [self.symbol]
            levels = [bids, asks, cp["ts"]]
        return levels, (m for batch in reader.batches() for m in batch)

    def start_at(self, t_ms: int) -> tuple[OrderBook, Iterator[Message]]:
        """Book after every book message with ``ts <= t_ms``, and the messages with ``ts > t_ms``.

        Args:
            t_ms: exchange time, ms.

        Returns:
            ``(OrderBook, iterator)``: the iterator yields every message (book and trade)
            with ``ts > t_ms`` in file order; apply its book messages to the book.
        """
        i = bisect.bisect_right(self.checkpoint_ts, t_ms) - 1
        levels, it = self.messages_from(i if i >= 0 else None)
        book = OrderBook(self.symbol, self.tick_size)
        if levels is not None:
            book.apply(SnapshotMessage(levels[2], self.symbol, levels[0], levels[1], None, self.tick_size))
        ahead: list[Message] = []
        for m in it:
            if type(m) is SnapshotMessage or type(m) is DeltaMessage:
                if m.ts <= t_ms:
                    book.apply(m)
                    continue
                ahead.append(m)
                break
            if m.ts > t_ms:
                ahead.append(m)

        def rest() -> Iterator[Message]:
            yield from ahead
            for m in it:
                if m.ts > t_ms:
                    yield m

        return book, rest()
