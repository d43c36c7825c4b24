"""Random access into a recording: cached periodic book checkpoints, and its data profile.

One job: index a recording once (one validating pass) so that a replay can start at any time
cheaply, and keep what that pass learns about the data (``DataProfile``) with the index.

Public names (re-exported by ``data_processor``, where users import them from):

- ``Replay``: ``start_at(t_ms)`` from cached checkpoints; ``Replay.profile``.
- ``DataProfile``: trade presence, lot size, median trade size and tick size of a recording's
  first ``PROFILE_MESSAGES`` messages; ``PROFILE_MESSAGES``.
- ``default_cache_dir()``: where ``Replay`` caches by default (per user, never beside the data);
  ``cache_entries`` / ``clear_cache`` / ``bound_cache`` / ``cache_max_bytes``: its files, the
  ``data_processor.py cache`` command and the size bound (LRU eviction).
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
from feeds.compression import as_paths, compression, mark_used, plain_copy
from feeds.light_book import LightBook
from feeds.reader import Reader, scan_symbols
from messages import DataFormatError, DeltaMessage, Message, SnapshotMessage, TradeMessage
from order_book import OrderBook
from utils import atomic_write_bytes, atomic_write_json

__all__ = ["PROFILE_MESSAGES", "DataProfile", "Replay", "bound_cache", "cache_entries", "cache_max_bytes",
           "clear_cache", "default_cache_dir"]

logger = logging.getLogger("data_processor")  # the data layer logs under one name (feeds/reader.py)

_CACHE_VERSION = 5  # 2: the DataProfile is stored; parser state of checkpoints under "extra"; 3: gap_ts;
# 4: sources fingerprinted by ctime + content SHA-256; 5: order-level feeds' packed checkpoint state


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


def _stat_print(path: Path) -> dict:
    """Path, size, mtime and ctime (ns) of a file: the cheap part of its fingerprint.

    ``ctime`` is set by the kernel on every write (and chmod, rename, copy); no user tool sets
    it back, so an in-place edit that restores the size and mtime still changes it.
    """
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed (the content part of its fingerprint)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fingerprint(path: Path) -> dict:
    """The full fingerprint: ``_stat_print`` plus the SHA-256 of the whole content."""
    return {**_stat_print(path), "sha256": content_sha256(path)}


def _same_source(stored: dict, now: dict, path: Path) -> bool:
    """Whether a cached source fingerprint still describes ``path`` (``now``: its stat print).

    Same size, mtime and ctime: unchanged. Same size and mtime but another ctime (a chmod, a
    copy, an in-place edit that restored the mtime): the content is hashed again and must
    match. Otherwise changed.
    """
    keys = ("path", "size", "mtime_ns")
    if any(stored.get(k) != now[k] for k in keys) or "sha256" not in stored:
        return False
    if stored.get("ctime_ns") == now["ctime_ns"]:
        return True
    same = content_sha256(path) == stored["sha256"]
    logger.info("%s: ctime changed, content hash %s", path, "unchanged" if same else "CHANGED")
    return same


CACHE_SUFFIXES = (".plain", ".replay.json", ".replay.npz")
"""The files ``Replay`` writes into its cache folder (``cache_entries`` / ``clear_cache`` touch
only these, and their temp files)."""

DEFAULT_CACHE_MAX_BYTES = 8 << 30
"""Size bound of the cache folder (8 GiB; ``$RLMM_CACHE_MAX_BYTES`` overrides, in bytes)."""


def cache_max_bytes() -> int:
    """The cache size bound: ``$RLMM_CACHE_MAX_BYTES`` or ``DEFAULT_CACHE_MAX_BYTES``."""
    env = os.environ.get("RLMM_CACHE_MAX_BYTES")
    if not env:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        v = int(env)
    except ValueError:
        raise ValueError(f"RLMM_CACHE_MAX_BYTES must be a whole number of bytes, got {env!r}") from None
    if v < 0:
        raise ValueError(f"RLMM_CACHE_MAX_BYTES must be >= 0, got {v}")
    return v


def cache_entries(cache_dir: Path) -> list[Path]:
    """The cache's files (``CACHE_SUFFIXES``, temp files of an interrupted write included)."""
    if not cache_dir.is_dir():
        return []
    out = []
    for p in cache_dir.iterdir():
        name = p.name
        if not p.is_file():
            continue
        if name.endswith(CACHE_SUFFIXES) or (name.startswith(".") and name.endswith(".tmp")
                                             and any(f"{sfx}." in name for sfx in CACHE_SUFFIXES)):
            out.append(p)
    return out


