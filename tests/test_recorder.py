"""The live recorder against a real local websocket server replaying a real OKX recording.

A ``websockets`` server on 127.0.0.1 (a thread of this process) replays the payloads of
``../shared/data/okx/cryptofeed_v3_OKX.jsonl.gz`` message by message to the recorder, run as
a subprocess (``python data_processor.py record --venue okx ...``). Mid-stream the server drops
the connection (no close frame) and "loses" the next messages, as a real outage would; on the
reconnect it sends a fresh ``books`` snapshot of its own book (with OKX's checksum) and goes on
with the recording, whose real checksums then verify the loader's book after the gap. The test
then stops the recorder with SIGINT (Ctrl-C) and checks: exit status 0, files rotated and
gzip-compressed, nothing lost (every payload sent is in the files, the final ``disconnect``
written at shutdown too), the files load with ``load_messages`` (checksums verified), the gap is
reported and flagged, the loader's book after the gap and at the end equals the server's, and
``Replay`` lists the gap. No internet: loopback only.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("websockets")

REPO = Path(__file__).resolve().parent.parent
OKX = "okx/cryptofeed_v3_OKX.jsonl.gz"
SYMBOL = "BTC-USDT"
DROP_AT = 200  # payloads sent on the first connection
LOST = 15  # payloads the recorder never receives (the outage)


class _Book:
    """The server's own book of one instrument: Decimal price -> (price text, size text)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self.ts = "0"

    def apply(self, d: dict, snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, d["bids"]), (self.asks, d["asks"])):
            for px, sz, *_ in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)
        self.ts = d["ts"]

    def sorted(self):
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)],
                [self.asks[k] for k in sorted(self.asks)])

    def checksum(self) -> int:
        b, a = self.sorted()
        parts = []
        for i in range(25):
            if i < len(b):
                parts += list(b[i])
            if i < len(a):
                parts += list(a[i])
        crc = zlib.crc32(":".join(parts).encode())
        return crc - 2**32 if crc >= 2**31 else crc

    def snapshot_payload(self, inst: str) -> str:
        b, a = self.sorted()
        d = {"asks": [[p, s, "0", "1"] for p, s in a], "bids": [[p, s, "0", "1"] for p, s in b],
             "ts": self.ts, "checksum": self.checksum()}
        return json.dumps({"arg": {"channel": "books", "instId": inst}, "action": "snapshot", "data": [d]},
                          separators=(",", ":"))


class ReplayServer:
    """Replays recorded OKX payloads; drops the first connection at ``DROP_AT``."""

    def __init__(self, payloads: list[str]) -> None:
        self.payloads = payloads
        self.books: dict[str, _Book] = {}
        self.sent: list[str] = []
        self.subscriptions: list[str] = []
        self.connections = 0
        self.book_at_gap: dict | None = None
        self.gap_ts: dict[str, int] = {}
        self.done = threading.Event()
        self.port: int | None = None
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None

    def _apply(self, text: str) -> None:
        msg = json.loads(text)
        if msg.get("arg", {}).get("channel") == "books" and "action" in msg:
            inst = msg["arg"]["instId"]
            for d in msg["data"]:
                self.books.setdefault(inst, _Book()).apply(d, msg["action"] == "snapshot")

    async def _send(self, ws, text: str) -> None:
        await ws.send(text)
        self.sent.append(text)

    async def handler(self, ws) -> None:
        n = self.connections
        self.connections += 1
        self.subscriptions.append(await ws.recv())
        pong = asyncio.create_task(self._pongs(ws))
        try:
            if n == 0:
                for text in self.payloads[:DROP_AT]:
                    await self._send(ws, text)
                    self._apply(text)
                for text in self.payloads[DROP_AT:DROP_AT + LOST]:  # the outage: never sent
                    self._apply(text)
                await asyncio.sleep(0.05)
                ws.transport.abort()  # a dropped connection: no close frame
                return
            self.book_at_gap = {k: v.sorted() for k, v in self.books.items()}
            self.gap_ts = {k: int(v.ts) for k, v in self.books.items()}
            for inst in sorted(self.books):
                await self._send(ws, self.books[inst].snapshot_payload(inst))
            for text in self.payloads[DROP_AT + LOST:]:
                await self._send(ws, text)
                self._apply(text)
            self.done.set()
            await ws.wait_closed()
        finally:
            pong.cancel()

    async def _pongs(self, ws) -> None:
        async for text in ws:
            if text == "ping":
                await ws.send("pong")  # OKX's keepalive reply (not JSON): the recorder skips it

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        async with serve(self.handler, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.ready.set()
            await self.stop.wait()

    def shutdown(self) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)


