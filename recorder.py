"""Record a venue's public order-book and trade websocket into files the loader reads.

One job: subscribe to Bybit, Binance USDⓈ-M, Coinbase Advanced Trade or OKX public channels
(no credentials), and write every received message, with its local receive time, as a line
of the cryptofeed v3 capture format (``feeds/cryptofeed.py``), rotating and compressing the
files, reconnecting with backoff after a lost connection and marking the gap.

Run it as ``python data_processor.py record --venue okx --symbol BTC-USDT --out data/okx.jsonl``
(or ``python recorder.py ...``); ``--help`` lists every flag (``RecorderConfig``). Load the
result with ``data_processor.load_messages(sorted(glob("data/okx.*.jsonl*")), symbol=...)``.

What is written (one JSON object per line; the loader's ``CryptofeedFeed`` reads it):

- ``{"t":"header","format":2,"exchange":"OKX","config":{...},"connections":{...}}`` at the top
  of every file (with the connections open at that moment, so that symbol names stay the same
  in every file; the files of a recording are still read together, in order: only the first
  holds the snapshots);
- ``{"t":"connect","conn":"OKX.ws.1","ts":<s>,"addr":<url>}`` per connection (``ws.2``,
  ``ws.3``, ... after reconnects), ``{"t":"send",...}`` per subscription request;
- ``{"t":"recv","conn":...,"ts":<local receive time, s>,"data":"<raw websocket text>"}``;
- ``{"t":"http","conn":...,"ts":...,"url":...,"data":"<body>"}``: Binance's REST depth
  snapshot, fetched after each (re)connection;
- ``{"t":"disconnect","conn":...,"ts":...,"reason":...}``: **the gap marker**. The loader
  makes every book of that connection wait for its next snapshot (the venue re-sends one on
  the new subscription), counts the gap (``LoadReport.gaps``) and flags that snapshot
  ``gap=True``; ``Replay.gaps`` and the env never replay across it.

Files: ``--out data/okx.jsonl`` writes ``data/okx.<UTC start, µs>Z.jsonl``; a file is
finished when it reaches ``--rotate_mb`` or ``--rotate_minutes`` (at a line boundary: no
message is split or lost), then compressed to ``.jsonl.gz`` (or ``.zst``) beside it, by a
worker thread, through a temporary file and an atomic rename (the plain file is removed
only after). Lines are flushed every ``--flush_s`` seconds and on exit. The names sort in
recording order.

Connection loss: reconnect after ``backoff_initial_s``, doubling up to ``backoff_max_s``
(reset after a connection that received data), giving up after ``max_reconnects``
consecutive failures if set. Ctrl-C (SIGINT) or SIGTERM: close the websocket, write the final
``disconnect``, flush, compress the last file, exit 0.

Names: ``RecorderConfig``, ``VENUES``, ``record`` (the coroutine), ``main`` (CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

import utils

logger = logging.getLogger("recorder")

__all__ = ["VENUES", "RecorderConfig", "RecorderError", "main", "record"]


class RecorderError(RuntimeError):
    """The recording cannot go on (bad flags, a venue's refusal, too many failed reconnects)."""


@dataclass(frozen=True)
class RecorderConfig:
    """What to record and how to write it (every field is a ``record`` flag)."""

    venue: Literal["bybit", "binance", "coinbase", "okx"] = "okx"
    """Venue whose public websocket is recorded."""
    symbol: str = ""
    """Instrument(s), comma-separated, in the venue's own spelling: BTCUSDT (Bybit, Binance), BTC-USD (Coinbase), BTC-USDT / BTC-USDT-SWAP (OKX)."""
    out: str = ""
    """Output path: ``data/okx.jsonl`` writes ``data/okx.<UTC start>Z.jsonl`` files (compressed when finished)."""
    category: Literal["linear", "spot", "inverse"] = "linear"
    """Bybit market (its websocket path ``/v5/public/<category>``)."""
    depth: int = 200
    """Bybit ``orderbook.<depth>`` channel (1, 50, 200 or 500 on linear; 1, 50 or 200 on spot)."""
    okx_channel: Literal["books", "books5", "bbo-tbt"] = "books"
    """OKX book channel (``books``: 400 levels, snapshot + updates with checksums)."""
    url: str | None = None
    """Websocket URL instead of the venue's public endpoint (a proxy, or a local test server)."""
    rest_url: str | None = None
    """Binance: REST depth snapshot URL instead of ``https://fapi.binance.com/fapi/v1/depth?symbol=<S>&limit=1000`` (``{symbol}`` in it is replaced by each symbol)."""
    rotate_mb: float = 256.0
    """Finish a file once it holds this many MB (uncompressed)."""
    rotate_minutes: float = 60.0
    """Finish a file once it is this many minutes old."""
    compress: Literal["gzip", "zstd", "none"] = "gzip"
    """Compression of finished files (the loader reads all three)."""
    backoff_initial_s: float = 1.0
    """Wait before the first reconnect; doubled after each failed attempt."""
    backoff_max_s: float = 60.0
    """Longest wait between reconnect attempts."""
    max_reconnects: int | None = None
    """Stop with an error after this many consecutive failed attempts (none: keep trying)."""
    flush_s: float = 1.0
    """Flush written lines to disk at least this often (seconds)."""
    ping_s: float = 20.0
    """Application-level keepalive interval for Bybit and OKX (they drop a silent client after 30 s)."""

    def __post_init__(self) -> None:
        for name in ("rotate_mb", "rotate_minutes", "backoff_initial_s", "backoff_max_s", "flush_s", "ping_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0 and v < float("inf")):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.max_reconnects is not None and self.max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or none, got {self.max_reconnects!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth!r}")

    @property
    def symbols(self) -> list[str]:
        """``symbol`` split at commas."""
        return [s.strip() for s in self.symbol.split(",") if s.strip()]


# --------------------------------------------------------------------------------------------
# Venues: endpoint, subscription, keepalive
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Venue:
    """How to record one venue."""

    exchange: str
    """The capture header's ``exchange`` (``feeds.cryptofeed.EXCHANGES``)."""
    url: str
    """Default websocket URL (``{category}`` / ``{streams}`` filled in)."""
    ping: str | None
    """Application-level keepalive text sent every ``ping_s`` (None: the protocol pings do)."""
    skip: frozenset[str] = frozenset()
    """Received texts not written (keepalive replies that are not JSON)."""


VENUES: dict[str, Venue] = {
    "bybit": Venue("BYBIT", "wss://stream.bybit.com/v5/public/{category}", '{"op":"ping"}'),
    "binance": Venue("BINANCE_FUTURES", "wss://fstream.binance.com/stream?streams={streams}", None),
    "coinbase": Venue("COINBASE", "wss://advanced-trade-ws.coinbase.com", None),
    "okx": Venue("OKX", "wss://ws.okx.com:8443/ws/v5/public", "ping", frozenset({"pong"})),
}
"""The venues and their public endpoints."""


def _url(cfg: RecorderConfig) -> str:
    if cfg.url:
        return cfg.url
    streams = "/".join(f"{s.lower()}@depth@0ms/{s.lower()}@trade" for s in cfg.symbols)
    return VENUES[cfg.venue].url.format(category=cfg.category, streams=streams)


def subscriptions(cfg: RecorderConfig) -> list[str]:
    """The subscription requests sent after each connect (public channels, no credentials).

    >>> subscriptions(RecorderConfig(venue="okx", symbol="BTC-USDT", out="x"))
    ['{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},{"channel":"trades","instId":"BTC-USDT"}]}']
    >>> subscriptions(RecorderConfig(venue="bybit", symbol="BTCUSDT", out="x", depth=50))
    ['{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}']
    >>> subscriptions(RecorderConfig(venue="binance", symbol="BTCUSDT", out="x"))  # in the URL
    []
    """
    syms = cfg.symbols
    if cfg.venue == "okx":
        args = [a for s in syms for a in ({"channel": cfg.okx_channel, "instId": s}, {"channel": "trades", "instId": s})]
        return [orjson.dumps({"op": "subscribe", "args": args}).decode()]
    if cfg.venue == "bybit":
        args = [a for s in syms for a in (f"orderbook.{cfg.depth}.{s}", f"publicTrade.{s}")]
        return [orjson.dumps({"op": "subscribe", "args": args}).decode()]
    if cfg.venue == "coinbase":
        return [orjson.dumps({"type": "subscribe", "product_ids": syms, "channel": ch}).decode()
                for ch in ("heartbeats", "level2", "market_trades")]
    return []


def _refusal(venue: str, text: str) -> str | None:
    """The venue's error reply to a subscription, if ``text`` is one."""
    if '"error"' not in text and '"success":false' not in text:
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if venue == "okx" and obj.get("event") == "error":
        return f"OKX refused: {obj.get('msg')} (code {obj.get('code')})"
    if venue == "bybit" and obj.get("success") is False:
        return f"Bybit refused: {obj.get('ret_msg')}"
    if venue == "coinbase" and obj.get("type") == "error":
        return f"Coinbase refused: {obj.get('message')}"
    if venue == "binance" and "error" in obj:
        return f"Binance refused: {obj.get('error')}"
    return None


# --------------------------------------------------------------------------------------------
# Files: rotation, compression
# --------------------------------------------------------------------------------------------


def _compress(plain: Path, how: str) -> Path:
    """``plain`` -> ``plain.gz`` / ``.zst`` through a temporary file; the plain file removed after."""
    suffix = ".gz" if how == "gzip" else ".zst"
    final = plain.with_name(plain.name + suffix)
    tmp = plain.with_name(plain.name + suffix + ".tmp")
    with plain.open("rb") as src:
        if how == "gzip":
            with gzip.open(tmp, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            import zstandard

            with tmp.open("wb") as raw, zstandard.ZstdCompressor(level=10).stream_writer(raw) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, final)
    plain.unlink()
    return final


class RotatingWriter:
    """Lines to ``<stem>.<UTC start>Z.jsonl`` files, rotated by size or age, compressed when done."""

    def __init__(self, cfg: RecorderConfig, header: dict) -> None:
        out = Path(cfg.out)
        name = out.name
        for suf in (".gz", ".zst", ".jsonl", ".json"):
            if name.endswith(suf):
                name = name[: -len(suf)]
        self.stem = out.with_name(name or "recording")
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.header = header
        self.connections: dict[str, str] = {}  # open connections (repeated in each file's header)
        self.fh: BinaryIO | None = None
        self.path: Path | None = None
        self.size = 0
        self.opened = 0.0
        self.last_us = 0
        self.lines = 0
        self.files: list[Path] = []  # every file started, in order (plain names)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="compress")
        self.jobs: list[Future] = []

    def _open(self) -> None:
        us = max(time.time_ns() // 1000, self.last_us + 1)  # names strictly increase
        self.last_us = us
        stamp = datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y%m%dT%H%M%S")
        self.path = self.stem.with_name(f"{self.stem.name}.{stamp}.{us % 1_000_000:06d}Z.jsonl")
        try:
            self.fh = self.path.open("xb")
        except OSError as e:
            raise RecorderError(f"cannot create {self.path}: {e.strerror or e}") from None
        self.files.append(self.path)
        self.size = 0
        self.opened = time.monotonic()
        logger.info("writing %s", self.path)
        self._put({**self.header, "recorded": time.time(), "connections": dict(self.connections)})

    def _put(self, rec: dict) -> None:
        line = orjson.dumps(rec) + b"\n"
        assert self.fh is not None
        try:
            self.fh.write(line)
        except OSError as e:  # disk full, ...: one line for the user, the files so far kept
            raise RecorderError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.size += len(line)
        self.lines += 1

    def write(self, rec: dict) -> None:
        """Write one record (rotating first when the current file is full or old)."""
        if self.fh is None:
            self._open()
        elif (self.size >= self.cfg.rotate_mb * 1e6
              or time.monotonic() - self.opened >= self.cfg.rotate_minutes * 60):
            self.rotate()
        if rec.get("t") == "connect":
            self.connections[rec["conn"]] = rec.get("addr", "")
        elif rec.get("t") == "disconnect":
            self.connections.pop(rec["conn"], None)
        self._put(rec)

    def flush(self) -> None:
        """Push buffered lines to the OS."""
        if self.fh is not None:
            try:
                self.fh.flush()
            except OSError as e:
                raise RecorderError(f"cannot write {self.path}: {e.strerror or e}") from None

    def rotate(self) -> None:
        """Finish the current file (compressed in the background) and start the next one."""
        self._finish()
        self._open()

    def _finish(self) -> None:
        if self.fh is None:
            return
        self.fh.close()
        self.fh = None
        if self.cfg.compress != "none":
            self.jobs.append(self.pool.submit(_compress, self.path, self.cfg.compress))

    def close(self) -> list[Path]:
        """Finish the last file and wait for every compression; the files written, in order."""
        try:
            self._finish()
        except OSError as e:
            logger.error("cannot finish %s: %s", self.path, e)
        self.pool.shutdown(wait=True)
        for j in self.jobs:
            try:
                j.result()
            except OSError as e:  # the plain file is still there, complete
                logger.error("compression failed, the plain file is kept: %s", e)
        out = []
        for p in self.files:
            for suf in ("", ".gz", ".zst"):
                q = p.with_name(p.name + suf)
                if q.exists():
                    out.append(q)
                    break
        return out


# --------------------------------------------------------------------------------------------
# The recording loop
# --------------------------------------------------------------------------------------------


async def _fetch(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a public REST endpoint or the test's
            return r.read().decode()
    return await asyncio.to_thread(get)


async def record(cfg: RecorderConfig, stop: asyncio.Event) -> dict[str, Any]:
    """Record until ``stop`` is set; returns ``{"files": [...], "lines": n, "gaps": k, "connections": c}``.

    Raises:
        RecorderError: the venue refused a subscription, or ``max_reconnects`` failed attempts
            in a row.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    venue = VENUES[cfg.venue]
    url = _url(cfg)
    subs = subscriptions(cfg)
    header = {"t": "header", "format": 2, "exchange": venue.exchange, "recorder": "recorder.py",
              "config": {"venue": cfg.venue, "symbols": cfg.symbols, "url": url, "subscriptions": subs}}
    w = RotatingWriter(cfg, header)
    n_conn = failures = gaps = 0
    flusher = asyncio.create_task(_flush_every(w, cfg.flush_s, stop))
    try:
        while not stop.is_set():
            n_conn += 1
            conn = f"{venue.exchange}.ws.{n_conn}"
            connected = False
            got = [False]  # set by _session at the first message (it may end by an exception)
            reason = "stopped"
            try:
                async with connect(url, open_timeout=10, max_size=1 << 26, ping_interval=20, ping_timeout=20) as ws:
                    connected = True
                    logger.info("connected to %s (%s)", url, conn)
                    w.write({"t": "connect", "conn": conn, "ts": time.time(), "addr": url})
                    for s in subs:
                        await ws.send(s)
                        w.write({"t": "send", "conn": conn, "ts": time.time(), "data": s})
                    await _session(cfg, venue, ws, w, conn, stop, got)
                    reason = "stopped by the user" if stop.is_set() else "closed by the server"
            except ConnectionClosed as e:
                reason = f"connection lost ({e})"
            except (OSError, InvalidHandshake, TimeoutError) as e:
                reason = f"{type(e).__name__}: {e}"
            except InvalidURI as e:
                raise RecorderError(f"bad --url {url!r}: {e}") from None
            if connected:
                w.write({"t": "disconnect", "conn": conn, "ts": time.time(), "reason": reason})
                if not stop.is_set():
                    gaps += 1
                    logger.warning("%s: %s; the gap is marked in the file, reconnecting", conn, reason)
            else:
                logger.warning("cannot connect to %s: %s", url, reason)
            if stop.is_set():
                break
            failures = 0 if got[0] else failures + 1
            if cfg.max_reconnects is not None and failures > cfg.max_reconnects:
                raise RecorderError(f"{failures} connection attempts in a row failed ({reason}); giving up")
            delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** max(0, failures - 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        stop.set()
        await flusher
        files = w.close()
    logger.info("recorded %d lines in %d file(s), %d gap(s)", w.lines, len(files), gaps)
    return {"files": files, "lines": w.lines, "gaps": gaps, "connections": n_conn}


async def _flush_every(w: RotatingWriter, period: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        w.flush()


async def _session(cfg: RecorderConfig, venue: Venue, ws: Any, w: RotatingWriter, conn: str,
                   stop: asyncio.Event, got: list[bool]) -> None:
    """Receive until the connection ends (``ConnectionClosed``) or ``stop``; ``got[0]``: data came."""
    tasks: list[asyncio.Task] = []
    if venue.ping:
        tasks.append(asyncio.create_task(_keepalive(ws, venue.ping, cfg.ping_s)))
    stopper = asyncio.create_task(stop.wait())
    snapshot_due = cfg.venue == "binance"
    n = 0
    try:
        while True:
            recv = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait({recv, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recv
                await ws.close()
                return
            text = recv.result()  # raises ConnectionClosed at the end
            ts = time.time()
            if isinstance(text, bytes):
                text = text.decode("utf-8", errors="replace")
            if text in venue.skip:
                continue
            n += 1
            if n <= 10:
                refused = _refusal(cfg.venue, text)
                if refused:
                    raise RecorderError(refused)
            w.write({"t": "recv", "conn": conn, "ts": ts, "data": text})
            got[0] = True
            if snapshot_due and '"depthUpdate"' in text:
                snapshot_due = False  # after the first diff, as Binance prescribes
                tasks.append(asyncio.create_task(_binance_snapshot(cfg, w, conn)))
    finally:
        stopper.cancel()
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception as e:  # noqa: BLE001 - a helper task's failure is logged, the recording goes on
                logger.warning("%s: %s", conn, e)


async def _keepalive(ws: Any, text: str, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        await ws.send(text)


async def _binance_snapshot(cfg: RecorderConfig, w: RotatingWriter, conn: str) -> None:
    for s in cfg.symbols:
        url = (cfg.rest_url.replace("{symbol}", s.upper()) if cfg.rest_url
               else f"https://fapi.binance.com/fapi/v1/depth?symbol={s.upper()}&limit=1000")
        try:
            body = await _fetch(url)
        except OSError as e:
            logger.error("Binance REST snapshot %s failed: %s (the loader waits for one)", url, e)
            continue
        w.write({"t": "http", "conn": conn, "ts": time.time(), "url": url, "data": body})


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser(prog: str = "recorder.py") -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The ``record`` argument parser (flags from ``RecorderConfig``) and its flag mapping."""
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Record a venue's public L2 book and trades websocket to rotating, compressed "
                    "files in the format data_processor.load_messages reads (cryptofeed v3 capture "
                    "lines with local receive times). Reconnects with backoff and marks each gap "
                    "(a 'disconnect' record: the loader never replays across it). Ctrl-C stops "
                    "cleanly. No credentials: public channels only.",
        epilog="example: python data_processor.py record --venue okx --symbol BTC-USDT --out data/okx.jsonl")
    req = parser.add_argument_group("required")
    req.add_argument("--venue", required=True, choices=list(VENUES), help=_doc("venue"))
    req.add_argument("--symbol", required=True, help=_doc("symbol"))
    req.add_argument("--out", required=True, help=_doc("out"))
    mapping = utils.add_dataclass_arguments(parser, RecorderConfig, title="recording",
                                            exclude=("venue", "symbol", "out"))
    mapping.update(venue="venue", symbol="symbol", out="out")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection and file at INFO")
    return parser, mapping


def _doc(name: str) -> str:
    return utils.field_docstrings(RecorderConfig)[name]


def main(argv: Sequence[str] | None = None, prog: str = "recorder.py") -> int:
    """Command-line entry point; returns the exit status."""
    parser, mapping = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        cfg = utils.dataclass_from_args(RecorderConfig, args, mapping)
    except utils.CliError as e:
        parser.error(str(e))
    if not cfg.symbols:
        parser.error("--symbol names no instrument")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("recorder").setLevel(logging.INFO)
    return asyncio.run(_run(cfg, prog))


async def _run(cfg: RecorderConfig, prog: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        res = await record(cfg, stop)
    except RecorderError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    for p in res["files"]:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