def clear_cache(cache_dir: Path) -> tuple[int, int]:
    """Remove every cache file of ``cache_dir``; ``(files removed, bytes freed)``."""
    n = freed = 0
    for p in cache_entries(cache_dir):
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        n += 1
        freed += size
    return n, freed


def bound_cache(cache_dir: Path, keep: Sequence[Path] = (), limit: int | None = None) -> int:
    """Evict the least recently used cache files until the folder is within its size bound.

    "Used" is the later of a file's mtime and its atime, which every use sets explicitly
    (``feeds.compression.mark_used``; explicit, so a ``noatime`` mount does not matter).

    Files are independent: ``Replay`` rebuilds whatever part of an entry is missing. ``keep``
    (the entry in use) is never evicted, even when it alone exceeds the bound.

    Returns:
        The bytes freed.
    """
    limit = cache_max_bytes() if limit is None else limit
    kept = {Path(p).resolve() for p in keep}
    files = []
    for p in cache_entries(cache_dir):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        files.append((max(st.st_atime_ns, st.st_mtime_ns), st.st_size, p))
    total = sum(f[1] for f in files)
    freed = 0
    for _, size, p in sorted(files, key=lambda f: f[0]):
        if total <= limit:
            break
        if p.resolve() in kept or p.name.startswith("."):  # in use, or another writer's temp file
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        total -= size
        freed += size
        logger.info("replay cache over its %d-byte bound: removed %s (%d bytes)", limit, p, size)
    return freed