def _payloads(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        recs = [json.loads(ln) for ln in fh if ln.strip()]
    return [r["data"] for r in recs if r["t"] == "recv"]


def _read(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt") as fh:
            out += [json.loads(ln) for ln in fh if ln.strip()]
    return out


@pytest.fixture
def server(shared_data):
    srv = ReplayServer(_payloads(shared_data / OKX))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    assert srv.ready.wait(10)
    yield srv
    srv.shutdown()
    th.join(10)


def _wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_recorder_survives_a_dropped_connection_and_ctrl_c(server, tmp_path):
    from data_processor import LoadReport, Replay, SnapshotMessage, load_messages
    from order_book import OrderBook

    out = tmp_path / "rec" / "okx.jsonl"
    cmd = [sys.executable, "data_processor.py", "record", "--venue", "okx", "--symbol", SYMBOL,
           "--out", str(out), "--url", f"ws://127.0.0.1:{server.port}", "--rotate_mb", "0.1",
           "--flush_s", "0.05", "--backoff_initial_s", "0.1", "--ping_s", "0.3", "-v"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.done.wait(60), "the server never finished replaying"
        last = server.sent[-1]

        def written() -> bool:  # the last payload has reached the disk (rotated files included)
            files = sorted(out.parent.glob("okx.*"))
            try:
                return any(r.get("data") == last for r in _read([f for f in files if not f.name.endswith(".tmp")]))
            except (EOFError, OSError, json.JSONDecodeError):  # a file being compressed right now
                return False

        _wait_for(written, 60, "the recorder to write the last payload")
        time.sleep(0.5)  # a few keepalive pings / pongs go by
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "closed by the server" in stderr or "connection lost" in stderr  # the drop was seen and logged

    # Files: rotated, every finished one compressed (no plain or temporary file left), in order.
    files = sorted(out.parent.iterdir())
    assert len(files) >= 3 and all(f.name.endswith(".jsonl.gz") for f in files), files
    assert stdout.split() == [str(f) for f in files]
    recs = _read(files)
    assert sum(r["t"] == "header" for r in recs) == len(files)
    assert recs[0]["exchange"] == "OKX" and all(f.open("rb").read(2) == b"\x1f\x8b" for f in files)

    # Nothing lost, nothing invented: every payload the server sent, in order; pongs skipped.
    received = [r["data"] for r in recs if r["t"] == "recv"]
    assert received == server.sent
    assert len(received) == len(server.payloads) - LOST + 3  # + the 3 re-snapshots
    assert [r["t"] for r in recs if r["t"] in ("connect", "disconnect")] == ["connect", "disconnect", "connect", "disconnect"]
    assert recs[-1]["t"] == "disconnect" and recs[-1]["reason"] == "stopped by the user"  # written at Ctrl-C
    assert server.connections == 2 and all(json.loads(s)["op"] == "subscribe" for s in server.subscriptions)

    # The loader reads the files as one recording: checksums hold, the gap is a gap.
    rep = LoadReport()
    book = OrderBook(SYMBOL, 0.1)
    after_gap = None
    n_book = 0
    for m in load_messages(files, symbol=SYMBOL, report=rep):
        book.apply(m)
        if isinstance(m, SnapshotMessage) and m.gap:
            after_gap = (list(book.bids.items()), list(book.asks.items()))
        n_book += not hasattr(m, "side")
    assert rep.n_problems == 0 and rep.gaps == 1 and rep.dropped_deltas == 0
    sent_books = [s for s in server.sent if '"channel":"books"' in s and '"action"' in s and SYMBOL + '"' in s]
    assert rep.checksums == len(sent_books) == n_book  # every book message of BTC-USDT verified

    def ticks(levels):
        return [(int(Decimal(p) / Decimal("0.1")), float(s)) for p, s in levels]

    gb, ga = server.book_at_gap[SYMBOL]
    assert after_gap == (sorted(ticks(gb)), ticks(ga))  # the book after the gap is the server's
    fb, fa = server.books[SYMBOL].sorted()
    assert (list(book.bids.items()), list(book.asks.items())) == (sorted(ticks(fb)), ticks(fa))

    r = Replay(files, symbol=SYMBOL, cache_dir=tmp_path / "cache")
    assert r.gap_ts == [server.gap_ts[SYMBOL]] and r.gaps[0][0] < r.gaps[0][1]


def test_record_help_documents_every_flag():
    import recorder
    from utils import field_docstrings

    res = subprocess.run([sys.executable, "data_processor.py", "record", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    docs = field_docstrings(recorder.RecorderConfig)
    for name, doc in docs.items():
        assert f"--{name}" in res.stdout
        assert doc.split()[0] in res.stdout, name
    for venue in ("bybit", "binance", "coinbase", "okx"):
        assert venue in res.stdout


def test_record_refuses_bad_flags_in_one_line():
    res = subprocess.run([sys.executable, "data_processor.py", "record", "--venue", "kraken", "--symbol", "X",
                          "--out", "x"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "invalid choice: 'kraken'" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "data_processor.py", "record", "--venue", "okx", "--symbol", "X",
                          "--out", "x", "--rotate_mb", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "rotate_mb must be a positive number" in res.stderr


def test_recorder_gives_up_after_max_reconnects(tmp_path):
    """Nothing listens on the port: bounded retries, then a one-line error (exit 1)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "data_processor.py", "record", "--venue", "bybit", "--symbol", "BTCUSDT",
                          "--out", str(tmp_path / "b.jsonl"), "--url", f"ws://127.0.0.1:{port}",
                          "--max_reconnects", "2", "--backoff_initial_s", "0.05"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "3 connection attempts in a row failed" in res.stderr
    assert "Traceback" not in res.stderr