def default_cache_dir() -> Path:
    """The per-user cache folder of ``Replay`` (checkpoints, decompressed copies).

    ``$RLMM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rlmm``, else ``~/.cache/rlmm``; never a
    folder next to the data (which may be read-only or shared). Entries are keyed by the
    sources' absolute paths and settings, and checked against their fingerprints (size, mtime,
    ctime, content SHA-256), so one folder serves every recording.

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
        self.gaps: list[list[int]] = []  # [last book ts before a recorded gap, resumption ts]
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
                if m.gap:
                    self.gaps.append([self.end_ts if self.end_ts is not None else m.ts, m.ts])
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
    ``on_error``; each source's size, mtime, ctime and the SHA-256 of its whole content
    (computed when the cache is built) are stored inside. On every open the size, mtime and
    ctime are compared; where only the ctime differs (a chmod or copy, or an in-place edit that
    restored size and mtime) the content is hashed again and must match, so a changed file
    always rebuilds the cache. Compressed sources (gzip/zstd/zip) are decompressed once into the
    cache directory (``<name>.<hash>.plain``) so that positions can be seeks. The folder is
    kept under ``cache_max_bytes()`` (least recently used files evicted after each build);
    ``python data_processor.py cache --clear`` empties it.

    Attributes:
        symbol: the replayed symbol.
        tick_size: its tick size.
        start_ts: exchange ms of the first book message.
        end_ts: exchange ms of the last book message.
        checkpoint_ts: exchange ms of each checkpoint (snapshots included).
        snapshot_ts: exchange ms of each snapshot.
        gaps: ``(last book message ts before, resumption ts)`` of each recorded gap: the
            resumption is a snapshot flagged ``SnapshotMessage.gap``; the data before it is not
            continuous with what follows (``gap_ts``: the resumption times alone).
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
        quick = [_stat_print(p) for p in self.sources]
        key_src = orjson.dumps({"v": _CACHE_VERSION, "paths": [f["path"] for f in quick],
                                "symbol": symbol, "tick": tick_size if not isinstance(tick_size, Mapping) else dict(tick_size),
                                "interval": self.interval, "on_error": on_error})
        key = hashlib.sha256(key_src).hexdigest()[:16]
        stem = self.cache_dir / f"{self.sources[0].name}.{key}"
        self._json_path = stem.with_name(stem.name + ".replay.json")
        self._npz_path = stem.with_name(stem.name + ".replay.npz")
        meta = self._load_cache(quick)
        if meta is None:
            meta = self._build(symbol)
        self._meta = meta
        self.symbol: str = meta["symbol"]
        self.tick_size: float = meta["tick_size"]
        self.start_ts: int = meta["start_ts"]
        self.end_ts: int = meta["end_ts"]
        self.checkpoint_ts: list[int] = [c["ts"] for c in meta["checkpoints"]]
        self.snapshot_ts: list[int] = meta["snapshot_ts"]
        self.gaps: list[tuple[int, int]] = [(a, b) for a, b in meta.get("gaps", [])]
        self.gap_ts: list[int] = [b for _, b in self.gaps]
        self.plain = [Path(p) for p in meta["plain"]]
        self.order_level = order_level
        self.feed_order_level: bool = _feed_of(self.plain[0]).order_level
        self.profile: DataProfile = DataProfile(**meta["profile"])
        with np.load(self._npz_path) as z:
            self._px = z["px"]
            self._sz = z["sz"]
            self._bounds = z["bounds"]

    # -- cache -----------------------------------------------------------------------------
    def _load_cache(self, quick: list[dict]) -> dict | None:
        try:
            meta = orjson.loads(self._json_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        stored = meta.get("sources") if isinstance(meta, dict) else None
        if (meta.get("version") != _CACHE_VERSION or not isinstance(stored, list)
                or len(stored) != len(quick)
                or not all(_same_source(s, q, p) for s, q, p in zip(stored, quick, self.sources, strict=True))):
            logger.info("replay cache %s is stale; rebuilding", self._json_path)
            return None
        if not self._npz_path.is_file() or not all(Path(p).is_file() for p in meta["plain"]):
            return None
        if any(s["ctime_ns"] != q["ctime_ns"] for s, q in zip(stored, quick, strict=True)):
            meta["sources"] = [{**s, "ctime_ns": q["ctime_ns"]} for s, q in zip(stored, quick, strict=True)]
            try:
                atomic_write_json(self._json_path, meta)  # content verified: remember the new ctime
            except OSError:  # a read-only cache: hash again next time
                pass
        for p in (self._json_path, self._npz_path,
                  *(Path(x) for x in meta["plain"] if Path(x).parent == self.cache_dir)):
            mark_used(p)
        return meta

    def _build(self, symbol: str | None) -> dict:
        """The validating pass: checkpoints and profile, written to the cache.

        Each source's full fingerprint (stat print + content SHA-256) is taken before the pass
        and its stat print again after it: a source written to during the pass is refused
        rather than cached under the wrong content.
        """
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fps = [_fingerprint(p) for p in self.sources]
        plain = []
        for src, fp in zip(self.sources, fps, strict=True):
            key = {"path": fp["path"], "size": fp["size"], "sha256": fp["sha256"]}
            plain.append(src if compression(src) == "plain" else plain_copy(src, self.cache_dir, key))
        report = LoadReport()
        reader = Reader(plain, symbol, self.on_error, self._tick_arg, report=report, names=self.sources)
        index = _Index(self.interval, symbol)
        scan = _ProfileScan()
        for batch in reader.batches():
            scan.add(batch)
            index.add(batch, reader)
        sym = index.symbol
        if index.start_ts is None or sym is None:
            held = ""
            if symbol:
                names = scan_symbols(plain, self._tick_arg)
                held = f" (the recording holds: {', '.join(names) or 'no symbol'})"
            raise DataFormatError(self.sources[0], None,
                                  f"no book messages{' for ' + symbol if symbol else ''}{held}")
        for p, fp in zip(self.sources, fps, strict=True):
            if {k: v for k, v in _stat_print(p).items() if k != "ctime_ns"} != {
                    k: fp[k] for k in ("path", "size", "mtime_ns")}:
                raise DataFormatError(p, None, "the file changed while it was being indexed; run again")
        tick = reader.states[sym].tick
        meta = {
            "version": _CACHE_VERSION, "sources": fps, "plain": [str(p) for p in plain],
            "symbol": sym, "tick_size": tick, "start_ts": index.start_ts,
            "end_ts": index.end_ts, "interval_ms": self.interval, "snapshot_ts": index.snapshot_ts,
            "gaps": index.gaps,
            "checkpoints": index.checkpoints, "report": report.summary(),
            "profile": dataclasses.asdict(scan.result(tick)),
        }
        atomic_write_bytes(self._npz_path, index.npz_bytes())
        atomic_write_json(self._json_path, meta)  # written last: its presence marks a complete cache
        logger.info("built replay cache %s: %d checkpoints", self._json_path, len(index.checkpoints))
        bound_cache(self.cache_dir, keep=[self._json_path, self._npz_path, *plain])
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
                            names=self.sources, order_level=self.order_level)
            levels = None
        else:
            cp = self._meta["checkpoints"][checkpoint]
            bids, asks = self._checkpoint_levels(checkpoint)
            st = SymState.load(cp["state"], [], [])
            reader = Reader(self.plain, self.symbol, self.on_error, self._tick_arg,
                            check_crossed=False, start=(cp["file"], cp["offset"], cp["line"]),
                            states={self.symbol: st}, extra=cp["extra"], names=self.sources,
                            order_level=self.order_level)
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
